//! Why a file could not be checked as a form at all.

/// A file rejected as a whole. `Display` is English (logs, CLI);
/// [`FormError::message_ja`] is for the applicant. Serde: it comes back
/// from the parsing worker.
#[derive(Debug, serde::Serialize, serde::Deserialize, thiserror::Error)]
pub enum FormError {
    #[error("{file}: not an application form: no sheet has the header titles (missing: {})", missing_titles.join(", "))]
    NotAForm {
        file: String,
        /// Titles missing from the best candidate header row.
        missing_titles: Vec<String>,
    },
    #[error("{file}: not a spreadsheet (.xlsx, .xls or .ods)")]
    UnknownFormat { file: String },
    #[error("{file}: corrupt spreadsheet: {detail}")]
    Corrupt { file: String, detail: String },
    #[error("{file}: too large: {what} is {size}, the limit is {limit}")]
    TooLarge {
        file: String,
        what: String,
        size: u64,
        limit: u64,
    },
    #[error("{file}: too many rows: at least {rows} rows, the limit is {limit} application rows")]
    TooManyRows { file: String, rows: u64, limit: u32 },
    #[error("{file}: the form has a header but no application rows")]
    NoRows { file: String, sheet: String },
    #[error("{file}: {detail}")]
    Io { file: String, detail: String },
    /// The reader was stopped or died (see `crate::sandbox`).
    #[error("{file}: could not be read: {detail}")]
    Unreadable {
        file: String,
        /// The `Contained` code, e.g. `reader_memory`.
        reason: String,
        detail: String,
    },
}

impl FormError {
    /// Stable English code, as in the JSON output.
    pub fn code(&self) -> &'static str {
        match self {
            FormError::NotAForm { .. } => "not_a_form",
            FormError::UnknownFormat { .. } => "unknown_format",
            FormError::Corrupt { .. } => "corrupt",
            FormError::TooLarge { .. } => "too_large",
            FormError::TooManyRows { .. } => "too_many_rows",
            FormError::NoRows { .. } => "no_rows",
            FormError::Io { .. } => "unreadable",
            FormError::Unreadable { .. } => "could_not_read",
        }
    }

    pub fn file(&self) -> &str {
        match self {
            FormError::NotAForm { file, .. }
            | FormError::UnknownFormat { file }
            | FormError::Corrupt { file, .. }
            | FormError::TooLarge { file, .. }
            | FormError::TooManyRows { file, .. }
            | FormError::NoRows { file, .. }
            | FormError::Io { file, .. }
            | FormError::Unreadable { file, .. } => file,
        }
    }

    /// For the applicant, in Japanese.
    pub fn message_ja(&self) -> String {
        super::messages::form_error_ja(self)
    }

    /// The JSON document of `kxca intake check --json` for a rejected file.
    pub fn to_json(&self) -> serde_json::Value {
        let missing = match self {
            FormError::NotAForm { missing_titles, .. } => missing_titles.clone(),
            _ => Vec::new(),
        };
        serde_json::json!({
            "file": self.file(),
            "error": self.code(),
            "message": self.to_string(),
            "message_ja": self.message_ja(),
            "missing_titles": missing,
        })
    }
}

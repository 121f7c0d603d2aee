//! Why a file could not be checked as a form at all.

/// A file rejected as a whole. `Display` is English (logs, CLI);
/// [`FormError::message_ja`] is for the applicant. Serde: it comes back
/// from the parsing worker.
#[derive(Debug, serde::Serialize, serde::Deserialize, thiserror::Error)]
pub enum FormError {
    /// No sheet has the form's header row.
    #[error("{file}: not an application form: no sheet has the header titles (missing: {})", missing_titles.join(", "))]
    NotAForm {
        /// The file's name.
        file: String,
        /// Titles missing from the best candidate header row.
        missing_titles: Vec<String>,
    },
    /// Not .xlsx, .xls or .ods by its bytes.
    #[error("{file}: not a spreadsheet (.xlsx, .xls or .ods)")]
    UnknownFormat {
        /// The file's name.
        file: String,
    },
    /// A spreadsheet whose structure is broken or hostile.
    #[error("{file}: corrupt spreadsheet: {detail}")]
    Corrupt {
        /// The file's name.
        file: String,
        /// What is broken, in English.
        detail: String,
    },
    /// The file, or a part of it, is over a `[limits]` bound.
    #[error("{file}: too large: {what} is {size}, the limit is {limit}")]
    TooLarge {
        /// The file's name.
        file: String,
        /// Which part (the file, the shared strings, a sheet...).
        what: String,
        /// Its size.
        size: u64,
        /// The bound it exceeds.
        limit: u64,
    },
    /// More application rows than `[limits]` allows.
    #[error("{file}: too many rows: at least {rows} rows, the limit is {limit} application rows")]
    TooManyRows {
        /// The file's name.
        file: String,
        /// Rows seen before stopping.
        rows: u64,
        /// The bound.
        limit: u32,
    },
    /// A header and no row below it.
    #[error("{file}: the form has a header but no application rows")]
    NoRows {
        /// The file's name.
        file: String,
        /// The sheet whose header was found.
        sheet: String,
    },
    /// The file could not be read from disk.
    #[error("{file}: {detail}")]
    Io {
        /// The file's name.
        file: String,
        /// What the system said.
        detail: String,
    },
    /// The reader was stopped or died (see `crate::sandbox`).
    #[error("{file}: could not be read: {detail}")]
    Unreadable {
        /// The file's name.
        file: String,
        /// The `Contained` code, e.g. `reader_memory`.
        reason: String,
        /// What stopped it, in English.
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

    /// The name of the file concerned.
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

//! What a form check produces: one report per form, one per row, findings.

use serde::Serialize;

use super::messages::FindingCode;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The row is invalid: the applicant must fix it.
    Error,
    /// The row is valid; the finding is shown.
    Warning,
    /// A union admin must decide.
    Review,
}

impl Severity {
    /// The name used in JSON and INTAKE.md.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Review => "review",
        }
    }
}

/// A row's status, from its findings' severities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RowStatus {
    /// No error or review finding.
    Valid,
    /// At least one error: the row cannot be issued.
    Invalid,
    /// No error, but a union admin must decide.
    Review,
}

impl RowStatus {
    /// The name used in JSON and INTAKE.md.
    pub fn as_str(self) -> &'static str {
        match self {
            RowStatus::Valid => "valid",
            RowStatus::Invalid => "invalid",
            RowStatus::Review => "review",
        }
    }

    /// The status a row's findings give it: any error makes it invalid, else any review makes it review.
    pub fn of(findings: &[Finding]) -> RowStatus {
        if findings.iter().any(|f| f.severity == Severity::Error) {
            RowStatus::Invalid
        } else if findings.iter().any(|f| f.severity == Severity::Review) {
            RowStatus::Review
        } else {
            RowStatus::Valid
        }
    }
}

/// One thing found about one cell (or row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable English code, e.g. `contract_unit_mismatch` (see INTAKE.md).
    pub code: FindingCode,
    /// Error, warning or review.
    pub severity: Severity,
    /// The column's title as the policy names it.
    pub column: String,
    /// The cell's original text (never a password).
    pub value: String,
    /// For the office clerk.
    pub message_ja: String,
}

/// The normalised values of one row. Passwords are never here: only
/// whether the applicant typed one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApplicationRow {
    /// センター.
    pub centre: String,
    /// 契約単位コード.
    pub contract_unit: String,
    /// 組合コード.
    pub union_code: String,
    /// 組合名.
    pub union_name: String,
    /// 支部コード.
    pub branch_code: String,
    /// 支部名.
    pub branch_name: String,
    /// 事業所コード.
    pub office_code: String,
    /// 事業所名.
    pub office_name: String,
    /// 担当者コード.
    pub contact_code: String,
    /// 担当者名.
    pub contact_name: String,
    /// The first e-mail address.
    pub email1: String,
    /// The confirmation e-mail address.
    pub email2: String,
    /// Whether a CA password was typed (its value is never kept).
    pub password_ca_present: bool,
    /// Whether a KX password was typed (its value is never kept).
    pub password_kx_present: bool,
    /// The union's own account (blank office code allowed).
    pub own_row: bool,
    /// Recognised as a 社労士's account.
    pub sharoushi: bool,
}

/// One application row of the form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowReport {
    /// The spreadsheet row number (1-based, as Excel shows it).
    pub row: u32,
    /// The No. column, as typed.
    pub no: Option<String>,
    /// Valid, invalid or review.
    pub status: RowStatus,
    /// Everything found on the row.
    pub findings: Vec<Finding>,
    /// The row's normalised values.
    pub fields: ApplicationRow,
}

/// The result of checking one form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FormReport {
    /// The file's name as given or attached.
    pub file: String,
    /// The sheet whose header was used.
    pub sheet: String,
    /// Every application row, in sheet order.
    pub rows: Vec<RowReport>,
}

/// What a check means for the caller (and the exit status of `kxca intake check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every row valid (exit status 0).
    AllValid,
    /// At least one row invalid or for review (exit status 1).
    NotAllValid,
    /// The file is not a readable form (exit status 2).
    NotAForm,
}

impl Outcome {
    /// The exit status of `kxca intake check` for this outcome.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::AllValid => 0,
            Outcome::NotAllValid => 1,
            Outcome::NotAForm => 2,
        }
    }
}

impl FormReport {
    /// Whether every row is valid.
    pub fn outcome(&self) -> Outcome {
        if self.rows.iter().all(|r| r.status == RowStatus::Valid) {
            Outcome::AllValid
        } else {
            Outcome::NotAllValid
        }
    }

    /// How many rows have this status.
    pub fn count(&self, status: RowStatus) -> usize {
        self.rows.iter().filter(|r| r.status == status).count()
    }

    /// The JSON document of `kxca intake check --json` (see INTAKE.md).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "file": self.file,
            "sheet": self.sheet,
            "rows": self.rows.iter().map(|r| serde_json::json!({
                "row": r.row,
                "no": r.no,
                "status": r.status.as_str(),
                "findings": r.findings.iter().map(|f| serde_json::json!({
                    "code": f.code,
                    "severity": f.severity.as_str(),
                    "column": f.column,
                    "value": f.value,
                    "message_ja": f.message_ja,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }

    /// A report in Japanese for people.
    pub fn to_text_ja(&self) -> String {
        super::messages::report_text(self)
    }
}

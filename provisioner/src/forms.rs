//! The seam between mail intake and the form checker: one attached
//! spreadsheet in, a per-row verdict out.

use serde_json::Value;

/// The verdict on one row, as the reply and the store need it.
#[derive(Debug, Clone)]
pub struct CheckedRow {
    /// Spreadsheet row number.
    pub row: u32,
    /// The form's No. column.
    pub no: Option<String>,
    /// What the check says of the row.
    pub status: RowVerdict,
    /// What the clerk must fix or know, in Japanese.
    pub messages_ja: Vec<String>,
    /// The findings as `kxca intake check --json` prints them.
    pub findings: Value,
    /// The normalised fields (passwords reduced to "present").
    pub fields: Value,
}

/// A row's verdict as the application queue stores it
/// (`application_rows.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowVerdict {
    /// Can be approved as is.
    Valid,
    /// Cannot be issued; the applicant was told what to fix.
    Invalid,
    /// A union admin must decide.
    Review,
}

impl RowVerdict {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RowVerdict::Valid => "valid",
            RowVerdict::Invalid => "invalid",
            RowVerdict::Review => "review",
        }
    }

    /// The verdict of a stored name; `None` for one this version does not know.
    pub fn parse(s: &str) -> Option<RowVerdict> {
        [RowVerdict::Valid, RowVerdict::Invalid, RowVerdict::Review]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for RowVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for RowVerdict {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What a [`FormChecker`] made of one attached spreadsheet.
#[derive(Debug, Clone)]
pub enum FormCheck {
    /// A form: its sheet and rows (empty when only detected, not checked).
    Form {
        /// The sheet whose header was used.
        sheet: String,
        /// Every application row, checked.
        rows: Vec<CheckedRow>,
        /// The report as `kxca intake check --json` prints it.
        report: Value,
        /// What is stored of the file: its sheet without the passwords
        /// (None: nothing of the file is kept, only its hash and size).
        copy: Option<crate::intake::RedactedCopy>,
    },
    /// A spreadsheet that is not the application form.
    NotAForm {
        /// Why, for the applicant.
        message_ja: String,
        /// The report as `kxca intake check --json` prints it.
        report: Value,
    },
}

/// Checks one attached spreadsheet.
pub trait FormChecker {
    /// Reads and checks `bytes`, the file attached as `file_name`.
    fn check(&self, file_name: &str, bytes: &[u8]) -> FormCheck;
}

/// Accepts every spreadsheet as a form without reading rows. Used where no
/// intake policy is available, and by tests of the mail path alone.
pub struct DetectOnly;

impl FormChecker for DetectOnly {
    fn check(&self, file_name: &str, _bytes: &[u8]) -> FormCheck {
        FormCheck::Form {
            sheet: String::new(),
            rows: Vec::new(),
            report: serde_json::json!({ "file": file_name, "sheet": "", "rows": [] }),
            // Unread, the file's passwords cannot be found: keep nothing.
            copy: None,
        }
    }
}

/// The real checker: the intake policy's form reader and validator.
pub struct IntakeChecker {
    policy: crate::intake::IntakePolicy,
    existing: Box<dyn crate::intake::ExistingAccounts>,
    sandbox: Option<crate::sandbox::Sandbox>,
}

impl IntakeChecker {
    /// A checker of `policy`, with `existing` the accounts already
    /// registered (for duplicate contacts); it parses in this process until
    /// [`IntakeChecker::contained`] gives it a sandbox.
    pub fn new(
        policy: crate::intake::IntakePolicy,
        existing: Box<dyn crate::intake::ExistingAccounts>,
    ) -> IntakeChecker {
        IntakeChecker {
            policy,
            existing,
            sandbox: None,
        }
    }

    /// The checker the policy asks for: against the office register read
    /// from `store` when `[office] use_register`, else against no existing
    /// accounts. The one place that choice is made for the mail pass.
    pub fn for_policy(
        policy: crate::intake::IntakePolicy,
        store: &mut kxca_ca::Store,
    ) -> Result<IntakeChecker, crate::intake::OfficeError> {
        let existing: Box<dyn crate::intake::ExistingAccounts> = if policy.office.use_register {
            Box::new(crate::intake::OfficeRegister::load(store)?)
        } else {
            Box::new(crate::intake::NoExistingAccounts)
        };
        Ok(IntakeChecker::new(policy, existing))
    }

    /// Parses every file in a worker process: the setting for files from
    /// outside (see [`crate::sandbox`]).
    pub fn contained(mut self, sandbox: crate::sandbox::Sandbox) -> IntakeChecker {
        self.sandbox = Some(sandbox);
        self
    }
}

impl FormChecker for IntakeChecker {
    fn check(&self, file_name: &str, bytes: &[u8]) -> FormCheck {
        use crate::intake::RowStatus;
        let checked = match &self.sandbox {
            Some(s) => crate::intake::check_bytes_contained(
                file_name,
                bytes,
                &self.policy,
                self.existing.as_ref(),
                true,
                s,
            ),
            None => crate::intake::check_bytes_keeping(
                file_name,
                bytes,
                &self.policy,
                self.existing.as_ref(),
                true,
            ),
        };
        match checked {
            Ok((report, copy)) => FormCheck::Form {
                copy,
                sheet: report.sheet.clone(),
                report: report.to_json(),
                rows: report
                    .rows
                    .iter()
                    .map(|r| CheckedRow {
                        row: r.row,
                        no: r.no.clone(),
                        status: match r.status {
                            RowStatus::Valid => RowVerdict::Valid,
                            RowStatus::Review => RowVerdict::Review,
                            RowStatus::Invalid => RowVerdict::Invalid,
                        },
                        messages_ja: r.findings.iter().map(|f| f.message_ja.clone()).collect(),
                        findings: serde_json::to_value(&r.findings).unwrap_or_default(),
                        fields: serde_json::to_value(&r.fields).unwrap_or_default(),
                    })
                    .collect(),
            },
            Err(e) => FormCheck::NotAForm {
                message_ja: e.message_ja(),
                report: e.to_json(),
            },
        }
    }
}

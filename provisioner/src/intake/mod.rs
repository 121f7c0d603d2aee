//! Application forms: reading the union's Excel form (.xlsx, .xls, .ods),
//! normalising what clerks typed, and validating every row against the
//! intake policy. Nothing here touches the store except [`offices`].

mod error;
mod existing;
mod form;
mod messages;
pub mod normalize;
pub mod offices;
mod policy;
mod reader;
mod report;
mod validate;

use std::path::Path;

pub use error::FormError;
pub use existing::{ExistingAccounts, ExistingContact, NoExistingAccounts};
pub use form::RedactedCopy;
pub use messages::FINDINGS;
pub use offices::{Office, OfficeError, OfficeRegister};
pub use policy::{Field, IntakePolicy, PasswordHandling, PolicyError, Replies};
pub use report::{ApplicationRow, Finding, FormReport, Outcome, RowReport, RowStatus, Severity};

/// Checks one form given as bytes. `file_name` only names it in reports;
/// the format is told by content.
pub fn check_bytes(
    file_name: &str,
    bytes: &[u8],
    policy: &IntakePolicy,
    existing: &dyn ExistingAccounts,
) -> Result<FormReport, FormError> {
    check_bytes_keeping(file_name, bytes, policy, existing, false).map(|(report, _)| report)
}

/// [`check_bytes`], and when `keep_copy` the form's sheet re-rendered
/// without the passwords typed into it: what intake stores instead of the
/// received file (see INTAKE.md, "What is stored").
pub fn check_bytes_keeping(
    file_name: &str,
    bytes: &[u8],
    policy: &IntakePolicy,
    existing: &dyn ExistingAccounts,
    keep_copy: bool,
) -> Result<(FormReport, Option<RedactedCopy>), FormError> {
    let table = form::read_table(file_name, bytes, policy, keep_copy)?;
    let rows = validate::validate(&table.rows, policy, existing);
    Ok((
        FormReport {
            file: file_name.to_string(),
            sheet: table.sheet,
            rows,
        },
        table.copy,
    ))
}

/// Checks a form file. The file is read only if it is within the policy's
/// size limit.
pub fn check_file(
    path: &Path,
    policy: &IntakePolicy,
    existing: &dyn ExistingAccounts,
) -> Result<FormReport, FormError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let io = |e: std::io::Error| FormError::Io {
        file: name.clone(),
        detail: e.to_string(),
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > policy.limits.max_file_bytes {
        return Err(FormError::TooLarge {
            file: name,
            what: "the file",
            size,
            limit: policy.limits.max_file_bytes,
        });
    }
    let bytes = std::fs::read(path).map_err(io)?;
    check_bytes(&name, &bytes, policy, existing)
}

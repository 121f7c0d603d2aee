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
mod precheck;
mod reader;
mod report;
mod validate;

use std::path::Path;

use crate::sandbox::{Job, Sandbox};

pub use error::FormError;
pub use existing::{ExistingAccounts, ExistingContact, NoExistingAccounts};
pub use form::RedactedCopy;
pub use messages::FindingCode;
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

/// [`check_bytes_keeping`] with the spreadsheet parsed (and the redacted
/// copy rendered) in a worker process (see [`crate::sandbox`]): how every
/// file from outside is read. Validation, which may consult the store,
/// stays in this process.
pub fn check_bytes_contained(
    file_name: &str,
    bytes: &[u8],
    policy: &IntakePolicy,
    existing: &dyn ExistingAccounts,
    keep_copy: bool,
    sandbox: &Sandbox,
) -> Result<(FormReport, Option<RedactedCopy>), FormError> {
    if bytes.len() as u64 > policy.limits.max_file_bytes {
        return Err(FormError::TooLarge {
            file: file_name.to_string(),
            what: "the file".into(),
            size: bytes.len() as u64,
            limit: policy.limits.max_file_bytes,
        });
    }
    let job = Job::Form {
        file: file_name.to_string(),
        policy: policy.source.clone(),
        keep_copy,
    };
    let table: Result<form::Table, FormError> =
        sandbox
            .run(&job, bytes)
            .map_err(|c| FormError::Unreadable {
                file: file_name.to_string(),
                reason: c.code().to_string(),
                detail: c.to_string(),
            })?;
    let table = table?;
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

/// The worker's half of [`check_bytes_contained`].
pub(crate) fn read_table_in_worker(
    file_name: &str,
    bytes: &[u8],
    policy_text: &str,
    keep_copy: bool,
) -> Result<form::Table, FormError> {
    let policy = IntakePolicy::parse(policy_text, Path::new("intake policy")).map_err(|e| {
        FormError::Io {
            file: file_name.to_string(),
            detail: e.to_string(),
        }
    })?;
    form::read_table(file_name, bytes, &policy, keep_copy)
}

/// Checks a form file in this process. The file is read only if it is
/// within the policy's size limit.
pub fn check_file(
    path: &Path,
    policy: &IntakePolicy,
    existing: &dyn ExistingAccounts,
) -> Result<FormReport, FormError> {
    check_file_with(path, policy, existing, None)
}

/// [`check_file`] with the file parsed in a worker process.
pub fn check_file_contained(
    path: &Path,
    policy: &IntakePolicy,
    existing: &dyn ExistingAccounts,
    sandbox: &Sandbox,
) -> Result<FormReport, FormError> {
    check_file_with(path, policy, existing, Some(sandbox))
}

fn check_file_with(
    path: &Path,
    policy: &IntakePolicy,
    existing: &dyn ExistingAccounts,
    sandbox: Option<&Sandbox>,
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
            what: "the file".into(),
            size,
            limit: policy.limits.max_file_bytes,
        });
    }
    let bytes = std::fs::read(path).map_err(io)?;
    match sandbox {
        Some(s) => check_bytes_contained(&name, &bytes, policy, existing, false, s).map(|(r, _)| r),
        None => check_bytes(&name, &bytes, policy, existing),
    }
}

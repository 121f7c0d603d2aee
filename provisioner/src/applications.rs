//! Applications: each form received by mail, with its rows and findings,
//! awaiting a union admin's review. This module owns the `intake_mails`,
//! `applications` and `application_rows` tables.

use kxca_ca::store::Migration;
use rusqlite::{params, OptionalExtension};

use kxca_ca::store::{Snapshot, Tx};
use serde::Serialize;

use crate::error::sql;
use crate::forms::CheckedRow;

/// The schema, applied as component "provisioner".
pub fn migrations() -> &'static [Migration] {
    MIGRATIONS
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "received mails, applications and their rows",
        sql: r#"
CREATE TABLE intake_mails (
    id            INTEGER PRIMARY KEY,
    source_key    TEXT NOT NULL UNIQUE,
    message_id    TEXT NOT NULL,
    sender        TEXT,
    subject       TEXT NOT NULL,
    received_at   INTEGER NOT NULL,
    outcome       TEXT NOT NULL CHECK (outcome IN ('processed', 'duplicate', 'rejected')),
    duplicate_of  INTEGER REFERENCES intake_mails(id),
    detail        TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE INDEX intake_mails_by_message_id ON intake_mails(message_id);

CREATE TABLE applications (
    id            INTEGER PRIMARY KEY,
    mail_id       INTEGER NOT NULL REFERENCES intake_mails(id),
    sender        TEXT,
    message_id    TEXT NOT NULL,
    received_at   INTEGER NOT NULL,
    file_name     TEXT NOT NULL,
    sha256        TEXT NOT NULL UNIQUE,
    file          BLOB NOT NULL,
    sheet         TEXT NOT NULL,
    report        TEXT NOT NULL,
    status        TEXT NOT NULL,
    rows_valid    INTEGER NOT NULL,
    rows_review   INTEGER NOT NULL,
    rows_invalid  INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE application_rows (
    application_id  INTEGER NOT NULL REFERENCES applications(id),
    row             INTEGER NOT NULL,
    no              TEXT,
    status          TEXT NOT NULL CHECK (status IN ('valid', 'invalid', 'review')),
    findings        TEXT NOT NULL,
    fields          TEXT NOT NULL,
    PRIMARY KEY (application_id, row)
);
"#,
    },
    Migration {
        version: SCRUB_VERSION,
        description: "forms stored without their passwords; why a mail was not answered",
        // Rows stored before kept the received file whole, passwords and
        // all. They cannot be re-rendered here (the policy naming the
        // password columns is not at hand), so the file goes; its SHA-256,
        // name, size and format stay, with the parsed rows. The store runs
        // with secure_delete, so the freed pages are zeroed.
        sql: r#"
ALTER TABLE intake_mails ADD COLUMN reply TEXT;
ALTER TABLE applications ADD COLUMN original_size INTEGER;
ALTER TABLE applications ADD COLUMN original_format TEXT;
ALTER TABLE applications ADD COLUMN stored_format TEXT NOT NULL DEFAULT 'none';
UPDATE applications SET
    original_size = length(file),
    original_format = CASE
        WHEN substr(file, 1, 8) = X'D0CF11E0A1B11AE1' THEN 'xls'
        WHEN substr(file, 1, 4) = X'504B0304' THEN 'zip'
        ELSE 'unknown' END,
    file = X'',
    stored_format = 'none';
"#,
    },
    Migration {
        version: 3,
        description: "intake attempts: a mail is counted before it is parsed",
        sql: r#"
CREATE TABLE intake_attempts (
    source_key    TEXT PRIMARY KEY,
    attempts      INTEGER NOT NULL,
    size          INTEGER NOT NULL,
    sha256        TEXT NOT NULL,
    first_at      INTEGER NOT NULL,
    last_at       INTEGER NOT NULL,
    last_error    TEXT
);
"#,
    },
];

/// The migration that scrubbed stored files; past it the WAL is
/// truncated so no old page of a stored file lingers there.
pub(crate) const SCRUB_VERSION: i64 = 2;

/// `applications.stored_format` of a form kept as [`crate::intake::RedactedCopy`].
pub const STORED_REDACTED_XLSX: &str = "xlsx-without-passwords";
/// `applications.stored_format` when nothing of the file is kept.
pub const STORED_NONE: &str = "none";

/// Counts one more attempt at a mail, in its own transaction committed
/// before the mail is parsed: a mail that kills its reader, or the pass,
/// is still counted. Returns the attempts so far, this one included.
pub(crate) fn record_attempt(
    tx: &Tx<'_>,
    source_key: &str,
    size: usize,
    sha256: &str,
    now: i64,
) -> Result<i64, kxca_ca::Error> {
    tx.execute(
        "INSERT INTO intake_attempts (source_key, attempts, size, sha256, first_at, last_at)
         VALUES (?1, 1, ?2, ?3, ?4, ?4)
         ON CONFLICT (source_key) DO UPDATE SET attempts = attempts + 1, last_at = ?4",
        rusqlite::params![source_key, size as i64, sha256, now],
    )
    .map_err(sql)?;
    tx.query_row(
        "SELECT attempts FROM intake_attempts WHERE source_key = ?1",
        [source_key],
        |r| r.get(0),
    )
    .map_err(sql)
}

/// Takes back an attempt that failed for a reason of the host's (the
/// worker could not be started), not of the mail.
pub(crate) fn uncount_attempt(tx: &Tx<'_>, source_key: &str) -> Result<(), kxca_ca::Error> {
    tx.execute(
        "UPDATE intake_attempts SET attempts = attempts - 1 WHERE source_key = ?1 AND attempts > 0",
        [source_key],
    )
    .map_err(sql)?;
    Ok(())
}

/// Notes why the last attempt at a mail failed.
pub(crate) fn note_attempt_error(
    tx: &Tx<'_>,
    source_key: &str,
    error: &str,
) -> Result<(), kxca_ca::Error> {
    tx.execute(
        "UPDATE intake_attempts SET last_error = ?2 WHERE source_key = ?1",
        rusqlite::params![source_key, error],
    )
    .map_err(sql)?;
    Ok(())
}

/// Where an application stands. Provisioning adds the states after review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationStatus {
    /// At least one row can be approved: waiting for a union admin.
    PendingReview,
    /// No row can be approved; the applicant was told what to fix.
    Rejected,
}

impl ApplicationStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ApplicationStatus::PendingReview => "pending_review",
            ApplicationStatus::Rejected => "rejected",
        }
    }

    /// The status of a stored name; `None` for one this version does not know.
    pub fn parse(s: &str) -> Option<ApplicationStatus> {
        [
            ApplicationStatus::PendingReview,
            ApplicationStatus::Rejected,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    /// A form whose rows were only detected (no checker) is pending too.
    pub fn of(rows: &[CheckedRow]) -> ApplicationStatus {
        use crate::forms::RowVerdict::*;
        if rows.is_empty() || rows.iter().any(|r| r.status != Invalid) {
            ApplicationStatus::PendingReview
        } else {
            ApplicationStatus::Rejected
        }
    }
}

/// A received mail as recorded.
pub struct NewIntakeMail<'a> {
    /// Where it came from and its id there (Maildir file or IMAP UID), to read it once.
    pub source_key: &'a str,
    /// Its Message-ID.
    pub message_id: &'a str,
    /// The From address, when the mail had a usable one.
    pub sender: Option<&'a str>,
    /// Its subject.
    pub subject: &'a str,
    /// When it was received, Unix seconds.
    pub received_at: i64,
    /// What became of it (processed, duplicate, rejected, ...).
    pub outcome: &'a str,
    /// The earlier mail it repeats, for a duplicate.
    pub duplicate_of: Option<i64>,
    /// Details of the outcome (JSON), for the audit record and `kxca applications`.
    pub detail: serde_json::Value,
}

pub(crate) fn mail_seen(conn: &Snapshot<'_>, source_key: &str) -> Result<bool, kxca_ca::Error> {
    conn.query_row(
        "SELECT 1 FROM intake_mails WHERE source_key = ?1",
        [source_key],
        |_| Ok(()),
    )
    .optional()
    .map(|o| o.is_some())
    .map_err(sql)
}

/// The recorded outcome of the mail under this source key, if any.
pub(crate) fn mail_outcome(
    conn: &Snapshot<'_>,
    source_key: &str,
) -> Result<Option<String>, kxca_ca::Error> {
    conn.query_row(
        "SELECT outcome FROM intake_mails WHERE source_key = ?1",
        [source_key],
        |r| r.get(0),
    )
    .optional()
    .map_err(sql)
}

/// The first mail recorded with this Message-ID, if any.
pub(crate) fn mail_by_message_id(
    conn: &Snapshot<'_>,
    message_id: &str,
) -> Result<Option<i64>, kxca_ca::Error> {
    conn.query_row(
        "SELECT id FROM intake_mails WHERE message_id = ?1 AND duplicate_of IS NULL ORDER BY id LIMIT 1",
        [message_id],
        |r| r.get(0),
    )
    .optional()
    .map_err(sql)
}

pub(crate) fn insert_mail(
    tx: &Tx<'_>,
    m: &NewIntakeMail<'_>,
    now: i64,
) -> Result<i64, kxca_ca::Error> {
    tx.execute(
        "INSERT INTO intake_mails (source_key, message_id, sender, subject, received_at, outcome, duplicate_of, detail, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            m.source_key,
            m.message_id,
            m.sender,
            m.subject,
            m.received_at,
            m.outcome,
            m.duplicate_of,
            m.detail.to_string(),
            now
        ],
    )
    .map_err(sql)?;
    Ok(tx.last_insert_rowid())
}

/// The application already holding a file with this SHA-256, if any.
pub(crate) fn application_by_hash(
    conn: &Snapshot<'_>,
    sha256: &str,
) -> Result<Option<i64>, kxca_ca::Error> {
    conn.query_row(
        "SELECT id FROM applications WHERE sha256 = ?1",
        [sha256],
        |r| r.get(0),
    )
    .optional()
    .map_err(sql)
}

pub(crate) struct NewApplication<'a> {
    pub mail_id: i64,
    pub sender: Option<&'a str>,
    pub message_id: &'a str,
    pub received_at: i64,
    pub file_name: &'a str,
    pub sha256: &'a str,
    /// What is kept of the file ([`STORED_REDACTED_XLSX`] or empty).
    pub file: &'a [u8],
    pub stored_format: &'a str,
    pub original_size: usize,
    pub original_format: &'a str,
    pub sheet: &'a str,
    pub report: &'a serde_json::Value,
    pub rows: &'a [CheckedRow],
}

pub(crate) fn insert_application(
    tx: &Tx<'_>,
    a: &NewApplication<'_>,
    now: i64,
) -> Result<(i64, ApplicationStatus), kxca_ca::Error> {
    use crate::forms::RowVerdict;
    let count = |v: RowVerdict| a.rows.iter().filter(|r| r.status == v).count() as i64;
    let status = ApplicationStatus::of(a.rows);
    tx.execute(
        "INSERT INTO applications (mail_id, sender, message_id, received_at, file_name, sha256, file, sheet, report, status, rows_valid, rows_review, rows_invalid, created_at, stored_format, original_size, original_format)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        params![
            a.mail_id,
            a.sender,
            a.message_id,
            a.received_at,
            a.file_name,
            a.sha256,
            a.file,
            a.sheet,
            a.report.to_string(),
            status.as_str(),
            count(RowVerdict::Valid),
            count(RowVerdict::Review),
            count(RowVerdict::Invalid),
            now,
            a.stored_format,
            a.original_size as i64,
            a.original_format
        ],
    )
    .map_err(sql)?;
    let id = tx.last_insert_rowid();
    for r in a.rows {
        tx.execute(
            "INSERT INTO application_rows (application_id, row, no, status, findings, fields) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, r.row, r.no, r.status.as_str(), r.findings.to_string(), r.fields.to_string()],
        )
        .map_err(sql)?;
    }
    Ok((id, status))
}

/// One application as listed.
#[derive(Debug, Clone, Serialize)]
pub struct Application {
    /// Row id.
    pub id: i64,
    /// The received mail it came in (row in `intake_mails`).
    pub mail_id: i64,
    /// Who sent it, if known.
    pub sender: Option<String>,
    /// The mail's Message-ID.
    pub message_id: String,
    /// When the mail was received, Unix seconds.
    pub received_at: i64,
    /// The attached file's name as sent.
    pub file_name: String,
    /// SHA-256 of the file as received, hex.
    pub sha256: String,
    /// Size of the file as received.
    pub size: i64,
    /// The received file's format (`xlsx`, `xls`, `ods`).
    pub original_format: Option<String>,
    /// What is kept of it: [`STORED_REDACTED_XLSX`] or [`STORED_NONE`].
    pub stored_format: String,
    /// The sheet that was read.
    pub sheet: String,
    /// Pending review or rejected.
    pub status: ApplicationStatus,
    /// Rows found valid.
    pub rows_valid: i64,
    /// Rows that need a person's review.
    pub rows_review: i64,
    /// Rows refused.
    pub rows_invalid: i64,
    /// When it was recorded, Unix seconds.
    pub created_at: i64,
    /// Filled by [`get`] only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rows: Vec<ApplicationRowRecord>,
}

/// One row of an application form as checked.
#[derive(Debug, Clone, Serialize)]
pub struct ApplicationRowRecord {
    /// The sheet row number (1-based, as Excel shows it).
    pub row: u32,
    /// The form's own row number column, if filled.
    pub no: Option<String>,
    /// Valid, review or invalid.
    pub status: crate::forms::RowVerdict,
    /// The findings on the row (codes and Japanese messages), JSON.
    pub findings: serde_json::Value,
    /// The row's fields as read (passwords never), JSON.
    pub fields: serde_json::Value,
}

const COLUMNS: &str = "id, mail_id, sender, message_id, received_at, file_name, sha256, COALESCE(original_size, length(file)), sheet, status, rows_valid, rows_review, rows_invalid, created_at, original_format, stored_format";

/// A stored value outside its column's vocabulary, as a rusqlite error so
/// that it leaves the row mapping like any other unreadable column.
fn unknown_value(index: usize, column: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        index,
        rusqlite::types::Type::Text,
        format!("{column}: unknown value '{value}'").into(),
    )
}

fn application(r: &rusqlite::Row<'_>) -> rusqlite::Result<Application> {
    let status: String = r.get(9)?;
    let status = ApplicationStatus::parse(&status)
        .ok_or_else(|| unknown_value(9, "applications.status", &status))?;
    Ok(Application {
        id: r.get(0)?,
        mail_id: r.get(1)?,
        sender: r.get(2)?,
        message_id: r.get(3)?,
        received_at: r.get(4)?,
        file_name: r.get(5)?,
        sha256: r.get(6)?,
        size: r.get(7)?,
        sheet: r.get(8)?,
        status,
        rows_valid: r.get(10)?,
        rows_review: r.get(11)?,
        rows_invalid: r.get(12)?,
        created_at: r.get(13)?,
        original_format: r.get(14)?,
        stored_format: r.get(15)?,
        rows: Vec::new(),
    })
}

/// Applications, oldest first.
pub fn list(conn: &Snapshot<'_>, limit: i64) -> Result<Vec<Application>, kxca_ca::Error> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {COLUMNS} FROM applications ORDER BY id LIMIT ?1"
        ))
        .map_err(sql)?;
    let apps = stmt
        .query_map([limit], application)
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    Ok(apps)
}

/// One page of applications (without their rows), newest first; the
/// console's inbox and anything else listing many of them.
pub fn page(
    conn: &Snapshot<'_>,
    req: &kxca_ca::store::paging::PageRequest,
) -> Result<kxca_ca::store::paging::Page<Application>, kxca_ca::Error> {
    kxca_ca::store::paging::page(
        req,
        |a: &Application| a.id,
        |k| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM applications WHERE id {} ?1 ORDER BY id {} LIMIT ?2",
                    k.op, k.order
                ))
                .map_err(sql)?;
            let apps = stmt
                .query_map(params![k.key, k.limit], application)
                .map_err(sql)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql)?;
            Ok(apps)
        },
    )
}

/// One application with its rows.
pub fn get(conn: &Snapshot<'_>, id: i64) -> Result<Option<Application>, kxca_ca::Error> {
    let app = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM applications WHERE id = ?1"),
            [id],
            application,
        )
        .optional()
        .map_err(sql)?;
    let Some(mut app) = app else { return Ok(None) };
    let mut stmt = conn
        .prepare("SELECT row, no, status, findings, fields FROM application_rows WHERE application_id = ?1 ORDER BY row")
        .map_err(sql)?;
    app.rows = stmt
        .query_map([id], |r| {
            let status: String = r.get(2)?;
            let status = crate::forms::RowVerdict::parse(&status)
                .ok_or_else(|| unknown_value(2, "application_rows.status", &status))?;
            Ok(ApplicationRowRecord {
                row: r.get(0)?,
                no: r.get(1)?,
                status,
                findings: crate::error::json_column(r, 3)?,
                fields: crate::error::json_column(r, 4)?,
            })
        })
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    Ok(Some(app))
}

/// Records why a mail was not answered (a [`crate::loops::NoReply`]), or
/// `queued` when it was.
pub(crate) fn set_reply(tx: &Tx<'_>, mail_id: i64, reply: &str) -> Result<(), kxca_ca::Error> {
    tx.execute(
        "UPDATE intake_mails SET reply = ?2 WHERE id = ?1",
        params![mail_id, reply],
    )
    .map_err(sql)?;
    Ok(())
}

/// The stored copy of an application's file (see `stored_format`): the
/// form's sheet without passwords, never the file as received.
pub fn file(conn: &Snapshot<'_>, id: i64) -> Result<Option<(String, Vec<u8>)>, kxca_ca::Error> {
    conn.query_row(
        "SELECT file_name, file FROM applications WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .map_err(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A status this version does not know is refused by name, not shown
    // to an admin as something else.
    #[test]
    fn unknown_status_is_an_error_naming_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = kxca_ca::Store::open(&dir.path().join("kxca.db"), true).unwrap();
        store.migrate("provisioner", migrations()).unwrap();
        // The setup and the tampering come from outside, as another
        // program writing the file would.
        let conn = rusqlite::Connection::open(dir.path().join("kxca.db")).unwrap();
        conn.execute_batch(
            "INSERT INTO intake_mails (id, source_key, message_id, subject, received_at, outcome, detail, created_at)
               VALUES (1, 'k', '<m@example.jp>', 's', 0, 'processed', '{}', 0);
             INSERT INTO applications (id, mail_id, message_id, received_at, file_name, sha256, file, sheet, report, status, rows_valid, rows_review, rows_invalid, created_at)
               VALUES (1, 1, '<m@example.jp>', 0, 'f.xlsx', 'h', x'', 'Sheet1', '{}', 'pending_review', 1, 0, 0, 0);
             INSERT INTO application_rows (application_id, row, status, findings, fields)
               VALUES (1, 2, 'valid', '[]', '{}');",
        )
        .unwrap();
        let app = store.read(|c| get(c, 1)).unwrap().unwrap();
        assert_eq!(app.status, ApplicationStatus::PendingReview);
        assert_eq!(app.rows[0].status, crate::forms::RowVerdict::Valid);

        conn.execute_batch(
            "PRAGMA ignore_check_constraints = ON;
             UPDATE application_rows SET status = 'accepted';",
        )
        .unwrap();
        let err = store.read(|c| get(c, 1)).unwrap_err().to_string();
        assert!(
            err.contains("application_rows.status: unknown value 'accepted'"),
            "{err}"
        );

        conn.execute_batch("UPDATE applications SET status = 'approved'")
            .unwrap();
        let err = store.read(|c| list(c, 10)).unwrap_err().to_string();
        assert!(
            err.contains("applications.status: unknown value 'approved'"),
            "{err}"
        );
    }
}

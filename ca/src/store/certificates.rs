//! The `certificates` table. A row is written `pending` with its TBS bytes
//! before the signer is called, and moved to `issued` with the signed DER
//! after: a crash in between leaves a record, never an unknown certificate.

use super::{Snapshot, Tx};
use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use super::sql;
use crate::{Error, Holder, RevocationReason};

/// Where a certificate's issuance stands, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CertificateState {
    /// Recorded, not (yet) signed.
    Pending,
    /// Signed, and its PKCS#12 written.
    Issued,
    /// The signer refused; the TBS was never signed.
    Failed,
}

impl CertificateState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateState::Pending => "pending",
            CertificateState::Issued => "issued",
            CertificateState::Failed => "failed",
        }
    }
    fn parse(s: &str) -> Option<CertificateState> {
        match s {
            "pending" => Some(CertificateState::Pending),
            "issued" => Some(CertificateState::Issued),
            "failed" => Some(CertificateState::Failed),
            _ => None,
        }
    }
}

/// What the store knows of one certificate.
#[derive(Debug, Clone, Serialize)]
pub struct CertificateRecord {
    /// Row id.
    #[serde(skip)]
    pub id: i64,
    /// Serial, hex.
    pub serial: String,
    /// The issuing CA (row id in `authorities`).
    pub authority_id: i64,
    /// The profile it was issued under.
    pub profile: String,
    /// The certificate ID built from the holder's codes (the CN).
    pub certificate_id: String,
    /// The subject DN as text.
    pub subject: String,
    /// The holder's e-mail address (subjectAltName).
    pub email: String,
    /// Who it is for.
    pub holder: Holder,
    /// The holder key's algorithm.
    pub key_algorithm: String,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// Pending, issued or failed.
    pub state: CertificateState,
    /// The certificate, DER, once signed.
    #[serde(skip)]
    pub der: Option<Vec<u8>>,
    /// When the row was reserved, Unix seconds.
    pub created_at: i64,
    /// When it was signed, Unix seconds.
    pub issued_at: Option<i64>,
    /// Its revocation, if revoked.
    pub revocation: Option<RevocationInfo>,
}

/// How and when a certificate was revoked.
#[derive(Debug, Clone, Serialize)]
pub struct RevocationInfo {
    /// When, Unix seconds.
    pub revoked_at: i64,
    /// The reason's RFC 5280 name.
    pub reason: String,
    /// The reason's CRLReason code.
    #[serde(skip)]
    pub reason_code: u8,
    /// Who revoked it.
    pub actor: String,
}

const SELECT: &str = "SELECT c.id, c.serial, c.authority_id, c.profile, c.certificate_id, c.subject, c.email, c.holder,
        c.key_algorithm, c.not_before, c.not_after, c.state, c.der, c.created_at, c.issued_at,
        r.revoked_at, r.reason, r.actor
    FROM certificates c LEFT JOIN revocations r ON r.certificate = c.id";

/// A stored value outside its column's vocabulary, as a rusqlite error so
/// that it leaves `from_row` like any other unreadable column.
fn unknown_value(index: usize, column: &str, value: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        index,
        rusqlite::types::Type::Text,
        format!("{column}: unknown value '{value}'").into(),
    )
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<CertificateRecord> {
    let holder: String = r.get(7)?;
    let state: String = r.get(11)?;
    let state = CertificateState::parse(&state)
        .ok_or_else(|| unknown_value(11, "certificates.state", &state))?;
    let revoked_at: Option<i64> = r.get(15)?;
    let revocation = match revoked_at {
        Some(at) => {
            let code: i64 = r.get(16)?;
            let reason = RevocationReason::from_code(code)
                .ok_or_else(|| unknown_value(16, "revocations.reason", code))?;
            Some(RevocationInfo {
                revoked_at: at,
                reason: reason.name().to_string(),
                reason_code: reason.code(),
                actor: r.get(17)?,
            })
        }
        None => None,
    };
    Ok(CertificateRecord {
        id: r.get(0)?,
        serial: r.get(1)?,
        authority_id: r.get(2)?,
        profile: r.get(3)?,
        certificate_id: r.get(4)?,
        subject: r.get(5)?,
        email: r.get(6)?,
        holder: serde_json::from_str(&holder).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(7, rusqlite::types::Type::Text, Box::new(e))
        })?,
        key_algorithm: r.get(8)?,
        not_before: r.get(9)?,
        not_after: r.get(10)?,
        state,
        der: r.get(12)?,
        created_at: r.get(13)?,
        issued_at: r.get(14)?,
        revocation,
    })
}

pub(crate) struct NewCertificate<'a> {
    pub serial: &'a str,
    pub authority_id: i64,
    pub profile: &'a str,
    pub certificate_id: &'a str,
    pub subject: &'a str,
    pub email: &'a str,
    pub holder: &'a Holder,
    pub key_algorithm: &'a str,
    pub not_before: i64,
    pub not_after: i64,
    pub tbs: &'a [u8],
    /// The issuing process (see [`process_owner`]).
    pub owner: &'a str,
    /// Where the PKCS#12 is to be written, when kxca writes it.
    pub pkcs12_path: Option<&'a str>,
}

/// Records a to-be-signed certificate. Fails with a UNIQUE violation on a
/// serial collision (the caller draws a new serial and retries).
pub(crate) fn insert_pending(
    tx: &Tx<'_>,
    c: &NewCertificate<'_>,
    now: i64,
) -> Result<i64, InsertError> {
    let holder = serde_json::to_string(c.holder)
        .map_err(|e| InsertError::Other(crate::Error::encoding("holder", e)))?;
    match tx.execute(
        "INSERT INTO certificates (serial, authority_id, profile, certificate_id, subject, email, holder, key_algorithm, not_before, not_after, state, tbs, created_at, owner, pkcs12_path)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'pending', ?11, ?12, ?13, ?14)",
        params![c.serial, c.authority_id, c.profile, c.certificate_id, c.subject, c.email, holder, c.key_algorithm, c.not_before, c.not_after, c.tbs, now, c.owner, c.pkcs12_path],
    ) {
        Ok(_) => Ok(tx.last_insert_rowid()),
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE => {
            Err(InsertError::SerialCollision)
        }
        Err(e) => Err(InsertError::Other(sql(e))),
    }
}

pub(crate) enum InsertError {
    SerialCollision,
    Other(Error),
}

pub(crate) fn mark_issued(tx: &Tx<'_>, id: i64, der: &[u8], now: i64) -> Result<(), Error> {
    let n = tx
        .execute(
            "UPDATE certificates SET state = 'issued', der = ?2, issued_at = ?3 WHERE id = ?1 AND state = 'pending'",
            params![id, der, now],
        )
        .map_err(sql)?;
    if n != 1 {
        return Err(Error::Database {
            path: std::path::PathBuf::new(),
            message: format!("certificate row {id} was not pending"),
        });
    }
    Ok(())
}

pub(crate) fn mark_failed(tx: &Tx<'_>, id: i64) -> Result<(), Error> {
    tx.execute(
        "UPDATE certificates SET state = 'failed' WHERE id = ?1 AND state = 'pending'",
        params![id],
    )
    .map_err(sql)?;
    Ok(())
}

pub(crate) fn by_serial(
    conn: &Snapshot<'_>,
    serial: &str,
) -> Result<Option<CertificateRecord>, Error> {
    conn.query_row(&format!("{SELECT} WHERE c.serial = ?1"), [serial], from_row)
        .optional()
        .map_err(sql)
}

/// Certificates, newest first; `limit` bounds the list.
pub fn list(conn: &Snapshot<'_>, limit: i64) -> Result<Vec<CertificateRecord>, Error> {
    let mut stmt = conn
        .prepare(&format!("{SELECT} ORDER BY c.id DESC LIMIT ?1"))
        .map_err(sql)?;
    let rows = stmt.query_map([limit], from_row).map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}

/// Issued certificates of an office contact (same certificate id).
pub fn by_certificate_id(
    conn: &Snapshot<'_>,
    certificate_id: &str,
) -> Result<Vec<CertificateRecord>, Error> {
    let mut stmt = conn
        .prepare(&format!(
            "{SELECT} WHERE c.certificate_id = ?1 ORDER BY c.id"
        ))
        .map_err(sql)?;
    let rows = stmt.query_map([certificate_id], from_row).map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}

/// This process, as `pid:start` (start time in clock ticks since boot, from
/// /proc), so a pending row can tell a live issuer from one that died: a
/// reused pid has another start time.
pub fn process_owner() -> String {
    let pid = std::process::id();
    format!("{pid}:{}", process_start(pid).unwrap_or_default())
}

fn process_start(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and ')'; fields after the
    // last ')' start at field 3, so starttime (field 22) is the 20th.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19).map(str::to_string)
}

/// Whether the process that recorded `owner` is still running.
pub fn owner_alive(owner: Option<&str>) -> bool {
    let Some((pid, start)) = owner.and_then(|o| o.split_once(':')) else {
        return false;
    };
    match pid.parse::<u32>() {
        Ok(pid) => process_start(pid).is_some_and(|s| s == start),
        Err(_) => false,
    }
}

/// A row still `pending`: its issuer, and where its PKCS#12 was to go.
#[derive(Debug, Clone)]
pub struct PendingRow {
    /// Row id.
    pub id: i64,
    /// Serial, hex.
    pub serial: String,
    /// The certificate ID.
    pub certificate_id: String,
    /// The process that reserved it (pid:start time), to tell a live one from a dead one.
    pub owner: Option<String>,
    /// Where its PKCS#12 was to be written.
    pub pkcs12_path: Option<String>,
    /// When it was reserved, Unix seconds.
    pub created_at: i64,
}

/// Every row still pending, for the sweep of abandoned issuances.
pub fn pending(conn: &Snapshot<'_>) -> Result<Vec<PendingRow>, Error> {
    let mut stmt = conn
        .prepare(
            "SELECT id, serial, certificate_id, owner, pkcs12_path, created_at FROM certificates
             WHERE state = 'pending' ORDER BY id",
        )
        .map_err(sql)?;
    let rows = stmt
        .query_map([], |r| {
            Ok(PendingRow {
                id: r.get(0)?,
                serial: r.get(1)?,
                certificate_id: r.get(2)?,
                owner: r.get(3)?,
                pkcs12_path: r.get(4)?,
                created_at: r.get(5)?,
            })
        })
        .map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}

/// How many rows other than `except` are issued or pending with this
/// PKCS#12 path (a file another issuance owns must not be touched).
pub(crate) fn others_with_path(conn: &Snapshot<'_>, path: &str, except: i64) -> Result<i64, Error> {
    conn.query_row(
        "SELECT COUNT(*) FROM certificates WHERE pkcs12_path = ?1 AND id != ?2 AND state IN ('pending', 'issued')",
        params![path, except],
        |r| r.get(0),
    )
    .map_err(sql)
}

/// Issued certificates that are neither revoked nor expired at `now`, with
/// the PKCS#12 path kxca wrote, as (serial, certificate id, path).
pub fn good_with_paths(
    conn: &Snapshot<'_>,
    now: i64,
) -> Result<Vec<(String, String, String)>, Error> {
    let mut stmt = conn
        .prepare(
            "SELECT c.serial, c.certificate_id, c.pkcs12_path FROM certificates c
             LEFT JOIN revocations r ON r.certificate = c.id
             WHERE c.state = 'issued' AND r.certificate IS NULL AND c.not_after >= ?1
               AND c.pkcs12_path IS NOT NULL ORDER BY c.id",
        )
        .map_err(sql)?;
    let rows = stmt
        .query_map([now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}

/// Failed certificates that recorded a PKCS#12 path, as (id, serial, path).
pub fn failed_with_paths(conn: &Snapshot<'_>) -> Result<Vec<(i64, String, String)>, Error> {
    let mut stmt = conn
        .prepare(
            "SELECT id, serial, pkcs12_path FROM certificates
             WHERE state = 'failed' AND pkcs12_path IS NOT NULL ORDER BY id",
        )
        .map_err(sql)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}

/// Points recorded PKCS#12 destinations under the directory `from` at the
/// same files under `to` (a restored home, crate::backup), so `kxca doctor`
/// looks for them where they now belong. Returns the rows changed.
pub(crate) fn relocate_pkcs12_paths(tx: &Tx<'_>, from: &str, to: &str) -> Result<usize, Error> {
    tx.execute(
        "UPDATE certificates SET pkcs12_path = ?2 || substr(pkcs12_path, length(?1) + 1)
         WHERE substr(pkcs12_path, 1, length(?1) + 1) = ?1 || '/'",
        params![from, to],
    )
    .map_err(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_tells_live_from_gone() {
        let me = process_owner();
        assert!(owner_alive(Some(&me)), "{me}");
        // Same pid, another start time: the pid was reused.
        let (pid, _) = me.split_once(':').unwrap();
        assert!(!owner_alive(Some(&format!("{pid}:1"))));
        assert!(!owner_alive(Some("4294967295:1")));
        assert!(!owner_alive(Some("garbage")));
        assert!(!owner_alive(None));
    }

    // A value outside a column's vocabulary is refused by name, not read
    // as `pending` or `unspecified` (which would then be signed into OCSP
    // responses and CRLs).
    #[test]
    fn unknown_state_or_reason_is_an_error_naming_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(&dir.path().join("kxca.db"), true).unwrap();
        // The rows and the tampering come from outside, as another program
        // writing the file would.
        let conn = rusqlite::Connection::open(dir.path().join("kxca.db")).unwrap();
        conn.execute_batch(
            "INSERT INTO authorities (id, name, role, key_ref, certificate, subject_der, spki, key_id, not_before, not_after, active, created_at)
               VALUES (1, 'root', 'root', 'k', x'00', x'00', x'00', x'00', 0, 10, 1, 0);
             INSERT INTO certificates (id, serial, authority_id, profile, certificate_id, subject, email, holder, key_algorithm, not_before, not_after, state, tbs, der, created_at)
               VALUES (1, '0A', 1, 'p', 'c1', 's', 'e@example.jp', '{}', 'ecdsa-p256', 0, 10, 'issued', x'00', x'00', 0);
             INSERT INTO revocations (certificate, revoked_at, reason, actor) VALUES (1, 5, 7, 'a');",
        )
        .unwrap();
        let err = store.read(|s| by_serial(s, "0A")).unwrap_err().to_string();
        assert!(
            err.contains("revocations.reason: unknown value '7'"),
            "{err}"
        );
        let err = store
            .read(|s| super::super::revocations::for_each_revoked(s, 1, 0, |_, _, _| Ok(())))
            .unwrap_err()
            .to_string();
        assert!(err.contains("revocations.reason: unknown value 7"), "{err}");

        conn.execute_batch(
            "UPDATE revocations SET reason = 1;
             PRAGMA ignore_check_constraints = ON;
             UPDATE certificates SET state = 'revoked' WHERE id = 1;",
        )
        .unwrap();
        let err = store.read(|s| by_serial(s, "0A")).unwrap_err().to_string();
        assert!(
            err.contains("certificates.state: unknown value 'revoked'"),
            "{err}"
        );
    }
}

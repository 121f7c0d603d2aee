//! The `revocations` table: at most one row per certificate (its primary key),
//! so a certificate cannot be revoked twice.

use super::{Snapshot, Tx};
use rusqlite::params;

use super::sql;
use crate::{Error, RevocationReason};

pub(crate) fn insert(
    tx: &Tx<'_>,
    certificate_row: i64,
    at: i64,
    reason: RevocationReason,
    actor: &str,
) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO revocations (certificate, revoked_at, reason, actor) VALUES (?1, ?2, ?3, ?4)",
        params![certificate_row, at, reason.code(), actor],
    )
    .map_err(sql)?;
    Ok(())
}

/// The reason of a stored `revocations.reason` code. An unknown code is an
/// error naming it: it would otherwise be signed into a CRL or an OCSP
/// response as something it is not.
pub fn stored_reason(code: i64) -> Result<RevocationReason, Error> {
    RevocationReason::from_code(code).ok_or_else(|| Error::Database {
        path: std::path::PathBuf::new(),
        message: format!("revocations.reason: unknown value {code}"),
    })
}

/// Calls `f(serial_hex, revoked_at, reason_code)` for every revoked
/// certificate of an authority whose notAfter is at or after
/// `not_expired_at`, without loading them all at once.
pub fn for_each_revoked(
    conn: &Snapshot<'_>,
    authority_id: i64,
    not_expired_at: i64,
    mut f: impl FnMut(&str, i64, u8) -> Result<(), Error>,
) -> Result<usize, Error> {
    let mut stmt = conn
        .prepare(
            "SELECT c.serial, r.revoked_at, r.reason FROM revocations r
             JOIN certificates c ON c.id = r.certificate
             WHERE c.authority_id = ?1 AND c.not_after >= ?2
             ORDER BY c.serial",
        )
        .map_err(sql)?;
    let mut rows = stmt
        .query(params![authority_id, not_expired_at])
        .map_err(sql)?;
    let mut n = 0;
    while let Some(r) = rows.next().map_err(sql)? {
        let serial: String = r.get(0).map_err(sql)?;
        let at: i64 = r.get(1).map_err(sql)?;
        let reason = stored_reason(r.get(2).map_err(sql)?)?;
        f(&serial, at, reason.code())?;
        n += 1;
    }
    Ok(n)
}

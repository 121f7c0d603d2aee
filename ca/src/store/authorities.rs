//! The `authorities` table: root and issuing CA certificates.

use super::{Snapshot, Tx};
use rusqlite::{params, OptionalExtension, Row};

use super::sql;
use crate::{Authority, AuthorityRole, Error};

const COLUMNS: &str =
    "id, name, role, parent_id, key_ref, certificate, subject_der, spki, key_id, not_before, not_after, active";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Authority> {
    let role: String = r.get(2)?;
    Ok(Authority {
        id: r.get(0)?,
        name: r.get(1)?,
        role: AuthorityRole::parse(&role),
        parent_id: r.get(3)?,
        key_ref: r.get(4)?,
        certificate: r.get(5)?,
        subject_der: r.get(6)?,
        spki: r.get(7)?,
        key_id: r.get(8)?,
        not_before: r.get(9)?,
        not_after: r.get(10)?,
        active: r.get::<_, i64>(11)? == 1,
    })
}

/// Points soft key references under the directory `from` at the same
/// files under `to` (a home restored elsewhere, crate::backup). Returns the
/// rows changed. Token and YubiKey references name no path: untouched.
pub(crate) fn relocate_soft_keys(tx: &Tx<'_>, from: &str, to: &str) -> Result<usize, Error> {
    tx.execute(
        "UPDATE authorities SET key_ref = 'soft:' || ?2 || substr(key_ref, length(?1) + 6)
         WHERE substr(key_ref, 1, length(?1) + 6) = 'soft:' || ?1 || '/'",
        params![from, to],
    )
    .map_err(sql)
}

pub(crate) struct NewAuthority<'a> {
    pub name: &'a str,
    pub role: AuthorityRole,
    pub parent_id: Option<i64>,
    pub key_ref: &'a str,
    pub certificate: &'a [u8],
    pub subject_der: &'a [u8],
    pub spki: &'a [u8],
    pub key_id: &'a [u8],
    pub not_before: i64,
    pub not_after: i64,
}

pub(crate) fn insert(tx: &Tx<'_>, a: &NewAuthority<'_>, now: i64) -> Result<i64, Error> {
    tx.execute(
        "INSERT INTO authorities (name, role, parent_id, key_ref, certificate, subject_der, spki, key_id, not_before, not_after, active, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 1, ?11)",
        params![a.name, a.role.as_str(), a.parent_id, a.key_ref, a.certificate, a.subject_der, a.spki, a.key_id, a.not_before, a.not_after, now],
    )
    .map_err(sql)?;
    Ok(tx.last_insert_rowid())
}

/// The active authority of a role.
pub fn active(conn: &Snapshot<'_>, role: AuthorityRole) -> Result<Authority, Error> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM authorities WHERE role = ?1 AND active = 1"),
        [role.as_str()],
        from_row,
    )
    .optional()
    .map_err(sql)?
    .ok_or(Error::NoAuthority {
        role: role.as_str().to_string(),
    })
}

/// Every authority, current and previous, oldest first.
pub fn all(conn: &Snapshot<'_>) -> Result<Vec<Authority>, Error> {
    let mut stmt = conn
        .prepare(&format!("SELECT {COLUMNS} FROM authorities ORDER BY id"))
        .map_err(sql)?;
    let rows = stmt.query_map([], from_row).map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}

/// One authority by its row id (the parent of an issuing CA).
pub fn by_id(conn: &Snapshot<'_>, id: i64) -> Result<Authority, Error> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM authorities WHERE id = ?1"),
        [id],
        from_row,
    )
    .map_err(sql)
}

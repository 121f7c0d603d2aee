//! The `crls` table: every CRL signed, with its number (monotonic per authority).

use super::{Snapshot, Tx};
use rusqlite::{params, OptionalExtension};

use super::sql;
use crate::Error;

/// The next CRL number for an authority (inside the transaction that stores it).
pub(crate) fn next_number(tx: &Snapshot<'_>, authority_id: i64) -> Result<i64, Error> {
    tx.query_row(
        "SELECT COALESCE(MAX(number), 0) + 1 FROM crls WHERE authority_id = ?1",
        [authority_id],
        |r| r.get(0),
    )
    .map_err(sql)
}

/// thisUpdate of the newest CRL of an authority, if any (without its bytes).
pub(crate) fn latest_this_update(
    conn: &Snapshot<'_>,
    authority_id: i64,
) -> Result<Option<i64>, Error> {
    conn.query_row(
        "SELECT this_update FROM crls WHERE authority_id = ?1 ORDER BY number DESC LIMIT 1",
        [authority_id],
        |r| r.get(0),
    )
    .optional()
    .map_err(sql)
}

pub(crate) fn insert(
    tx: &Tx<'_>,
    authority_id: i64,
    number: i64,
    this_update: i64,
    next_update: i64,
    entries: i64,
    der: &[u8],
) -> Result<(), Error> {
    // Older CRLs keep their metadata; only the newest keeps its bytes.
    tx.execute(
        "UPDATE crls SET der = x'' WHERE authority_id = ?1",
        [authority_id],
    )
    .map_err(sql)?;
    tx.execute(
        "INSERT INTO crls (authority_id, number, this_update, next_update, entries, der) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![authority_id, number, this_update, next_update, entries, der],
    )
    .map_err(sql)?;
    Ok(())
}

/// The newest signed CRL of an authority.
#[derive(Debug, Clone)]
pub struct StoredCrl {
    /// Its cRLNumber.
    pub number: i64,
    /// thisUpdate, Unix seconds.
    pub this_update: i64,
    /// nextUpdate, Unix seconds.
    pub next_update: i64,
    /// The signed CRL, DER.
    pub der: Vec<u8>,
}

/// The newest CRL of an authority.
pub fn latest(conn: &Snapshot<'_>, authority_id: i64) -> Result<Option<StoredCrl>, Error> {
    conn.query_row(
        "SELECT number, this_update, next_update, der FROM crls WHERE authority_id = ?1 ORDER BY number DESC LIMIT 1",
        [authority_id],
        |r| {
            Ok(StoredCrl {
                number: r.get(0)?,
                this_update: r.get(1)?,
                next_update: r.get(2)?,
                der: r.get(3)?,
            })
        },
    )
    .optional()
    .map_err(sql)
}

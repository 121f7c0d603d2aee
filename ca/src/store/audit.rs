//! The `audit` table: who did what, when, to which serial. Append-only.

use rusqlite::{params, Connection, Transaction};
use serde::Serialize;

use super::sql;
use crate::Error;

#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub serial: Option<String>,
    pub detail: serde_json::Value,
}

/// Appends one event inside the caller's transaction.
pub fn append(
    tx: &Transaction<'_>,
    at: i64,
    actor: &str,
    action: &str,
    serial: Option<&str>,
    detail: serde_json::Value,
) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO audit (at, actor, action, serial, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![at, actor, action, serial, detail.to_string()],
    )
    .map_err(sql)?;
    Ok(())
}

/// Events, oldest first.
pub fn list(conn: &Connection, limit: i64) -> Result<Vec<AuditEvent>, Error> {
    let mut stmt = conn
        .prepare(
            "SELECT id, at, actor, action, serial, detail FROM audit ORDER BY id DESC LIMIT ?1",
        )
        .map_err(sql)?;
    let mut rows: Vec<AuditEvent> = stmt
        .query_map([limit], |r| {
            let detail: String = r.get(5)?;
            Ok(AuditEvent {
                id: r.get(0)?,
                at: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                serial: r.get(4)?,
                detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
            })
        })
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)?;
    rows.reverse();
    Ok(rows)
}

//! The `audit` table: who did what, when, to which serial. Append-only.
//!
//! Each event is also a leaf of an RFC 6962 Merkle tree (crate::merkle): its
//! leaf index and leaf hash are written with it, in the same transaction, and
//! `kxca audit verify` recomputes them (crate::audit_log). The canonical
//! bytes of an event are documented in docs/AUDIT.md.

use super::{Snapshot, Tx};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::sql;
use crate::{AuditAction, Error};

/// One event as `kxca audit` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    /// Its id, in the order events were recorded.
    pub id: i64,
    /// When, Unix seconds.
    pub at: i64,
    /// Who: the login name, `--actor`, or the role (kxca-daemon).
    pub actor: String,
    /// What, as `AuditAction` names it.
    pub action: String,
    /// The certificate concerned, hex, if any.
    pub serial: Option<String>,
    /// The action's details (JSON object).
    pub detail: serde_json::Value,
}

/// Appends one event inside the caller's transaction, with its leaf index
/// and leaf hash (the caller's transaction holds the write lock, so the
/// next index cannot be taken twice; the unique index would refuse it).
pub(crate) fn append(
    tx: &Tx<'_>,
    at: i64,
    actor: &str,
    action: AuditAction,
    serial: Option<&str>,
    detail: serde_json::Value,
) -> Result<(), Error> {
    let action = action.as_str();
    let (id, index): (i64, i64) = tx
        .query_row(
            "SELECT COALESCE(MAX(id), 0) + 1, COALESCE(MAX(leaf_index) + 1, 0) FROM audit",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(sql)?;
    let leaf = leaf_of(id, index, at, actor, action, serial, &detail);
    tx.execute(
        "INSERT INTO audit (id, at, actor, action, serial, detail, leaf_index, leaf) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            id,
            at,
            actor,
            action,
            serial,
            detail.to_string(),
            index,
            &leaf[..]
        ],
    )
    .map_err(sql)?;
    Ok(())
}

/// The canonical bytes of an event (docs/AUDIT.md): the JSON object
/// {action, actor, at, detail, id, index, serial} with every object's keys
/// sorted, no insignificant whitespace, non-ASCII characters as UTF-8 (the
/// output of Python's `json.dumps(e, sort_keys=True, separators=(",", ":"),
/// ensure_ascii=False)`).
pub fn canonical_bytes(
    id: i64,
    index: i64,
    at: i64,
    actor: &str,
    action: &str,
    serial: Option<&str>,
    detail: &serde_json::Value,
) -> Vec<u8> {
    let event = serde_json::json!({
        "action": action,
        "actor": actor,
        "at": at,
        "detail": detail,
        "id": id,
        "index": index,
        "serial": serial,
    });
    let mut out = String::new();
    canonical_json(&event, &mut out);
    out.into_bytes()
}

/// The leaf hash of an event: SHA-256(0x00 || canonical bytes).
pub fn leaf_of(
    id: i64,
    index: i64,
    at: i64,
    actor: &str,
    action: &str,
    serial: Option<&str>,
    detail: &serde_json::Value,
) -> crate::merkle::Hash {
    crate::merkle::leaf_hash(&canonical_bytes(
        id, index, at, actor, action, serial, detail,
    ))
}

/// Writes `v` with sorted keys whatever serde_json's map order is (a
/// dependency may turn on `preserve_order`).
fn canonical_json(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                canonical_json(&map[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// One row as stored, for verification: nothing is trusted.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Its id.
    pub id: i64,
    /// When, Unix seconds.
    pub at: i64,
    /// Who.
    pub actor: String,
    /// What, as stored (not checked against `AuditAction`: a tampered name is a finding).
    pub action: String,
    /// The certificate concerned, if any.
    pub serial: Option<String>,
    /// The detail column as written; `None` when it is not JSON.
    pub detail: Option<serde_json::Value>,
    /// Its leaf's index in the tree; `None` for a row the tree never adopted.
    pub leaf_index: Option<i64>,
    /// Its leaf hash as stored, to compare with the one recomputed.
    pub leaf: Option<Vec<u8>>,
}

impl StoredEvent {
    /// The leaf hash of the row's content at its recorded index (`None`
    /// when the row has no index or its detail is not JSON).
    pub fn content_leaf(&self) -> Option<crate::merkle::Hash> {
        Some(leaf_of(
            self.id,
            self.leaf_index?,
            self.at,
            &self.actor,
            &self.action,
            self.serial.as_deref(),
            self.detail.as_ref()?,
        ))
    }
}

/// Every row in id order (the table's order), or those with id >= `from_id`.
pub fn all_rows(conn: &Snapshot<'_>, from_id: i64) -> Result<Vec<StoredEvent>, Error> {
    let mut stmt = conn
        .prepare(
            "SELECT id, at, actor, action, serial, detail, leaf_index, leaf FROM audit \
             WHERE id >= ?1 ORDER BY id",
        )
        .map_err(sql)?;
    let rows = stmt
        .query_map([from_id], |r| {
            let detail: String = r.get(5)?;
            Ok(StoredEvent {
                id: r.get(0)?,
                at: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                serial: r.get(4)?,
                detail: serde_json::from_str(&detail).ok(),
                leaf_index: r.get(6)?,
                leaf: r.get(7)?,
            })
        })
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    Ok(rows)
}

/// The number of leaves in the tree: one more than the highest leaf index.
pub fn tree_size(conn: &Snapshot<'_>) -> Result<i64, Error> {
    conn.query_row(
        "SELECT COALESCE(MAX(leaf_index) + 1, 0) FROM audit",
        [],
        |r| r.get(0),
    )
    .map_err(sql)
}

/// The tree size and the RFC 6962 root of the leaves as stored (not
/// recomputed from the events: that is `audit_log::verify`'s work), for a
/// backup's manifest. `None` when the stored leaves do not make a tree of
/// that size (a leaf missing or not 32 bytes).
pub(crate) fn stored_root(
    conn: &Snapshot<'_>,
) -> Result<Option<(i64, crate::merkle::Hash)>, Error> {
    let size = tree_size(conn)?;
    let mut stmt = conn
        .prepare("SELECT leaf FROM audit WHERE leaf_index IS NOT NULL ORDER BY leaf_index")
        .map_err(sql)?;
    let stored = stmt
        .query_map([], |r| r.get::<_, Option<Vec<u8>>>(0))
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    let leaves: Option<Vec<crate::merkle::Hash>> = stored
        .iter()
        .map(|l| l.as_deref().and_then(|l| l.try_into().ok()))
        .collect();
    Ok(leaves
        .filter(|l| l.len() as i64 == size)
        .map(|l| (size, crate::merkle::Tree::new(l).root(size as usize))))
}

/// Gives the events written before the Merkle tree existed their leaves,
/// once: the migration notes the highest such id in `audit_backfill`, and
/// the table is dropped when done, so that a row inserted later by hand
/// is never adopted into the tree.
pub(crate) fn backfill(tx: &Tx<'_>) -> Result<(), Error> {
    if !backfill_pending(tx)? {
        return Ok(());
    }
    let upto: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(upto), 0) FROM audit_backfill",
            [],
            |r| r.get(0),
        )
        .map_err(sql)?;
    let rows: Vec<StoredEvent> = all_rows(tx, 0)?
        .into_iter()
        .filter(|e| e.id <= upto)
        .collect();
    for (index, mut e) in rows.into_iter().enumerate() {
        e.leaf_index = Some(index as i64);
        // A legacy detail that is not JSON is kept as the string it is.
        let detail = e.detail.clone().unwrap_or(serde_json::Value::Null);
        e.detail = Some(detail);
        let leaf = e.content_leaf().unwrap_or_default();
        tx.execute(
            "UPDATE audit SET leaf_index = ?1, leaf = ?2 WHERE id = ?3",
            params![index as i64, &leaf[..], e.id],
        )
        .map_err(sql)?;
    }
    tx.execute("DROP TABLE audit_backfill", []).map_err(sql)?;
    Ok(())
}

pub(crate) fn backfill_pending(conn: &Snapshot<'_>) -> Result<bool, Error> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_backfill'",
            [],
            |_| Ok(()),
        )
        .optional()
        .map_err(sql)?
        .is_some())
}

/// A signed checkpoint as stored.
#[derive(Debug, Clone, Serialize)]
pub struct StoredCheckpoint {
    /// Leaves covered.
    pub size: i64,
    /// The tree root over them.
    pub root: Vec<u8>,
    /// The signed note, as published.
    pub note: String,
    /// When it was signed, Unix seconds.
    pub signed_at: i64,
    /// The signing key's SPKI, DER, for the public role to publish.
    #[serde(skip)]
    pub public_key: Vec<u8>,
}

pub(crate) fn insert_checkpoint(tx: &Tx<'_>, c: &StoredCheckpoint) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO audit_checkpoints (size, root, note, signed_at, public_key) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![c.size, c.root, c.note, c.signed_at, c.public_key],
    )
    .map_err(sql)?;
    Ok(())
}

/// Every checkpoint, smallest tree first.
pub fn checkpoints(conn: &Snapshot<'_>) -> Result<Vec<StoredCheckpoint>, Error> {
    let mut stmt = conn
        .prepare(
            "SELECT size, root, note, signed_at, public_key FROM audit_checkpoints ORDER BY size",
        )
        .map_err(sql)?;
    let rows = stmt
        .query_map([], |r| {
            Ok(StoredCheckpoint {
                size: r.get(0)?,
                root: r.get(1)?,
                note: r.get(2)?,
                signed_at: r.get(3)?,
                public_key: r.get(4)?,
            })
        })
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    Ok(rows)
}

/// Events, oldest first.
pub fn list(conn: &Snapshot<'_>, limit: i64) -> Result<Vec<AuditEvent>, Error> {
    let mut stmt = conn
        .prepare(
            "SELECT id, at, actor, action, serial, detail FROM audit ORDER BY id DESC LIMIT ?1",
        )
        .map_err(sql)?;
    let mut rows: Vec<AuditEvent> = stmt
        .query_map([limit], event)
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)?;
    rows.reverse();
    Ok(rows)
}

/// What the audit log is filtered by; every field optional.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Actions starting with this (e.g. `account.`).
    pub action_prefix: Option<String>,
    /// Exactly this actor.
    pub actor: Option<String>,
    /// Events at or after this time, Unix seconds.
    pub from: Option<i64>,
    /// Events before this time, Unix seconds.
    pub until: Option<i64>,
}

/// One page of events matching `filter`, newest first. The filter is
/// applied in SQL before the page is cut, so a page is always full while
/// older matches exist.
pub fn page(
    conn: &Snapshot<'_>,
    filter: &AuditFilter,
    req: &super::paging::PageRequest,
) -> Result<super::paging::Page<AuditEvent>, Error> {
    // LIKE with an escaped prefix; `substr` would not use the index either
    // and LIKE's escaping keeps `_` and `%` in a prefix literal.
    let prefix = filter
        .action_prefix
        .as_deref()
        .filter(|p| !p.is_empty())
        .map(|p| {
            format!(
                "{}%",
                p.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            )
        });
    let actor = filter.actor.as_deref().filter(|a| !a.is_empty());
    super::paging::page(
        req,
        |e: &AuditEvent| e.id,
        |k| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT id, at, actor, action, serial, detail FROM audit \
                     WHERE (?1 IS NULL OR action LIKE ?1 ESCAPE '\\') AND (?2 IS NULL OR actor = ?2) \
                       AND (?3 IS NULL OR at >= ?3) AND (?4 IS NULL OR at < ?4) \
                       AND id {} ?5 ORDER BY id {} LIMIT ?6",
                    k.op, k.order
                ))
                .map_err(sql)?;
            let rows = stmt
                .query_map(
                    params![prefix, actor, filter.from, filter.until, k.key, k.limit],
                    event,
                )
                .map_err(sql)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql)?;
            Ok(rows)
        },
    )
}

fn event(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEvent> {
    let detail: String = r.get(5)?;
    Ok(AuditEvent {
        id: r.get(0)?,
        at: r.get(1)?,
        actor: r.get(2)?,
        action: r.get(3)?,
        serial: r.get(4)?,
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    /// A store written before the Merkle tree existed: its events get their
    /// leaves once, in id order, and a row inserted by hand afterwards is
    /// never adopted into the tree.
    #[test]
    fn events_older_than_the_tree_are_backfilled_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kxca.db");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(super::super::migrations::CA[0].sql)
                .unwrap();
            conn.execute_batch(
                "CREATE TABLE schema_migrations (component TEXT NOT NULL, version INTEGER NOT NULL,
                   description TEXT NOT NULL, applied_at INTEGER NOT NULL, PRIMARY KEY (component, version));
                 INSERT INTO schema_migrations VALUES ('ca', 1, 'v1', 0);
                 INSERT INTO audit (at, actor, action, serial, detail) VALUES
                   (10, 'a', 'ca.init', NULL, '{\"b\":1,\"a\":[\"x\"]}'),
                   (11, 'b', 'certificate.issue', '0A', '{}');",
            )
            .unwrap();
        }
        let mut store = Store::open(&path, false).unwrap();
        let rows = store.read(|s| all_rows(s, 0)).unwrap();
        assert_eq!(
            rows.iter().map(|e| e.leaf_index).collect::<Vec<_>>(),
            vec![Some(0), Some(1)]
        );
        for e in &rows {
            assert_eq!(e.leaf.as_deref(), e.content_leaf().as_ref().map(|h| &h[..]));
        }
        store
            .write(|tx| {
                append(
                    tx,
                    12,
                    "c",
                    AuditAction::CertificateRevoke,
                    Some("0A"),
                    serde_json::json!({}),
                )
            })
            .unwrap();
        assert_eq!(store.read(tree_size).unwrap(), 3);
        drop(store);
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(
                "INSERT INTO audit (at, actor, action, serial, detail) VALUES (13, 'x', 'y', NULL, '{}')",
            )
            .unwrap();
        let store = Store::open(&path, false).unwrap();
        let last = store.read(|s| all_rows(s, 4)).unwrap();
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].leaf_index, None, "a hand-inserted row was adopted");
    }

    #[test]
    fn canonical_bytes_sort_keys_and_keep_utf8() {
        let bytes = canonical_bytes(
            3,
            2,
            100,
            "事務",
            "x",
            None,
            &serde_json::json!({"z": 1, "a": {"d": "\n", "c": true}}),
        );
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"action":"x","actor":"事務","at":100,"detail":{"a":{"c":true,"d":"\n"},"z":1},"id":3,"index":2,"serial":null}"#
        );
    }
}

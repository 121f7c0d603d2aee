//! What [`Store::write`](super::Store::write) and
//! [`Store::read`](super::Store::read) hand to their closures: the SQL
//! table code needs (the method names and signatures of rusqlite, so
//! table code reads as rusqlite code does) and nothing that would end,
//! nest or reconfigure the store's transaction.
//!
//! The types cannot name `commit`, `savepoint`, `pragma` or `close`, and
//! the store's authorizer refuses the same as SQL text
//! (`tx.execute("COMMIT", [])`) while a closure runs. A [`Snapshot`]
//! also refuses a statement that would write: its transaction is
//! dropped, not committed, so a write there would vanish without a word.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::{CachedStatement, Connection, Params, Row, Statement};

use crate::{AuditAction, Error};

/// A read snapshot: every query sees the same state of the store.
/// A [`Tx`] dereferences to one, so read functions taking `&Snapshot`
/// also run inside a write.
pub struct Snapshot<'c> {
    conn: &'c Connection,
}

/// A state change's transaction: it commits when the closure given to
/// [`Store::write`](super::Store::write) returns `Ok`, and leaves nothing
/// behind when it returns `Err`.
pub struct Tx<'c> {
    snapshot: Snapshot<'c>,
}

impl<'c> Snapshot<'c> {
    pub(super) fn new(conn: &'c Connection) -> Self {
        Snapshot { conn }
    }

    /// Runs a query expected to return one row, as
    /// `rusqlite::Connection::query_row`.
    pub fn query_row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare(sql)?.query_row(params, f)
    }

    /// Prepares a statement that only reads.
    pub fn prepare(&self, sql: &str) -> rusqlite::Result<Statement<'c>> {
        let stmt = self.conn.prepare(sql)?;
        read_only(&stmt, sql)?;
        Ok(stmt)
    }

    /// Prepares (or takes from the connection's cache) a statement that
    /// only reads.
    pub fn prepare_cached(&self, sql: &str) -> rusqlite::Result<CachedStatement<'c>> {
        let stmt = self.conn.prepare_cached(sql)?;
        read_only(&stmt, sql)?;
        Ok(stmt)
    }
}

/// A write through a snapshot would be rolled back silently when the read
/// ends: refused when prepared instead.
fn read_only(stmt: &Statement<'_>, sql: &str) -> rusqlite::Result<()> {
    if stmt.readonly() {
        Ok(())
    } else {
        Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
            Some(format!(
                "a read snapshot cannot write (use Store::write): {}",
                sql.split_whitespace().collect::<Vec<_>>().join(" ")
            )),
        ))
    }
}

impl<'c> Tx<'c> {
    pub(super) fn new(conn: &'c Connection) -> Self {
        Tx {
            snapshot: Snapshot::new(conn),
        }
    }

    /// Runs one statement, as `rusqlite::Connection::execute`: the number
    /// of rows it changed.
    pub fn execute<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.snapshot.conn.execute(sql, params)
    }

    /// Runs a query expected to return one row (reads and `RETURNING`
    /// writes alike).
    pub fn query_row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    {
        self.snapshot.conn.query_row(sql, params, f)
    }

    /// Prepares a statement, reading or writing.
    pub fn prepare(&self, sql: &str) -> rusqlite::Result<Statement<'c>> {
        self.snapshot.conn.prepare(sql)
    }

    /// Prepares (or takes from the connection's cache) a statement,
    /// reading or writing.
    pub fn prepare_cached(&self, sql: &str) -> rusqlite::Result<CachedStatement<'c>> {
        self.snapshot.conn.prepare_cached(sql)
    }

    /// The rowid of the last row this connection inserted.
    pub fn last_insert_rowid(&self) -> i64 {
        self.snapshot.conn.last_insert_rowid()
    }

    /// The rows the last INSERT, UPDATE or DELETE changed.
    pub fn changes(&self) -> u64 {
        self.snapshot.conn.changes()
    }

    /// Appends an event to the audit record in this transaction, so the
    /// change and its record commit or vanish together.
    pub fn audit(
        &self,
        at: i64,
        actor: &str,
        action: AuditAction,
        serial: Option<&str>,
        detail: serde_json::Value,
    ) -> Result<(), Error> {
        super::audit::append(self, at, actor, action, serial, detail)
    }
}

impl<'c> std::ops::Deref for Tx<'c> {
    type Target = Snapshot<'c>;

    fn deref(&self) -> &Snapshot<'c> {
        &self.snapshot
    }
}

/// The store's SQL authorizer. While `guard` is set (a `write` or `read`
/// closure runs), statements that end or nest the store's transaction,
/// change pragmas or attach another database are refused when prepared;
/// the store's own work (open, migrations, WAL truncation) runs unguarded.
pub(super) fn install_guard(conn: &Connection, guard: Arc<AtomicBool>) {
    conn.authorizer(Some(move |ctx: AuthContext<'_>| {
        if !guard.load(Ordering::Relaxed) {
            return Authorization::Allow;
        }
        match ctx.action {
            // Reading the commit counter changes nothing (ocsp::store::data_version).
            AuthAction::Pragma {
                pragma_name: "data_version",
                pragma_value: None,
            } => Authorization::Allow,
            AuthAction::Transaction { .. }
            | AuthAction::Savepoint { .. }
            | AuthAction::Pragma { .. }
            | AuthAction::Attach { .. }
            | AuthAction::Detach { .. } => Authorization::Deny,
            _ => Authorization::Allow,
        }
    }));
}

/// Sets the guard for as long as it lives, and clears it on every way out
/// of a closure (a `?` or a panic).
pub(super) struct Guarded<'g>(&'g AtomicBool);

impl<'g> Guarded<'g> {
    pub(super) fn new(guard: &'g AtomicBool) -> Self {
        guard.store(true, Ordering::Relaxed);
        Guarded(guard)
    }
}

impl Drop for Guarded<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{sql, Store};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("kxca.db"), true).unwrap();
        (dir, store)
    }

    fn events(s: &Snapshot<'_>) -> Result<i64, Error> {
        s.query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))
            .map_err(sql)
    }

    // The closure cannot end the store's transaction by SQL text either:
    // a COMMIT would make the first half of a state change durable even
    // when the rest fails.
    #[test]
    fn a_closure_cannot_commit_begin_savepoint_or_change_pragmas() {
        let (dir, mut store) = store();
        for statement in [
            "COMMIT",
            "END",
            "ROLLBACK",
            "BEGIN",
            "SAVEPOINT s",
            "RELEASE s",
            "PRAGMA foreign_keys = OFF",
            "PRAGMA journal_mode = DELETE",
            "ATTACH DATABASE ':memory:' AS other",
        ] {
            let err = store
                .write(|tx| {
                    tx.audit(1, "t", AuditAction::CaInit, None, serde_json::json!({}))?;
                    tx.execute(statement, []).map_err(sql)?;
                    Ok(())
                })
                .unwrap_err()
                .to_string();
            assert!(err.contains("not authorized"), "{statement}: {err}");
            assert!(
                err.contains(&dir.path().join("kxca.db").display().to_string()),
                "{statement}: the error names the database: {err}"
            );
            let err = store
                .read(|s| s.prepare(statement).map(drop).map_err(sql))
                .unwrap_err()
                .to_string();
            assert!(err.contains("not authorized"), "{statement}: {err}");
        }
        assert_eq!(
            store.read(events).unwrap(),
            0,
            "a refused change left an event"
        );
        // foreign_keys is still on: a CRL of no authority is refused.
        let err = store
            .write(|tx| {
                tx.execute(
                    "INSERT INTO crls (authority_id, number, this_update, next_update, entries, der) VALUES (999, 1, 0, 1, 0, x'00')",
                    [],
                )
                .map_err(sql)
            })
            .unwrap_err()
            .to_string();
        assert!(err.contains("FOREIGN KEY"), "{err}");
        // The guard is off again outside closures: the store's own
        // statements (here, WAL truncation) run.
        store.truncate_wal("in a test").unwrap();
    }

    #[test]
    fn a_snapshot_refuses_writes_and_a_tx_reads_as_one() {
        let (_dir, mut store) = store();
        let err = store
            .read(|s| {
                s.prepare("DELETE FROM audit").map_err(sql)?;
                Ok(())
            })
            .unwrap_err()
            .to_string();
        assert!(err.contains("a read snapshot cannot write"), "{err}");
        let err = store
            .read(|s| {
                s.prepare_cached(
                    "INSERT INTO audit (at, actor, action, detail) VALUES (1, 'a', 'b', '{}')",
                )
                .map_err(sql)?;
                Ok(())
            })
            .unwrap_err()
            .to_string();
        assert!(err.contains("a read snapshot cannot write"), "{err}");
        // A read function taking &Snapshot runs inside a write, and sees it.
        let inside = store
            .write(|tx| {
                tx.audit(1, "t", AuditAction::CaInit, None, serde_json::json!({}))?;
                events(tx)
            })
            .unwrap();
        assert_eq!(inside, 1);
        assert_eq!(store.read(events).unwrap(), 1);
        // A failed write leaves nothing, its audit event included.
        let _ = store.write(|tx| {
            tx.audit(2, "t", AuditAction::CaInit, None, serde_json::json!({}))?;
            Err::<(), _>(Error::field("test", "refused"))
        });
        assert_eq!(store.read(events).unwrap(), 1);
    }
}

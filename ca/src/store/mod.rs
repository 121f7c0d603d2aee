//! The SQLite store. One module owns each table; every state change is one
//! transaction that also appends to `audit`.
//!
//! Migrations are numbered per component ("ca", "provisioner", ...) so that
//! crates built on the CA add their own tables without touching these.

pub mod audit;
pub mod authorities;
pub mod certificates;
pub mod crls;
mod migrations;
pub mod revocations;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction};

use crate::Error;

pub use migrations::Migration;

/// An open store. Not `Sync`: open one per thread or process; SQLite's WAL
/// and busy timeout arbitrate between them.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if asked) the database and brings the CA schema up to date.
    pub fn open(path: &Path, create: bool) -> Result<Store, Error> {
        if !create && !path.exists() {
            return Err(Error::Database {
                path: path.to_path_buf(),
                message: "database file does not exist".to_string(),
            });
        }
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let db_err = |e: rusqlite::Error| Error::Database {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let conn = Connection::open_with_flags(path, flags).map_err(db_err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(db_err)?;
        // quick_check first: a corrupt file must be reported, not half-migrated.
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(db_err)?;
        if check != "ok" {
            return Err(Error::Database {
                path: path.to_path_buf(),
                message: format!("integrity check failed: {check}"),
            });
        }
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(db_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Database {
                path: path.to_path_buf(),
                message: format!(
                    "cannot switch to WAL journal (got {mode}); is the directory writable?"
                ),
            });
        }
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;")
            .map_err(db_err)?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store.migrate("ca", migrations::CA)?;
        // Only a store migrated from before the audit tree has work here; the
        // read first keeps a read-only open (the public role) read-only.
        if audit::backfill_pending(&store.conn).map_err(|e| store.err(e))? {
            store.write(audit::backfill)?;
        }
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn err(&self, e: rusqlite::Error) -> Error {
        Error::Database {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Applies the not-yet-applied migrations of `component`, each in its own
    /// transaction. Crates built on the CA call this for their own tables.
    pub fn migrate(&mut self, component: &str, migrations: &[Migration]) -> Result<(), Error> {
        migrations::apply(self, component, migrations)
    }

    /// Runs `f` in one IMMEDIATE transaction (the write lock is taken at the
    /// start, so two writers never deadlock on upgrade) and commits if it
    /// returns Ok. Nothing is written when it fails.
    pub fn write<T>(
        &mut self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let path = self.path.clone();
        let db_err = |e: rusqlite::Error| Error::Database {
            path: path.clone(),
            message: e.to_string(),
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let out = f(&tx)?;
        tx.commit().map_err(db_err)?;
        Ok(out)
    }

    /// Read-only access for queries.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }
}

/// Maps a rusqlite error inside a transaction closure.
pub(crate) fn sql(e: rusqlite::Error) -> Error {
    Error::Database {
        path: PathBuf::from("kxca.db"),
        message: e.to_string(),
    }
}

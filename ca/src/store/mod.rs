//! The SQLite store. One module owns each table; every state change is one
//! transaction that also appends to `audit`.
//!
//! Only this module holds the connection: table code (here, in
//! `crate::ocsp::store`, in other crates) gets a state change's [`Tx`]
//! from [`Store::write`], a read [`Snapshot`] from [`Store::read`], or a
//! named operation ([`Store::schema_version`], [`Store::truncate_wal`],
//! [`Store::backup_to`]),
//! so nothing outside can begin, commit or change pragmas on its own.
//! tests/layering.rs keeps it so.
//!
//! Migrations are numbered per component ("ca", "provisioner", ...) so that
//! crates built on the CA add their own tables without touching these.

pub mod audit;
pub mod authorities;
pub mod certificates;
pub mod crls;
pub(crate) mod migrations;
pub mod paging;
pub mod revocations;
mod tx;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::Error;

pub use migrations::Migration;
pub use tx::{Snapshot, Tx};

/// An open store. Not `Sync`: open one per thread or process; SQLite's WAL
/// and busy timeout arbitrate between them.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Set while a `write` or `read` closure runs (see `tx::install_guard`).
    guard: Arc<AtomicBool>,
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
        private_files(path)?;
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
        // secure_delete: a deleted or overwritten row's bytes (a scrubbed
        // form, a rotated secret) are zeroed, not left in free pages.
        conn.execute_batch(
            "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL; PRAGMA secure_delete = ON;",
        )
        .map_err(db_err)?;
        let guard = Arc::new(AtomicBool::new(false));
        tx::install_guard(&conn, Arc::clone(&guard));
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
            guard,
        };
        store.migrate("ca", migrations::CA)?;
        // Officers, ceremonies, link certificates, retired and revoked CAs.
        store.migrate("ceremony", crate::ceremony::MIGRATIONS)?;
        // Only a store migrated from before the audit tree has work here; the
        // read first keeps a read-only open (the public role) read-only.
        if store.read(audit::backfill_pending)? {
            store.write(audit::backfill)?;
        }
        Ok(store)
    }

    /// The database file, for messages and for opening it again.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A SQLite error of this store, naming its file.
    pub fn err(&self, e: rusqlite::Error) -> Error {
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
    pub fn write<T>(&mut self, f: impl FnOnce(&Tx<'_>) -> Result<T, Error>) -> Result<T, Error> {
        let path = self.path.clone();
        let db_err = |e: rusqlite::Error| Error::Database {
            path: path.clone(),
            message: e.to_string(),
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let out = {
            let _guarded = tx::Guarded::new(&self.guard);
            f(&Tx::new(&tx)).map_err(|e| e.in_database(&path))?
        };
        tx.commit().map_err(db_err)?;
        Ok(out)
    }

    /// Runs `f` in one read transaction: every query sees the same snapshot,
    /// and no write lock is taken (the WAL lets writers go on meanwhile).
    pub fn read<T>(&self, f: impl FnOnce(&Snapshot<'_>) -> Result<T, Error>) -> Result<T, Error> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        let _guarded = tx::Guarded::new(&self.guard);
        // Dropped without commit: a read transaction has nothing to keep.
        // Its `sql` errors are given this store's path.
        f(&Snapshot::new(&tx)).map_err(|e| e.in_database(&self.path))
    }

    /// The newest applied migration of `component` (0: none yet). A failed
    /// read is an error, not "nothing applied".
    pub fn schema_version(&self, component: &str) -> Result<i64, Error> {
        self.conn
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE component = ?1",
                [component],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Copies the WAL into the database file and empties it, so bytes an
    /// overwrite or delete removed (secure_delete zeroes the file's pages)
    /// do not stay behind in WAL frames. `why` says what for, in the error.
    pub fn truncate_wal(&self, why: &str) -> Result<(), Error> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(|e| Error::Database {
                path: self.path.clone(),
                message: format!("truncating the WAL {why}: {e}"),
            })
    }

    /// Copies the whole database into the new file `dest` with SQLite's
    /// online backup API while other processes go on reading and writing.
    /// The source is read in one read transaction held across the steps, so
    /// the copy is one consistent snapshot (a writer in another process
    /// would otherwise restart the copy at every commit, and a busy store
    /// would never finish). `progress(copied, total)` is called after each
    /// step, in pages. The copy is left in rollback-journal mode: one
    /// self-contained file, no `-wal` beside it.
    pub fn backup_to(&self, dest: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<(), Error> {
        use rusqlite::backup::{Backup, StepResult};
        let dest_err = |e: rusqlite::Error| Error::Database {
            path: dest.to_path_buf(),
            message: format!("backup copy: {e}"),
        };
        // Created here, 0600 and new: never over an existing file, and the
        // copy holds the same personal data as the store.
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        options.open(dest).map_err(|e| crate::Error::io(dest, e))?;
        let mut target = Connection::open(dest).map_err(dest_err)?;
        let snapshot = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        // A deferred transaction takes its snapshot at the first read.
        snapshot
            .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(|e| self.err(e))?;
        {
            let backup = Backup::new(&snapshot, &mut target).map_err(dest_err)?;
            let mut waits = 0u32;
            loop {
                match backup.step(256).map_err(dest_err)? {
                    StepResult::Done => break,
                    StepResult::More => waits = 0,
                    // Only the destination can be busy (the source snapshot
                    // is already held): nobody else should have it open.
                    _ => {
                        waits += 1;
                        if waits > 200 {
                            return Err(dest_err(rusqlite::Error::SqliteFailure(
                                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                                Some("the backup file stays locked by another process".into()),
                            )));
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                let p = backup.progress();
                let total = u64::try_from(p.pagecount).unwrap_or(0);
                let left = u64::try_from(p.remaining).unwrap_or(0);
                progress(total.saturating_sub(left), total);
            }
            let p = backup.progress();
            let total = u64::try_from(p.pagecount).unwrap_or(0);
            progress(total, total);
        }
        drop(snapshot);
        let mode: String = target
            .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
            .map_err(dest_err)?;
        if !mode.eq_ignore_ascii_case("delete") {
            return Err(Error::Database {
                path: dest.to_path_buf(),
                message: format!("backup copy: cannot leave WAL mode (journal_mode is {mode})"),
            });
        }
        target.close().map_err(|(_, e)| dest_err(e))
    }
}

/// Opens a copy of a store (a backup) read-only, checks it with `PRAGMA
/// integrity_check`, and runs `f` on one read snapshot of it. Unlike
/// [`Store::open`] it changes nothing in the file: no migration, no WAL
/// switch, so the copy's hash stays what its manifest says.
pub(crate) fn read_copy<T>(
    path: &Path,
    f: impl FnOnce(&Snapshot<'_>) -> Result<T, Error>,
) -> Result<T, Error> {
    let err = |e: rusqlite::Error| Error::Database {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    let problems: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(err)?;
    if problems != ["ok"] {
        return Err(Error::Database {
            path: path.to_path_buf(),
            message: format!("PRAGMA integrity_check: {}", problems.join("; ")),
        });
    }
    let snapshot = conn.unchecked_transaction().map_err(err)?;
    f(&Snapshot::new(&snapshot)).map_err(|e| e.in_database(path))
}

/// The store holds personal data: the database is created 0600 before
/// SQLite opens it, whatever the umask, and SQLite gives its `-wal` and
/// `-shm` the database file's mode. A store left readable by others by an
/// older kxca is tightened.
fn private_files(path: &Path) -> Result<(), Error> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let io = |p: &Path, e: std::io::Error| Error::Database {
            path: p.to_path_buf(),
            message: format!("setting the file private (0600): {e}"),
        };
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            // Not ours to create (e.g. a missing directory): SQLite's open
            // reports it with its own words.
            Err(_) => return Ok(()),
        }
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let p = PathBuf::from(p);
            let Ok(meta) = std::fs::metadata(&p) else {
                continue;
            };
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                // Only group and other lose their bits: a store made
                // read-only on purpose stays read-only.
                let private = std::fs::Permissions::from_mode(mode & 0o700);
                if let Err(e) = std::fs::set_permissions(&p, private) {
                    // Not fatal, and not a warning on every command: a store
                    // we may not chmod (immutable, another owner) was made so
                    // on purpose and can still be read.
                    tracing::debug!(error = %io(&p, e), "store file left readable by others");
                }
            }
        }
    }
    Ok(())
}

/// Maps a rusqlite error inside a [`Store::write`] or [`Store::read`]
/// closure, which only has the connection: the store fills in its path
/// when the error leaves the closure.
pub fn sql(e: rusqlite::Error) -> Error {
    Error::Database {
        path: PathBuf::new(),
        message: e.to_string(),
    }
}

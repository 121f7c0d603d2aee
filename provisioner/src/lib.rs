//! kxca provisioning: signup mail intake, the application queue, and the
//! outbox through which every outbound mail is sent.
// One `unsafe` block: setting rlimits between fork and exec (sandbox).
#![deny(unsafe_code)]

pub mod applications;
mod error;
pub mod forms;
pub mod intake;
pub mod loops;
pub mod mail;
pub mod outbox;
pub mod pass;
pub mod receive;
pub mod reply;
pub mod sandbox;

pub use error::Error;
pub use mail::{fetch_once, FetchSummary};
pub use receive::{Received, Receiver};

/// Brings the provisioner's tables (applications, outbox) up to date.
/// Call once after opening the store.
pub fn migrate(store: &mut kxca_ca::Store) -> Result<(), kxca_ca::Error> {
    // A failed read is an error, not "no migration applied yet".
    let version = |store: &kxca_ca::Store| -> Result<i64, kxca_ca::Error> {
        store
            .conn()
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE component = 'provisioner'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| store.err(e))
    };
    let before = version(store)?;
    store.migrate("provisioner", applications::migrations())?;
    store.migrate("outbox", outbox::migrations())?;
    if before > 0 && before < applications::SCRUB_VERSION {
        // The scrub zeroed the freed pages (secure_delete), but the WAL
        // still holds frames written when the files were stored: empty it.
        store
            .conn()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(|e| kxca_ca::Error::Database {
                path: store.path().to_path_buf(),
                message: format!("truncating the WAL after scrubbing stored forms: {e}"),
            })?;
    }
    Ok(())
}

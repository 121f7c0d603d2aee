//! kxca provisioning: signup mail intake, the application queue, and the
//! outbox through which every outbound mail is sent.
// One `unsafe` block: setting rlimits between fork and exec (sandbox).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod applications;
mod error;
pub mod forms;
pub mod intake;
pub mod loops;
pub mod mail;
mod mail_config;
pub mod outbox;
pub mod pass;
pub mod receive;
pub mod reply;
pub mod sandbox;

pub use error::Error;
pub use mail::{fetch_once, FetchSummary};
pub use mail_config::{ImapConfig, MailConfig, SmtpConfig, TlsMode};
pub use receive::{Received, Receiver};

/// Brings the provisioner's tables (applications, outbox) up to date.
/// Call once after opening the store.
pub fn migrate(store: &mut kxca_ca::Store) -> Result<(), kxca_ca::Error> {
    let before = store.schema_version("provisioner")?;
    store.migrate("provisioner", applications::migrations())?;
    store.migrate("outbox", outbox::migrations())?;
    if before > 0 && before < applications::SCRUB_VERSION {
        // The scrub zeroed the freed pages (secure_delete), but the WAL
        // still holds frames written when the files were stored: empty it.
        store.truncate_wal("after scrubbing stored forms")?;
    }
    Ok(())
}

//! Receiving signup mail: reading messages (MIME) and the mailboxes they
//! come from (IMAP, Maildir).

pub mod imap;
pub mod maildir;
pub mod mime;
mod names;
pub(crate) mod tls;

use kxca_ca::{Clock, Store};

use crate::MailConfig;
use serde::Serialize;

use crate::receive::{Received, Receiver};
use crate::Error;

/// What one fetch pass did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct FetchSummary {
    /// Mails read and recorded this pass.
    pub processed: usize,
    /// Application forms recorded.
    pub applications: usize,
    /// Mails already recorded (same Message-ID).
    pub duplicate_mails: usize,
    /// Attached forms already recorded (same SHA-256).
    pub duplicate_files: usize,
    /// Mails refused whole (over a bound, unreadable twice).
    pub rejected: usize,
    /// Recorded but not answered (automatic mail, bounces, over the
    /// per-sender limit).
    pub not_answered: usize,
    /// Recorded in an earlier pass that did not finish moving them.
    pub already_processed: usize,
    /// Left in the mailbox after a failed read, for the next pass.
    pub deferred: usize,
}

impl FetchSummary {
    fn count(&mut self, r: &Received) {
        match r {
            Received::AlreadyProcessed | Received::AlreadyRejected => self.already_processed += 1,
            Received::Processed {
                applications,
                duplicates,
                not_answered,
                ..
            } => {
                self.processed += 1;
                self.not_answered += usize::from(not_answered.is_some());
                self.applications += applications.len();
                self.duplicate_files += duplicates;
            }
            Received::DuplicateMail { .. } => self.duplicate_mails += 1,
            Received::Rejected { .. } => self.rejected += 1,
            Received::Deferred { .. } => self.deferred += 1,
        }
    }
}

/// Where a mail goes after it is received.
pub(crate) enum Destination {
    /// The processed folder (Maildir `cur/`).
    Processed,
    /// The rejected folder.
    Rejected,
    /// Nowhere yet: read again at the next pass.
    Stay,
}

impl Destination {
    pub(crate) fn of(r: &Received) -> Destination {
        match r {
            Received::Rejected { .. } | Received::AlreadyRejected => Destination::Rejected,
            Received::Deferred { .. } => Destination::Stay,
            _ => Destination::Processed,
        }
    }
}

/// One pass over the configured signup mailbox (IMAP or Maildir).
pub async fn fetch_once(
    config: &MailConfig,
    store: &mut Store,
    receiver: &Receiver<'_>,
    clock: &Clock,
) -> Result<FetchSummary, Error> {
    match (&config.imap, &config.maildir) {
        (Some(imap), None) => imap::fetch(imap, store, receiver, clock).await,
        (None, Some(dir)) => maildir::fetch(dir, store, receiver, clock),
        (Some(_), Some(_)) => Err(Error::Config(
            "set either [mail.imap] or mail.maildir, not both".into(),
        )),
        (None, None) => Err(Error::Config(
            "no mailbox: set [mail.imap] or mail.maildir".into(),
        )),
    }
}

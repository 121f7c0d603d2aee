//! One intake pass: fetch the signup mailbox, check the forms against the
//! intake policy, then send the due outbox mail. Shared by
//! `kxca intake fetch` and the mail schedule of `kxca daemon`, so the CLI
//! and the schedule can never disagree about what a pass does.

use kxca_ca::{Ca, Clock, Home};

use crate::forms::IntakeChecker;
use crate::intake::IntakePolicy;
use crate::mail::mime::Limits;
use crate::{outbox, FetchSummary, MailConfig, Receiver};

/// Why a pass could not run or stopped. The messages are those the CLI
/// has always printed (each wrapped cause follows as the error's source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PassError {
    /// kxca.toml has no `[mail]`: nothing to fetch.
    #[error("no [mail] section in kxca.toml (see provisioner/MAIL.md)")]
    NoMailSection,
    /// A mail password is not set or not readable.
    #[error("mail password")]
    Secret(#[source] kxca_hsm::Error),
    /// The pass's own runtime could not start.
    #[error("starting the async runtime")]
    Runtime(#[source] std::io::Error),
    /// The parsing worker's executable could not be found.
    #[error("locating the kxca executable for the parsing worker")]
    Worker(#[source] std::io::Error),
    /// The office register could not be read.
    #[error(transparent)]
    Office(#[from] crate::intake::OfficeError),
    /// Fetching or sending failed.
    #[error(transparent)]
    Mail(#[from] crate::Error),
    /// The CA home or its store failed.
    #[error(transparent)]
    Ca(#[from] kxca_ca::Error),
}

/// What one pass over the signup mailbox did: the fetch, then the send
/// (`None` when sending was not asked for or no `[mail.smtp]` is set).
pub struct Pass {
    /// What reading the mailbox did.
    pub fetch: FetchSummary,
    /// What sending the due outbox mail did.
    pub send: Option<outbox::SendSummary>,
}

impl Pass {
    /// Nothing fetched and nothing sent or due: not worth a log line at
    /// info every interval.
    pub fn is_idle(&self) -> bool {
        self.fetch.processed == 0
            && self.fetch.already_processed == 0
            && self.fetch.rejected == 0
            && self.fetch.deferred == 0
            && self
                .send
                .as_ref()
                .is_none_or(|s| s.sent == 0 && s.retrying == 0 && s.failed == 0)
    }

    /// One line for a human or a log.
    pub fn describe(&self) -> String {
        let f = &self.fetch;
        let mut line = format!(
            "fetched: {} processed, {} application(s), {} duplicate mail(s), {} duplicate file(s), {} rejected, {} finished from an earlier pass, {} not answered, {} left for the next pass",
            f.processed,
            f.applications,
            f.duplicate_mails,
            f.duplicate_files,
            f.rejected,
            f.already_processed,
            f.not_answered,
            f.deferred
        );
        if let Some(s) = &self.send {
            line.push_str(&format!(
                "; sent: {} sent, {} to retry, {} failed",
                s.sent, s.retrying, s.failed
            ));
        }
        line
    }
}

/// A single-threaded runtime for one pass or one send: lettre's connection
/// pool closes its connections on drop by spawning on the Tokio runtime,
/// so a sender must be made and dropped inside the runtime it uses.
pub fn runtime() -> Result<tokio::runtime::Runtime, PassError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(PassError::Runtime)
}

/// One pass over the signup mailbox of the CA at `home`, as `mail` (the
/// home's `[mail]`) says, forms checked against `policy` in worker
/// processes, then the due replies sent (unless `no_send`). It builds its own single-threaded runtime, so call it from a
/// plain thread, never from async code.
pub fn run(
    home: Home,
    mail: Option<&MailConfig>,
    policy: IntakePolicy,
    no_send: bool,
    actor: &str,
) -> Result<Pass, PassError> {
    let mut ca = Ca::open(home, Clock::system())?;
    crate::migrate(ca.store_mut())?;
    let config = mail.ok_or(PassError::NoMailSection)?;
    config.check_secrets().map_err(PassError::Secret)?;
    let rt = runtime()?;
    let _in_runtime = rt.enter();
    let sender = match (&config.smtp, no_send) {
        (Some(smtp), false) => Some(outbox::Sender::new(smtp)?),
        _ => None,
    };
    let reply_domain = sender
        .as_ref()
        .map(|s| s.domain())
        .or_else(|| {
            config
                .smtp
                .as_ref()
                .and_then(|s| s.from.rsplit('@').next().map(str::to_string))
        })
        .unwrap_or_else(|| "kxca.invalid".to_string());
    // Every mail and attached file is parsed by a worker process.
    let sandbox = crate::sandbox::Sandbox::current(policy.sandbox).map_err(PassError::Worker)?;
    let replies = policy.replies.clone();
    let checker = IntakeChecker::for_policy(policy, ca.store_mut())?.contained(sandbox.clone());
    let receiver = Receiver {
        checker: &checker,
        limits: Limits {
            max_message_bytes: config.max_message_bytes,
            max_depth: config.max_mime_depth,
            max_parts: config.max_mime_parts,
        },
        reply_domain,
        actor: actor.to_string(),
        sandbox: Some(sandbox),
        replies,
    };
    let clock = ca.clock().clone();
    let fetch = rt.block_on(crate::fetch_once(config, ca.store_mut(), &receiver, &clock))?;
    let send = match &sender {
        Some(s) => Some(rt.block_on(outbox::run_once(ca.store_mut(), s, &clock, actor))?),
        None => None,
    };
    Ok(Pass { fetch, send })
}

//! The mail side of `kxca daemon`: one intake pass (fetch the signup
//! mailbox, then send the due outbox mail) every `[mail] interval_seconds`.
//!
//! A pass is `kxca_provisioner::pass::run`, the same code as
//! `kxca intake fetch`, so the schedule and the
//! CLI can never disagree about what a pass does. It runs on its own OS
//! thread because a pass drives its own single-threaded runtime (lettre's
//! pool must be dropped inside the runtime that made it), which cannot be
//! nested in the daemon's runtime. A failed pass is logged and retried at
//! the next interval: a mail server that is down must not stop the signing.
//! `kxca serve`, the process the network reaches, never runs it.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use kxca_ca::Home;
use kxca_provisioner::MailConfig;
use tokio::sync::{oneshot, watch};

/// How often the thread looks at the shutdown flag while it waits.
const STOP_POLL: Duration = Duration::from_millis(200);

/// Starts the schedule when `[mail]` is configured with a non-zero
/// interval. The returned receiver resolves when the thread has ended
/// (after `stop` is raised and the pass in progress has finished); it
/// fails if the thread panicked.
pub fn start(
    home: Home,
    mail: Option<MailConfig>,
    actor: &str,
    stop: watch::Receiver<bool>,
) -> Result<Option<oneshot::Receiver<()>>> {
    let Some(mail) = mail else {
        tracing::info!("no [mail] section in kxca.toml: the mail schedule is off");
        return Ok(None);
    };
    if mail.interval_seconds == 0 {
        tracing::info!("[mail] interval_seconds = 0: the mail schedule is off");
        return Ok(None);
    }
    // A missing IMAP/SMTP password stops the daemon at start, named as a
    // mail password, rather than failing the first pass minutes later.
    mail.check_secrets().context("mail password")?;
    // Loaded once: a broken policy stops `kxca daemon` at start, with the
    // file named, rather than failing every pass later.
    let policy = crate::intake::policy(&Some(home.root().into()), &None)?;
    let interval = Duration::from_secs(mail.interval_seconds);
    let actor = actor.to_string();
    let (done_tx, done_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("mail-schedule".into())
        .spawn(move || {
            tracing::info!(
                interval_seconds = interval.as_secs(),
                "mail schedule started"
            );
            while !*stop.borrow() {
                let started = Instant::now();
                // Files and mail are parsed in worker processes; a panic
                // left in this process's own intake code still ends here,
                // as one failed pass, not as the end of the responder.
                let pass = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    // Read again each pass, as the CA's sections are: an
                    // edited [mail] applies from the next pass.
                    let config = crate::config::KxcaToml::load(&home.config())?;
                    kxca_provisioner::pass::run(
                        home.clone(),
                        config.mail.as_ref(),
                        policy.clone(),
                        false,
                        &actor,
                    )
                    .map_err(anyhow::Error::from)
                }))
                .unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    Err(anyhow::anyhow!("the mail pass panicked: {what}"))
                });
                match pass {
                    Ok(pass) if pass.is_idle() => tracing::debug!(
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "mail pass: nothing to do"
                    ),
                    Ok(pass) => tracing::info!(
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "mail pass: {}",
                        pass.describe()
                    ),
                    Err(e) => tracing::warn!(
                        error = format!("{e:#}"),
                        retry_in_seconds = interval.as_secs(),
                        "mail pass failed"
                    ),
                }
                while !*stop.borrow() && started.elapsed() < interval {
                    std::thread::sleep(STOP_POLL.min(interval.saturating_sub(started.elapsed())));
                }
            }
            tracing::info!("mail schedule stopped");
            let _ = done_tx.send(());
        })?;
    Ok(Some(done_rx))
}

//! `kxca daemon`: the private role, in the foreground for an init system to
//! supervise. The only long-running holder of the CA keys: the maintainer
//! signs CRLs after revocations and before nextUpdate, renews the OCSP
//! responder certificate and pre-signs answers into the store, where
//! `kxca serve` (the public role) reads them. With `[mail]` it also runs the
//! mail intake schedule (src/mail_schedule.rs), so that the process the
//! network reaches never parses mail. It opens no listening socket.

use std::time::Duration;

use anyhow::Result;
use kxca_ca::ocsp::Maintainer;
use kxca_ca::{Ca, Clock, Home};
use tokio::sync::watch;

use crate::config::KxcaToml;
use crate::supervise::{StopSignal, Tasks};

/// How often the maintainer looks at the store: a revocation by the CLI is
/// signed (CRL and OCSP answer) within about this time.
const TICK: Duration = Duration::from_secs(1);

/// How long a stop waits for a signing pass or a mail pass in progress.
const GRACE: Duration = Duration::from_secs(30);

/// `config`: the home's kxca.toml, as loaded before the command ran.
pub fn run(home: Home, config: KxcaToml, actor: &str) -> Result<()> {
    let ca = Ca::open(home.clone(), Clock::system())?;
    // Brings everything up to date before saying it is ready: responder
    // certificates, pre-signed answers, CRLs.
    // What it signs on its own (CRLs, answers, responder certificates) is
    // the daemon's act in the audit trail, not the act of whoever started it.
    let mut maintainer = Maintainer::start(ca, "kxca-daemon")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    runtime.block_on(async move {
        // Configuration changes are recorded before the daemon says it is ready.
        let checkpoints =
            crate::audit::start_checkpoints(&home, &config.ca, actor, stop_rx.clone())?;
        let mail = crate::mail_schedule::start(home, config.mail, actor, stop_rx.clone())?;
        // Before "ready": a stop sent right after it must be a clean stop.
        let signal = StopSignal::install();
        println!("kxca daemon ready");
        tracing::info!("kxca daemon started");
        let mut tasks = Tasks::new();
        if let Some(checkpoints) = checkpoints {
            tasks.spawn_blocking(checkpoints);
        }
        let maint_stop = stop_rx.clone();
        tasks.spawn_blocking(move || {
            while !*maint_stop.borrow() {
                if let Err(e) = maintainer.tick() {
                    tracing::warn!(error = %e, "signing pass failed; retrying");
                }
                std::thread::sleep(TICK);
            }
            Ok("maintainer")
        });
        if let Some(done) = mail {
            tasks.spawn(async move {
                done.await
                    .map_err(|_| anyhow::anyhow!("the mail schedule thread panicked"))?;
                Ok("mail schedule")
            });
        }
        crate::supervise::until_stopped("kxca daemon", signal, tasks, stop_tx, GRACE).await
    })
}

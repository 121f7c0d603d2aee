//! `kxca daemon`: the private role, in the foreground for an init system to
//! supervise. The only long-running holder of the CA keys: the maintainer
//! signs CRLs after revocations and before nextUpdate, renews the OCSP
//! responder certificate and pre-signs answers into the store, where
//! `kxca serve` (the public role) reads them. With `[mail]` it also runs the
//! mail intake schedule (src/mail_schedule.rs), so that the process the
//! network reaches never parses mail. It opens no listening socket.

use std::time::Duration;

use anyhow::{bail, Result};
use kxca_ca::ocsp::Maintainer;
use kxca_ca::{Ca, Clock, Home};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::serve::signal;

/// How often the maintainer looks at the store: a revocation by the CLI is
/// signed (CRL and OCSP answer) within about this time.
const TICK: Duration = Duration::from_secs(1);

/// How long a stop waits for a signing pass or a mail pass in progress.
const GRACE: Duration = Duration::from_secs(30);

pub fn run(home: Home, actor: &str) -> Result<()> {
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
        let checkpoints = crate::audit::start_checkpoints(&home, actor, stop_rx.clone())?;
        let mail = crate::mail_schedule::start(home, actor, stop_rx.clone())?;
        println!("kxca daemon ready");
        tracing::info!("kxca daemon started");
        let mut tasks: JoinSet<Result<&'static str>> = JoinSet::new();
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
        let early = tokio::select! {
            _ = signal() => None,
            done = tasks.join_next() => done,
        };
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(GRACE, async {
            while let Some(r) = tasks.join_next().await {
                if let Ok(Err(e)) = r {
                    tracing::warn!(error = %e, "task ended with an error during shutdown");
                }
            }
        })
        .await;
        if drained.is_err() {
            tasks.abort_all();
        }
        match early {
            Some(Ok(Ok(name))) => bail!("{name} task stopped unexpectedly"),
            Some(Ok(Err(e))) => Err(e),
            Some(Err(e)) => bail!("a task panicked: {e}"),
            None => {
                tracing::info!("kxca daemon stopped");
                Ok(())
            }
        }
    })
}

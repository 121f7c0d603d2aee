//! What both long-running roles share: the stop signal and the shutdown of
//! their tasks. `kxca serve` and `kxca daemon` each run their work as tasks
//! of one JoinSet; the first of SIGTERM, Ctrl-C or a task ending stops them
//! all, with a grace period for work in progress.

use std::time::Duration;

use anyhow::{bail, Result};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The roles' tasks: each names itself when it ends.
pub type Tasks = JoinSet<Result<&'static str>>;

/// SIGTERM and Ctrl-C, listened for from the moment this is made: a stop
/// sent right after a role says it is ready is not lost (nor fatal).
pub struct StopSignal {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl StopSignal {
    /// Installs the handlers; call inside the runtime, before saying ready.
    pub fn install() -> StopSignal {
        StopSignal {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok(),
        }
    }

    async fn received(&mut self) {
        #[cfg(unix)]
        if let Some(term) = self.term.as_mut() {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Resolves when the shutdown flag is raised.
pub async fn raised(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Runs until a stop signal or until a task ends (which is an error: each
/// task is meant to run until the flag is raised), then raises the flag and
/// waits up to `grace` for the others.
pub async fn until_stopped(
    role: &str,
    mut signal: StopSignal,
    mut tasks: Tasks,
    stop: watch::Sender<bool>,
    grace: Duration,
) -> Result<()> {
    let early = tokio::select! {
        _ = signal.received() => None,
        done = tasks.join_next() => done,
    };
    let _ = stop.send(true);
    let drained = tokio::time::timeout(grace, async {
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
            tracing::info!("{role} stopped");
            Ok(())
        }
    }
}

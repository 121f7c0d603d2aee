//! `kxca serve`: the revocation service in the foreground, for an init system
//! to supervise. Runs the HTTP listener and the store maintainer side by side
//! in one JoinSet sharing one shutdown signal, with the mail schedule
//! (src/mail_schedule.rs) when `[mail]` is configured.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use kxca_ca::ocsp::Maintainer;
use kxca_ca::{Ca, Clock, Home};
use tokio::sync::watch;
use tokio::task::JoinSet;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Listen address, overriding [serve] listen (port 0 picks a free port;
    /// the address actually bound is printed on stdout).
    #[arg(long)]
    pub listen: Option<String>,
}

/// Resolves when the shutdown flag is raised.
async fn raised(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

pub fn run(home: Home, args: ServeArgs, actor: &str) -> Result<()> {
    let ca = Ca::open(home.clone(), Clock::system())?;
    let config = ca.config().serve.clone();
    let listen = args.listen.unwrap_or_else(|| config.listen.clone());
    let grace = Duration::from_secs(u64::from(config.shutdown_grace_seconds));
    let (engine, mut maintainer) = Maintainer::start(ca)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.worker_threads())
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("cannot listen on {listen} ([serve] listen / --listen)"))?;
        let addr = listener.local_addr()?;
        // After the bind, so that a taken port leaves no mail thread behind.
        let mail = crate::mail_schedule::start(home, actor, stop_rx.clone())?;
        println!("listening on http://{addr}");
        tracing::info!(%addr, "kxca serve started");
        let mut tasks: JoinSet<Result<&'static str>> = JoinSet::new();
        let http_stop = raised(stop_rx.clone());
        tasks.spawn(async move {
            kxca_ca::http::serve(engine, listener, config, http_stop).await?;
            Ok("http")
        });
        let maint_stop = stop_rx.clone();
        tasks.spawn_blocking(move || {
            // Polls the store about once a second: a revocation by the CLI
            // (another process) shows up here within that time.
            while !*maint_stop.borrow() {
                if let Err(e) = maintainer.tick() {
                    tracing::warn!(error = %e, "revocation service maintenance failed; retrying");
                }
                std::thread::sleep(Duration::from_secs(1));
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
                tracing::info!("kxca serve stopped");
                Ok(())
            }
        }
    })
}

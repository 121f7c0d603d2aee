//! `kxca serve`: the public role, in the foreground for an init system to
//! supervise. Runs the HTTP listener and the store publisher side by side in
//! one JoinSet sharing one shutdown signal. It holds no CA key (the
//! publisher opens only the delegated responder key) and parses no mail:
//! signing and the mail schedule are `kxca daemon`'s (src/daemon.rs).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use kxca_ca::{Clock, Config, Home};
use kxca_responder::Publisher;
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

pub(crate) async fn signal() {
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

pub fn run(home: Home, args: ServeArgs) -> Result<()> {
    let config = Config::load(&home.config())?.serve;
    let listen = args.listen.unwrap_or_else(|| config.listen.clone());
    let grace = Duration::from_secs(u64::from(config.shutdown_grace_seconds));
    let (engine, mut publisher) = Publisher::start(home, Clock::system())?;
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
        println!("listening on http://{addr}");
        tracing::info!(%addr, "kxca serve started");
        let mut tasks: JoinSet<Result<&'static str>> = JoinSet::new();
        let http_stop = raised(stop_rx.clone());
        tasks.spawn(async move {
            kxca_responder::serve(engine, listener, config, http_stop).await?;
            Ok("http")
        });
        let pub_stop = stop_rx.clone();
        tasks.spawn_blocking(move || {
            // Polls the store about once a second: what the daemon signed
            // (another process) is served within that time.
            while !*pub_stop.borrow() {
                if let Err(e) = publisher.tick() {
                    tracing::warn!(error = %e, "reading the store failed; retrying");
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            Ok("publisher")
        });
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

//! `kxca serve`: the public role, in the foreground for an init system to
//! supervise. Runs the HTTP listener and the store publisher side by side in
//! one JoinSet sharing one shutdown signal. It holds no CA key (the
//! publisher opens only the delegated responder key) and parses no mail:
//! signing and the mail schedule are `kxca daemon`'s (src/daemon.rs).

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use kxca_ca::{Clock, Home};
use kxca_responder::{Publisher, ServeConfig};
use tokio::sync::watch;

use crate::supervise::{StopSignal, Tasks};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Listen address, overriding [serve] listen (port 0 picks a free port;
    /// the address actually bound is printed on stdout).
    #[arg(long)]
    pub listen: Option<String>,
}

pub fn run(home: Home, config: ServeConfig, args: ServeArgs) -> Result<()> {
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
        let signal = StopSignal::install();
        println!("listening on http://{addr}");
        tracing::info!(%addr, "kxca serve started");
        let mut tasks = Tasks::new();
        let http_stop = crate::supervise::raised(stop_rx.clone());
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
        crate::supervise::until_stopped("kxca serve", signal, tasks, stop_tx, grace).await
    })
}

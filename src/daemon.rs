//! `kxca daemon`: the private role, in the foreground for an init system to
//! supervise. The only long-running holder of the CA keys: the maintainer
//! signs CRLs after revocations and before nextUpdate, renews the OCSP
//! responder certificate and pre-signs answers into the store, where
//! `kxca serve` (the public role) reads them. With `[mail]` it also runs the
//! mail intake schedule (src/mail_schedule.rs), so that the process the
//! network reaches never parses mail. It signs the keys office contacts
//! picked up on the public role's `/pickup` page. It opens no listening
//! socket, except the admin console's (kxca-console) when kxca.toml has
//! `[console]`: loopback, or any address with `[console.tls]`.

use std::time::Duration;

use anyhow::Result;
use kxca_ca::enrolment::{pickup, PickupPolicy};
use kxca_ca::ocsp::Maintainer;
use kxca_ca::{Ca, Clock, Home};
use tokio::sync::watch;

use crate::config::KxcaToml;
use crate::supervise::{StopSignal, Tasks};

/// How often the maintainer looks at the store: a revocation by the CLI is
/// signed (CRL and OCSP answer) within about this time.
const TICK: Duration = Duration::from_secs(1);

/// How often the store is asked for picked-up keys to sign: the contact
/// waits on the pickup page meanwhile.
const PICKUP_POLL: Duration = Duration::from_millis(100);

/// How long a stop waits for a signing pass or a mail pass in progress.
const GRACE: Duration = Duration::from_secs(30);

/// The console's `[console]` with `public_url` resolved: as given, else
/// from the rest of the file ([`default_public_url`]).
fn with_public_url(
    c: &kxca_console::ConsoleConfig,
    config: &KxcaToml,
) -> kxca_console::ConsoleConfig {
    let mut c = c.clone();
    if c.public_url.is_none() {
        c.public_url = default_public_url(&config.serve.listen, &config.ca.publication.ocsp_url);
    }
    c
}

/// Where the public role of this home answers: the `[serve]` listen
/// address (an unspecified address asked on loopback), else the origin of
/// `[publication] ocsp_url` when it is plain http. None: the console says
/// it has nowhere to ask, rather than refusing to start.
fn default_public_url(listen: &str, ocsp_url: &str) -> Option<String> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
    if let Ok(mut addr) = listen.parse::<SocketAddr>() {
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            });
        }
        return Some(format!("http://{addr}"));
    }
    if !listen.is_empty() && listen.contains(':') && !listen.contains('/') {
        return Some(format!("http://{listen}"));
    }
    let rest = ocsp_url.strip_prefix("http://")?;
    let host = rest.split('/').next().filter(|h| !h.is_empty())?;
    Some(format!("http://{host}"))
}

/// `config`: the home's kxca.toml, as loaded before the command ran.
pub fn run(home: Home, config: KxcaToml, actor: &str) -> Result<()> {
    let ca = Ca::open(home.clone(), Clock::system())?;
    // Brings everything up to date before saying it is ready: responder
    // certificates, pre-signed answers, CRLs.
    // What it signs on its own (CRLs, answers, responder certificates) is
    // the daemon's act in the audit trail, not the act of whoever started it.
    let mut maintainer = Maintainer::start(ca, "kxca-daemon")?;
    // Its own CA (store connection and issuing signer): a pickup is signed
    // within PICKUP_POLL instead of waiting for the maintainer's tick.
    let mut pickup_ca = Ca::open(home.clone(), Clock::system())?;
    let pickup_policy = PickupPolicy::load(&home.policies())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    // Its own store connection; loaded before "ready" so a broken policy
    // or console key stops the start, naming the file.
    let console = match &config.console {
        Some(c) => Some(kxca_console::Console::open(
            &home,
            with_public_url(c, &config),
            crate::intake::policy(&Some(home.root().into()), &None)?,
            config.mail.clone(),
        )?),
        None => None,
    };
    runtime.block_on(async move {
        let console = match console {
            Some(c) => Some(kxca_console::bind(c).await?),
            None => None,
        };
        // Configuration changes are recorded before the daemon says it is ready.
        let checkpoints =
            crate::audit::start_checkpoints(&home, &config.ca, actor, stop_rx.clone())?;
        let mail = crate::mail_schedule::start(home, config.mail, actor, stop_rx.clone())?;
        // Before "ready": a stop sent right after it must be a clean stop.
        let signal = StopSignal::install();
        if let Some((listener, addr, _)) = &console {
            println!("kxca console listening on {}://{addr}/", listener.scheme());
        }
        println!("kxca daemon ready");
        tracing::info!("kxca daemon started");
        let mut tasks = Tasks::new();
        if let Some(checkpoints) = checkpoints {
            tasks.spawn_blocking(checkpoints);
        }
        let pickup_stop = stop_rx.clone();
        tasks.spawn_blocking(move || {
            while !*pickup_stop.borrow() {
                match pickup_ca.store().read(pickup::any_pending) {
                    Ok(false) => {}
                    Ok(true) => {
                        if let Err(e) =
                            pickup::sign_pending(&mut pickup_ca, &pickup_policy, "kxca-daemon")
                        {
                            tracing::warn!(error = %e, "signing picked-up keys failed; retrying");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reading pickup requests failed; retrying")
                    }
                }
                std::thread::sleep(PICKUP_POLL);
            }
            Ok("pickup signer")
        });
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
        if let Some((listener, _, app)) = console {
            let mut console_stop = stop_rx.clone();
            tasks.spawn(async move {
                kxca_console::serve(listener, app, async move {
                    let _ = console_stop.wait_for(|s| *s).await;
                })
                .await?;
                Ok("admin console")
            });
        }
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

#[cfg(test)]
mod public_url_tests {
    use super::default_public_url as d;

    #[test]
    fn the_serve_listener_first_then_a_plain_http_ocsp_origin() {
        assert_eq!(
            d("127.0.0.1:8080", "http://x/ocsp").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(d("0.0.0.0:80", "").as_deref(), Some("http://127.0.0.1:80"));
        assert_eq!(d("[::]:8080", "").as_deref(), Some("http://[::1]:8080"));
        assert_eq!(
            d("ca-host:8080", "").as_deref(),
            Some("http://ca-host:8080")
        );
        assert_eq!(
            d("", "http://kx-ca.example.jp/ocsp").as_deref(),
            Some("http://kx-ca.example.jp")
        );
        assert_eq!(d("", "https://kx-ca.example.jp/ocsp"), None);
    }
}

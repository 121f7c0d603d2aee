//! The signup mailbox over IMAP (IMAPS or STARTTLS).
//!
//! Each message in the mailbox is keyed by (user, mailbox, UIDVALIDITY,
//! UID). It is received (recorded in the store in one transaction) and only
//! then moved to the processed folder. A message still in the mailbox whose
//! key is already recorded was processed before a crash or a lost
//! connection: it is only moved. Nothing is read twice, nothing skipped.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use futures_util::TryStreamExt;
use kxca_ca::{Clock, Store};

use crate::{ImapConfig, TlsMode};
use rustls_pki_types::ServerName;
use secrecy::ExposeSecret;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::{Destination, FetchSummary};
use crate::receive::Receiver;
use crate::Error;

type Session = async_imap::Session<TlsStream<TcpStream>>;

/// A server that stops answering (a hung process, a half-open connection)
/// must end the pass with an error naming it, not hang it: every network
/// step gets `[mail.imap] timeout_seconds`.
async fn within<T, E: Display>(
    limit: Duration,
    what: &str,
    step: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, step).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {} s", limit.as_secs())),
    }
}

fn limit(config: &ImapConfig) -> Duration {
    Duration::from_secs(config.timeout_seconds.max(1))
}

/// One pass over the IMAP mailbox: every message read, recorded by
/// `receiver`, then moved to the processed or rejected folder.
pub async fn fetch(
    config: &ImapConfig,
    store: &mut Store,
    receiver: &Receiver<'_>,
    clock: &Clock,
) -> Result<FetchSummary, Error> {
    let server = format!("{}:{}", config.host, config.port);
    let err = |message: String| Error::Imap {
        server: server.clone(),
        message,
    };
    let mut session = connect(config).await?;
    // Creating an existing folder fails harmlessly; a real failure shows at MOVE.
    let _ = tokio::time::timeout(limit(config), session.create(&config.processed_folder)).await;
    let _ = tokio::time::timeout(limit(config), session.create(&config.rejected_folder)).await;
    let mailbox = within(
        limit(config),
        &format!("SELECT {}", config.mailbox),
        session.select(&config.mailbox),
    )
    .await
    .map_err(&err)?;
    let uidvalidity = mailbox.uid_validity.unwrap_or(0);
    let mut uids: Vec<u32> = within(limit(config), "UID SEARCH", session.uid_search("ALL"))
        .await
        .map_err(&err)?
        .into_iter()
        .collect();
    uids.sort_unstable();
    let mut summary = FetchSummary::default();
    for uid in uids {
        let key = format!(
            "imap:{}:{}:{}:{}",
            config.user, config.mailbox, uidvalidity, uid
        );
        let size = within(
            limit(config),
            &format!("UID FETCH {uid} RFC822.SIZE"),
            fetch_one(&mut session, uid, "RFC822.SIZE"),
        )
        .await
        .map_err(&err)?
        .and_then(|f| f.size)
        .unwrap_or(0) as usize;
        let outcome = if size > receiver.limits.max_message_bytes {
            // Only the header is fetched, to tell whom to answer.
            let head = within(
                limit(config),
                &format!("UID FETCH {uid} BODY.PEEK[HEADER]"),
                fetch_one(&mut session, uid, "BODY.PEEK[HEADER]"),
            )
            .await
            .map_err(&err)?;
            let head = head.as_ref().and_then(|f| f.header());
            receiver.reject_too_large(store, &key, size, head, clock.now())?
        } else {
            let fetched = within(
                limit(config),
                &format!("UID FETCH {uid}"),
                fetch_one(&mut session, uid, "BODY.PEEK[]"),
            )
            .await
            .map_err(&err)?;
            let Some(raw) = fetched.as_ref().and_then(|f| f.body()) else {
                // Expunged by another client meanwhile, or the server went
                // away: async-imap ends the answer quietly on a closed
                // connection, and only the next command tells them apart.
                within(limit(config), "NOOP", session.noop())
                    .await
                    .map_err(&err)?;
                continue;
            };
            receiver.receive(store, &key, raw, clock.now())?
        };
        summary.count(&outcome);
        let folder = match Destination::of(&outcome) {
            Destination::Processed => &config.processed_folder,
            Destination::Rejected => &config.rejected_folder,
            Destination::Stay => continue,
        };
        // MOVE of a UID that is gone is a no-op, so repeating it is safe.
        within(
            limit(config),
            &format!("UID MOVE {uid} {folder}"),
            session.uid_mv(uid.to_string(), folder),
        )
        .await
        .map_err(&err)?;
        tracing::info!(uid, uidvalidity, folder, "message processed and moved");
    }
    let _ = tokio::time::timeout(limit(config), session.logout()).await;
    Ok(summary)
}

async fn fetch_one(
    session: &mut Session,
    uid: u32,
    what: &str,
) -> Result<Option<async_imap::types::Fetch>, async_imap::error::Error> {
    let stream = session.uid_fetch(uid.to_string(), what).await?;
    let all: Vec<async_imap::types::Fetch> = stream.try_collect().await?;
    Ok(all
        .into_iter()
        .find(|f| f.uid == Some(uid) || f.uid.is_none()))
}

async fn connect(config: &ImapConfig) -> Result<Session, Error> {
    let server = format!("{}:{}", config.host, config.port);
    let err = |message: String| Error::Imap {
        server: server.clone(),
        message,
    };
    let source = config.password_source()?;
    let password = source.read()?;
    let connector = super::tls::connector(config.ca_file.as_deref())?;
    let name =
        ServerName::try_from(config.host.clone()).map_err(|e| err(format!("server name: {e}")))?;
    let tcp = within(
        limit(config),
        "connect",
        TcpStream::connect((config.host.as_str(), config.port)),
    )
    .await
    .map_err(&err)?;
    let tls = match config.tls {
        TlsMode::Implicit => {
            let tls = within(limit(config), "TLS", connector.connect(name, tcp))
                .await
                .map_err(&err)?;
            let mut client = async_imap::Client::new(tls);
            greeting(&mut client, limit(config)).await.map_err(&err)?;
            client.into_inner()
        }
        TlsMode::Starttls => {
            let mut client = async_imap::Client::new(tcp);
            greeting(&mut client, limit(config)).await.map_err(&err)?;
            within(
                limit(config),
                "STARTTLS",
                client.run_command_and_check_ok("STARTTLS", None),
            )
            .await
            .map_err(&err)?;
            // No second greeting after STARTTLS (RFC 3501 6.2.1).
            let tcp = client.into_inner();
            within(
                limit(config),
                "TLS after STARTTLS",
                connector.connect(name, tcp),
            )
            .await
            .map_err(&err)?
        }
    };
    let client = async_imap::Client::new(tls);
    within(limit(config), &format!("LOGIN as {}", config.user), async {
        client
            .login(&config.user, password.expose_secret())
            .await
            .map_err(|(e, _)| e)
    })
    .await
    .map_err(err)
}

async fn greeting<T>(client: &mut async_imap::Client<T>, limit: Duration) -> Result<(), String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    match tokio::time::timeout(limit, client.read_response()).await {
        Ok(Ok(Some(_))) => Ok(()),
        Ok(Ok(None)) => Err("connection closed before the greeting".into()),
        Ok(Err(e)) => Err(format!("greeting: {e}")),
        Err(_) => Err(format!("greeting: no answer within {} s", limit.as_secs())),
    }
}

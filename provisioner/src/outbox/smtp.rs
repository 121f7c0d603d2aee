//! One SMTP submission connection, kept open across the mails of a pass.
//!
//! lettre's transport opens its own sockets and leaves Nagle's algorithm on.
//! Its DATA phase writes the message and the `\r\n.\r\n` terminator as two
//! writes, so the terminator waits for the server's delayed ACK of the body
//! (40–50 ms on Linux) before the server can answer 250: measured, every
//! mail cost ~50 ms against ~5 ms for Python's smtplib. Here the socket is
//! ours, with TCP_NODELAY, and lettre only speaks the protocol on it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// How the connection is secured, with what each way needs.
pub(super) enum Security {
    /// TLS from the first byte (port 465).
    Implicit(tokio_rustls::TlsConnector),
    /// STARTTLS, required: a server that does not offer it is refused.
    Starttls(TlsParameters),
}

/// Why a mail was not accepted: `permanent` when the server refused it for
/// good (5xx), so retrying is pointless.
pub(super) struct Failure {
    pub permanent: bool,
    pub message: String,
}

/// An SMTP submission client holding at most one open connection.
pub(super) struct Submission {
    host: String,
    port: u16,
    security: Security,
    credentials: Option<Credentials>,
    hello: ClientId,
    timeout: Duration,
    open: Mutex<Option<AsyncSmtpConnection>>,
}

impl Submission {
    pub fn new(
        host: String,
        port: u16,
        security: Security,
        credentials: Option<Credentials>,
        timeout: Duration,
    ) -> Submission {
        Submission {
            host,
            port,
            security,
            credentials,
            hello: ClientId::default(),
            timeout,
            open: Mutex::new(None),
        }
    }

    /// Sends one message, opening (or reopening) the connection as needed.
    /// A connection the server closed while idle is noticed before the
    /// mail is sent (NOOP), so it costs a reconnect, not a failed attempt.
    pub async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<(), Failure> {
        let mut open = self.open.lock().await;
        if let Some(conn) = open.as_mut() {
            if conn.has_broken() || !self.bounded(conn.test_connected()).await.unwrap_or(false) {
                *open = None;
            }
        }
        let conn = match open.take() {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        let mut conn = conn;
        match self.bounded(conn.send(envelope, message)).await {
            Ok(Ok(_)) => {
                *open = Some(conn);
                Ok(())
            }
            Ok(Err(e)) => {
                let permanent = e.is_permanent();
                // After a refusal of this mail (4xx/5xx answer) the session
                // is still sound; after anything else it is not.
                if (permanent || e.is_transient()) && !conn.has_broken() {
                    let _ = self
                        .bounded(conn.command(lettre::transport::smtp::commands::Rset))
                        .await;
                    *open = Some(conn);
                } else {
                    conn.abort().await;
                }
                Err(Failure {
                    permanent,
                    message: e.to_string(),
                })
            }
            Err(elapsed) => {
                conn.abort().await;
                Err(elapsed)
            }
        }
    }

    /// Ends the session politely (QUIT), if one is open.
    pub async fn close(&self) {
        if let Some(mut conn) = self.open.lock().await.take() {
            if self.bounded(conn.quit()).await.is_err() {
                conn.abort().await;
            }
        }
    }

    /// `f` within the configured timeout: a server that accepts and then
    /// falls silent must not hang the pass.
    async fn bounded<T>(&self, f: impl std::future::Future<Output = T>) -> Result<T, Failure> {
        tokio::time::timeout(self.timeout, f)
            .await
            .map_err(|_| Failure {
                permanent: false,
                message: format!("no answer within {} s", self.timeout.as_secs()),
            })
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, Failure> {
        let transient = |message: String| Failure {
            permanent: false,
            message,
        };
        let tcp = self
            .bounded(TcpStream::connect((self.host.as_str(), self.port)))
            .await?
            .map_err(|e| transient(format!("connection: {e}")))?;
        tcp.set_nodelay(true)
            .map_err(|e| transient(format!("TCP_NODELAY: {e}")))?;
        let smtp = |e: lettre::transport::smtp::Error| Failure {
            permanent: e.is_permanent(),
            message: e.to_string(),
        };
        let mut conn = match &self.security {
            Security::Implicit(connector) => {
                let name = rustls_pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| transient(format!("server name {:?}: {e}", self.host)))?;
                let tls = self
                    .bounded(connector.connect(name, tcp))
                    .await?
                    .map_err(|e| transient(format!("TLS: {e}")))?;
                self.bounded(AsyncSmtpConnection::connect_with_transport(
                    Box::new(Tls(tls)),
                    &self.hello,
                ))
                .await?
                .map_err(smtp)?
            }
            Security::Starttls(params) => {
                let mut conn = self
                    .bounded(AsyncSmtpConnection::connect_with_transport(
                        Box::new(tcp),
                        &self.hello,
                    ))
                    .await?
                    .map_err(smtp)?;
                if !conn.can_starttls() {
                    conn.abort().await;
                    return Err(transient(
                        "the server does not offer STARTTLS, which [mail.smtp] tls requires"
                            .to_string(),
                    ));
                }
                self.bounded(conn.starttls(params.clone(), &self.hello))
                    .await?
                    .map_err(smtp)?;
                conn
            }
        };
        if let Some(credentials) = &self.credentials {
            if let Err(e) = self
                .bounded(conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials))
                .await?
            {
                conn.abort().await;
                return Err(smtp(e));
            }
        }
        Ok(conn)
    }
}

/// Implicit TLS over our own socket: lettre takes any stream that can tell
/// its peer's address.
#[derive(Debug)]
struct Tls(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncTokioStream for Tls {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for Tls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

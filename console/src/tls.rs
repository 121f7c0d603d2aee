//! The console's TLS: the server certificate and key from kxca's own CA
//! (`kxca admin tls-cert`, files under the home), checked before the daemon
//! says it is ready; optional client certificates verified against kxca's
//! issuing CAs (the second factor of admins whose factor is `certificate`);
//! and a listener that does each handshake in its own task, under a
//! timeout, so a slow or silent client cannot stall the accepts.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use kxca_ca::{AuthorityRole, Ca, Error, Home};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;

use crate::ConsoleTls;

/// How long a client has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where `kxca admin tls-cert` writes the chain (leaf, issuing CA), home-relative.
pub const DEFAULT_CERT: &str = "console/tls/server-chain.pem";
/// Where `kxca admin tls-cert` writes the key (PKCS#8 PEM, 0600), home-relative.
pub const DEFAULT_KEY: &str = "console/tls/server.key";

/// A loaded, checked TLS setup.
pub struct TlsSetup {
    acceptor: TlsAcceptor,
    /// The DNS names of the server certificate: the Host names the console answers.
    pub names: Vec<String>,
    /// Its IP addresses (also accepted as Host).
    pub ips: Vec<IpAddr>,
    /// notAfter of the server certificate, Unix seconds.
    pub not_after: i64,
}

impl std::fmt::Debug for TlsSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSetup")
            .field("names", &self.names)
            .field("ips", &self.ips)
            .finish_non_exhaustive()
    }
}

/// A path from kxca.toml: relative ones are under the home.
pub fn resolve(home: &Home, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        home.root().join(p)
    }
}

fn bad(path: &Path, message: String) -> Error {
    Error::Config {
        path: path.to_path_buf(),
        message,
    }
}

/// The SHA-256 of a certificate's DER, lower-case hex: how the admin row
/// names their certificate.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Reads and checks `[console.tls]`: the files exist, the key is 0600 and
/// matches the leaf, the leaf is valid now and is a serverAuth certificate
/// of this CA. Each refusal names the file and says what to run.
pub fn load(home: &Home, tls: &ConsoleTls, ca: &Ca, now: i64) -> Result<TlsSetup, Error> {
    use std::os::unix::fs::PermissionsExt;
    let cert_path = resolve(home, &tls.cert);
    let key_path = resolve(home, &tls.key);
    let renew = "run `kxca admin tls-cert --dns NAME` (docs/CONSOLE.md)";
    for p in [&cert_path, &key_path] {
        if !p.exists() {
            return Err(bad(
                p,
                format!("[console.tls]: the file is missing; {renew}"),
            ));
        }
    }
    let mode = std::fs::metadata(&key_path)
        .map_err(|source| Error::Io {
            path: key_path.clone(),
            source,
        })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(bad(
            &key_path,
            format!(
                "[console.tls] key: mode {:o}; the console's TLS key must be readable by its owner only (chmod 600)",
                mode & 0o777
            ),
        ));
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            bad(
                &cert_path,
                format!("[console.tls] cert: not a PEM certificate chain ({e})"),
            )
        })?;
    let Some(leaf) = chain.first() else {
        return Err(bad(
            &cert_path,
            "[console.tls] cert: no certificate in the file".to_string(),
        ));
    };
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| {
        bad(
            &key_path,
            format!("[console.tls] key: not a PEM private key ({e})"),
        )
    })?;
    let parsed = <x509_cert::Certificate as der::Decode>::from_der(leaf.as_ref()).map_err(|e| {
        bad(
            &cert_path,
            format!("[console.tls] cert: unreadable certificate ({e})"),
        )
    })?;
    let validity = parsed.tbs_certificate().validity();
    let not_before = validity.not_before.to_unix_duration().as_secs() as i64;
    let not_after = validity.not_after.to_unix_duration().as_secs() as i64;
    if not_after <= now {
        return Err(bad(
            &cert_path,
            format!(
                "[console.tls] cert: the certificate expired at {}; {renew}",
                kxca_ca::rfc3339(not_after)
            ),
        ));
    }
    if not_before > now {
        return Err(bad(
            &cert_path,
            format!(
                "[console.tls] cert: the certificate is not valid before {} (check the clock)",
                kxca_ca::rfc3339(not_before)
            ),
        ));
    }
    // Only a certificate this CA issued and has not revoked: a stray file
    // copied from elsewhere is refused, and so is one an officer revoked.
    let serial = hex::encode(parsed.tbs_certificate().serial_number().as_bytes());
    let record = match serial.parse::<kxca_ca::Serial>() {
        Ok(s) => match ca.certificate(&s) {
            Ok(r) => Some(r),
            Err(Error::UnknownSerial { .. }) => None,
            Err(e) => return Err(e),
        },
        Err(_) => None,
    };
    match record {
        Some(r) if r.der.as_deref() == Some(leaf.as_ref()) => {
            if r.revocation.is_some() {
                return Err(bad(
                    &cert_path,
                    format!("[console.tls] cert: serial {serial} is revoked; {renew}"),
                ));
            }
        }
        _ => {
            return Err(bad(
                &cert_path,
                format!(
                    "[console.tls] cert: serial {serial} was not issued by this kxca (the console's certificate comes from its own CA); {renew}"
                ),
            ))
        }
    }
    let mut names = Vec::new();
    let mut ips = Vec::new();
    if let Ok(Some((_, SubjectAltName(san)))) =
        parsed.tbs_certificate().get_extension::<SubjectAltName>()
    {
        for n in san {
            match n {
                GeneralName::DnsName(d) => names.push(d.to_string().to_ascii_lowercase()),
                GeneralName::IpAddress(o) => match o.as_bytes().len() {
                    4 => {
                        let b: [u8; 4] = o.as_bytes().try_into().unwrap_or([0; 4]);
                        ips.push(IpAddr::from(b));
                    }
                    16 => {
                        let b: [u8; 16] = o.as_bytes().try_into().unwrap_or([0; 16]);
                        ips.push(IpAddr::from(b));
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for a in ca.authorities()? {
        if a.role == AuthorityRole::Issuing && a.not_after > now {
            roots
                .add(CertificateDer::from(a.certificate.clone()))
                .map_err(|e| bad(&home.database(), format!("issuing CA {}: {e}", a.name)))?;
        }
    }
    // Optional: TOTP admins connect without a certificate; whether a
    // certificate is required is the login's and each request's decision.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| {
            bad(
                &home.database(),
                format!("client certificate verifier: {e}"),
            )
        })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&cert_path, format!("TLS versions: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| {
            bad(
                &key_path,
                format!("[console.tls]: the key does not match the certificate {} or is unusable ({e}); {renew}", cert_path.display()),
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsSetup {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        names,
        ips,
        not_after,
    })
}

/// Who is on the other end of a TLS connection.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    /// The SHA-256 of the client certificate it presented (verified by
    /// rustls against the issuing CAs), if any.
    pub client_cert: Option<Arc<str>>,
}

/// A TLS listener for `axum::serve`: accepts run in their own task and
/// every handshake in its own, so `accept` only hands out finished ones.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<tokio::net::TcpStream>, Peer)>,
    local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `tcp` with `setup`'s certificate.
    pub fn new(tcp: tokio::net::TcpListener, setup: &TlsSetup) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        let acceptor = setup.acceptor.clone();
        let task = tokio::spawn(async move {
            loop {
                let (stream, addr) = match tcp.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        // Out of descriptors and the like: wait, go on.
                        tracing::warn!(error = %e, "console accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    break;
                }
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let client_cert = tls
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .map(|c| Arc::from(fingerprint(c.as_ref())));
                            let _ = tx.send((tls, Peer { addr, client_cert })).await;
                        }
                        Ok(Err(e)) => {
                            tracing::info!(client = %addr, error = %e, "console TLS handshake failed")
                        }
                        Err(_) => {
                            tracing::info!(client = %addr, "console TLS handshake timed out")
                        }
                    }
                });
            }
        });
        Ok(TlsListener { rx, local, task })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept task only ends when aborted, with the listener.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer {
            addr: self.local,
            client_cert: None,
        })
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}

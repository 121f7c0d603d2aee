//! Installing the console's TLS server certificate (`kxca admin tls-cert`):
//! issued by kxca's own CA, written under the home (the key 0600, each file
//! through a temporary file and a rename, so the daemon reads the old pair
//! or the new one), audited, and the certificate it replaces revoked as
//! superseded — a forgotten copy of the old key stops being trusted.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use kxca_ca::console_cert::{ConsoleProfile, ConsoleSubject, ConsoleUsage};
use kxca_ca::{AuditAction, Ca, Error, Home, RevocationReason, Serial};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use zeroize::Zeroizing;

use crate::tls::{fingerprint, DEFAULT_CERT, DEFAULT_KEY};

/// What [`install`] did.
#[derive(Debug, serde::Serialize)]
pub struct Installed {
    /// The new certificate's serial.
    pub serial: String,
    /// Its end of validity (Unix time).
    pub not_after: i64,
    /// The chain file written (leaf, issuing CA).
    pub cert: PathBuf,
    /// The key file written (0600).
    pub key: PathBuf,
    /// The serial of the certificate it replaced, now revoked.
    pub superseded: Option<String>,
}

/// Issues a server certificate for `dns` and `ips` under the profile
/// policies/console-server.toml and installs it at the default paths.
pub fn install(
    ca: &mut Ca,
    home: &Home,
    dns: Vec<String>,
    ips: Vec<IpAddr>,
    actor: &str,
) -> Result<Installed, Error> {
    let profile = ConsoleProfile::load(&home.policies(), ConsoleUsage::Server)?;
    let cert_path = home.root().join(DEFAULT_CERT);
    let key_path = home.root().join(DEFAULT_KEY);
    let previous = installed_serial(ca, &cert_path);
    let cert =
        ca.issue_console_certificate(&profile, &ConsoleSubject::Server { dns, ips }, actor)?;
    if let Some(dir) = cert_path.parent() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io(dir, e))?;
    }
    let key_pem = Zeroizing::new(pem(&cert.key_pkcs8, "PRIVATE KEY", &key_path)?);
    // The served chain: the leaf and its issuing CA; browsers and curl
    // trust the root (<home>/ca/, published at /ca/).
    let chain = format!(
        "{}{}",
        pem(&cert.der, "CERTIFICATE", &cert_path)?,
        pem(&cert.chain[0], "CERTIFICATE", &cert_path)?
    );
    replace_private(&key_path, key_pem.as_bytes())?;
    replace_private(&cert_path, chain.as_bytes())?;
    let serial = cert.record.serial.clone();
    let now = ca.clock().now();
    ca.store_mut().write(|tx| {
        tx.audit(
            now,
            actor,
            AuditAction::ConsoleTlsCertificate,
            Some(&serial),
            serde_json::json!({
                "subject": cert.record.subject,
                "sha256": fingerprint(&cert.der),
                "not_after": kxca_ca::rfc3339(cert.record.not_after),
                "supersedes": previous.as_ref().map(ToString::to_string),
            }),
        )
    })?;
    let mut superseded = None;
    if let Some(old) = previous {
        ca.revoke(&old, RevocationReason::Superseded, actor)?;
        superseded = Some(old.to_string());
    }
    Ok(Installed {
        serial,
        not_after: cert.record.not_after,
        cert: cert_path,
        key: key_path,
        superseded,
    })
}

/// The serial of the certificate now installed, when it is this CA's and
/// not revoked yet; anything else (no file, another CA's) is not ours to
/// revoke.
fn installed_serial(ca: &Ca, cert_path: &Path) -> Option<Serial> {
    let leaf = CertificateDer::pem_file_iter(cert_path)
        .ok()?
        .next()?
        .ok()?;
    let parsed = <x509_cert::Certificate as der::Decode>::from_der(leaf.as_ref()).ok()?;
    let serial: Serial = hex::encode(parsed.tbs_certificate().serial_number().as_bytes())
        .parse()
        .ok()?;
    let record = ca.certificate(&serial).ok()?;
    (record.der.as_deref() == Some(leaf.as_ref()) && record.revocation.is_none()).then_some(serial)
}

fn pem(der: &[u8], label: &str, path: &Path) -> Result<String, Error> {
    der::pem::encode_string(label, der::pem::LineEnding::LF, der).map_err(|e| Error::InvalidField {
        field: path.display().to_string(),
        message: format!("PEM encoding: {e}"),
    })
}

/// Writes `bytes` to `path` through a 0600 temporary file in the same
/// directory and a rename, so a reader sees the old file or the new one.
fn replace_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

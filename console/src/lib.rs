//! The union admins' web console: a face on kxca-provisioner's functions
//! (it calls them, never copies their logic), served by `kxca daemon` on its
//! own listener (loopback, or HTTPS with a certificate from kxca's own CA). Server-rendered askama templates (templates/*.html,
//! escaping on), every word Japanese; admin accounts with Argon2id passwords
//! and TOTP, sessions in the store, CSRF tokens from the console key.

pub mod admins;
pub mod key;
pub mod public;
mod refusals;
pub mod server_cert;
pub mod tls;
mod views;
mod web;

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use admins::{NewAdmin, Role};
pub use key::ConsoleKey;
pub use web::{bind, serve, Console, ConsoleListener};

/// `[console]` in kxca.toml: the admin listener of `kxca daemon`. Without
/// the section the daemon opens no listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Where the console listens. Anything but loopback needs `tls`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// `[console.tls]`: serve HTTPS with a certificate from kxca's own CA
    /// (`kxca admin tls-cert`); admins whose factor is a client
    /// certificate can only log in over it.
    #[serde(default)]
    pub tls: Option<ConsoleTls>,
    /// A session unused this long is ended.
    #[serde(default = "default_idle_minutes")]
    pub idle_minutes: u64,
    /// A session is ended this long after its login, used or not.
    #[serde(default = "default_session_hours")]
    pub session_hours: u64,
    /// Failed logins in a row that lock an admin account.
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    /// How long a locked account stays locked.
    #[serde(default = "default_lockout_minutes")]
    pub lockout_minutes: u64,
    /// Where the console asks the public role (`kxca serve`) for live OCSP
    /// answers and the served CRL, `http://host:port`. Unset: the `[serve]`
    /// listen address of the same kxca.toml.
    #[serde(default)]
    pub public_url: Option<String>,
    /// How long the audit record's verification (shown on the audit and
    /// status pages) is reused before it runs again: a full verification
    /// reads every event, so it runs at most once per this many seconds.
    #[serde(default = "default_audit_verify_seconds")]
    pub audit_verify_seconds: u64,
    /// Failed logins from one client address (the connection's peer, never
    /// a header) within `ip_window_minutes` after which every login from it
    /// is refused with 429 until the window has passed; unknown names count.
    #[serde(default = "default_ip_max_failures")]
    pub ip_max_failures: u32,
    /// The window of `ip_max_failures`.
    #[serde(default = "default_ip_window_minutes")]
    pub ip_window_minutes: u64,
}

/// `[console.tls]`: the server certificate chain and key, written by
/// `kxca admin tls-cert`. Relative paths are under the home.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleTls {
    /// PEM chain, leaf first (default `console/tls/server-chain.pem`).
    #[serde(default = "default_tls_cert")]
    pub cert: PathBuf,
    /// PEM PKCS#8 key, mode 0600 (default `console/tls/server.key`).
    #[serde(default = "default_tls_key")]
    pub key: PathBuf,
}

fn default_tls_cert() -> PathBuf {
    PathBuf::from(tls::DEFAULT_CERT)
}
fn default_tls_key() -> PathBuf {
    PathBuf::from(tls::DEFAULT_KEY)
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8470))
}
fn default_idle_minutes() -> u64 {
    15
}
fn default_session_hours() -> u64 {
    8
}
fn default_max_failures() -> u32 {
    5
}
fn default_lockout_minutes() -> u64 {
    30
}
fn default_audit_verify_seconds() -> u64 {
    60
}
// Four accounts' worth of lockouts: a clerk mistyping cannot reach it, a
// name-guessing run stops after 20 tries in a quarter of an hour. Behind an
// SSH tunnel every admin shares 127.0.0.1, so it must stay well above one
// account's lockout (docs/CONSOLE.md).
fn default_ip_max_failures() -> u32 {
    20
}
fn default_ip_window_minutes() -> u64 {
    15
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            listen: default_listen(),
            tls: None,
            idle_minutes: default_idle_minutes(),
            session_hours: default_session_hours(),
            max_failures: default_max_failures(),
            lockout_minutes: default_lockout_minutes(),
            public_url: None,
            audit_verify_seconds: default_audit_verify_seconds(),
            ip_max_failures: default_ip_max_failures(),
            ip_window_minutes: default_ip_window_minutes(),
        }
    }
}

impl ConsoleConfig {
    /// Checks the section; the message names the key.
    pub fn check(&self) -> Result<(), String> {
        if !self.listen.ip().is_loopback() && self.tls.is_none() {
            return Err(format!(
                "[console] listen = \"{}\": not a loopback address, and [console] tls is not set. The console serves personal data: off loopback it needs TLS (add [console.tls] after `kxca admin tls-cert --dns NAME`, see docs/CONSOLE.md), or bind it to 127.0.0.1 or [::1]",
                self.listen
            ));
        }
        if let Some(tls) = &self.tls {
            if tls.cert.as_os_str().is_empty() || tls.key.as_os_str().is_empty() {
                return Err("[console.tls] cert and key must not be empty".to_string());
            }
        }
        if self.idle_minutes == 0 || self.session_hours == 0 {
            return Err("[console] idle_minutes and session_hours must be at least 1".to_string());
        }
        if let Some(url) = &self.public_url {
            public::PublicRole::parse(url).map_err(|e| format!("[console] public_url = {e}"))?;
        }
        if self.max_failures == 0 || self.lockout_minutes == 0 {
            return Err(
                "[console] max_failures and lockout_minutes must be at least 1".to_string(),
            );
        }
        if self.ip_max_failures == 0 || self.ip_window_minutes == 0 {
            return Err(
                "[console] ip_max_failures and ip_window_minutes must be at least 1".to_string(),
            );
        }
        Ok(())
    }
}

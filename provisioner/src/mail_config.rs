//! `[mail]` in `kxca.toml`: where signup mail is read from and how replies
//! are sent. This crate owns the section; the kxca binary reads it with the
//! rest of the file (src/config.rs) and `kxca_ca::Config` keeps it opaque.

use std::path::PathBuf;

use kxca_hsm::SecretSource;
use serde::{Deserialize, Serialize};

/// `[mail]`: where signup mail is read from, where answers are sent, and
/// the bounds on one received mail.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    /// Read the signup mailbox over IMAP...
    #[serde(default)]
    pub imap: Option<ImapConfig>,
    /// ...or from a Maildir an MTA delivers to (`new/` → `cur/`).
    #[serde(default)]
    pub maildir: Option<PathBuf>,
    /// Where replies and other outbound mail are submitted.
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    /// Seconds between passes when `kxca daemon` fetches and sends.
    #[serde(default = "default_interval")]
    pub interval_seconds: u64,
    /// Bounds on one received mail; larger or deeper mails are rejected.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Nesting of multiparts and forwarded messages.
    #[serde(default = "default_max_depth")]
    pub max_mime_depth: usize,
    /// MIME parts in one mail, all levels counted.
    #[serde(default = "default_max_parts")]
    pub max_mime_parts: usize,
}

/// How the connection is secured. There is no plaintext mode: passwords
/// would cross the network in clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    Implicit,
    /// Plain connection upgraded with STARTTLS (IMAP 143, submission 587).
    Starttls,
}

/// `[mail.imap]`: the signup mailbox on an IMAP server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapConfig {
    /// The server's name, as its certificate names it.
    pub host: String,
    /// 993 for implicit TLS, 143 for STARTTLS, usually.
    pub port: u16,
    /// How the connection is secured.
    pub tls: TlsMode,
    /// The login of the signup mailbox.
    pub user: String,
    /// Environment variable holding the password...
    #[serde(default)]
    pub password_env: Option<String>,
    /// ...or a file whose first line is the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The folder signup mail arrives in.
    #[serde(default = "default_mailbox")]
    pub mailbox: String,
    /// Processed messages are moved here (created when missing).
    #[serde(default = "default_processed")]
    pub processed_folder: String,
    /// Mail that could not be read is moved here (created when missing).
    #[serde(default = "default_rejected")]
    pub rejected_folder: String,
    /// Extra trusted root CA (PEM), e.g. a private mail server's CA.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Seconds each network step may take before the pass fails.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
}

/// `[mail.smtp]`: where kxca submits every mail it sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// The server's name, as its certificate names it.
    pub host: String,
    /// 465 for implicit TLS, 587 for STARTTLS, usually.
    pub port: u16,
    /// How the connection is secured.
    pub tls: TlsMode,
    /// AUTH user; no AUTH when absent.
    #[serde(default)]
    pub user: Option<String>,
    /// Environment variable holding the AUTH password...
    #[serde(default)]
    pub password_env: Option<String>,
    /// ...or a file whose first line is the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The From address of every outbound mail.
    pub from: String,
    /// Display name for From (Japanese allowed).
    #[serde(default)]
    pub from_name: Option<String>,
    /// Extra trusted root CA (PEM), e.g. a private mail server's CA.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Attempts before a message is marked failed.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// First retry delay; doubled after each failed attempt.
    #[serde(default = "default_backoff")]
    pub backoff_seconds: u64,
    /// Seconds the submission of one mail (connect to end of DATA) may
    /// take before the attempt fails and is retried later.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
}

fn default_interval() -> u64 {
    60
}
fn default_max_message_bytes() -> usize {
    25 * 1024 * 1024
}
fn default_max_depth() -> usize {
    12
}
fn default_max_parts() -> usize {
    200
}
fn default_mailbox() -> String {
    "INBOX".to_string()
}
fn default_processed() -> String {
    "kxca-processed".to_string()
}
fn default_rejected() -> String {
    "kxca-rejected".to_string()
}
fn default_max_attempts() -> u32 {
    10
}
fn default_backoff() -> u64 {
    30
}
fn default_timeout() -> u64 {
    60
}

impl MailConfig {
    /// Checks the shape of `[mail]` when kxca.toml loads: each password
    /// given one way only, and given where a server needs one.
    pub fn check(&self) -> Result<(), kxca_hsm::Error> {
        if let Some(imap) = &self.imap {
            imap.password_source()?;
        }
        if let Some(Some(source)) = self.smtp.as_ref().map(SmtpConfig::password_source) {
            source?;
        }
        Ok(())
    }

    /// Checks, without reading them, that the mail passwords can be read
    /// (variable set, file readable). Run by whatever is about to use the
    /// mail settings, at its start rather than at its first pass.
    pub fn check_secrets(&self) -> Result<(), kxca_hsm::Error> {
        if let Some(imap) = &self.imap {
            imap.password_source()?.check()?;
        }
        if let Some(Some(source)) = self.smtp.as_ref().map(SmtpConfig::password_source) {
            source?.check()?;
        }
        Ok(())
    }
}

impl ImapConfig {
    /// Where the IMAP password comes from.
    pub fn password_source(&self) -> Result<SecretSource, kxca_hsm::Error> {
        let keys = "[mail.imap] password_env / password_file";
        SecretSource::from_config(
            self.password_env.as_deref(),
            self.password_file.as_deref(),
            keys,
        )?
        .ok_or_else(|| kxca_hsm::Error::SecretConfig {
            keys: keys.to_string(),
            reason: "set one of them".to_string(),
        })
    }
}

impl SmtpConfig {
    /// Where the SMTP AUTH password comes from; `None` without AUTH.
    pub fn password_source(&self) -> Option<Result<SecretSource, kxca_hsm::Error>> {
        let keys = "[mail.smtp] password_env / password_file";
        let source = SecretSource::from_config(
            self.password_env.as_deref(),
            self.password_file.as_deref(),
            keys,
        );
        match (&self.user, source) {
            (_, Err(e)) => Some(Err(e)),
            // No user, no AUTH: a password there is not used.
            (None, Ok(_)) => None,
            (Some(_), Ok(Some(s))) => Some(Ok(s)),
            (Some(_), Ok(None)) => Some(Err(kxca_hsm::Error::SecretConfig {
                keys: keys.to_string(),
                reason: "user is set: set one of them".to_string(),
            })),
        }
    }
}

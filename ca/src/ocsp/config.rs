//! `[ocsp]` in kxca.toml: the responder's policy, for a security officer to read.

use std::path::PathBuf;

use kxca_hsm::SecretSource;
use serde::{Deserialize, Serialize};

/// What to do with a request nonce (RFC 8954).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NoncePolicy {
    /// Sign a fresh response that echoes the nonce.
    #[default]
    Echo,
    /// Answer with the pre-signed response, without the nonce (RFC 5019 style).
    Ignore,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OcspConfig {
    /// Key of the delegated responder; `None` means a soft key at
    /// `<home>/keys/ocsp-responder.p8` (refused when production = true).
    pub responder_key: Option<String>,
    /// Environment variable holding the responder key's passphrase or PIN.
    /// Its own secret, not the CA keys': `kxca serve` gets this one only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub responder_key_secret_env: Option<String>,
    /// File holding the responder key's passphrase or PIN (first line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub responder_key_secret_file: Option<PathBuf>,
    /// Days of validity of each responder certificate.
    pub responder_cert_days: u32,
    /// Renew the responder certificate this many days before it expires.
    pub responder_renew_days: u32,
    /// nextUpdate - thisUpdate of every response, in hours.
    pub response_validity_hours: u32,
    /// Re-sign pre-signed responses once they are this old, in hours.
    pub refresh_hours: u32,
    pub nonce: NoncePolicy,
    /// Largest request accepted, in bytes (POST body or decoded GET path).
    pub max_request_bytes: usize,
    /// Most certificates answered in one request.
    pub max_certificates_per_request: usize,
    /// Regenerate the CRL this many hours before its nextUpdate.
    pub crl_refresh_before_hours: u32,
}

impl Default for OcspConfig {
    fn default() -> Self {
        OcspConfig {
            responder_key: None,
            responder_key_secret_env: None,
            responder_key_secret_file: None,
            responder_cert_days: 14,
            responder_renew_days: 4,
            response_validity_hours: 96,
            refresh_hours: 24,
            nonce: NoncePolicy::Echo,
            max_request_bytes: 16 * 1024,
            max_certificates_per_request: 32,
            crl_refresh_before_hours: 24,
        }
    }
}

impl OcspConfig {
    /// The responder key's own secret source, when one is configured. `None`
    /// (homes made before the two roles) means the CA key secret is used,
    /// which `kxca serve` then needs too: it warns about it.
    pub fn responder_secret(&self) -> Option<SecretSource> {
        match (
            &self.responder_key_secret_env,
            &self.responder_key_secret_file,
        ) {
            (_, Some(file)) => Some(SecretSource::File(file.clone())),
            (Some(env), None) => Some(SecretSource::Env(env.clone())),
            (None, None) => None,
        }
    }

    /// Checks the numbers make sense together; returns the offending field.
    pub fn check(&self) -> Result<(), String> {
        if self.responder_cert_days == 0 || self.responder_renew_days >= self.responder_cert_days {
            return Err("ocsp.responder_renew_days must be below ocsp.responder_cert_days (and both above 0)".into());
        }
        if self.refresh_hours == 0 || self.refresh_hours >= self.response_validity_hours {
            return Err(
                "ocsp.refresh_hours must be above 0 and below ocsp.response_validity_hours".into(),
            );
        }
        if self.responder_key_secret_env.is_some() && self.responder_key_secret_file.is_some() {
            return Err(
                "ocsp: set at most one of responder_key_secret_env or responder_key_secret_file"
                    .into(),
            );
        }
        if self.max_request_bytes < 64 || self.max_certificates_per_request == 0 {
            return Err("ocsp.max_request_bytes must be at least 64 and ocsp.max_certificates_per_request at least 1".into());
        }
        Ok(())
    }
}

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

/// `[ocsp]` in kxca.toml: the delegated responder key and the lifetimes and bounds of OCSP answers.
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
    /// Whether a request's nonce is echoed (a live signature) or ignored (the pre-signed answer).
    pub nonce: NoncePolicy,
    /// Largest request accepted, in bytes (POST body or decoded GET path).
    pub max_request_bytes: usize,
    /// Most certificates answered in one request.
    pub max_certificates_per_request: usize,
    /// Regenerate the CRL this many hours before its nextUpdate.
    pub crl_refresh_before_hours: u32,
    /// Live signatures (nonce requests, several certificates, unknown
    /// serials) per second, 1..=100,000, on average: a token bucket. Past
    /// it a request gets the pre-signed answer without its nonce, or
    /// `tryLater`; pre-signed answers are never limited.
    pub live_signatures_per_second: u32,
    /// Live signatures allowed at once above the average, 1..=100,000.
    pub live_signature_burst: u32,
    /// Live signings running at the same time, 0..=1,024 (0 = two per core).
    pub max_concurrent_signatures: usize,
    /// Requests waiting for a signing slot, 0..=100,000; past it they are
    /// answered at once as if the budget were spent.
    pub max_queued_signatures: usize,
    /// Answers signed for unknown serials kept in memory, 0..=1,000,000 (about
    /// 1 KB each), so that asking again for one costs no signature.
    pub unknown_cache_entries: usize,
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
            live_signatures_per_second: 500,
            live_signature_burst: 1000,
            max_concurrent_signatures: 0,
            max_queued_signatures: 64,
            unknown_cache_entries: 10_000,
        }
    }
}

impl OcspConfig {
    /// `max_concurrent_signatures`, with 0 resolved for this machine.
    pub fn signing_slots(&self) -> usize {
        if self.max_concurrent_signatures > 0 {
            return self.max_concurrent_signatures;
        }
        // Two per core: with one, a core idles while a finished signing
        // hands over to the next (benches/ocsp.sh: nonce 3,300 -> 4,900 rps).
        2 * std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// The responder key's own secret source, when one is configured. `None`
    /// (homes made before the two roles) means the CA key secret is used,
    /// which `kxca serve` then needs too: it warns about it.
    /// Both keys set is an error naming them, not a silent preference.
    pub fn responder_secret(&self) -> Result<Option<SecretSource>, kxca_hsm::Error> {
        SecretSource::from_config(
            self.responder_key_secret_env.as_deref(),
            self.responder_key_secret_file.as_deref(),
            "[ocsp] responder_key_secret_env / responder_key_secret_file",
        )
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
        let live: [(&str, u64, u64, u64); 5] = [
            (
                "live_signatures_per_second",
                self.live_signatures_per_second.into(),
                1,
                100_000,
            ),
            (
                "live_signature_burst",
                self.live_signature_burst.into(),
                1,
                100_000,
            ),
            (
                "max_concurrent_signatures",
                self.max_concurrent_signatures as u64,
                0,
                1024,
            ),
            (
                "max_queued_signatures",
                self.max_queued_signatures as u64,
                0,
                100_000,
            ),
            (
                "unknown_cache_entries",
                self.unknown_cache_entries as u64,
                0,
                1_000_000,
            ),
        ];
        for (key, value, min, max) in live {
            if !(min..=max).contains(&value) {
                return Err(format!(
                    "ocsp.{key} = {value} is out of bounds ({min} to {max})"
                ));
            }
        }
        Ok(())
    }
}

//! The `[pkcs11]` section of `kxca.toml`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How kxca talks to PKCS#11 modules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pkcs11Options {
    /// The PKCS#11 module (shared library). A key reference's
    /// `module-path=` attribute overrides it.
    pub module_path: PathBuf,
    /// Sessions one key may hold open at once; concurrent signers beyond
    /// this wait for a free session.
    pub max_sessions: usize,
    /// How long a signer waits for a free session before giving up.
    pub session_wait_secs: u64,
    /// Check every signature against the public key in software before
    /// returning it (catches faulty tokens and RSA-CRT faults).
    pub verify_signatures: bool,
}

impl Default for Pkcs11Options {
    fn default() -> Self {
        Pkcs11Options {
            module_path: PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"),
            max_sessions: 4,
            session_wait_secs: 30,
            verify_signatures: true,
        }
    }
}

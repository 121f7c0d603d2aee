use serde::{Deserialize, Serialize};

use crate::yubikey::YubiKeyOptions;
use crate::Pkcs11Options;

/// Per-backend settings a config file can hold (`[yubikey]`, ...), handed to
/// [`crate::open_with`] and [`crate::generate_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendOptions {
    /// The PKCS#11 backend.
    pub pkcs11: Pkcs11Options,
    /// The YubiKey PIV backend.
    pub yubikey: YubiKeyOptions,
}

use serde::{Deserialize, Serialize};

use crate::yubikey::YubiKeyOptions;

/// Per-backend settings a config file can hold (`[yubikey]`, ...), handed to
/// [`crate::open_with`] and [`crate::generate_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendOptions {
    /// The YubiKey PIV backend.
    pub yubikey: YubiKeyOptions,
}

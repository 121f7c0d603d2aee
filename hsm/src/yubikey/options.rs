use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::SecretSource;

/// The `[yubikey]` section of `kxca.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct YubiKeyOptions {
    /// PIN policy of generated keys: `always` (verify before each signature,
    /// the default), `once` or `never`.
    pub pin_policy: PinPolicyName,
    /// Touch policy of generated keys: `never` (the default: an OCSP
    /// responder cannot wait for a finger), `always` or `cached`.
    pub touch_policy: TouchPolicyName,
    /// Where `kxca yubikey setup` puts the new management key.
    pub management_key: ManagementKeyStorage,
    /// Environment variable holding the management key (hex), when it is
    /// not PIN-protected on the device.
    pub management_key_env: Option<String>,
    /// File holding the management key (hex, first line).
    pub management_key_file: Option<PathBuf>,
    /// Refuse a device still on the factory PIN, PUK or management key.
    /// Set from `production` in `kxca.toml`, not by the section itself.
    #[serde(skip)]
    pub production: bool,
}

impl Default for YubiKeyOptions {
    fn default() -> Self {
        YubiKeyOptions {
            pin_policy: PinPolicyName::Always,
            touch_policy: TouchPolicyName::Never,
            management_key: ManagementKeyStorage::Protected,
            management_key_env: None,
            management_key_file: None,
            production: false,
        }
    }
}

impl YubiKeyOptions {
    /// Where the management key comes from when it is not on the device.
    pub fn management_key_source(&self) -> Option<SecretSource> {
        match (&self.management_key_env, &self.management_key_file) {
            (_, Some(path)) => Some(SecretSource::File(path.clone())),
            (Some(name), None) => Some(SecretSource::Env(name.clone())),
            (None, None) => None,
        }
    }
}

/// When a PIV key asks for the PIN (`[yubikey] pin_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PinPolicyName {
    /// Never.
    Never,
    /// Once per session.
    Once,
    /// Before every signature.
    Always,
}

/// When a PIV key asks for a touch (`[yubikey] touch_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TouchPolicyName {
    /// Never.
    Never,
    /// Before every signature.
    Always,
    /// Once, then not again for 15 seconds.
    Cached,
}

/// Where the management key lives after `kxca yubikey setup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ManagementKeyStorage {
    /// On the device, readable only after PIN verification (YubiKey
    /// "PIN-protected management key"): officers need only the PIN.
    Protected,
    /// Printed once for the officers' safe; supplied again through
    /// `management_key_env` / `management_key_file` for key generation.
    Printed,
}

impl From<PinPolicyName> for yubikey::PinPolicy {
    fn from(p: PinPolicyName) -> Self {
        match p {
            PinPolicyName::Never => yubikey::PinPolicy::Never,
            PinPolicyName::Once => yubikey::PinPolicy::Once,
            PinPolicyName::Always => yubikey::PinPolicy::Always,
        }
    }
}

impl From<TouchPolicyName> for yubikey::TouchPolicy {
    fn from(p: TouchPolicyName) -> Self {
        match p {
            TouchPolicyName::Never => yubikey::TouchPolicy::Never,
            TouchPolicyName::Always => yubikey::TouchPolicy::Always,
            TouchPolicyName::Cached => yubikey::TouchPolicy::Cached,
        }
    }
}

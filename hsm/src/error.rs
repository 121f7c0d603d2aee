use std::path::PathBuf;

/// What went wrong with a key. Never carries secret material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid key reference {reference:?}: {reason}")]
    InvalidKeyRef { reference: String, reason: String },
    #[error("the {backend} key backend is not built yet in this version of kxca")]
    NotBuilt { backend: &'static str },
    #[error("environment variable {name} is not set (set it, or give the secret in a file instead)")]
    SecretEnvMissing { name: String },
    #[error("cannot read secret file {path}: {source}")]
    SecretFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the secret from {origin} is empty")]
    SecretEmpty { origin: String },
    #[error("{keys}: {reason}")]
    SecretConfig { keys: String, reason: String },
    #[error("key file {path} already exists; refusing to overwrite a key")]
    KeyExists { path: PathBuf },
    #[error("cannot read key file {path}: {source}")]
    KeyFileIo {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot unlock key file {path}: wrong passphrase or not an encrypted PKCS#8 key")]
    KeyLocked { path: PathBuf },
    #[error("key file {path} holds an unsupported key ({detail})")]
    UnsupportedKey { path: PathBuf, detail: String },
    #[error("unsupported key algorithm {0:?} (expected ecdsa-p256, rsa-2048 or rsa-3072)")]
    UnknownAlgorithm(String),
    #[error("key generation failed: {0}")]
    Generate(String),
    #[error("PKCS#11 {key}: {reason}")]
    Pkcs11 { key: String, reason: String },
    #[error("PKCS#11 {key}: no such private key on the token")]
    TokenKeyMissing { key: String },
    #[error("PKCS#11 {key}: an object with this label or id already exists on the token; refusing to overwrite a key")]
    TokenKeyExists { key: String },
    #[error("signing with {key} failed: {reason}")]
    Sign { key: String, reason: String },
    #[error("{device} not found (is it plugged in, and is pcscd running?)")]
    DeviceNotFound { device: String },
    #[error("{device}: {reason}")]
    Device { device: String, reason: String },
    #[error("{device}: wrong {what}, {retries} tries left before it is blocked")]
    WrongPin {
        device: String,
        what: String,
        retries: u8,
    },
    #[error(
        "{device}: the {what} is blocked (reset the PIN with the PUK: kxca yubikey unblock-pin)"
    )]
    PinBlocked { device: String, what: String },
    #[error("{device}: slot {slot} holds no key (generate one with kxca yubikey generate)")]
    SlotEmpty { device: String, slot: String },
    #[error("{device}: slot {slot} already holds a key; refusing to replace it")]
    SlotOccupied { device: String, slot: String },
    #[error("{device} still uses the factory {what}; run kxca yubikey setup first")]
    FactoryDefault { device: String, what: String },
    #[error("{device}: {what} is not supported by this device")]
    NotSupported { device: String, what: String },
}

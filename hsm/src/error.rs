use std::path::PathBuf;

/// What went wrong with a key. Never carries secret material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key reference string that does not parse.
    #[error("invalid key reference {reference:?}: {reason}")]
    InvalidKeyRef {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A backend this build of kxca does not include.
    #[error("the {backend} key backend is not built yet in this version of kxca")]
    NotBuilt {
        /// `soft`, `pkcs11` or `yubikey`.
        backend: &'static str,
    },
    /// The environment variable named as a secret's source is not set.
    #[error(
        "environment variable {name} is not set (set it, or give the secret in a file instead)"
    )]
    SecretEnvMissing {
        /// The variable's name.
        name: String,
    },
    /// The file named as a secret's source cannot be read.
    #[error("cannot read secret file {path}: {source}")]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// Why it cannot be read.
        source: std::io::Error,
    },
    /// A secret's source holds an empty value.
    #[error("the secret from {origin} is empty")]
    SecretEmpty {
        /// Where it was read from (variable or file), never the value.
        origin: String,
    },
    /// A configuration names a secret's source wrongly (both ways, or none).
    #[error("{keys}: {reason}")]
    SecretConfig {
        /// The configuration keys concerned.
        keys: String,
        /// What is wrong with them.
        reason: String,
    },
    /// Generating a soft key over an existing file.
    #[error("key file {path} already exists; refusing to overwrite a key")]
    KeyExists {
        /// The existing key file.
        path: PathBuf,
    },
    /// A soft key file that cannot be read or written.
    #[error("cannot read key file {path}: {source}")]
    KeyFileIo {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A soft key file the passphrase does not decrypt.
    #[error("cannot unlock key file {path}: wrong passphrase or not an encrypted PKCS#8 key")]
    KeyLocked {
        /// The key file.
        path: PathBuf,
    },
    /// A soft key file holding a key of an algorithm kxca does not use.
    #[error("key file {path} holds an unsupported key ({detail})")]
    UnsupportedKey {
        /// The key file.
        path: PathBuf,
        /// What it holds.
        detail: String,
    },
    /// An algorithm name kxca does not know.
    #[error("unsupported key algorithm {0:?} (expected ecdsa-p256, rsa-2048 or rsa-3072)")]
    UnknownAlgorithm(String),
    /// Key generation failed in the backend.
    #[error("key generation failed: {0}")]
    Generate(String),
    /// A PKCS#11 module or token failure.
    #[error("PKCS#11 {key}: {reason}")]
    Pkcs11 {
        /// The key reference or token concerned.
        key: String,
        /// What the module reported.
        reason: String,
    },
    /// No private key on the token matches the reference.
    #[error("PKCS#11 {key}: no such private key on the token")]
    TokenKeyMissing {
        /// The key reference.
        key: String,
    },
    /// Generating a token key where one already exists.
    #[error("PKCS#11 {key}: an object with this label or id already exists on the token; refusing to overwrite a key")]
    TokenKeyExists {
        /// The key reference.
        key: String,
    },
    /// A signature the backend could not make.
    #[error("signing with {key} failed: {reason}")]
    Sign {
        /// The key reference.
        key: String,
        /// What the backend reported.
        reason: String,
    },
    /// No such YubiKey (or reader) is connected.
    #[error("{device} not found (is it plugged in, and is pcscd running?)")]
    DeviceNotFound {
        /// The device looked for.
        device: String,
    },
    /// A YubiKey failure not covered by a variant below.
    #[error("{device}: {reason}")]
    Device {
        /// The device.
        device: String,
        /// What it reported.
        reason: String,
    },
    /// A wrong PIN, PUK or management key.
    #[error("{device}: wrong {what}, {retries} tries left before it is blocked")]
    WrongPin {
        /// The device.
        device: String,
        /// `PIN`, `PUK` or `management key`.
        what: String,
        /// Tries left.
        retries: u8,
    },
    /// The PIN or PUK is blocked.
    #[error(
        "{device}: the {what} is blocked (reset the PIN with the PUK: kxca yubikey unblock-pin)"
    )]
    PinBlocked {
        /// The device.
        device: String,
        /// `PIN` or `PUK`.
        what: String,
    },
    /// The PIV slot holds no key.
    #[error("{device}: slot {slot} holds no key (generate one with kxca yubikey generate)")]
    SlotEmpty {
        /// The device.
        device: String,
        /// The PIV slot, e.g. `9c`.
        slot: String,
    },
    /// Generating into a PIV slot that already holds a key.
    #[error("{device}: slot {slot} already holds a key; refusing to replace it")]
    SlotOccupied {
        /// The device.
        device: String,
        /// The PIV slot.
        slot: String,
    },
    /// A production CA refuses a YubiKey still on a factory secret.
    #[error("{device} still uses the factory {what}; run kxca yubikey setup first")]
    FactoryDefault {
        /// The device.
        device: String,
        /// `PIN`, `PUK` or `management key`.
        what: String,
    },
    /// A feature the device's firmware lacks.
    #[error("{device}: {what} is not supported by this device")]
    NotSupported {
        /// The device.
        device: String,
        /// The feature.
        what: String,
    },
}

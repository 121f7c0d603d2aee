//! Key custody for kxca.
//!
//! Every CA key is reached through one interface, [`Signer`]: it exposes the
//! public half and signs messages, and never hands out the private half. Keys
//! are named by a [`KeyRef`] string that a config file can hold:
//!
//! - `soft:/path/key.p8` — an encrypted PKCS#8 file (tests and demos only)
//! - `pkcs11:token=...;object=...` — a key on a PKCS#11 token (RFC 7512 style)
//! - `yubikey:serial=...;slot=9c` — a key in a YubiKey PIV slot
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod algorithm;
mod error;
mod keyref;
mod options;
mod pkcs11;
mod secret;
mod signer;
mod soft;
mod verify;
pub mod yubikey;

pub use algorithm::KeyAlgorithm;
pub use error::Error;
pub use keyref::KeyRef;
pub use options::BackendOptions;
pub use pkcs11::{list_keys, spki_fingerprint, Pkcs11Options, TokenKeyInfo};
pub use secret::{SecretSource, SecretString};
pub use signer::{Health, Signer};
pub use verify::verify;
pub use yubikey::YubiKeyOptions;

/// Opens the key named by `key_ref`, unlocking it with the secret from `secret`.
///
/// The secret is a passphrase for `soft` keys and a PIN for tokens.
pub fn open(key_ref: &KeyRef, secret: &SecretSource) -> Result<Box<dyn Signer>, Error> {
    open_with(key_ref, secret, &BackendOptions::default())
}

/// As [`open`], with the backends configured by `options`.
pub fn open_with(
    key_ref: &KeyRef,
    secret: &SecretSource,
    options: &BackendOptions,
) -> Result<Box<dyn Signer>, Error> {
    match key_ref {
        KeyRef::Soft { path } => {
            let pass = secret.read()?;
            Ok(Box::new(soft::SoftSigner::open(
                key_ref.clone(),
                path,
                &pass,
            )?))
        }
        KeyRef::Pkcs11 { .. } => Ok(Box::new(pkcs11::Pkcs11Signer::open(
            key_ref.clone(),
            &options.pkcs11,
            secret.read()?,
        )?)),
        KeyRef::YubiKey { .. } => Ok(Box::new(yubikey::YubiKeySigner::open(
            key_ref,
            secret.read()?,
            &options.yubikey,
        )?)),
    }
}

/// Generates a new key of `algorithm` at `key_ref` and opens it.
///
/// Refuses to replace an existing key.
pub fn generate(
    key_ref: &KeyRef,
    algorithm: KeyAlgorithm,
    secret: &SecretSource,
) -> Result<Box<dyn Signer>, Error> {
    generate_with(key_ref, algorithm, secret, &BackendOptions::default())
}

/// As [`generate`], with the backends configured by `options`.
pub fn generate_with(
    key_ref: &KeyRef,
    algorithm: KeyAlgorithm,
    secret: &SecretSource,
    options: &BackendOptions,
) -> Result<Box<dyn Signer>, Error> {
    match key_ref {
        KeyRef::Soft { path } => {
            let pass = secret.read()?;
            Ok(Box::new(soft::SoftSigner::generate(
                key_ref.clone(),
                path,
                algorithm,
                &pass,
            )?))
        }
        KeyRef::Pkcs11 { .. } => {
            let pin = secret.read()?;
            pkcs11::generate(key_ref, algorithm, &options.pkcs11, &pin)?;
            Ok(Box::new(pkcs11::Pkcs11Signer::open(
                key_ref.clone(),
                &options.pkcs11,
                pin,
            )?))
        }
        KeyRef::YubiKey { .. } => Ok(Box::new(yubikey::generate(
            key_ref,
            algorithm,
            secret.read()?,
            &options.yubikey,
        )?)),
    }
}

/// Destroys a retired CA key on its token (a key ceremony's last step),
/// only when its public key is `expected_spki`. Soft keys are files the
/// caller removes; YubiKey slots are cleared with the vendor's tool.
pub fn destroy_with(
    key_ref: &KeyRef,
    secret: &SecretSource,
    options: &BackendOptions,
    expected_spki: &[u8],
) -> Result<(), Error> {
    match key_ref {
        KeyRef::Pkcs11 { .. } => {
            pkcs11::destroy(key_ref, &options.pkcs11, &secret.read()?, expected_spki)
        }
        _ => Err(Error::InvalidKeyRef {
            reference: key_ref.to_string(),
            reason: "only PKCS#11 token keys are destroyed through the token".into(),
        }),
    }
}

/// Generates a throw-away key pair in memory, for end-entity keys that are
/// packaged and handed out (never for CA keys).
pub use soft::EphemeralKey;

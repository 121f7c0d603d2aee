//! The `yubikey` backend: CA keys in YubiKey PIV slots, reached through
//! pcscd with the `yubikey` crate.
//!
//! Key references are `yubikey:serial=<n>;slot=9c`. The PIN is verified
//! before every signature; the digest is computed here and only the
//! digest (ECDSA) or padded DigestInfo (RSA) goes to the device. The
//! public key is read from the certificate kxca stores in the slot at
//! generation. [`officer`] holds the security officers' procedures.

mod device;
mod keys;
pub mod officer;
mod options;
mod signer;

pub use options::{ManagementKeyStorage, PinPolicyName, TouchPolicyName, YubiKeyOptions};
pub(crate) use signer::YubiKeySigner;

use crate::{Error, KeyAlgorithm, KeyRef, SecretString};

/// Generates a key in the slot named by `key_ref` (refusing an occupied
/// slot) and opens it.
pub(crate) fn generate(
    key_ref: &KeyRef,
    algorithm: KeyAlgorithm,
    pin: SecretString,
    options: &YubiKeyOptions,
) -> Result<YubiKeySigner, Error> {
    let (serial, slot_name) = match key_ref {
        KeyRef::YubiKey { serial, slot } => (*serial, slot.as_str()),
        _ => unreachable!("dispatched on the key reference's backend"),
    };
    let slot = device::slot(slot_name)?;
    let mut yk = device::open(serial)?;
    let device = device::describe(Some(yk.serial().0));
    if options.production {
        keys::refuse_factory_defaults(&mut yk, &device, &pin)?;
    }
    keys::generate(&mut yk, &device, slot, algorithm, &pin, options)?;
    tracing::info!(key = %key_ref, algorithm = %algorithm, "YubiKey key generated");
    drop(yk);
    YubiKeySigner::open(key_ref, pin, options)
}

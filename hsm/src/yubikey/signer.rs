//! A CA key in a YubiKey PIV slot, behind [`Signer`].

use std::sync::Mutex;

use der::Encode;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use yubikey::piv::{AlgorithmId, SlotId};
use yubikey::{Certificate, YubiKey};

use super::{device, keys};
use crate::{Error, Health, KeyAlgorithm, KeyRef, SecretString, Signer, YubiKeyOptions};

pub(crate) struct YubiKeySigner {
    key_ref: KeyRef,
    device: String,
    serial: u32,
    slot: SlotId,
    algorithm: KeyAlgorithm,
    spki: Vec<u8>,
    pin: SecretString,
    yk: Mutex<YubiKey>,
}

impl YubiKeySigner {
    /// Opens the key in the slot named by `key_ref`, checking the PIN once
    /// so that a wrong PIN fails here rather than at the first signature.
    pub(crate) fn open(
        key_ref: &KeyRef,
        pin: SecretString,
        options: &YubiKeyOptions,
    ) -> Result<Self, Error> {
        let (serial, slot_name) = match key_ref {
            KeyRef::YubiKey { serial, slot } => (*serial, slot.as_str()),
            _ => unreachable!("dispatched on the key reference's backend"),
        };
        let slot = device::slot(slot_name)?;
        let mut yk = device::open(serial)?;
        let serial = yk.serial().0;
        let device = device::describe(Some(serial));
        if options.production {
            keys::refuse_factory_defaults(&mut yk, &device, &pin)?;
        }
        yk.verify_pin(pin.expose_secret().as_bytes())
            .map_err(|e| device::map(&device, "PIN", e))?;
        let spki = keys::slot_public_key(&mut yk, &device, slot)?;
        let algorithm = keys::algorithm_of(&spki, &device)?;
        tracing::info!(key = %key_ref, serial, slot = slot_name, algorithm = %algorithm, "YubiKey key opened");
        Ok(YubiKeySigner {
            key_ref: KeyRef::YubiKey {
                serial: Some(serial),
                slot: slot_name.to_string(),
            },
            device,
            serial,
            slot,
            algorithm,
            spki,
            pin,
            yk: Mutex::new(yk),
        })
    }

    fn sign_once(&self, yk: &mut YubiKey, input: &[u8]) -> Result<Vec<u8>, yubikey::Error> {
        // Slots with PIN policy "always" demand a VERIFY right before each
        // signature; for the others it is cheap and keeps one code path.
        yk.verify_pin(self.pin.expose_secret().as_bytes())?;
        let alg = match self.algorithm {
            KeyAlgorithm::EcdsaP256 => AlgorithmId::EccP256,
            KeyAlgorithm::Rsa2048 => AlgorithmId::Rsa2048,
            KeyAlgorithm::Rsa3072 => AlgorithmId::Rsa3072,
        };
        Ok(yubikey::piv::sign_data(yk, input, alg, self.slot)?.to_vec())
    }
}

/// The block the device signs: the bare digest for ECDSA, the PKCS#1 v1.5
/// padded DigestInfo for RSA (the device does raw RSA).
fn signing_input(algorithm: KeyAlgorithm, digest: &[u8]) -> Vec<u8> {
    let len = match algorithm {
        KeyAlgorithm::EcdsaP256 => return digest.to_vec(),
        KeyAlgorithm::Rsa2048 => 256,
        KeyAlgorithm::Rsa3072 => 384,
    };
    let info = crate::algorithm::sha256_digest_info(digest);
    let mut block = Vec::with_capacity(len);
    block.extend_from_slice(&[0x00, 0x01]);
    block.resize(len - info.len() - 1, 0xff);
    block.push(0x00);
    block.extend_from_slice(&info);
    block
}

impl Signer for YubiKeySigner {
    fn key_ref(&self) -> &KeyRef {
        &self.key_ref
    }

    fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let input = signing_input(self.algorithm, &Sha256::digest(message));
        let mut yk = self
            .yk
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let signature = match self.sign_once(&mut yk, &input) {
            // The card was reset or re-plugged behind our back: reconnect
            // (or find it again by serial) and try once more, instead of
            // needing a process restart.
            Err(yubikey::Error::PcscError { .. }) => {
                tracing::warn!(
                    serial = self.serial,
                    "YubiKey connection lost; reconnecting"
                );
                if yk.reconnect().is_err() {
                    *yk = device::open(Some(self.serial))?;
                }
                self.sign_once(&mut yk, &input)
            }
            other => other,
        }
        .map_err(|e| device::map(&self.device, "PIN", e))?;
        tracing::debug!(key = %self.key_ref, "signed with YubiKey");
        Ok(signature)
    }

    fn health(&self) -> Health {
        let mut yk = self
            .yk
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let retries = match yk.get_pin_retries() {
            Err(yubikey::Error::PcscError { .. }) => yk
                .reconnect()
                .or_else(|_| {
                    device::open(Some(self.serial))
                        .map(|fresh| *yk = fresh)
                        .map_err(|_| yubikey::Error::NotFound)
                })
                .and_then(|()| yk.get_pin_retries()),
            other => other,
        };
        // get_pin_retries cannot tell "blocked" from "already verified" (a
        // card that keeps the PIN verified across SELECT answers both with
        // no tries); VERIFY with our PIN settles it and costs no try then.
        let retries = match retries {
            Ok(0) if yk.verify_pin(self.pin.expose_secret().as_bytes()).is_ok() => {
                return Health {
                    ok: true,
                    detail: format!(
                        "{} present, slot {}, PIN verified",
                        self.device,
                        device::slot_name(self.slot)
                    ),
                }
            }
            other => other,
        };
        match retries {
            Ok(0) => Health {
                ok: false,
                detail: format!("{} present, PIN blocked", self.device),
            },
            Ok(n) => Health {
                ok: true,
                detail: format!(
                    "{} present, slot {}, {n} PIN tries left",
                    self.device, self.slot
                ),
            },
            Err(e) => Health {
                ok: false,
                detail: format!("{} unavailable: {e}", self.device),
            },
        }
    }
}

/// The DER SubjectPublicKeyInfo of a certificate read from a slot.
pub(crate) fn certificate_spki(cert: &Certificate) -> Result<Vec<u8>, der::Error> {
    cert.subject_pki().to_der()
}

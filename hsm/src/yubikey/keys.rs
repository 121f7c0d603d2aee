//! Key generation in a slot, reading a slot's public key, and the
//! management key that generation needs.

use std::time::Duration;

use der::{Decode, Encode};
use getrandom::SysRng;
use secrecy::ExposeSecret;
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Validity;
use yubikey::piv::{AlgorithmId, SlotId};
use yubikey::{Certificate, MgmAlgorithmId, MgmKey, YubiKey};
use zeroize::Zeroizing;

use super::device;
use super::signer::certificate_spki;
use crate::{Error, KeyAlgorithm, SecretString, YubiKeyOptions};

/// The PIV factory PIN and PUK (NIST SP 800-73 / Yubico defaults).
pub(crate) const FACTORY_PIN: &str = "123456";
pub(crate) const FACTORY_PUK: &str = "12345678";

const EC_OID: &str = "1.2.840.10045.2.1";
const P256_OID: &str = "1.2.840.10045.3.1.7";
const RSA_OID: &str = "1.2.840.113549.1.1.1";

/// The key in `slot`, from the certificate kxca (or any PIV tool) stored
/// beside it. PIV has no standard way to read a public key back; YubiKey
/// metadata does, but only from firmware 5.3.
pub(crate) fn slot_public_key(
    yk: &mut YubiKey,
    device: &str,
    slot: SlotId,
) -> Result<Vec<u8>, Error> {
    let empty = || Error::SlotEmpty {
        device: device.to_string(),
        slot: device::slot_name(slot),
    };
    match Certificate::read(yk, slot) {
        Ok(cert) => certificate_spki(&cert).map_err(|e| Error::Device {
            device: device.to_string(),
            reason: format!("certificate in slot {}: {e}", device::slot_name(slot)),
        }),
        Err(
            yubikey::Error::NotFound | yubikey::Error::InvalidObject | yubikey::Error::SizeError,
        ) => Err(empty()),
        Err(e) => Err(device::map(device, "PIN", e)),
    }
}

/// The algorithm of a DER SubjectPublicKeyInfo.
pub(crate) fn algorithm_of(spki: &[u8], device: &str) -> Result<KeyAlgorithm, Error> {
    let unsupported = |detail: String| Error::Device {
        device: device.to_string(),
        reason: format!("unsupported key: {detail}"),
    };
    let info = SubjectPublicKeyInfoOwned::from_der(spki).map_err(|e| unsupported(e.to_string()))?;
    match info.algorithm.oid.to_string().as_str() {
        EC_OID => {
            let curve = info
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<der::asn1::ObjectIdentifier>().ok())
                .map(|o| o.to_string());
            if curve.as_deref() == Some(P256_OID) {
                Ok(KeyAlgorithm::EcdsaP256)
            } else {
                Err(unsupported(format!("EC curve {curve:?}")))
            }
        }
        RSA_OID => {
            use pkcs8::DecodePublicKey;
            use rsa::traits::PublicKeyParts;
            let pk = rsa::RsaPublicKey::from_public_key_der(spki)
                .map_err(|e| unsupported(e.to_string()))?;
            match pk.size() * 8 {
                2048 => Ok(KeyAlgorithm::Rsa2048),
                3072 => Ok(KeyAlgorithm::Rsa3072),
                bits => Err(unsupported(format!("RSA-{bits}"))),
            }
        }
        other => Err(unsupported(format!("algorithm {other}"))),
    }
}

/// Fails when the device still answers to the factory PIN or management
/// key. Tries the factory PIN only when it is the one we were given, so a
/// set-up device never loses a PIN try to this check.
pub(crate) fn refuse_factory_defaults(
    yk: &mut YubiKey,
    device: &str,
    pin: &SecretString,
) -> Result<(), Error> {
    let factory = |what: &str| Error::FactoryDefault {
        device: device.to_string(),
        what: what.to_string(),
    };
    if crate::secret::secret_is(pin, FACTORY_PIN) {
        return Err(factory("PIN"));
    }
    // The management key has no retry counter: trying the default costs nothing.
    if let Ok(default) = factory_management_key(yk) {
        if yk.authenticate(&default).is_ok() {
            let _ = yk.deauthenticate();
            return Err(factory("management key"));
        }
    }
    Ok(())
}

/// The factory management key: 3DES before firmware 5.7, AES-192 after.
pub(crate) fn factory_management_key(yk: &YubiKey) -> Result<MgmKey, yubikey::Error> {
    MgmKey::get_default(yk)
}

/// Parses a management key as `kxca yubikey setup` prints it:
/// `aes192:<hex>`, `aes128:<hex>`, `aes256:<hex>`, `3des:<hex>`, or bare hex
/// (3DES for 24 bytes, AES for 16 or 32).
pub(crate) fn parse_management_key(text: &str, origin: &str) -> Result<MgmKey, Error> {
    let bad = |why: &str| Error::InvalidKeyRef {
        reference: format!("management key from {origin}"),
        reason: why.to_string(),
    };
    let text = text.trim();
    let (alg, hex_part) = match text.split_once(':') {
        Some(("3des", h)) => (Some(MgmAlgorithmId::ThreeDes), h),
        Some(("aes128", h)) => (Some(MgmAlgorithmId::Aes128), h),
        Some(("aes192", h)) => (Some(MgmAlgorithmId::Aes192), h),
        Some(("aes256", h)) => (Some(MgmAlgorithmId::Aes256), h),
        Some(_) => {
            return Err(bad(
                "unknown algorithm prefix (3des:, aes128:, aes192:, aes256:)",
            ))
        }
        None => (None, text),
    };
    let bytes = Zeroizing::new(hex::decode(hex_part).map_err(|_| bad("not hexadecimal"))?);
    let alg = alg.or(match bytes.len() {
        16 => Some(MgmAlgorithmId::Aes128),
        32 => Some(MgmAlgorithmId::Aes256),
        _ => None,
    });
    MgmKey::from_bytes(&*bytes, alg)
        .map_err(|_| bad("wrong length for its algorithm, or a weak key"))
}

/// Formats a management key for the officers' safe, in the form
/// [`parse_management_key`] reads back.
pub(crate) fn format_management_key(key: &MgmKey) -> SecretString {
    let prefix = match key.algorithm_id() {
        MgmAlgorithmId::ThreeDes => "3des",
        MgmAlgorithmId::Aes128 => "aes128",
        MgmAlgorithmId::Aes192 => "aes192",
        MgmAlgorithmId::Aes256 => "aes256",
    };
    let hex = Zeroizing::new(hex::encode(key.as_ref()));
    SecretString::from(format!("{prefix}:{}", hex.as_str()))
}

/// Authenticates with the management key: from the configured source,
/// else PIN-protected on the device (the PIN must be verified), else —
/// outside production only — the factory key.
pub(crate) fn authenticate(
    yk: &mut YubiKey,
    device: &str,
    options: &YubiKeyOptions,
) -> Result<(), Error> {
    let rejected = |what: &str| Error::Device {
        device: device.to_string(),
        reason: format!("the {what} was rejected"),
    };
    if let Some(source) = options.management_key_source() {
        let text = source.read()?;
        let key = parse_management_key(text.expose_secret(), &source.describe())?;
        return yk
            .authenticate(&key)
            .map_err(|_| rejected("management key from the configured source"));
    }
    if let Ok(key) = MgmKey::get_protected(yk) {
        return yk
            .authenticate(&key)
            .map_err(|_| rejected("PIN-protected management key"));
    }
    if options.production {
        return Err(Error::Device {
            device: device.to_string(),
            reason: "no management key: set management_key_env or management_key_file in [yubikey], or store it PIN-protected with kxca yubikey setup".to_string(),
        });
    }
    let key = factory_management_key(yk).map_err(|e| device::map(device, "management key", e))?;
    yk.authenticate(&key).map_err(|_| Error::Device {
        device: device.to_string(),
        reason: "the management key is not the factory one and none is configured (set management_key_env or management_key_file in [yubikey])".to_string(),
    })
}

/// Generates a key pair in `slot` and stores a self-signed certificate
/// beside it, from which the public key is read back later.
pub(crate) fn generate(
    yk: &mut YubiKey,
    device: &str,
    slot: SlotId,
    algorithm: KeyAlgorithm,
    pin: &SecretString,
    options: &YubiKeyOptions,
) -> Result<Vec<u8>, Error> {
    match slot_public_key(yk, device, slot) {
        Err(Error::SlotEmpty { .. }) => {}
        Ok(_) => {
            return Err(Error::SlotOccupied {
                device: device.to_string(),
                slot: device::slot_name(slot),
            })
        }
        Err(e) => return Err(e),
    }
    yk.verify_pin(pin.expose_secret().as_bytes())
        .map_err(|e| device::map(device, "PIN", e))?;
    authenticate(yk, device, options)?;
    let alg = match algorithm {
        KeyAlgorithm::EcdsaP256 => AlgorithmId::EccP256,
        KeyAlgorithm::Rsa2048 => AlgorithmId::Rsa2048,
        KeyAlgorithm::Rsa3072 => AlgorithmId::Rsa3072,
    };
    let spki = yubikey::piv::generate(
        yk,
        slot,
        alg,
        options.pin_policy.into(),
        options.touch_policy.into(),
    )
    .map_err(|e| match e {
        yubikey::Error::NotSupported | yubikey::Error::AlgorithmError => Error::NotSupported {
            device: device.to_string(),
            what: format!("{algorithm} key generation"),
        },
        other => device::map(device, "key generation", other),
    })?;
    let name = device::slot_name(slot);
    let build = |e: String| Error::Generate(format!("{device} slot {name}: {e}"));
    let subject: Name = format!("CN=kxca slot {name} key")
        .parse()
        .map_err(|e: der::Error| build(e.to_string()))?;
    let serial_bytes = spki.to_der().map_err(|e| build(e.to_string()))?;
    // A stable, positive serial derived from the key itself.
    let mut serial = [0u8; 8];
    serial.copy_from_slice(&<sha2::Sha256 as sha2::Digest>::digest(&serial_bytes)[..8]);
    serial[0] &= 0x7f;
    let serial = SerialNumber::new(&serial).map_err(|e| build(e.to_string()))?;
    let validity = Validity::from_now(Duration::from_secs(20 * 365 * 86_400))
        .map_err(|e| build(e.to_string()))?;
    // The self-signature is a signature like any other: PIN policy
    // "always" wants a fresh VERIFY right before it.
    yk.verify_pin(pin.expose_secret().as_bytes())
        .map_err(|e| device::map(device, "PIN", e))?;
    let made = match algorithm {
        KeyAlgorithm::EcdsaP256 => Certificate::generate_self_signed::<_, p256::NistP256>(
            yk,
            slot,
            serial,
            validity,
            subject,
            spki.clone(),
            |_| Ok(()),
        ),
        KeyAlgorithm::Rsa2048 => Certificate::generate_self_signed::<
            _,
            yubikey::certificate::yubikey_signer::YubiRsa<
                yubikey::certificate::yubikey_signer::Rsa2048,
            >,
        >(
            yk,
            slot,
            serial,
            validity,
            subject,
            spki.clone(),
            |_| Ok(()),
        ),
        KeyAlgorithm::Rsa3072 => Certificate::generate_self_signed::<
            _,
            yubikey::certificate::yubikey_signer::YubiRsa<
                yubikey::certificate::yubikey_signer::Rsa3072,
            >,
        >(
            yk,
            slot,
            serial,
            validity,
            subject,
            spki.clone(),
            |_| Ok(()),
        ),
    };
    made.map_err(|e| build(format!("storing the slot certificate: {e}")))?;
    let _ = yk.deauthenticate();
    spki.to_der().map_err(|e| build(e.to_string()))
}

/// Fresh randomness for management keys: the OS CSPRNG.
pub(crate) fn rng() -> SysRng {
    SysRng
}

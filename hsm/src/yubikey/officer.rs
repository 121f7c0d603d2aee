//! The security officers' procedures on a YubiKey: list, status, setup
//! (replace the factory PIN, PUK and management key), PIN and PUK changes,
//! the PIN reset with the PUK, and key attestation.
//!
//! Every function takes secrets as [`SecretString`]s and never logs them.

use secrecy::ExposeSecret;
use yubikey::piv::SlotId;
use yubikey::{Certificate, MgmKey};

use super::{device, keys, ManagementKeyStorage};
use crate::{Error, KeyAlgorithm, SecretString};

/// A YubiKey seen by pcscd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The PC/SC reader name.
    pub reader: String,
    /// The device's serial number.
    pub serial: u32,
    /// The firmware version.
    pub version: String,
}

/// What `kxca yubikey status` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The device's serial number.
    pub serial: u32,
    /// The firmware version.
    pub version: String,
    /// PIN tries left before it is blocked.
    pub pin_retries: u8,
    /// True while the factory management key still opens the device.
    pub factory_management_key: bool,
    /// The PIV slots kxca uses.
    pub slots: Vec<SlotStatus>,
}

/// One PIV slot in [`Status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotStatus {
    /// The slot, e.g. `9c`.
    pub slot: String,
    /// The key's algorithm, when the slot holds a certificate kxca can read.
    pub algorithm: Option<KeyAlgorithm>,
    /// The subject of the slot's certificate, when there is one.
    pub subject: Option<String>,
}

/// The new secrets for [`setup`].
pub struct Setup {
    /// The PIN now (the factory one on a new device).
    pub current_pin: SecretString,
    /// The PIN to set.
    pub new_pin: SecretString,
    /// The PUK now.
    pub current_puk: SecretString,
    /// The PUK to set.
    pub new_puk: SecretString,
    /// The management key to replace; `None` means the factory one.
    pub current_management_key: Option<SecretString>,
    /// Where the new management key is kept.
    pub storage: ManagementKeyStorage,
}

/// What [`setup`] did. `printed_management_key` is set when the officers
/// chose to keep the key in the safe: show it once, never store it.
pub struct SetupOutcome {
    /// The device set up.
    pub serial: u32,
    /// The new management key, to print once for the safe.
    pub printed_management_key: Option<SecretString>,
}

/// A key attestation: the statement signed by the device's attestation key
/// (slot f9) that the key in `slot` was generated on the device.
#[derive(Debug, Clone)]
pub struct Attestation {
    /// The device's serial number.
    pub serial: u32,
    /// The attested slot.
    pub slot: String,
    /// DER attestation certificate for the slot's key.
    pub certificate: Vec<u8>,
    /// DER device attestation certificate (slot f9) that signed it; it is
    /// signed in turn by Yubico's PIV attestation root.
    pub device_certificate: Vec<u8>,
}

/// Lists the YubiKeys pcscd can reach. No reader at all is an empty list.
pub fn list() -> Result<Vec<DeviceInfo>, Error> {
    let mut ctx = match yubikey::reader::Context::open() {
        Ok(ctx) => ctx,
        Err(_) => return Ok(Vec::new()),
    };
    let readers = match ctx.iter() {
        Ok(r) => r,
        Err(_) => return Ok(Vec::new()),
    };
    let mut found = Vec::new();
    for reader in readers {
        if let Ok(yk) = reader.open() {
            found.push(DeviceInfo {
                reader: reader.name().into_owned(),
                serial: yk.serial().0,
                version: yk.version().to_string(),
            });
        }
    }
    Ok(found)
}

/// Reports PIN retries, whether the factory management key still works,
/// and what the four key slots hold. Costs no PIN try.
pub fn status(serial: Option<u32>) -> Result<Status, Error> {
    let mut yk = device::open(serial)?;
    let serial = yk.serial().0;
    let name = device::describe(Some(serial));
    let pin_retries = yk
        .get_pin_retries()
        .or_else(|e| match e {
            yubikey::Error::PinLocked => Ok(0),
            e => Err(e),
        })
        .map_err(|e| device::map(&name, "PIN", e))?;
    let factory_management_key = keys::factory_management_key(&yk)
        .map(|k| yk.authenticate(&k).is_ok())
        .unwrap_or(false);
    let _ = yk.deauthenticate();
    let mut slots = Vec::new();
    for slot in [
        SlotId::Authentication,
        SlotId::Signature,
        SlotId::KeyManagement,
        SlotId::CardAuthentication,
    ] {
        let cert = Certificate::read(&mut yk, slot).ok();
        let algorithm = cert
            .as_ref()
            .and_then(|c| super::signer::certificate_spki(c).ok())
            .and_then(|spki| keys::algorithm_of(&spki, &name).ok());
        slots.push(SlotStatus {
            slot: device::slot_name(slot),
            algorithm,
            subject: cert.map(|c| c.subject()),
        });
    }
    Ok(Status {
        serial,
        version: yk.version().to_string(),
        pin_retries,
        factory_management_key,
        slots,
    })
}

/// Maps an error of a PIN/PUK change: a card that refuses the new value
/// outright answers with a bare error, which says nothing on its own.
fn changed(device: &str, what: &str, e: yubikey::Error) -> Error {
    match e {
        yubikey::Error::GenericError => Error::Device {
            device: device.to_string(),
            reason: format!("the device refused the new {what} (PIV cards may accept digits only)"),
        },
        other => device::map(device, what, other),
    }
}

fn check_new(device: &str, what: &str, new: &SecretString, factory: &str) -> Result<(), Error> {
    let bad = |reason: String| Error::Device {
        device: device.to_string(),
        reason,
    };
    let n = new.expose_secret().len();
    if !(6..=8).contains(&n) {
        return Err(bad(format!("the new {what} must be 6 to 8 characters")));
    }
    if crate::secret::secret_is(new, factory) {
        return Err(bad(format!("the new {what} is the factory default")));
    }
    Ok(())
}

/// Replaces the factory PIN, PUK and management key. The new management
/// key is random (AES on firmware 5.7+, 3DES before) and either stored
/// PIN-protected on the device or returned once for the safe.
pub fn setup(serial: Option<u32>, s: &Setup) -> Result<SetupOutcome, Error> {
    let mut yk = device::open(serial)?;
    let serial = yk.serial().0;
    let name = device::describe(Some(serial));
    check_new(&name, "PIN", &s.new_pin, keys::FACTORY_PIN)?;
    check_new(&name, "PUK", &s.new_puk, keys::FACTORY_PUK)?;
    // The management key first: if it is wrong nothing else has changed.
    let current = match &s.current_management_key {
        Some(text) => {
            keys::parse_management_key(text.expose_secret(), "the current management key")?
        }
        None => keys::factory_management_key(&yk)
            .map_err(|e| device::map(&name, "management key", e))?,
    };
    yk.authenticate(&current).map_err(|_| Error::Device {
        device: name.clone(),
        reason: "the current management key was rejected".to_string(),
    })?;
    yk.change_pin(
        s.current_pin.expose_secret().as_bytes(),
        s.new_pin.expose_secret().as_bytes(),
    )
    .map_err(|e| changed(&name, "PIN", e))?;
    yk.change_puk(
        s.current_puk.expose_secret().as_bytes(),
        s.new_puk.expose_secret().as_bytes(),
    )
    .map_err(|e| changed(&name, "PUK", e))?;
    yk.verify_pin(s.new_pin.expose_secret().as_bytes())
        .map_err(|e| device::map(&name, "PIN", e))?;
    yk.authenticate(&current).map_err(|_| Error::Device {
        device: name.clone(),
        reason: "the current management key was rejected".to_string(),
    })?;
    let new = MgmKey::generate_for(&yk, &mut keys::rng()).map_err(|e| Error::Device {
        device: name.clone(),
        reason: format!("generating a management key: {e}"),
    })?;
    let printed = match s.storage {
        ManagementKeyStorage::Protected => {
            new.set_protected(&mut yk)
                .map_err(|e| device::map(&name, "storing the PIN-protected management key", e))?;
            None
        }
        ManagementKeyStorage::Printed => {
            new.set_manual(&mut yk, false)
                .map_err(|e| device::map(&name, "setting the management key", e))?;
            Some(keys::format_management_key(&new))
        }
    };
    tracing::info!(serial, storage = ?s.storage, "YubiKey set up: PIN, PUK and management key replaced");
    Ok(SetupOutcome {
        serial,
        printed_management_key: printed,
    })
}

/// Changes the PIN. A wrong current PIN reports the tries left.
pub fn change_pin(
    serial: Option<u32>,
    current: &SecretString,
    new: &SecretString,
) -> Result<u32, Error> {
    let mut yk = device::open(serial)?;
    let serial = yk.serial().0;
    let name = device::describe(Some(serial));
    check_new(&name, "PIN", new, keys::FACTORY_PIN)?;
    yk.change_pin(
        current.expose_secret().as_bytes(),
        new.expose_secret().as_bytes(),
    )
    .map_err(|e| match e {
        // Some cards answer a wrong current PIN with a bare 6300 rather
        // than 63Cx; the retry counter tells which it was.
        yubikey::Error::GenericError => match yk.get_pin_retries() {
            Ok(tries) if tries < 3 => device::map(&name, "PIN", yubikey::Error::WrongPin { tries }),
            Err(yubikey::Error::PinLocked) => device::map(&name, "PIN", yubikey::Error::PinLocked),
            _ => changed(&name, "PIN", e),
        },
        e => changed(&name, "PIN", e),
    })?;
    tracing::info!(serial, "YubiKey PIN changed");
    Ok(serial)
}

/// Changes the PUK.
pub fn change_puk(
    serial: Option<u32>,
    current: &SecretString,
    new: &SecretString,
) -> Result<u32, Error> {
    let mut yk = device::open(serial)?;
    let serial = yk.serial().0;
    let name = device::describe(Some(serial));
    check_new(&name, "PUK", new, keys::FACTORY_PUK)?;
    yk.change_puk(
        current.expose_secret().as_bytes(),
        new.expose_secret().as_bytes(),
    )
    .map_err(|e| changed(&name, "PUK", e))?;
    tracing::info!(serial, "YubiKey PUK changed");
    Ok(serial)
}

/// Sets a new PIN with the PUK: the officers' "PIN reset", also for a
/// blocked PIN.
pub fn unblock_pin(
    serial: Option<u32>,
    puk: &SecretString,
    new_pin: &SecretString,
) -> Result<u32, Error> {
    let mut yk = device::open(serial)?;
    let serial = yk.serial().0;
    let name = device::describe(Some(serial));
    check_new(&name, "PIN", new_pin, keys::FACTORY_PIN)?;
    yk.unblock_pin(
        puk.expose_secret().as_bytes(),
        new_pin.expose_secret().as_bytes(),
    )
    .map_err(|e| changed(&name, "PUK", e))?;
    tracing::info!(serial, "YubiKey PIN reset with the PUK");
    Ok(serial)
}

/// Fetches the attestation for the key in `slot` and checks it: signed by
/// the device attestation certificate in slot f9, and certifying the very
/// public key the slot holds. Devices without attestation (YubiKey NEO,
/// firmware before 4.3, the virtual test card) give
/// [`Error::NotSupported`].
pub fn attest(serial: Option<u32>, slot: &str) -> Result<Attestation, Error> {
    use der::{Decode, Encode};
    let slot_id = device::slot(slot)?;
    let mut yk = device::open(serial)?;
    let serial = yk.serial().0;
    let name = device::describe(Some(serial));
    let not_supported = || Error::NotSupported {
        device: name.clone(),
        what: "key attestation".to_string(),
    };
    let certificate = match yubikey::piv::attest(&mut yk, slot_id) {
        Ok(der) => der.to_vec(),
        Err(yubikey::Error::NotSupported) => return Err(not_supported()),
        Err(yubikey::Error::GenericError) => {
            return Err(Error::SlotEmpty {
                device: name,
                slot: slot.to_string(),
            })
        }
        Err(e) => return Err(device::map(&name, "attestation", e)),
    };
    let device_certificate =
        Certificate::read(&mut yk, SlotId::Attestation).map_err(|_| not_supported())?;
    let device_der = device_certificate.cert;
    let attested =
        x509_cert::Certificate::from_der(&certificate).map_err(|e| bad_cert(&name, e))?;
    // The attestation must be signed by the device's attestation key.
    let issuer_spki = device_der
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| bad_cert(&name, e))?;
    let algorithm = keys::algorithm_of(&issuer_spki, &name)?;
    let tbs = attested
        .tbs_certificate()
        .to_der()
        .map_err(|e| bad_cert(&name, e))?;
    crate::verify(
        algorithm,
        &issuer_spki,
        &tbs,
        attested.signature().raw_bytes(),
    )
    .map_err(|_| Error::Device {
        device: name.clone(),
        reason: "the attestation is not signed by the device attestation key".to_string(),
    })?;
    // ... and must certify the key the slot holds.
    let attested_spki = attested
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| bad_cert(&name, e))?;
    if let Ok(slot_spki) = keys::slot_public_key(&mut yk, &name, slot_id) {
        if slot_spki != attested_spki {
            return Err(Error::Device {
                device: name,
                reason: format!(
                    "the attestation certifies another key than the one in slot {slot}"
                ),
            });
        }
    }
    Ok(Attestation {
        serial,
        slot: slot.to_string(),
        certificate,
        device_certificate: device_der.to_der().map_err(|e| bad_cert(&name, e))?,
    })
}

fn bad_cert(device: &str, e: der::Error) -> Error {
    Error::Device {
        device: device.to_string(),
        reason: format!("malformed attestation certificate: {e}"),
    }
}

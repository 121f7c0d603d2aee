//! Finding a YubiKey and turning the `yubikey` crate's errors into ours.

use yubikey::{Serial, YubiKey};

use crate::Error;

/// Opens the device with `serial`, or the only one present when `serial`
/// is `None`.
pub(crate) fn open(serial: Option<u32>) -> Result<YubiKey, Error> {
    let found = match serial {
        Some(n) => YubiKey::open_by_serial(Serial(n)),
        None => YubiKey::open(),
    };
    found.map_err(|e| match e {
        yubikey::Error::NotFound => Error::DeviceNotFound {
            device: describe(serial),
        },
        yubikey::Error::PcscError { inner } => Error::Device {
            device: describe(serial),
            reason: match inner {
                Some(pcsc::Error::NoService) | Some(pcsc::Error::NoReadersAvailable) | None => {
                    "no smart-card reader found (is pcscd running and the YubiKey plugged in?)"
                        .to_string()
                }
                Some(other) => format!("PC/SC: {other}"),
            },
        },
        other => Error::Device {
            device: describe(serial),
            reason: other.to_string(),
        },
    })
}

pub(crate) fn describe(serial: Option<u32>) -> String {
    match serial {
        Some(n) => format!("YubiKey serial {n}"),
        None => "YubiKey".to_string(),
    }
}

/// Maps an error from a PIN, PUK or slot operation on `device`.
pub(crate) fn map(device: &str, what: &str, e: yubikey::Error) -> Error {
    match e {
        yubikey::Error::WrongPin { tries: 0 } | yubikey::Error::PinLocked => Error::PinBlocked {
            device: device.to_string(),
            what: what.to_string(),
        },
        yubikey::Error::WrongPin { tries } => Error::WrongPin {
            device: device.to_string(),
            what: what.to_string(),
            retries: tries,
        },
        other => Error::Device {
            device: device.to_string(),
            reason: format!("{what}: {other}"),
        },
    }
}

/// Parses a slot name as it appears in a key reference: `9a`, `9c`, `9d`,
/// `9e` or a retired slot `82`..`95`.
pub(crate) fn slot(name: &str) -> Result<yubikey::piv::SlotId, Error> {
    let invalid = || Error::InvalidKeyRef {
        reference: format!("yubikey:slot={name}"),
        reason: "slot must be 9a, 9c, 9d, 9e or a retired slot 82..95".to_string(),
    };
    let byte = u8::from_str_radix(name, 16).map_err(|_| invalid())?;
    match yubikey::piv::SlotId::try_from(byte) {
        Ok(yubikey::piv::SlotId::Management(_) | yubikey::piv::SlotId::Attestation) | Err(_) => {
            Err(invalid())
        }
        Ok(s) => Ok(s),
    }
}

/// A slot as officers write it: two hex digits, `9c`.
pub(crate) fn slot_name(slot: yubikey::piv::SlotId) -> String {
    format!("{:02x}", u8::from(slot))
}

//! The virtual PIV card that tests/services/piv.sh runs, shared by the
//! yubikey tests and bench of this crate: found through
//! `$KXCA_TEST_RUN_DIR/piv.env`, locked (one card, many users) and reset to
//! factory state.

use std::fs::File;
use std::path::PathBuf;

/// The card, held until drop.
pub struct LockedCard {
    pub serial: u32,
    _lock: File,
}

/// The card, locked and reset; `None` when the service is not running (the
/// caller decides whether that is a skip or a failure).
pub fn locked_card() -> Option<LockedCard> {
    let env = std::env::var_os("KXCA_TEST_RUN_DIR")
        .map(PathBuf::from)
        .map(|d| d.join("piv.env"))
        .filter(|p| p.exists())?;
    let serial = std::fs::read_to_string(&env)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("PIV_SERIAL=").map(str::to_string))
        .expect("PIV_SERIAL in piv.env")
        .parse()
        .unwrap();
    let lock = File::create(env.with_file_name("piv.lock")).unwrap();
    lock.lock().unwrap();
    reset(serial);
    Some(LockedCard {
        serial,
        _lock: lock,
    })
}

/// PIV reset: block the PIN and the PUK, then RESET (YubiKey INS FB).
fn reset(serial: u32) {
    let mut yk = yubikey::YubiKey::open_by_serial(yubikey::Serial(serial)).unwrap();
    for _ in 0..16 {
        match yk.verify_pin(b"00000000") {
            Err(yubikey::Error::WrongPin { tries }) if tries > 0 => continue,
            _ => break,
        }
    }
    // Not YubiKey::block_puk: it loops forever on an unexpected status word.
    for _ in 0..16 {
        match yk.change_puk(b"00000000", b"00000000") {
            Err(yubikey::Error::WrongPin { tries }) if tries > 0 => continue,
            _ => break,
        }
    }
    yk.reset_device().expect("PIV reset of the virtual card");
}

//! The virtual PIV card started by tests/services/piv.sh: finding it,
//! locking it for one test, and resetting it with yubico-piv-tool.

use std::fs::File;
use std::path::PathBuf;
use std::process::Command;

/// The virtual card, locked for one test until drop.
pub struct Card {
    /// The card serial number (from piv.env).
    pub serial: u32,
    _lock: File,
}

/// The card, locked for this test and reset to factory state; `None` (after
/// a loud message) under bare `cargo test` when the service is not running.
pub fn card() -> Option<Card> {
    let env = std::env::var_os("KXCA_TEST_RUN_DIR")
        .map(PathBuf::from)
        .map(|d| d.join("piv.env"))
        .filter(|p| p.exists());
    let Some(env) = env else {
        crate::require(
            "the virtual PIV card",
            false,
            "tests/run starts tests/services/piv.sh",
        );
        return None;
    };
    let text = std::fs::read_to_string(&env).unwrap();
    let serial = text
        .lines()
        .find_map(|l| l.strip_prefix("PIV_SERIAL="))
        .expect("PIV_SERIAL in piv.env")
        .parse()
        .unwrap();
    let lock = File::create(env.with_file_name("piv.lock")).unwrap();
    lock.lock().unwrap();
    reset();
    Some(Card {
        serial,
        _lock: lock,
    })
}

fn piv_tool(args: &[&str]) -> (bool, String) {
    let out = Command::new("yubico-piv-tool")
        .args(["-r", "Yubico"])
        .args(args)
        .output()
        .expect("yubico-piv-tool");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// PIV reset by an independent client: block PIN and PUK, then reset.
fn reset() {
    for _ in 0..4 {
        piv_tool(&["-a", "verify-pin", "-P", "00000000"]);
    }
    for _ in 0..4 {
        piv_tool(&["-a", "change-puk", "-P", "00000000", "-N", "00000000"]);
    }
    let (ok, text) = piv_tool(&["-a", "reset"]);
    assert!(ok, "yubico-piv-tool -a reset: {text}");
}

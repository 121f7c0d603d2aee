//! SoftHSM2 tokens for tests: each test gets its own configuration file
//! and token directory, so tests never see each other's keys or slots.
//!
//! SoftHSM2 reads SOFTHSM2_CONF once, at C_Initialize, for the whole
//! process; tests that load the module in-process therefore run each in a
//! child process of their own (`isolated`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The SoftHSM2 PKCS#11 module (Debian's path).
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// Every test token's user PIN.
pub const USER_PIN: &str = "kx-user-4821";
/// Every test token's security-officer PIN.
pub const SO_PIN: &str = "kx-so-93017";
const CHILD_ENV: &str = "KXCA_TEST_SOFTHSM_CHILD";

/// A private SoftHSM2 configuration and token directory, removed on drop.
pub struct SoftHsm {
    /// The temp directory holding everything below.
    pub dir: tempfile::TempDir,
    /// The SOFTHSM2_CONF file.
    pub conf: PathBuf,
    /// The token directory.
    pub tokens: PathBuf,
    /// A file holding [`USER_PIN`].
    pub pin_file: PathBuf,
}

/// True when SoftHSM2 (module and softhsm2-util) is installed; otherwise a
/// loud skip, or a failure under `tests/run`.
pub fn available() -> bool {
    let ok = Path::new(MODULE).exists()
        && Command::new("softhsm2-util")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    crate::require(
        &format!("SoftHSM2 ({MODULE} and softhsm2-util)"),
        ok,
        "run tests/run to install it",
    )
}

impl SoftHsm {
    /// A fresh token directory holding one initialised token per label.
    pub fn new(labels: &[&str]) -> SoftHsm {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                tokens.display()
            ),
        )
        .unwrap();
        let pin_file = dir.path().join("pin");
        std::fs::write(&pin_file, format!("{USER_PIN}\n")).unwrap();
        let hsm = SoftHsm {
            dir,
            conf,
            tokens,
            pin_file,
        };
        for label in labels {
            hsm.init_token(label);
        }
        hsm
    }

    /// Initialises one more token with this label and the test PINs.
    pub fn init_token(&self, label: &str) {
        let out = self
            .util()
            .args(["--init-token", "--free", "--label", label])
            .args(["--so-pin", SO_PIN, "--pin", USER_PIN])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "softhsm2-util --init-token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// softhsm2-util with this test's configuration.
    pub fn util(&self) -> Command {
        let mut c = Command::new("softhsm2-util");
        c.env("SOFTHSM2_CONF", &self.conf);
        c
    }

    /// pkcs11-tool (OpenSC) on this test's tokens, as an independent reader.
    pub fn pkcs11_tool(&self) -> Command {
        let mut c = Command::new("pkcs11-tool");
        c.env("SOFTHSM2_CONF", &self.conf)
            .args(["--module", MODULE]);
        c
    }

    /// Runs `body` in a child process whose SOFTHSM2_CONF points at a
    /// fresh token directory with `labels` initialised. `test` is the
    /// test function's name (the child runs only that test).
    pub fn isolated(test: &str, labels: &[&str], body: impl FnOnce(&Path)) {
        if let Ok(conf) = std::env::var(CHILD_ENV) {
            std::env::set_var("SOFTHSM2_CONF", &conf);
            body(Path::new(&conf));
            return;
        }
        if !available() {
            return;
        }
        let hsm = SoftHsm::new(labels);
        let out = Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--nocapture", "--test-threads", "1"])
            .env(CHILD_ENV, &hsm.conf)
            .env("SOFTHSM2_CONF", &hsm.conf)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child test {test} failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
        drop(hsm);
    }
}

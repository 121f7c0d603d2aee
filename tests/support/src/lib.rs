//! Helpers shared by kxca's integration tests (root package and
//! `kxca-hsm`): a CA home driven through the real `kxca` binary, pkilint
//! and openssl checks, SoftHSM2 tokens, the virtual PIV card, form and
//! mail-stack builders, and the one rule for a missing service.
#![warn(missing_docs)]
// Test support: a broken fixture should stop the test at the line that
// broke, so unwrap is the right tool here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod browser;
pub mod ceremony;
pub mod common;
pub mod console;
pub mod hostile;
pub mod intake;
pub mod mailstack;
pub mod ocsp;
pub mod piv;
pub mod softhsm;

use std::path::PathBuf;

/// True when `tests/run` asked for every service and tool to be present
/// (`KXCA_TEST_REQUIRE_SERVICES=1`).
pub fn services_required() -> bool {
    std::env::var("KXCA_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// The one skip-or-fail rule: when `service` is not `available`, a loud
/// skip under bare `cargo test` (returns false), a failure under
/// `tests/run` (KXCA_TEST_REQUIRE_SERVICES=1). `hint` says how to get it.
pub fn require(service: &str, available: bool, hint: &str) -> bool {
    if !available {
        if services_required() {
            panic!("{service} is required (KXCA_TEST_REQUIRE_SERVICES=1) but is not available ({hint})");
        }
        eprintln!("\n=============================================================");
        eprintln!("SKIPPED: {service} is not available ({hint})");
        eprintln!("=============================================================\n");
    }
    available
}

/// The `kxca` binary under test. Cargo only gives its path to the root
/// package's own tests (`env!("CARGO_BIN_EXE_kxca")` at compile time, and
/// the same variable at run time), so this crate reads it from the
/// environment; `KXCA_TEST_BIN` overrides it.
pub fn kxca_bin() -> PathBuf {
    std::env::var_os("KXCA_TEST_BIN")
        .or_else(|| std::env::var_os("CARGO_BIN_EXE_kxca"))
        .map(PathBuf::from)
        .expect(
            "the kxca binary path: run this test with cargo test from the root package \
             (it sets CARGO_BIN_EXE_kxca) or set KXCA_TEST_BIN",
        )
}

/// The repository root, for fixtures and scripts that live outside this
/// crate (policies/, tests/services/, provisioner/tests/fixtures).
pub fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

//! Test-only fault injection. `KXCA_TEST_FAULT` (a comma-separated list of
//! fault names) is read only in debug builds, which is what `cargo test`
//! drives; a release build compiles every hook to "off", so no environment
//! variable can make a production kxca misbehave.

/// True when the named fault is switched on for this process.
#[cfg(debug_assertions)]
pub(crate) fn active(name: &str) -> bool {
    std::env::var("KXCA_TEST_FAULT").is_ok_and(|v| v.split(',').any(|f| f.trim() == name))
}

#[cfg(not(debug_assertions))]
pub(crate) fn active(_name: &str) -> bool {
    false
}

//! `policies/pickup.toml`: the pickup code's lifetime and try limit, the
//! Argon2id cost of its hash, and how long the public role waits for the
//! daemon. Read from the home at every start, never compiled in.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Error;

/// The pickup policy shipped with kxca, used when a home has none.
pub const SHIPPED_PICKUP: &str = include_str!("../../../policies/pickup.toml");

/// The values of `policies/pickup.toml`.
#[derive(Debug, Clone)]
pub struct PickupPolicy {
    /// Where it was read from (for error messages).
    pub path: PathBuf,
    /// A minted code is valid this many seconds.
    pub code_lifetime_seconds: i64,
    /// Wrong codes before the pickup locks.
    pub max_tries: u32,
    /// Argon2id memory cost in KiB.
    pub argon2_memory_kib: u32,
    /// Argon2id passes.
    pub argon2_iterations: u32,
    /// Argon2id lanes.
    pub argon2_parallelism: u32,
    /// How long the public role waits for the daemon's signature.
    pub wait_seconds: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    code: CodeSection,
    argon2: Argon2Section,
    request: RequestSection,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeSection {
    lifetime_days: u32,
    max_tries: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Argon2Section {
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestSection {
    wait_seconds: u32,
}

impl PickupPolicy {
    /// Reads `<policies>/pickup.toml`; a home made before the file existed
    /// gets the shipped values, with a warning.
    pub fn load(policies: &Path) -> Result<PickupPolicy, Error> {
        let path = policies.join("pickup.toml");
        match std::fs::read_to_string(&path) {
            Ok(text) => PickupPolicy::parse(&text, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(path = %path.display(), "no pickup policy in the home; using the shipped one");
                PickupPolicy::parse(SHIPPED_PICKUP, Path::new("policies/pickup.toml (shipped)"))
            }
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Parses and checks the values; the error names the file and key.
    pub fn parse(text: &str, path: &Path) -> Result<PickupPolicy, Error> {
        let bad = |message: String| Error::Policy {
            path: path.to_path_buf(),
            message,
        };
        let f: File = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        if !(1..=90).contains(&f.code.lifetime_days) {
            return Err(bad(format!(
                "[code] lifetime_days = {}: must be 1 to 90 (a pickup password is a short-lived secret)",
                f.code.lifetime_days
            )));
        }
        if !(1..=20).contains(&f.code.max_tries) {
            return Err(bad(format!(
                "[code] max_tries = {}: must be 1 to 20",
                f.code.max_tries
            )));
        }
        // argon2's own limits, checked here so the error names the key
        // instead of failing at the first mint.
        argon2::Params::new(
            f.argon2.memory_kib,
            f.argon2.iterations,
            f.argon2.parallelism,
            None,
        )
        .map_err(|e| bad(format!("[argon2]: {e}")))?;
        if f.argon2.memory_kib < 8 * 1024 {
            return Err(bad(format!(
                "[argon2] memory_kib = {}: at least 8192 (8 MiB)",
                f.argon2.memory_kib
            )));
        }
        if !(2..=120).contains(&f.request.wait_seconds) {
            return Err(bad(format!(
                "[request] wait_seconds = {}: must be 2 to 120",
                f.request.wait_seconds
            )));
        }
        Ok(PickupPolicy {
            path: path.to_path_buf(),
            code_lifetime_seconds: i64::from(f.code.lifetime_days) * 86_400,
            max_tries: f.code.max_tries,
            argon2_memory_kib: f.argon2.memory_kib,
            argon2_iterations: f.argon2.iterations,
            argon2_parallelism: f.argon2.parallelism,
            wait_seconds: f.request.wait_seconds,
        })
    }

    pub(crate) fn argon2_params(&self) -> Result<argon2::Params, Error> {
        argon2::Params::new(
            self.argon2_memory_kib,
            self.argon2_iterations,
            self.argon2_parallelism,
            None,
        )
        .map_err(|e| Error::Policy {
            path: self.path.clone(),
            message: format!("[argon2]: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_policy_loads() {
        let p = PickupPolicy::parse(SHIPPED_PICKUP, Path::new("pickup.toml")).unwrap();
        assert_eq!(p.code_lifetime_seconds, 14 * 86_400);
        assert_eq!(p.max_tries, 5);
        assert_eq!(p.wait_seconds, 20);
    }

    #[test]
    fn bad_values_name_the_key() {
        let t = SHIPPED_PICKUP.replace("max_tries = 5", "max_tries = 0");
        let e = PickupPolicy::parse(&t, Path::new("x/pickup.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x/pickup.toml") && e.contains("max_tries"),
            "{e}"
        );
        let t = SHIPPED_PICKUP.replace("[request]", "[request]\ntypo = 1");
        let e = PickupPolicy::parse(&t, Path::new("x/pickup.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("typo"), "{e}");
    }
}

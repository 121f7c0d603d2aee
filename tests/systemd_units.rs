//! The systemd units of the two roles (dist/systemd): `systemd-analyze
//! verify` accepts them, they carry the hardening the roles rely on, and the
//! public unit cannot reach the CA key files or the CA key secret.

use kxca_test_support::common;

use std::path::{Path, PathBuf};
use std::process::Command;

const UNITS: &[(&str, &str)] = &[
    ("kxca-serve.service", "serve"),
    ("kxca-daemon.service", "daemon"),
];
const INSTALLED: &str = "/usr/local/bin/kxca";

fn unit_text(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dist/systemd")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `key=value` lines of a unit, comments left out.
fn directives(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn values(text: &str, key: &str) -> Vec<String> {
    directives(text)
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect()
}

/// `systemd-analyze verify` on units written to `dir`: (success, stderr).
fn verify(units: &[PathBuf]) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(units)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The units as installed, with ExecStart pointing at the binary under
/// test: verify insists that the program exists.
fn installable(dir: &Path) -> Vec<PathBuf> {
    UNITS
        .iter()
        .map(|(name, role)| {
            let text = unit_text(name);
            let exec = format!("ExecStart={INSTALLED} {role}\n");
            assert!(text.contains(&exec), "{name} has no {exec:?}");
            let path = dir.join(name);
            let built = format!("ExecStart={} {role}\n", env!("CARGO_BIN_EXE_kxca"));
            std::fs::write(&path, text.replace(&exec, &built)).unwrap();
            path
        })
        .collect()
}

#[test]
fn systemd_analyze_verifies_the_units() {
    if !common::require_tool("systemd-analyze", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let units = installable(dir.path());
    let (ok, stderr) = verify(&units);
    assert!(
        ok && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );

    // verify does catch a broken unit (so the pass above means something).
    let broken = dir.path().join("kxca-broken.service");
    std::fs::write(
        &broken,
        unit_text("kxca-serve.service").replace(
            &format!("ExecStart={INSTALLED} serve"),
            "ExecStart=/nonexistent/kxca serve",
        ),
    )
    .unwrap();
    let (ok, stderr) = verify(&[broken]);
    assert!(
        !ok,
        "verify passed a unit whose program is missing: {stderr}"
    );

    // The exposure score systemd computes from the sandboxing directives.
    for unit in &units {
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(unit)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let score: f64 = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(':').nth(1))
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level: {text}"));
        eprintln!("{}: exposure {score}", unit.display());
        assert!(score <= 2.5, "{}: exposure {score}\n{text}", unit.display());
    }
}

#[test]
fn the_units_are_hardened_and_serve_cannot_reach_the_ca_keys() {
    for (name, _) in UNITS {
        let text = unit_text(name);
        for (key, want) in [
            ("User", "kxca"),
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ReadWritePaths", "/var/lib/kxca"),
            ("PrivateTmp", "yes"),
            ("SystemCallFilter", "@system-service"),
            ("MemoryDenyWriteExecute", "yes"),
            ("CapabilityBoundingSet", ""),
            ("RestrictNamespaces", "yes"),
            ("KillSignal", "SIGTERM"),
        ] {
            assert!(
                values(&text, key).iter().any(|v| v == want),
                "{name}: no {key}={want}"
            );
        }
    }
    let serve = unit_text("kxca-serve.service");
    let hidden: Vec<String> = values(&serve, "InaccessiblePaths")
        .iter()
        .flat_map(|v| {
            v.split_whitespace()
                .map(|p| p.trim_start_matches('-').to_string())
        })
        .collect();
    for path in [
        "/var/lib/kxca/keys",
        "/etc/kxca/ca-key.secret",
        "/etc/kxca/daemon.env",
    ] {
        assert!(hidden.iter().any(|h| h == path), "serve can reach {path}");
    }
    let daemon = unit_text("kxca-daemon.service");
    // Each role its own environment file: the daemon's (CA secret) is not serve's.
    let serve_env = values(&serve, "EnvironmentFile");
    let daemon_env = values(&daemon, "EnvironmentFile");
    assert!(!serve_env.is_empty() && !daemon_env.is_empty());
    assert!(serve_env.iter().all(|e| !daemon_env.contains(e)));
    assert!(values(&serve, "PrivateDevices").iter().any(|v| v == "yes"));
}

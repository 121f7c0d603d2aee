//! Bad input gets a one-line error naming the field or file, a non-zero
//! exit, and leaves the store exactly as it was.

use kxca_test_support::common;

use common::{assert_ok, p, TestCa};

fn issue_args<'a>(overrides: &[(&'a str, &'a str)]) -> Vec<String> {
    let mut fields = vec![
        ("--centre", "JC"),
        ("--union-code", "26276"),
        ("--branch-code", "00"),
        ("--contract-unit", "2627600"),
        ("--office-code", "1234567"),
        ("--contact-code", "001"),
        ("--office-name", "事務所"),
        ("--contact-name", "担当者"),
        ("--email", "a@example.jp"),
    ];
    for (k, v) in overrides {
        if let Some(f) = fields.iter_mut().find(|(fk, _)| fk == k) {
            f.1 = v;
        } else {
            fields.push((k, v));
        }
    }
    let mut args = vec!["issue".to_string()];
    for (k, v) in fields {
        args.push(k.to_string());
        args.push(v.to_string());
    }
    args
}

/// Runs kxca expecting failure; checks the message and that nothing changed.
fn expect_refusal(ca: &TestCa, args: &[String], needle: &str) {
    let before = ca.snapshot();
    let out = ca.cmd().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one-line error expected: {stderr}"
    );
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        stderr.contains(needle),
        "{args:?}: expected {needle:?} in {stderr}"
    );
    assert_eq!(before, ca.snapshot(), "{args:?} changed the store");
}

#[test]
fn invalid_requests_are_refused_without_changes() {
    let ca = TestCa::new();
    let good = ca.issue("1", "001", &[]);
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    expect_refusal(
        &ca,
        &issue_args(&[("--profile", "no-such-profile")]),
        "unknown certificate profile \"no-such-profile\"",
    );
    expect_refusal(&ca, &issue_args(&[("--union-code", "2627")]), "union_code");
    expect_refusal(&ca, &issue_args(&[("--office-code", "12a")]), "office_code");
    expect_refusal(&ca, &issue_args(&[("--contact-code", "1")]), "contact_code");
    expect_refusal(
        &ca,
        &issue_args(&[("--contract-unit", "2627601")]),
        "contract_unit",
    );
    expect_refusal(&ca, &issue_args(&[("--email", "not-an-address")]), "email");
    expect_refusal(&ca, &issue_args(&[("--email", "a..b@example.jp")]), "email");
    expect_refusal(
        &ca,
        &issue_args(&[("--office-name", &"長".repeat(26))]),
        "office_name",
    );
    expect_refusal(&ca, &issue_args(&[("--key", "rsa-1024")]), "rsa-1024");
    expect_refusal(&ca, &issue_args(&[("--pkcs12", "ancient")]), "--pkcs12");
    expect_refusal(
        &ca,
        &s(&["revoke", "0123456789abcdef", "--reason", "superseded"]),
        "no certificate with serial 0123456789abcdef",
    );
    expect_refusal(&ca, &s(&["revoke", "xyz"]), "invalid serial number");
    expect_refusal(
        &ca,
        &s(&["revoke", &good.serial, "--reason", "bored"]),
        "unknown revocation reason",
    );
    assert_ok(
        &ca.kxca(&["revoke", &good.serial, "--reason", "superseded"]),
        "first revoke",
    );
    expect_refusal(
        &ca,
        &s(&["revoke", &good.serial, "--reason", "superseded"]),
        "already revoked",
    );
    expect_refusal(&ca, &s(&["init"]), "already holds a kxca home");

    // A password given by the operator must fit the KX client (8–16 letters and digits).
    let pw = ca.dir.path().join("short");
    std::fs::write(&pw, "abc\n").unwrap();
    expect_refusal(&ca, &issue_args(&[("--password-file", p(&pw))]), "8 to 16");

    // Missing passphrase: the key cannot be opened, nothing is recorded.
    let moved = ca.dir.path().join("passphrase.away");
    std::fs::rename(&ca.pass_file, &moved).unwrap();
    expect_refusal(&ca, &issue_args(&[]), &ca.pass_file.display().to_string());
    expect_refusal(&ca, &s(&["crl"]), &ca.pass_file.display().to_string());
    std::fs::rename(&moved, &ca.pass_file).unwrap();
    std::fs::write(&ca.pass_file, "wrong passphrase\n").unwrap();
    expect_refusal(&ca, &issue_args(&[]), "wrong passphrase");
    std::fs::write(&ca.pass_file, format!("{}\n", common::PASSPHRASE)).unwrap();

    // A typo in a policy file names the file.
    let profile = ca.path("policies/profiles/office-client.toml");
    let original = std::fs::read_to_string(&profile).unwrap();
    std::fs::write(&profile, original.replace("days = 1095", "dayz = 1095")).unwrap();
    expect_refusal(&ca, &issue_args(&[]), "office-client.toml");
    std::fs::write(&profile, &original).unwrap();

    // production = true refuses soft keys.
    let config = ca.path("kxca.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        original.replace("production = false", "production = true"),
    )
    .unwrap();
    expect_refusal(&ca, &s(&["list"]), "soft key");
    std::fs::write(&config, &original).unwrap();
    assert_ok(&ca.kxca(&["list"]), "list after restoring config");
}

#[test]
fn read_only_and_corrupt_databases_are_reported() {
    let ca = TestCa::new();
    ca.issue("1", "001", &[]);
    let db = ca.path("kxca.db");

    // Read-only: chmod is not enough for root, so also make it immutable where we can.
    let before = ca.snapshot();
    let mut perms = std::fs::metadata(&db).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o444);
    std::fs::set_permissions(&db, perms.clone()).unwrap();
    let immutable = std::process::Command::new("chattr")
        .args(["+i", p(&db)])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let out = ca
        .cmd()
        .args(issue_args(&[("--office-code", "2")]))
        .output()
        .unwrap();
    if immutable {
        std::process::Command::new("chattr")
            .args(["-i", p(&db)])
            .status()
            .unwrap();
    }
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    std::fs::set_permissions(&db, perms).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "issue on a read-only database must fail"
    );
    assert!(
        stderr.contains("kxca.db") && stderr.trim_end().lines().count() == 1,
        "{stderr}"
    );
    assert_eq!(before, ca.snapshot());

    // Corrupt: garbage over the database file; the file is left as it was.
    let _ = std::fs::remove_file(ca.path("kxca.db-wal"));
    let _ = std::fs::remove_file(ca.path("kxca.db-shm"));
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(&db, &garbage).unwrap();
    for args in [
        vec!["list"],
        vec!["revoke", "01"],
        issue_args(&[]).iter().map(String::as_str).collect(),
    ] {
        let out = ca.kxca(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{args:?} on a corrupt database must fail"
        );
        assert!(
            stderr.contains("kxca.db") && stderr.trim_end().lines().count() == 1,
            "{stderr}"
        );
        assert_eq!(
            std::fs::read(&db).unwrap(),
            garbage,
            "{args:?} changed the corrupt file"
        );
    }
}

#[test]
fn missing_home_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kxca"))
        .args(["list"])
        .env("KXCA_HOME", dir.path().join("nothing"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("kxca init"), "{stderr}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kxca"))
        .args(["list"])
        .env_remove("KXCA_HOME")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("KXCA_HOME"));
}

//! Nothing signed that is not well-formed; nothing recorded that did not
//! happen (issue 10): configuration bounds, CRLs and OCSP responses checked
//! after signing, issuance that never leaves a good certificate without its
//! PKCS#12, crash recovery and `kxca doctor`, concurrent CRL runs, and
//! RFC 5280 3.3 for revoked certificates that expire.

use kxca_test_support::common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{assert_ok, issue_args, p, run, TestCa};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn db(ca: &TestCa) -> rusqlite::Connection {
    rusqlite::Connection::open(ca.path("kxca.db")).unwrap()
}

fn count(ca: &TestCa, sql: &str) -> i64 {
    db(ca).query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Serials (upper-case hex, as openssl prints them) listed on the CRL file.
fn crl_serials(ca: &TestCa) -> Vec<String> {
    let crl = ca.path("crl/issuing-1.crl");
    let (ok, text) = run(
        "openssl",
        &["crl", "-inform", "DER", "-in", p(&crl), "-noout", "-text"],
    );
    assert!(ok, "{text}");
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Serial Number: "))
        .map(|s| s.trim().to_ascii_uppercase())
        .collect()
}

fn crl_number(ca: &TestCa) -> i64 {
    let crl = ca.path("crl/issuing-1.crl");
    let (ok, text) = run(
        "openssl",
        &[
            "crl",
            "-inform",
            "DER",
            "-in",
            p(&crl),
            "-noout",
            "-crlnumber",
        ],
    );
    assert!(ok, "{text}");
    let hex = text
        .trim()
        .trim_start_matches("crlNumber=")
        .trim_start_matches("0x");
    i64::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn set_config(ca: &TestCa, from: &str, to: &str) -> String {
    let path = ca.path("kxca.toml");
    let original = std::fs::read_to_string(&path).unwrap();
    assert!(original.contains(from), "{from:?} not in {original}");
    std::fs::write(&path, original.replacen(from, to, 1)).unwrap();
    original
}

#[test]
fn out_of_range_configuration_is_refused_naming_key_and_file() {
    let ca = TestCa::new();
    let before = ca.snapshot();
    let config = ca.path("kxca.toml");
    for (from, to, key) in [
        // The value that once made a 17-character GeneralizedTime.
        (
            "validity_hours = 168",
            "validity_hours = 4294967295",
            "crl.validity_hours",
        ),
        (
            "root_validity_days = 7305",
            "root_validity_days = 100000",
            "ca.root_validity_days",
        ),
        (
            "response_validity_hours = 96",
            "response_validity_hours = 100000",
            "ocsp.response_validity_hours",
        ),
    ] {
        let original = set_config(&ca, from, to);
        let out = ca.kxca(&["crl"]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{to}: kxca crl succeeded");
        assert!(err.contains(key), "{to}: {err}");
        assert!(err.contains(p(&config)), "{to}: {err}");
        assert!(err.contains("out of range"), "{to}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        std::fs::write(&config, original).unwrap();
    }
    assert!(
        !ca.path("crl/issuing-1.crl").exists(),
        "a CRL was published"
    );
    assert_eq!(
        before,
        ca.snapshot(),
        "a refused configuration changed the store"
    );

    // The certificate profile is held to its bounds the same way.
    let profile = ca.path("policies/profiles/office-client.toml");
    let text = std::fs::read_to_string(&profile).unwrap();
    std::fs::write(
        &profile,
        text.replacen("backdate_minutes = 5", "backdate_minutes = 4000000", 1),
    )
    .unwrap();
    let out = ca.kxca(&issue_args("1234567", "001"));
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("validity.backdate_minutes"), "{err}");
    assert!(err.contains(p(&profile)), "{err}");
    assert_eq!(before, ca.snapshot());
}

#[test]
fn corrupted_crl_is_refused_not_stored_or_published() {
    let ca = TestCa::new();
    let i = ca.issue("1234567", "001", &[]);
    assert_ok(&ca.kxca(&["revoke", &i.serial]), "revoke");
    assert_ok(&ca.kxca(&["crl"]), "crl");
    let published = std::fs::read(ca.path("crl/issuing-1.crl")).unwrap();
    let published_pem = std::fs::read(ca.path("crl/issuing-1.pem")).unwrap();
    let before = ca.snapshot();

    let out = ca
        .cmd()
        .arg("crl")
        .env("KXCA_TEST_FAULT", "crl-corrupt")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "a corrupted CRL was accepted");
    assert!(err.contains("signed CRL"), "{err}");
    assert!(err.contains("signature does not verify"), "{err}");
    assert_eq!(before, ca.snapshot(), "the corrupted CRL was recorded");
    assert_eq!(
        published,
        std::fs::read(ca.path("crl/issuing-1.crl")).unwrap()
    );
    assert_eq!(
        published_pem,
        std::fs::read(ca.path("crl/issuing-1.pem")).unwrap()
    );
    let leftovers: Vec<_> = std::fs::read_dir(ca.path("crl"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The same run without the fault goes through.
    assert_ok(&ca.kxca(&["crl"]), "crl");
    assert_eq!(crl_number(&ca), 2);
}

#[test]
fn corrupted_ocsp_response_is_refused_not_published() {
    let ca = TestCa::new();
    ca.issue("1234567", "001", &[]);
    let out_dir = ca.dir.path().join("publish");
    let out = ca
        .cmd()
        .args(["publish", p(&out_dir)])
        .env("KXCA_TEST_FAULT", "ocsp-corrupt")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "a corrupted OCSP response was accepted"
    );
    assert!(err.contains("signed OCSP response"), "{err}");
    assert!(!out_dir.join("ocsp").exists(), "a response was published");
    assert_eq!(
        count(&ca, "SELECT COUNT(*) FROM ocsp_responses"),
        0,
        "a corrupted response was stored"
    );
}

#[test]
fn issuance_into_a_missing_directory_records_nothing() {
    let ca = TestCa::new();
    let before = ca.snapshot();
    let out = ca.kxca(
        &[
            issue_args("1234567", "001"),
            vec!["--out", "/nonexistent/dir/x.p12"],
        ]
        .concat(),
    );
    assert!(!out.status.success(), "issue into /nonexistent succeeded");
    let err = stderr(&out);
    assert!(err.contains("/nonexistent/dir"), "{err}");
    assert_eq!(
        before,
        ca.snapshot(),
        "a refused issuance changed the store"
    );
    assert!(!Path::new("/nonexistent").exists());
}

#[test]
fn failure_after_signing_leaves_the_certificate_failed() {
    let ca = TestCa::new();
    let out_path = ca.dir.path().join("x.p12");
    let out = ca
        .cmd()
        .args(issue_args("1234567", "001"))
        .args(["--out", p(&out_path)])
        .env("KXCA_TEST_FAULT", "pkcs12-write")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "issue with a failing write succeeded"
    );
    assert!(!out_path.exists());
    assert_eq!(
        count(
            &ca,
            "SELECT COUNT(*) FROM certificates WHERE state = 'issued'"
        ),
        0
    );
    assert_eq!(
        count(
            &ca,
            "SELECT COUNT(*) FROM certificates WHERE state = 'failed'"
        ),
        1
    );
    assert_eq!(
        count(
            &ca,
            "SELECT COUNT(*) FROM audit WHERE action = 'certificate.deliver_failed'"
        ),
        1
    );
    let doctor = ca.kxca(&["doctor"]);
    assert_ok(&doctor, "doctor");
}

/// A small deterministic generator: the seed is printed, so a failing run
/// can be repeated.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below.max(1)
    }
}

#[test]
fn kill_9_during_issuance_then_doctor() {
    let ca = TestCa::new();
    // How long one issuance takes here, so kills land all through it.
    let typical = (0..3)
        .map(|i| {
            let t = Instant::now();
            let office = format!("999999{i}");
            let out = ca
                .cmd()
                .args(issue_args(&office, "001"))
                .env("KXCA_TEST_FAULT", "issue-slow")
                .output()
                .unwrap();
            assert_ok(&out, "issue");
            t.elapsed().as_millis() as u64
        })
        .max()
        .unwrap_or(0)
        .max(20);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill -9 loop: seed {seed}, one issuance takes {typical} ms");
    let mut rng = Lcg(seed);
    let loops: usize = std::env::var("KXCA_TEST_KILL_LOOPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut killed = 0;
    for i in 0..loops {
        let office = format!("{}", 1_000_000 + i);
        let mut child = ca
            .cmd()
            .args(issue_args(&office, "001"))
            // 100 ms pauses while pending: before signing, and with the
            // PKCS#12 written but the certificate not yet recorded issued.
            .env("KXCA_TEST_FAULT", "issue-slow")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Mostly in the second half, where the row is pending and the
        // certificate is signed and packaged; some kills miss it either way.
        let deadline = Duration::from_millis(typical / 3 + rng.next(typical * 7 / 6));
        std::thread::sleep(deadline);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        child.wait().unwrap();
    }
    eprintln!("killed {killed} of {loops}");
    assert!(killed > 0, "no issuance was interrupted");

    // Doctor opens the store as it is: it may list pending rows, but never
    // a good certificate without its PKCS#12.
    let out = ca.kxca(&["doctor", "--json"]);
    let findings: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = findings
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert!(!kinds.contains(&"good_without_pkcs12"), "{findings}");
    let pending = count(
        &ca,
        "SELECT COUNT(*) FROM certificates WHERE state = 'pending'",
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "pending").count() as i64,
        pending,
        "{findings}"
    );
    assert_eq!(out.status.success(), kinds.is_empty(), "{findings}");

    // The next command resolves what the killed processes left.
    assert_ok(&ca.kxca(&["list"]), "list");
    assert_eq!(
        count(
            &ca,
            "SELECT COUNT(*) FROM certificates WHERE state = 'pending'"
        ),
        0
    );
    // Each issuance also resolved what the one killed before it left.
    let abandoned = count(
        &ca,
        "SELECT COUNT(*) FROM audit WHERE action = 'certificate.abandoned'",
    );
    assert!(abandoned >= pending);
    assert_eq!(
        count(
            &ca,
            "SELECT COUNT(*) FROM certificates WHERE state = 'failed'"
        ),
        abandoned
    );
    let conn = db(&ca);
    let mut stmt = conn
        .prepare("SELECT serial, pkcs12_path FROM certificates WHERE state = 'issued'")
        .unwrap();
    let issued: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (serial, path) in &issued {
        assert!(
            Path::new(path).exists(),
            "good certificate {serial} has no {path}"
        );
    }
    // And no PKCS#12 is left behind for a certificate that is not issued.
    let files: Vec<PathBuf> = std::fs::read_dir(ca.path("issued"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|f| f.extension().is_some_and(|e| e == "p12"))
        .collect();
    for f in &files {
        assert!(
            issued.iter().any(|(_, path)| Path::new(path) == f),
            "{} belongs to no issued certificate",
            f.display()
        );
    }
    let out = ca.kxca(&["doctor"]);
    assert_ok(&out, "doctor after recovery");
    let removed = count(
        &ca,
        "SELECT COUNT(*) FROM audit WHERE action = 'certificate.abandoned'
         AND json_extract(detail, '$.pkcs12_removed') IS NOT NULL",
    );
    eprintln!(
        "{} issued, {abandoned} abandoned rows resolved ({pending} by the last command), {removed} of them with a PKCS#12 written and removed",
        issued.len()
    );
}

#[test]
fn concurrent_crl_runs_all_succeed() {
    let ca = TestCa::new();
    let i = ca.issue("1234567", "001", &[]);
    assert_ok(&ca.kxca(&["revoke", &i.serial]), "revoke");
    // A leftover of the fixed temporary name every run used to share (for
    // the .crl and the .pem alike): unique names do not trip over it.
    std::fs::create_dir(ca.path("crl/issuing-1.tmp~")).unwrap();
    let rounds = 4;
    let parallel = 8;
    for round in 0..rounds {
        let children: Vec<_> = (0..parallel)
            .map(|_| {
                ca.cmd()
                    .arg("crl")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert_ok(&out, &format!("concurrent crl (round {round})"));
        }
    }
    let total = (rounds * parallel) as i64;
    assert_eq!(count(&ca, "SELECT COUNT(*) FROM crls"), total);
    assert_eq!(count(&ca, "SELECT MAX(number) FROM crls"), total);
    // The published file is the newest CRL, never an older one put back.
    assert_eq!(crl_number(&ca), total);
    let newest: Vec<u8> = db(&ca)
        .query_row(
            "SELECT der FROM crls ORDER BY number DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(newest, std::fs::read(ca.path("crl/issuing-1.crl")).unwrap());
}

#[test]
fn crl_signing_does_not_hold_the_write_lock() {
    let ca = TestCa::new();
    let a = ca.issue("1234567", "001", &[]);
    // A signer that takes 3 s (as a YubiKey waiting for a touch would).
    let slow = ca
        .cmd()
        .arg("crl")
        .env("KXCA_TEST_FAULT", "crl-slow-sign")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    let t = Instant::now();
    assert_ok(&ca.kxca(&["revoke", &a.serial]), "revoke during a slow CRL");
    let took = t.elapsed();
    let out = slow.wait_with_output().unwrap();
    assert_ok(&out, "slow crl");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "the CRL signer was not slowed down (KXCA_TEST_FAULT=crl-slow-sign)"
    );
    assert!(
        took < Duration::from_millis(1200),
        "revoke waited {took:?} for the CRL signer"
    );
    // That CRL predates the revocation: doctor says so until the next one.
    let out = ca.kxca(&["doctor"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("crl_behind: issuing-1/{}", a.serial)),
        "{text}"
    );
    assert_ok(&ca.kxca(&["crl"]), "crl");
    assert_ok(&ca.kxca(&["doctor"]), "doctor");
}

#[test]
fn expired_revoked_certificate_stays_on_the_next_crl_once() {
    let ca = TestCa::new();
    let a = ca.issue("1234567", "001", &[]);
    let b = ca.issue("1234568", "001", &[]);
    assert_ok(
        &ca.kxca(&["revoke", &a.serial, "--reason", "keyCompromise"]),
        "revoke a",
    );
    assert_ok(&ca.kxca(&["revoke", &b.serial]), "revoke b");
    assert_ok(&ca.kxca(&["crl"]), "crl 1");
    let upper = |s: &str| s.to_ascii_uppercase();
    assert!(crl_serials(&ca).contains(&upper(&a.serial)));

    // a expires just after CRL 1 (the store's notAfter is what the CRL
    // builder goes by): CRL 1 listed it while it was still valid.
    let first: i64 = db(&ca)
        .query_row("SELECT this_update FROM crls WHERE number = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    db(&ca)
        .execute(
            "UPDATE certificates SET not_after = ?1 WHERE serial = ?2",
            rusqlite::params![first + 1, a.serial],
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    assert_ok(&ca.kxca(&["crl"]), "crl 2");
    let listed = crl_serials(&ca);
    assert!(
        listed.contains(&upper(&a.serial)),
        "RFC 5280 3.3: expired revoked certificate left off the first CRL after its expiry: {listed:?}"
    );
    assert!(listed.contains(&upper(&b.serial)));
    std::thread::sleep(Duration::from_millis(1100));
    assert_ok(&ca.kxca(&["crl"]), "crl 3");
    let listed = crl_serials(&ca);
    assert!(!listed.contains(&upper(&a.serial)), "{listed:?}");
    assert!(listed.contains(&upper(&b.serial)));
}

#[test]
fn certificate_hold_is_refused() {
    let ca = TestCa::new();
    let a = ca.issue("1234567", "001", &[]);
    let before = ca.snapshot();
    let out = ca.kxca(&["revoke", &a.serial, "--reason", "certificateHold"]);
    assert!(!out.status.success(), "certificateHold was accepted");
    assert!(
        stderr(&out).contains("certificateHold is not supported"),
        "{}",
        stderr(&out)
    );
    assert_eq!(before, ca.snapshot());
}

/// pkilint finds no error in the CRLs and OCSP responses kxca signs.
#[test]
fn pkilint_clean_crls_and_ocsp_responses() {
    if !common::require_tool("lint_ocsp_response", &["--help"]) {
        return;
    }
    let ca = TestCa::new();
    let a = ca.issue("1234567", "001", &[]);
    let b = ca.issue("1234568", "001", &[]);
    assert_ok(
        &ca.kxca(&["revoke", &a.serial, "--reason", "keyCompromise"]),
        "revoke",
    );
    assert_ok(&ca.kxca(&["crl"]), "crl");
    common::pkilint_certificates_and_crl(
        std::slice::from_ref(&b.cert),
        &ca.path("crl/issuing-1.crl"),
    );

    let out_dir = ca.dir.path().join("publish");
    assert_ok(&ca.kxca(&["publish", p(&out_dir)]), "publish");
    let mut responses = Vec::new();
    let mut stack = vec![out_dir.join("ocsp")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                responses.push(path);
            }
        }
    }
    // good and revoked, each under SHA-1 and SHA-256 CertIDs.
    assert!(responses.len() >= 4, "{responses:?}");
    for r in &responses {
        let (_, text) = run(
            "lint_ocsp_response",
            &["lint", "-s", "ERROR", "-f", "JSON", p(r)],
        );
        let v: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("lint_ocsp_response {}: {e}: {text}", r.display()));
        assert!(
            v["results"].as_array().is_some_and(|a| a.is_empty()),
            "lint_ocsp_response {}: {text}",
            r.display()
        );
    }
}

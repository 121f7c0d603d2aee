//! Key ceremonies through the real `kxca` binary (docs/CEREMONIES.md):
//! dual-control refusals that change nothing, `ceremony check` refusals,
//! the issuing-CA rollover (openssl verify, openssl crl and openssl ocsp
//! for both issuing CAs, pkilint on everything made), the old CA's
//! retirement, the root rollover with link certificates both ways, and a
//! compromise.

use std::path::Path;
use std::process::Output;

use kxca_test_support::ceremony::{
    assert_root_links, assert_verifies, ceremony_file, crl_verifies, enddate, enrol, intermediate,
    ocsp_answer, pem_der, root_rollover, run_ceremony, verify, within,
};
use kxca_test_support::common::{self, assert_ok, p, require_tool, run, Issued, TestCa};
use kxca_test_support::ocsp::{self as support_ocsp, Server};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn tools() -> bool {
    require_tool("openssl", &["version"])
}

#[test]
fn dual_control_refusals_and_check_refusals_change_nothing() {
    if !tools() {
        return;
    }
    let ca = TestCa::new();
    let (a, b) = enrol(&ca, &[]);
    let wrong = ca.dir.path().join("wrong.pass");
    std::fs::write(&wrong, "not the passphrase of b\n").unwrap();
    let key = ca.path("keys/issuing-2.p8");
    let file = ceremony_file(
        &ca,
        "roll.toml",
        &intermediate(&format!("soft:{}", p(&key)), "issuing-2", 365, "ca"),
    );
    assert_ok(&ca.kxca(&["ceremony", "check", p(&file)]), "ceremony check");

    let before = ca.snapshot();
    let cases: [(&[(&str, &Path)], &str); 5] = [
        (&[("officer-a", &a)], "1 of 2 required officer approvals"),
        (
            &[("officer-a", &a), ("officer-a", &a)],
            "officer officer-a approved twice",
        ),
        (
            &[("officer-a", &a), ("officer-b", &wrong)],
            "officer officer-b: wrong passphrase",
        ),
        (
            &[("officer-a", &a), ("officer-c", &b)],
            "officer officer-c is not enrolled",
        ),
        (
            &[("officer-a", &a), ("mallory", &b)],
            "\"mallory\" is not a security officer",
        ),
    ];
    for (approvals, expected) in cases {
        let out = run_ceremony(&ca, &[], &file, approvals);
        let err = stderr(&out);
        assert!(
            !out.status.success() && err.contains(expected) && err.contains("nothing was done"),
            "{approvals:?}: {err}"
        );
        assert_eq!(ca.snapshot(), before, "{expected}: the store changed");
        assert!(!key.exists(), "{expected}: a key was generated");
        assert!(!ca.path("ca/issuing-2-ceremony.pem").exists());
        assert!(!ca.path("ceremonies").exists());
    }

    // check: an output that exists is never overwritten.
    std::fs::write(ca.path("ca/issuing-2-ceremony.pem"), "keep me").unwrap();
    let out = ca.kxca(&["ceremony", "check", p(&file)]);
    assert!(
        !out.status.success()
            && stderr(&out).contains("already exists; a ceremony never overwrites"),
        "{}",
        stderr(&out)
    );
    let out = run_ceremony(&ca, &[], &file, &[("officer-a", &a), ("officer-b", &b)]);
    assert!(!out.status.success(), "run with an existing output");
    assert_eq!(
        std::fs::read_to_string(ca.path("ca/issuing-2-ceremony.pem")).unwrap(),
        "keep me"
    );
    std::fs::remove_file(ca.path("ca/issuing-2-ceremony.pem")).unwrap();
    assert_eq!(ca.snapshot(), before);

    // check: validity beyond the root's.
    let long = ceremony_file(
        &ca,
        "long.toml",
        &intermediate(&format!("soft:{}", p(&key)), "issuing-2", 20_000, "ca"),
    );
    let out = ca.kxca(&["ceremony", "check", p(&long)]);
    assert!(
        !out.status.success() && stderr(&out).contains("is not inside the issuer root's"),
        "{}",
        stderr(&out)
    );
    // check: a key that exists already is not generated over.
    std::fs::write(&key, "an existing key file").unwrap();
    let out = ca.kxca(&["ceremony", "check", p(&file)]);
    assert!(
        !out.status.success() && stderr(&out).contains("is never overwritten"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(&key).unwrap();
    // check: a misspelt field is an error, not ignored.
    let typo = ceremony_file(
        &ca,
        "typo.toml",
        &intermediate(&format!("soft:{}", p(&key)), "issuing-2", 365, "ca")
            .replace("validity_days", "valid_days"),
    );
    let out = ca.kxca(&["ceremony", "check", p(&typo)]);
    assert!(
        !out.status.success() && stderr(&out).contains("valid_days"),
        "{}",
        stderr(&out)
    );
    // check: an authority name in use.
    let taken = ceremony_file(
        &ca,
        "taken.toml",
        &intermediate(&format!("soft:{}", p(&key)), "issuing-1", 365, "ca"),
    );
    let out = ca.kxca(&["ceremony", "check", p(&taken)]);
    assert!(
        !out.status.success() && stderr(&out).contains("is already an authority"),
        "{}",
        stderr(&out)
    );
    assert_eq!(ca.snapshot(), before);

    // With two officers enrolled, a third needs their approval: one person
    // cannot enrol a second name and approve ceremonies alone.
    let c = ca.dir.path().join("officer-c.pass");
    std::fs::write(&c, "long passphrase of officer-c\n").unwrap();
    let out = ca.kxca(&["officer", "add", "officer-c", "--passphrase-file", p(&c)]);
    assert!(
        !out.status.success() && stderr(&out).contains("needs the approval of 2"),
        "{}",
        stderr(&out)
    );
    let approve_a = format!("officer-a={}", p(&a));
    let approve_wrong = format!("officer-b={}", p(&wrong));
    let out = ca.kxca(&[
        "officer",
        "add",
        "officer-c",
        "--passphrase-file",
        p(&c),
        "--approve",
        &approve_a,
        "--approve",
        &approve_wrong,
    ]);
    assert!(
        !out.status.success() && stderr(&out).contains("wrong passphrase"),
        "{}",
        stderr(&out)
    );
    assert_eq!(ca.snapshot(), before);
    let approve_b = format!("officer-b={}", p(&b));
    assert_ok(
        &ca.kxca(&[
            "officer",
            "add",
            "officer-c",
            "--passphrase-file",
            p(&c),
            "--approve",
            &approve_a,
            "--approve",
            &approve_b,
        ]),
        "officer add with approvals",
    );
    // An officer enrols once; a name outside the policy not at all.
    let out = ca.kxca(&["officer", "add", "officer-a", "--passphrase-file", p(&a)]);
    assert!(!out.status.success() && stderr(&out).contains("already enrolled"));
    let out = ca.kxca(&["officer", "add", "mallory", "--passphrase-file", p(&a)]);
    assert!(!out.status.success() && stderr(&out).contains("is not a security officer"));
    // The store keeps an Argon2id hash, never the passphrase.
    let db = std::fs::read(ca.path("kxca.db")).unwrap();
    let needle = b"long passphrase of officer-a";
    assert!(!db.windows(needle.len()).any(|w| w == needle));
    assert!(ca.snapshot().contains("$argon2id$"));
}

#[test]
fn issuing_rollover_both_cas_answer_then_the_old_one_retires() {
    if !support_ocsp::tools_present() {
        return;
    }
    let ca = TestCa::new();
    let (a, b) = enrol(&ca, &[]);
    let old_kept = ca.issue("1234567", "001", &[]);
    let old_revoked = ca.issue("1234568", "001", &[]);
    // Both roles run through the rollover: the daemon takes up the new
    // issuing CA without a restart.
    let server = Server::start(&ca);

    let key = ca.path("keys/issuing-2.p8");
    let file = ceremony_file(
        &ca,
        "roll.toml",
        &intermediate(&format!("soft:{}", p(&key)), "issuing-2", 1000, "ca"),
    );
    let out = run_ceremony(&ca, &[], &file, &[("officer-a", &a), ("officer-b", &b)]);
    assert_ok(&out, "ceremony run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("throwaway certificate linted clean"),
        "{stdout}"
    );
    assert!(stdout.contains("matches the throwaway"), "{stdout}");

    // The transcript names every fingerprint, in the file and the audit log.
    let transcript = std::fs::read_to_string(ca.path("ceremonies/issuing-2.txt")).unwrap();
    let (_, fp) = run(
        "openssl",
        &[
            "x509",
            "-in",
            p(&ca.path("ca/issuing-2.pem")),
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
    );
    let fp = fp.trim().rsplit('=').next().unwrap().to_string();
    assert!(transcript.contains(&fp), "{fp} not in {transcript}");
    assert!(transcript.contains("approved by 2 of 2 required officers: officer-a, officer-b"));
    let audit = ca.kxca(&["audit", "--json", "--limit", "100"]);
    let audit = String::from_utf8_lossy(&audit.stdout);
    assert!(
        audit.contains("ceremony.run") && audit.contains(&fp),
        "{audit}"
    );
    assert!(audit.contains("ceremony.approve"), "{audit}");
    assert_ok(&ca.kxca(&["audit", "verify"]), "audit verify");

    // New issuance uses the new CA at once, with its own CRL URL.
    let new = ca.issue("1234569", "001", &[]);
    let (_, text) = run("openssl", &["x509", "-in", p(&new.cert), "-noout", "-text"]);
    assert!(
        text.contains("KX Issuing CA issuing-2") && text.contains("/crl/issuing-2.crl"),
        "{text}"
    );
    let new_revoked = ca.issue("1234570", "001", &[]);
    let root = ca.path("ca/root.pem");
    let issuing1 = ca.path("ca/issuing-1.pem");
    let issuing2 = ca.path("ca/issuing-2.pem");
    assert_verifies(&root, &[&issuing1], &old_kept.cert, "old CA's certificate");
    assert_verifies(&root, &[&issuing2], &new.cert, "new CA's certificate");
    let (ok, _) = verify(&root, &[&issuing1], &new.cert);
    assert!(
        !ok,
        "the new certificate must not chain to the old issuing CA"
    );

    for (serial, what) in [(&old_revoked.serial, "old"), (&new_revoked.serial, "new")] {
        assert_ok(
            &ca.kxca(&["revoke", serial, "--reason", "keyCompromise"]),
            what,
        );
    }
    // The daemon signs both CAs' CRLs and OCSP answers; serve answers for both.
    // Within seconds, not at the daemon's minutely sweep.
    within(20, "both CAs' CRLs list their revocation", || {
        [("issuing-1", &old_revoked), ("issuing-2", &new_revoked)]
            .iter()
            .all(|(name, r)| {
                let (_, text) = run(
                    "openssl",
                    &[
                        "crl",
                        "-in",
                        p(&ca.path(&format!("crl/{name}.pem"))),
                        "-noout",
                        "-text",
                    ],
                );
                text.to_uppercase().contains(&r.serial.to_uppercase())
            })
    });
    crl_verifies(&ca.path("crl/issuing-1.pem"), &issuing1);
    crl_verifies(&ca.path("crl/issuing-2.pem"), &issuing2);
    for (issuer, cert, expected) in [
        (&issuing1, &old_kept, ": good"),
        (&issuing1, &old_revoked, ": revoked"),
        (&issuing2, &new, ": good"),
        (&issuing2, &new_revoked, ": revoked"),
    ] {
        support_ocsp::eventually("OCSP answers", || {
            ocsp_answer(&root, &server, issuer, &cert.cert).is_ok_and(|t| t.contains(expected))
        });
    }
    // Distinct CRL URLs, both served.
    for name in ["issuing-1", "issuing-2"] {
        let (code, _, _) =
            support_ocsp::get(&server.url(&format!("/crl/{name}.crl")), &[], ca.dir.path());
        assert_eq!(code, 200, "/crl/{name}.crl");
    }
    drop(server);
    common::pkilint_certificates_and_crl(
        &[issuing2.clone(), new.cert.clone()],
        &ca.path("crl/issuing-2.pem"),
    );
    common::pkilint_certificates_and_crl(&[], &ca.path("crl/issuing-1.pem"));

    // Retiring issuing-1 waits for its last live certificate.
    let retire = ceremony_file(
        &ca,
        "retire.toml",
        r#"type = "crl"
description = "final CRL of issuing-1; its key destroyed"
[crl]
authority = "issuing-1"
final = true
retire = "destroy"
[outputs]
crl = "crl/issuing-1-final.pem"
transcript = "ceremonies/retire-issuing-1.txt"
"#,
    );
    let doctor = ca.kxca(&["doctor"]);
    assert!(!String::from_utf8_lossy(&doctor.stdout).contains("retire_due"));
    let out = ca.kxca(&["ceremony", "check", p(&retire)]);
    assert!(
        !out.status.success() && stderr(&out).contains("are still live"),
        "{}",
        stderr(&out)
    );
    assert_ok(
        &ca.kxca(&["revoke", &old_kept.serial, "--reason", "superseded"]),
        "revoke the last one",
    );
    // kxca doctor says the old CA is due for retirement, until it is.
    let doctor = ca.kxca(&["doctor", "--json"]);
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        text.contains("retire_due") && text.contains("issuing-1"),
        "{text}"
    );
    assert_ok(
        &run_ceremony(&ca, &[], &retire, &[("officer-b", &b), ("officer-a", &a)]),
        "retire",
    );
    let doctor = ca.kxca(&["doctor", "--json"]);
    assert!(!String::from_utf8_lossy(&doctor.stdout).contains("retire_due"));
    assert!(!ca.path("keys/issuing-1.p8").exists(), "key destroyed");
    let text = crl_verifies(&ca.path("crl/issuing-1-final.pem"), &issuing1);
    assert!(
        text.to_uppercase()
            .contains(&old_kept.serial.to_uppercase()),
        "{text}"
    );
    common::pkilint_certificates_and_crl(&[], &ca.path("crl/issuing-1-final.pem"));
    let audit = ca.kxca(&["audit", "--json", "--limit", "200"]);
    assert!(String::from_utf8_lossy(&audit.stdout).contains("authority.retire"));
    // The daemon starts without the destroyed key and without complaint.
    let mut daemon = support_ocsp::Daemon::start(&ca);
    assert!(daemon.stop());
    assert!(
        !daemon.log_text().contains("CA key not available"),
        "{}",
        daemon.log_text()
    );
    assert_ok(&ca.kxca(&["audit", "verify"]), "audit verify");
}

#[test]
fn root_rollover_link_certificates_verify_from_either_root() {
    if !tools() {
        return;
    }
    let ca = TestCa::new();
    let (a, b) = enrol(&ca, &[]);
    let old_leaf = ca.issue("1234567", "001", &[]);
    // Same name as the old root: the case where only key identifiers tell
    // the roots apart.
    let root_ceremony = ceremony_file(
        &ca,
        "root2.toml",
        &root_rollover(&format!("soft:{}", p(&ca.path("keys/root-2.p8")))),
    );
    assert_ok(&ca.kxca(&["ceremony", "check", p(&root_ceremony)]), "check");
    assert_ok(
        &run_ceremony(
            &ca,
            &[],
            &root_ceremony,
            &[("officer-a", &a), ("officer-b", &b)],
        ),
        "root ceremony",
    );
    let issuing = ceremony_file(
        &ca,
        "issuing2.toml",
        &intermediate(
            &format!("soft:{}", p(&ca.path("keys/issuing-2.p8"))),
            "issuing-2",
            1000,
            "ca",
        ),
    );
    assert_ok(
        &run_ceremony(&ca, &[], &issuing, &[("officer-a", &a), ("officer-b", &b)]),
        "issuing ceremony under root-2",
    );
    let new_leaf = ca.issue("1234568", "001", &[]);

    let old_root = ca.path("ca/root.pem");
    let new_root = ca.path("ca/root-2.pem");
    let new_by_old = ca.path("ca/root-2-by-root.pem");
    let old_by_new = ca.path("ca/root-by-root-2.pem");
    let issuing1 = ca.path("ca/issuing-1.pem");
    let issuing2 = ca.path("ca/issuing-2.pem");
    let (_, text) = run(
        "openssl",
        &["x509", "-in", p(&issuing2), "-noout", "-issuer", "-text"],
    );
    assert!(text.contains("Authority Key Identifier"), "{text}");

    assert_root_links(
        &old_root,
        &new_root,
        &new_by_old,
        &old_by_new,
        &issuing1,
        &old_leaf.cert,
        &issuing2,
        &new_leaf.cert,
    );
    // A cross certificate: issuing-1's key certified by root-2, so old
    // leaves chain to the new root without the root link.
    let cross = ceremony_file(
        &ca,
        "cross.toml",
        r#"type = "cross"
[link]
issuer = "root-2"
subject = "issuing-1"
[outputs]
certificate = "ca/issuing-1-by-root-2.pem"
transcript = "ceremonies/cross.txt"
"#,
    );
    assert_ok(
        &run_ceremony(&ca, &[], &cross, &[("officer-a", &a), ("officer-b", &b)]),
        "cross ceremony",
    );
    let issuing1_by_new = ca.path("ca/issuing-1-by-root-2.pem");
    assert_verifies(
        &new_root,
        &[&issuing1_by_new],
        &old_leaf.cert,
        "old leaf, new root + cross-certified issuing-1",
    );
    // It does not outlive issuing-1.
    assert_eq!(enddate(&issuing1_by_new), enddate(&issuing1));
    // kxca serve publishes both links and the new root.
    if support_ocsp::tools_present() {
        let server = Server::start(&ca);
        for (path, file) in [
            ("/ca/root-2-by-root.cer", &new_by_old),
            ("/ca/root-by-root-2.cer", &old_by_new),
            ("/ca/root-2.cer", &new_root),
        ] {
            let (code, _, body) = support_ocsp::get(&server.url(path), &[], ca.dir.path());
            assert_eq!(code, 200, "{path}");
            assert_eq!(body, pem_der(file), "{path}");
        }
    }
    common::pkilint_certificates_and_crl(
        &[
            new_root.clone(),
            new_by_old.clone(),
            old_by_new.clone(),
            issuing1_by_new.clone(),
            issuing2.clone(),
            new_leaf.cert.clone(),
        ],
        &ca.path("crl/issuing-2.pem"),
    );
    assert_ok(&ca.kxca(&["audit", "verify"]), "audit verify");
}

/// A compromise ceremony for issuing-1: revoked at the root, new
/// issuance under issuing-3 (a soft key), the live certificates listed and
/// reset.
fn compromise(ca: &TestCa) -> String {
    format!(
        r#"type = "compromise"
description = "issuing-1 key suspected compromised"
[compromise]
authority = "issuing-1"
reason = "keyCompromise"
root_crl_days = 30
[key]
ref = "soft:{}"
algorithm = "ecdsa-p256"
generate = true
[certificate]
name = "issuing-3"
common_name = "KX Issuing CA 3"
validity_days = 1000
[outputs]
certificate = "ca/issuing-3-ceremony.pem"
crl = "crl/root-compromise.pem"
reset_list = "ceremonies/reset-issuing-1.jsonl"
transcript = "ceremonies/compromise-issuing-1.txt"
"#,
        p(&ca.path("keys/issuing-3.p8"))
    )
}

#[test]
fn compromise_revokes_the_issuing_ca_at_the_root_and_lists_live_certificates() {
    if !tools() {
        return;
    }
    let ca = TestCa::new();
    let (a, b) = enrol(&ca, &[]);
    let live = ca.issue("1234567", "001", &[]);
    let gone = ca.issue("1234568", "001", &[]);
    assert_ok(
        &ca.kxca(&["revoke", &gone.serial, "--reason", "superseded"]),
        "revoke",
    );
    let file = ceremony_file(&ca, "compromise.toml", &compromise(&ca));
    let out = run_ceremony(&ca, &[], &file, &[("officer-a", &a), ("officer-b", &b)]);
    assert_ok(&out, "compromise");
    // The reset flow is tried for each live certificate; one issued with
    // `kxca issue` has no account, and the officers are told to reissue it.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "{} ({}): not reset:",
            live.certificate_id, live.serial
        )) && stdout.contains("no account with certificate id")
            && stdout.contains("1 certificate(s) had no active account to reset"),
        "{stdout}"
    );
    let root = ca.path("ca/root.pem");
    let issuing1 = ca.path("ca/issuing-1.pem");
    let root_crl = ca.path("crl/root-compromise.pem");
    let text = crl_verifies(&root_crl, &root);
    assert!(text.contains("Key Compromise"), "{text}");
    assert_eq!(
        std::fs::read(&root_crl).unwrap(),
        std::fs::read(ca.path("crl/root.pem")).unwrap()
    );
    // With the root CRL the compromised issuing CA no longer verifies.
    let (ok, t) = run(
        "openssl",
        &[
            "verify",
            "-crl_check",
            "-CAfile",
            p(&root),
            "-CRLfile",
            p(&root_crl),
            p(&issuing1),
        ],
    );
    assert!(!ok && t.contains("certificate revoked"), "{t}");
    let (ok, t) = run("openssl", &["verify", "-CAfile", p(&root), p(&issuing1)]);
    assert!(ok, "without the CRL it still chains: {t}");
    // Exactly the live certificate is listed for the reset flow.
    let list = std::fs::read_to_string(ca.path("ceremonies/reset-issuing-1.jsonl")).unwrap();
    assert_eq!(list.lines().count(), 1, "{list}");
    let row: serde_json::Value = serde_json::from_str(list.lines().next().unwrap()).unwrap();
    assert_eq!(row["serial"], live.serial.as_str());
    assert_eq!(row["new_issuer"], "issuing-3");
    // New issuance is under the new key.
    let new: Issued = ca.issue("1234569", "001", &[]);
    assert_verifies(
        &root,
        &[&ca.path("ca/issuing-3.pem")],
        &new.cert,
        "after compromise",
    );
    common::pkilint_certificates_and_crl(
        &[ca.path("ca/issuing-3.pem"), new.cert.clone()],
        &root_crl,
    );
    // kxca serve publishes the root CRL beside the issuing CAs'.
    if support_ocsp::tools_present() {
        let server = Server::start(&ca);
        let (code, _, body) = support_ocsp::get(&server.url("/crl/root.crl"), &[], ca.dir.path());
        assert_eq!(code, 200, "/crl/root.crl");
        assert_eq!(body, std::fs::read(ca.path("crl/root.crl")).unwrap());
    }
    // The root CRL is renewed in a crl ceremony; one about to expire is
    // reported by kxca doctor.
    let renew = ceremony_file(
        &ca,
        "root-crl.toml",
        r#"type = "crl"
[crl]
authority = "root"
next_update_days = 2
[outputs]
crl = "crl/root-renewed.pem"
transcript = "ceremonies/root-crl.txt"
"#,
    );
    assert_ok(
        &run_ceremony(&ca, &[], &renew, &[("officer-a", &a), ("officer-b", &b)]),
        "root CRL ceremony",
    );
    let text = crl_verifies(&ca.path("crl/root-renewed.pem"), &root);
    assert!(
        text.contains("Key Compromise") && text.contains("CRL Number: \n                2"),
        "{text}"
    );
    let doctor = ca.kxca(&["doctor", "--json"]);
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(text.contains("root_crl_due"), "{text}");
    // A compromise is recorded once: the same CA cannot be revoked again.
    let again = ceremony_file(
        &ca,
        "again.toml",
        &std::fs::read_to_string(&file)
            .unwrap()
            .replace("issuing-3", "issuing-4")
            .replace("reset-issuing-1", "reset-again")
            .replace("compromise-issuing-1", "compromise-again")
            .replace("root-compromise", "root-again"),
    );
    let out = ca.kxca(&["ceremony", "check", p(&again)]);
    assert!(
        !out.status.success() && stderr(&out).contains("already revoked"),
        "{}",
        stderr(&out)
    );
    assert_ok(&ca.kxca(&["audit", "verify"]), "audit verify");
}

#[test]
fn officers_approve_on_a_terminal_without_echo() {
    if !(tools() && require_tool("script", &["--version"])) {
        return;
    }
    let ca = TestCa::new();
    enrol(&ca, &[]);
    let file = ceremony_file(
        &ca,
        "key.toml",
        &format!(
            r#"type = "key"
[key]
ref = "soft:{}"
algorithm = "ecdsa-p256"
generate = true
[outputs]
public_key = "ceremonies/spare.pub.pem"
transcript = "ceremonies/spare.txt"
"#,
            p(&ca.path("keys/spare.p8"))
        ),
    );
    // util-linux `script` gives kxca a terminal; the officers type into it.
    let command = format!(
        "{} ceremony run {}",
        kxca_test_support::kxca_bin().display(),
        p(&file)
    );
    let mut child = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("KXCA_HOME", &ca.home)
        .env("KXCA_ACTOR", "test")
        .env_remove("KXCA_KEY_PASSPHRASE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let stdin = child.stdin.as_mut().unwrap();
        for line in [
            "officer-a",
            "long passphrase of officer-a",
            "officer-b",
            "long passphrase of officer-b",
        ] {
            std::thread::sleep(std::time::Duration::from_millis(700));
            writeln!(stdin, "{line}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("Officer 1 of 2, name:") && text.contains("approved by 2 of 2"),
        "{text}"
    );
    assert!(
        !text.contains("long passphrase"),
        "a passphrase was echoed: {text}"
    );
    let public = std::fs::read_to_string(ca.path("ceremonies/spare.pub.pem")).unwrap();
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"), "{public}");
    let transcript = std::fs::read_to_string(ca.path("ceremonies/spare.txt")).unwrap();
    assert!(
        transcript.contains("public key SHA-256 (SPKI)"),
        "{transcript}"
    );
}

/// The mails (kind, recipient) queued for an enrolment by the accounts
/// delivery (their idempotency keys are `KIND:ENROLMENT`).
fn mails_of_enrolment(ca: &TestCa, enrolment: i64) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(ca.path("kxca.db")).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT kind, to_addr FROM outbox \
             WHERE idempotency_key = kind || ':' || ?1 AND state = 'queued' ORDER BY id",
        )
        .unwrap();
    stmt.query_map([enrolment.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Issue 13's compromise with a real account: a contact approved through
/// the provisioning flow (intake from a Maildir, `kxca applications
/// approve`) picks up a certificate under issuing-1 from `kxca serve`;
/// the compromise of issuing-1 puts that account into the reset flow: a
/// new enrolment superseding the certificate, and its mail 1 and mail 2
/// queued in the outbox.
#[test]
fn compromise_puts_an_approved_account_into_the_reset_flow() {
    use kxca_ca::enrolment::{self, EnrolmentState, PickupPolicy};
    use kxca_ca::{Clock, Store};
    use kxca_test_support::intake::{contact_row, signup_mail, standard, APPLICANT};

    if !(support_ocsp::tools_present() && require_tool("curl", &["--version"])) {
        return;
    }
    let ca = TestCa::new();
    let (a, b) = enrol(&ca, &[]);
    let maildir = ca.dir.path().join("Maildir");
    for d in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(d)).unwrap();
    }
    let config = ca.path("kxca.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("\n[mail]\nmaildir = {maildir:?}\n"));
    std::fs::write(&config, text).unwrap();
    std::fs::write(
        maildir.join("new").join("signup-1"),
        signup_mail(
            "compromise-1@office.test",
            &standard(&[contact_row(1, "12345", "001", None)]),
        ),
    )
    .unwrap();
    assert_ok(&ca.kxca(&["intake", "fetch"]), "intake fetch");
    let out = ca.kxca(&["applications", "approve", "1", "--json"]);
    assert_ok(&out, "approve");
    let approved: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = approved["approved"][0]["certificate_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{approved}"))
        .to_string();

    // Mail 2's code, minted as `kxca outbox send` mints it (no SMTP here),
    // then the pickup from the public role while the daemon signs.
    let policy = PickupPolicy::load(&ca.path("policies")).unwrap();
    let mut store = Store::open(&ca.path("kxca.db"), false).unwrap();
    let now = Clock::system().now();
    let first = store
        .read(|c| enrolment::by_certificate_id(c, &id, now))
        .unwrap()
        .unwrap();
    let code = store
        .write(|tx| enrolment::mint_code(tx, first.id, &policy, now))
        .unwrap();
    let server = Server::start(&ca);
    let form = ca.dir.path().join("pickup-form");
    std::fs::write(
        &form,
        format!(
            "certificate_id={id}&code={}&password=PickupPass42x&password_confirm=PickupPass42x",
            code.as_str()
        ),
    )
    .unwrap();
    let p12 = ca.dir.path().join("picked.p12");
    let (ok, status) = run(
        "curl",
        &[
            "-s",
            "-o",
            p(&p12),
            "-w",
            "%{http_code}",
            "--data-binary",
            &format!("@{}", p(&form)),
            &server.url("/pickup"),
        ],
    );
    assert!(
        ok && status.trim() == "200",
        "pickup: {status} {}",
        String::from_utf8_lossy(&std::fs::read(&p12).unwrap_or_default())
    );
    drop(server);
    let account = |store: &Store| {
        store
            .read(|c| kxca_provisioner::accounts::register::by_certificate_id(c, &id))
            .unwrap()
            .unwrap()
    };
    let serial = account(&store)
        .current_serial
        .unwrap_or_else(|| panic!("{id}: no certificate after the pickup"));
    // It is a certificate of issuing-1.
    let leaf = ca.dir.path().join("picked.pem");
    let (ok, t) = run(
        "openssl",
        &[
            "pkcs12",
            "-in",
            p(&p12),
            "-passin",
            "pass:PickupPass42x",
            "-nokeys",
            "-clcerts",
            "-out",
            p(&leaf),
        ],
    );
    assert!(ok, "{t}");
    assert_verifies(
        &ca.path("ca/root.pem"),
        &[&ca.path("ca/issuing-1.pem")],
        &leaf,
        "the picked-up certificate under issuing-1",
    );

    let file = ceremony_file(&ca, "compromise.toml", &compromise(&ca));
    let out = run_ceremony(&ca, &[], &file, &[("officer-a", &a), ("officer-b", &b)]);
    assert_ok(&out, "compromise");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "{id} ({serial}): reset, new pickup opened, 2 mail(s) queued"
        )) && !stdout.contains("had no active account"),
        "{stdout}"
    );
    // A new enrolment supersedes the compromised CA's certificate ...
    let now = Clock::system().now();
    let next = store
        .read(|c| enrolment::by_certificate_id(c, &id, now))
        .unwrap()
        .unwrap();
    assert_ne!(next.id, first.id);
    assert_eq!(
        next.supersedes.as_deref().map(str::to_lowercase),
        Some(serial.to_lowercase())
    );
    assert_eq!(next.state, EnrolmentState::Waiting, "{next:?}");
    // ... and its mail 1 and mail 2 wait in the outbox for the contact.
    let mails = mails_of_enrolment(&ca, next.id.0);
    assert_eq!(
        mails,
        vec![
            ("certificate-ready".to_string(), APPLICANT.to_string()),
            ("initial-passwords".to_string(), APPLICANT.to_string()),
        ],
        "{stdout}"
    );
    // The certificate stays valid until its replacement is picked up
    // (then the daemon revokes it superseded); the account is listed.
    assert_eq!(
        account(&store).current_serial.as_deref(),
        Some(serial.as_str())
    );
    let list = std::fs::read_to_string(ca.path("ceremonies/reset-issuing-1.jsonl")).unwrap();
    assert!(list.contains(&id), "{list}");
    let audit = ca.kxca(&["audit", "--json", "--limit", "200"]);
    assert!(String::from_utf8_lossy(&audit.stdout).contains("account.reset"));
    assert_ok(&ca.kxca(&["audit", "verify"]), "audit verify");
}

/// After rollovers kxca.toml's `ca.root_key` / `ca.issuing_key` still name
/// the keys made at init: they only seed `kxca init`, and the store says
/// which key each authority uses. `kxca doctor` neither asks for the
/// retired key nor misses the new ones; `kxca backup` lists the keys in
/// use for the officers to back up, not the seeds.
#[test]
fn the_store_not_kxca_toml_says_which_keys_are_in_use_after_rollovers() {
    if !tools() {
        return;
    }
    let ca = TestCa::new();
    let (a, b) = enrol(&ca, &[]);
    let officers = [("officer-a", a.as_path()), ("officer-b", b.as_path())];
    let config_before = std::fs::read_to_string(ca.path("kxca.toml")).unwrap();
    let old = ca.issue("1234567", "001", &[]);
    let root2 = ceremony_file(
        &ca,
        "root2.toml",
        &root_rollover(&format!("soft:{}", p(&ca.path("keys/root-2.p8")))),
    );
    assert_ok(&run_ceremony(&ca, &[], &root2, &officers), "root rollover");
    let issuing2 = ceremony_file(
        &ca,
        "issuing2.toml",
        &intermediate(
            &format!("soft:{}", p(&ca.path("keys/issuing-2.p8"))),
            "issuing-2",
            1000,
            "ca",
        ),
    );
    assert_ok(
        &run_ceremony(&ca, &[], &issuing2, &officers),
        "issuing rollover",
    );
    assert_ok(
        &ca.kxca(&["revoke", &old.serial, "--reason", "superseded"]),
        "revoke",
    );
    let retire = ceremony_file(
        &ca,
        "retire.toml",
        r#"type = "crl"
[crl]
authority = "issuing-1"
final = true
retire = "destroy"
[outputs]
crl = "crl/issuing-1-final.pem"
transcript = "ceremonies/retire-issuing-1.txt"
"#,
    );
    assert_ok(&run_ceremony(&ca, &[], &retire, &officers), "retire");
    let seed = ca.path("keys/issuing-1.p8");
    assert!(!seed.exists(), "issuing-1's key was destroyed");
    // kxca.toml is not rewritten: it still names the seed.
    assert_eq!(
        std::fs::read_to_string(ca.path("kxca.toml")).unwrap(),
        config_before
    );
    assert!(config_before.contains(p(&seed)), "{config_before}");

    let doctor = ca.kxca(&["doctor", "--json"]);
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        !text.contains("key_missing") && !text.contains(p(&seed)),
        "doctor asks for the retired key: {text}"
    );
    // The backup lists the keys in use, by authority, from the store.
    let out = ca.kxca(&["backup", p(&ca.dir.path().join("backup"))]);
    assert_ok(&out, "backup");
    let said = String::from_utf8_lossy(&out.stdout);
    let line = |what: &str| {
        said.lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("{what} not listed: {said}"))
            .to_string()
    };
    assert!(
        line("issuing CA key of issuing-2").contains("issuing-2.p8"),
        "{said}"
    );
    assert!(
        line("root CA key of root-2").contains("root-2.p8"),
        "{said}"
    );
    assert!(line("root CA key of root:").contains("root.p8"), "{said}");
    assert!(!said.contains("issuing CA key of issuing-1"), "{said}");
    // A key the store names and kxca.toml does not is asked for when gone.
    std::fs::remove_file(ca.path("keys/issuing-2.p8")).unwrap();
    let doctor = ca.kxca(&["doctor", "--json"]);
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        text.contains("key_missing") && text.contains("issuing-2.p8"),
        "{text}"
    );
}

//! Key ceremonies on SoftHSM2 tokens. The issuing-CA rollover: the new key is generated
//! on the token in the ceremony; a refused ceremony leaves the token and
//! the store as they were; certificates of both issuing CAs verify and
//! get OCSP answers; pkilint is clean on what the ceremony made.

use std::process::Output;

use kxca_test_support::ceremony as cer;
use kxca_test_support::common::{self, assert_ok, p, require_tool, run, Issued, TestCa};
use kxca_test_support::ocsp::{self as support_ocsp, Server};
use kxca_test_support::softhsm::{self, SoftHsm};

const TOKEN: &str = "KX-CEREMONY";

fn kxca(ca: &TestCa, hsm: &SoftHsm, args: &[&str]) -> Output {
    ca.cmd()
        .env("SOFTHSM2_CONF", &hsm.conf)
        .args(args)
        .output()
        .unwrap()
}

fn key_ref(object: &str) -> String {
    format!("pkcs11:token={TOKEN};object={object}")
}

fn token_keys(ca: &TestCa, hsm: &SoftHsm) -> String {
    let out = kxca(ca, hsm, &["key", "list", "--token", TOKEN, "--json"]);
    assert_ok(&out, "key list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn issuing_rollover_on_a_softhsm_token() {
    if !(softhsm::available() && require_tool("openssl", &["version"])) {
        return;
    }
    let ca = TestCa::uninitialised();
    let hsm = SoftHsm::new(&[TOKEN]);
    let pin = ["--key-secret-file", p(&hsm.pin_file)];
    assert_ok(
        &kxca(
            &ca,
            &hsm,
            &[
                "init",
                "--root-key",
                &key_ref("root"),
                "--issuing-key",
                &key_ref("issuing-1"),
                "--ca-key-algorithm",
                "ecdsa-p256",
                pin[0],
                pin[1],
            ],
        ),
        "init on the token",
    );
    let mut passes = Vec::new();
    for name in ["officer-a", "officer-b"] {
        let f = ca.dir.path().join(format!("{name}.pass"));
        std::fs::write(&f, format!("token ceremony passphrase {name}\n")).unwrap();
        assert_ok(
            &kxca(
                &ca,
                &hsm,
                &["officer", "add", name, "--passphrase-file", p(&f)],
            ),
            "officer add",
        );
        passes.push(f);
    }
    let issue = |office: &str| -> Issued {
        Issued::from_output(&kxca(&ca, &hsm, &common::issue_args(office, "001")))
    };
    let old = issue("1234567");

    let file = ca.path("roll.toml");
    std::fs::write(
        &file,
        format!(
            r#"type = "intermediate"
[key]
ref = "{}"
algorithm = "ecdsa-p256"
generate = true
[certificate]
name = "issuing-2"
common_name = "KX Issuing CA 2"
validity_days = 1000
[outputs]
certificate = "ca/issuing-2-ceremony.pem"
transcript = "ceremonies/issuing-2.txt"
"#,
            key_ref("issuing-2")
        ),
    )
    .unwrap();
    assert_ok(&kxca(&ca, &hsm, &["ceremony", "check", p(&file)]), "check");

    // One officer alone: refused, and neither the token nor the store changed.
    let keys_before = token_keys(&ca, &hsm);
    let store_before = ca.snapshot();
    let approve_a = format!("officer-a={}", p(&passes[0]));
    let approve_b = format!("officer-b={}", p(&passes[1]));
    let out = kxca(
        &ca,
        &hsm,
        &["ceremony", "run", p(&file), "--approve", &approve_a],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of 2 required"));
    assert_eq!(token_keys(&ca, &hsm), keys_before, "the token changed");
    assert_eq!(ca.snapshot(), store_before, "the store changed");
    assert!(!keys_before.contains("issuing-2"));

    let out = kxca(
        &ca,
        &hsm,
        &[
            "ceremony",
            "run",
            p(&file),
            "--approve",
            &approve_a,
            "--approve",
            &approve_b,
        ],
    );
    assert_ok(&out, "ceremony run");
    assert!(token_keys(&ca, &hsm).contains("issuing-2"));
    // The key is on the token, nowhere on disk.
    assert!(!ca.path("keys/issuing-2.p8").exists());

    let new = issue("1234568");
    let root = ca.path("ca/root.pem");
    let issuing1 = ca.path("ca/issuing-1.pem");
    let issuing2 = ca.path("ca/issuing-2.pem");
    for (issuer, cert) in [(&issuing1, &old.cert), (&issuing2, &new.cert)] {
        let (ok, text) = run(
            "openssl",
            &[
                "verify",
                "-x509_strict",
                "-CAfile",
                p(&root),
                "-untrusted",
                p(issuer),
                p(cert),
            ],
        );
        assert!(ok && text.contains(": OK"), "{text}");
    }
    let server = Server::start_with(&ca, &[("SOFTHSM2_CONF", &hsm.conf)]);
    support_ocsp::eventually("OCSP for both issuing CAs", || {
        cer::ocsp_answer(&root, &server, &issuing1, &old.cert).is_ok_and(|t| t.contains(": good"))
            && cer::ocsp_answer(&root, &server, &issuing2, &new.cert)
                .is_ok_and(|t| t.contains(": good"))
    });
    drop(server);
    let (ok, text) = run(
        "openssl",
        &[
            "crl",
            "-in",
            p(&ca.path("crl/issuing-2.pem")),
            "-CAfile",
            p(&issuing2),
            "-verify",
            "-noout",
        ],
    );
    assert!(ok && text.contains("verify OK"), "{text}");
    common::pkilint_certificates_and_crl(
        &[issuing2.clone(), new.cert.clone()],
        &ca.path("crl/issuing-2.pem"),
    );

    // Once nothing it issued is live, issuing-1 is retired and its key
    // pair destroyed on the token.
    assert_ok(
        &kxca(
            &ca,
            &hsm,
            &["revoke", &old.serial, "--reason", "superseded"],
        ),
        "revoke",
    );
    let retire = ca.path("retire.toml");
    std::fs::write(
        &retire,
        r#"type = "crl"
[crl]
authority = "issuing-1"
final = true
retire = "destroy"
[outputs]
crl = "crl/issuing-1-final.pem"
transcript = "ceremonies/retire-issuing-1.txt"
"#,
    )
    .unwrap();
    assert!(token_keys(&ca, &hsm).contains("\"issuing-1\""));
    assert_ok(
        &kxca(
            &ca,
            &hsm,
            &[
                "ceremony",
                "run",
                p(&retire),
                "--approve",
                &approve_b,
                "--approve",
                &approve_a,
            ],
        ),
        "retire issuing-1",
    );
    let keys = token_keys(&ca, &hsm);
    assert!(
        !keys.contains("\"issuing-1\"") && keys.contains("\"issuing-2\""),
        "{keys}"
    );
    let (ok, text) = run(
        "openssl",
        &[
            "crl",
            "-in",
            p(&ca.path("crl/issuing-1-final.pem")),
            "-CAfile",
            p(&issuing1),
            "-verify",
            "-noout",
        ],
    );
    assert!(ok && text.contains("verify OK"), "{text}");
    common::pkilint_certificates_and_crl(&[], &ca.path("crl/issuing-1-final.pem"));

    // A key already on the token is never generated over.
    assert_ok(
        &kxca(
            &ca,
            &hsm,
            &[
                "key",
                "generate",
                "--ref",
                &key_ref("spare"),
                pin[0],
                pin[1],
            ],
        ),
        "key generate",
    );
    let spare = ca.path("spare.toml");
    std::fs::write(
        &spare,
        std::fs::read_to_string(&file)
            .unwrap()
            .replace("object=issuing-2", "object=spare")
            .replace("issuing-2", "issuing-3"),
    )
    .unwrap();
    let out = kxca(&ca, &hsm, &["ceremony", "check", p(&spare)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("already exists on the token"),
        "{err}"
    );
}

#[test]
fn production_ceremony_keys_stay_off_soft_files_and_the_responder_token() {
    if !(softhsm::available() && require_tool("openssl", &["version"])) {
        return;
    }
    let ca = TestCa::uninitialised();
    let hsm = SoftHsm::new(&[TOKEN, "KX-OCSP"]);
    // The responder's own PIN source (same PIN, its own file).
    let responder_pin = ca.dir.path().join("responder-pin");
    std::fs::copy(&hsm.pin_file, &responder_pin).unwrap();
    assert_ok(
        &kxca(
            &ca,
            &hsm,
            &[
                "init",
                "--production",
                "--root-key",
                &key_ref("root"),
                "--issuing-key",
                &key_ref("issuing-1"),
                "--ca-key-algorithm",
                "ecdsa-p256",
                "--key-secret-file",
                p(&hsm.pin_file),
                "--responder-key",
                "pkcs11:token=KX-OCSP;object=ocsp-responder",
                "--responder-key-secret-file",
                p(&responder_pin),
            ],
        ),
        "production init",
    );
    for name in ["officer-a", "officer-b"] {
        let f = ca.dir.path().join(format!("{name}.pass"));
        std::fs::write(&f, format!("production passphrase {name}\n")).unwrap();
        assert_ok(
            &kxca(
                &ca,
                &hsm,
                &["officer", "add", name, "--passphrase-file", p(&f)],
            ),
            "officer add",
        );
    }
    let file = |key: &str| {
        let path = ca.path("roll.toml");
        std::fs::write(
            &path,
            format!(
                r#"type = "intermediate"
[key]
ref = "{key}"
algorithm = "ecdsa-p256"
generate = true
[certificate]
name = "issuing-2"
common_name = "KX Issuing CA 2"
validity_days = 1000
[outputs]
certificate = "ca/issuing-2-ceremony.pem"
transcript = "ceremonies/issuing-2.txt"
"#
            ),
        )
        .unwrap();
        path
    };
    let soft = format!("soft:{}", p(&ca.path("keys/issuing-2.p8")));
    for (key, expected) in [
        (soft.as_str(), "refuses soft CA keys"),
        (
            "pkcs11:token=KX-OCSP;object=issuing-2",
            "on the OCSP responder key's token",
        ),
    ] {
        let out = kxca(&ca, &hsm, &["ceremony", "check", p(&file(key))]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(expected),
            "{key}: {err}"
        );
    }
    assert_ok(
        &kxca(
            &ca,
            &hsm,
            &["ceremony", "check", p(&file(&key_ref("issuing-2")))],
        ),
        "production check on the CA token",
    );
}

/// Issue 13's rollover test on SoftHSM2 keys, in production mode: the
/// root and issuing keys on the CA token, the responder's on its own.
/// Certificates issued before and after an issuing rollover both verify
/// and get OCSP answers with both roles running; both issuing CAs' CRLs
/// verify; then a root rollover on the token, whose link certificates
/// both ways let either root reach the leaves of either; pkilint is clean
/// on every certificate and CRL the ceremonies made.
#[test]
fn rollover_end_to_end_on_softhsm_tokens() {
    if !(softhsm::available() && support_ocsp::tools_present()) {
        return;
    }
    let ca = TestCa::uninitialised();
    let hsm = SoftHsm::new(&[TOKEN, "KX-OCSP"]);
    let env = [("SOFTHSM2_CONF", hsm.conf.as_path())];
    let responder_pin = ca.dir.path().join("responder-pin");
    std::fs::copy(&hsm.pin_file, &responder_pin).unwrap();
    assert_ok(
        &kxca(
            &ca,
            &hsm,
            &[
                "init",
                "--production",
                "--root-key",
                &key_ref("root"),
                "--issuing-key",
                &key_ref("issuing-1"),
                "--ca-key-algorithm",
                "ecdsa-p256",
                "--key-secret-file",
                p(&hsm.pin_file),
                "--responder-key",
                "pkcs11:token=KX-OCSP;object=ocsp-responder",
                "--responder-key-secret-file",
                p(&responder_pin),
            ],
        ),
        "production init on the tokens",
    );
    let (a, b) = cer::enrol(&ca, &env);
    let officers = [("officer-a", a.as_path()), ("officer-b", b.as_path())];
    let issue = |office: &str| -> Issued {
        Issued::from_output(&kxca(&ca, &hsm, &common::issue_args(office, "001")))
    };
    let old = issue("1234567");
    let old_revoked = issue("1234568");
    // Both roles run through the rollover.
    let server = Server::start_with(&ca, &env);

    let roll = cer::ceremony_file(
        &ca,
        "roll.toml",
        &cer::intermediate(&key_ref("issuing-2"), "issuing-2", 1000, "ca"),
    );
    assert_ok(
        &kxca(&ca, &hsm, &["ceremony", "check", p(&roll)]),
        "check issuing rollover",
    );
    assert_ok(
        &cer::run_ceremony(&ca, &env, &roll, &officers),
        "issuing rollover on the token",
    );
    let new = issue("1234569");
    let new_revoked = issue("1234570");
    let root = ca.path("ca/root.pem");
    let issuing1 = ca.path("ca/issuing-1.pem");
    let issuing2 = ca.path("ca/issuing-2.pem");
    cer::assert_verifies(&root, &[&issuing1], &old.cert, "before the rollover");
    cer::assert_verifies(&root, &[&issuing2], &new.cert, "after the rollover");
    let (ok, _) = cer::verify(&root, &[&issuing1], &new.cert);
    assert!(!ok, "the new certificate chains to the old issuing CA");

    for r in [&old_revoked, &new_revoked] {
        assert_ok(
            &kxca(&ca, &hsm, &["revoke", &r.serial, "--reason", "superseded"]),
            "revoke",
        );
    }
    // The daemon signs both CAs' CRLs with their keys on the token.
    cer::within(30, "both CAs' CRLs list their revocation", || {
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
    cer::crl_verifies(&ca.path("crl/issuing-1.pem"), &issuing1);
    cer::crl_verifies(&ca.path("crl/issuing-2.pem"), &issuing2);
    for (issuer, cert, expected) in [
        (&issuing1, &old, ": good"),
        (&issuing1, &old_revoked, ": revoked"),
        (&issuing2, &new, ": good"),
        (&issuing2, &new_revoked, ": revoked"),
    ] {
        support_ocsp::eventually("OCSP answers for both issuing CAs", || {
            cer::ocsp_answer(&root, &server, issuer, &cert.cert).is_ok_and(|t| t.contains(expected))
        });
    }
    common::pkilint_certificates_and_crl(
        &[issuing2.clone(), new.cert.clone(), new_revoked.cert.clone()],
        &ca.path("crl/issuing-2.pem"),
    );
    common::pkilint_certificates_and_crl(&[], &ca.path("crl/issuing-1.pem"));

    // Root rollover on the token, then an issuing CA under the new root.
    let root2 = cer::ceremony_file(&ca, "root2.toml", &cer::root_rollover(&key_ref("root-2")));
    assert_ok(
        &kxca(&ca, &hsm, &["ceremony", "check", p(&root2)]),
        "check root rollover",
    );
    assert_ok(
        &cer::run_ceremony(&ca, &env, &root2, &officers),
        "root rollover on the token",
    );
    let issuing3_file = cer::ceremony_file(
        &ca,
        "issuing3.toml",
        &cer::intermediate(&key_ref("issuing-3"), "issuing-3", 1000, "ca"),
    );
    assert_ok(
        &cer::run_ceremony(&ca, &env, &issuing3_file, &officers),
        "issuing rollover under root-2",
    );
    let keys = token_keys(&ca, &hsm);
    for object in ["root", "root-2", "issuing-1", "issuing-2", "issuing-3"] {
        assert!(keys.contains(&format!("\"{object}\"")), "{object}: {keys}");
    }
    // The new keys are on the token, nowhere on disk.
    for name in ["root-2", "issuing-2", "issuing-3"] {
        assert!(!ca.path(&format!("keys/{name}.p8")).exists(), "{name}");
    }
    let newest = issue("1234571");
    let new_root = ca.path("ca/root-2.pem");
    let new_by_old = ca.path("ca/root-2-by-root.pem");
    let old_by_new = ca.path("ca/root-by-root-2.pem");
    let issuing3 = ca.path("ca/issuing-3.pem");
    cer::assert_root_links(
        &root,
        &new_root,
        &new_by_old,
        &old_by_new,
        &issuing2,
        &new.cert,
        &issuing3,
        &newest.cert,
    );
    // The pre-rollover certificate of issuing-1 reaches the new root too.
    cer::assert_verifies(
        &new_root,
        &[&issuing1, &old_by_new],
        &old.cert,
        "issuing-1's leaf, new root + OldWithNew",
    );
    // The daemon takes up issuing-3 and answers for it under the new root,
    // while still answering for the CAs under the old one.
    support_ocsp::eventually("OCSP under the new root", || {
        cer::ocsp_answer(&new_root, &server, &issuing3, &newest.cert)
            .is_ok_and(|t| t.contains(": good"))
            && cer::ocsp_answer(&root, &server, &issuing2, &new.cert)
                .is_ok_and(|t| t.contains(": good"))
            && cer::ocsp_answer(&root, &server, &issuing1, &old.cert)
                .is_ok_and(|t| t.contains(": good"))
    });
    drop(server);
    common::pkilint_certificates_and_crl(
        &[
            new_root.clone(),
            new_by_old.clone(),
            old_by_new.clone(),
            issuing3.clone(),
            newest.cert.clone(),
        ],
        &ca.path("crl/issuing-3.pem"),
    );
    cer::crl_verifies(&ca.path("crl/issuing-3.pem"), &issuing3);
    assert_ok(&kxca(&ca, &hsm, &["audit", "verify"]), "audit verify");
}

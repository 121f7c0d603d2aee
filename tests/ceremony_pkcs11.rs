//! The issuing-CA rollover on a SoftHSM2 token: the new key is generated
//! on the token in the ceremony; a refused ceremony leaves the token and
//! the store as they were; certificates of both issuing CAs verify and
//! get OCSP answers; pkilint is clean on what the ceremony made.

use std::path::Path;
use std::process::Output;

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

fn ocsp(ca: &TestCa, server: &Server, issuer: &Path, cert: &Path) -> String {
    let url = server.url("/ocsp");
    let (ok, text) = run(
        "openssl",
        &[
            "ocsp",
            "-issuer",
            p(issuer),
            "-CAfile",
            p(&ca.path("ca/root.pem")),
            "-url",
            &url,
            "-cert",
            p(cert),
        ],
    );
    assert!(
        ok && text.contains("Response verify OK"),
        "openssl ocsp: {text}"
    );
    text
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
        ocsp(&ca, &server, &issuing1, &old.cert).contains(": good")
            && ocsp(&ca, &server, &issuing2, &new.cert).contains(": good")
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

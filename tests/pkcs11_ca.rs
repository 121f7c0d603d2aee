//! A CA whose root and issuing keys live on a SoftHSM2 token: `kxca key
//! generate`, `kxca init`, issuance, revocation and CRL, each artefact
//! checked by openssl and pkilint, and the keys checked non-extractable by
//! OpenSC's pkcs11-tool.

use kxca_test_support::common;
use kxca_test_support::ocsp as support_ocsp;
use kxca_test_support::softhsm;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{assert_ok, p, require_tool, run, Issued, TestCa};
use softhsm::{SoftHsm, USER_PIN};

struct TokenCa {
    ca: TestCa,
    hsm: SoftHsm,
    token: String,
}

impl TokenCa {
    fn kxca(&self, args: &[&str]) -> Output {
        self.ca
            .cmd()
            .env("SOFTHSM2_CONF", &self.hsm.conf)
            .args(args)
            .output()
            .unwrap()
    }

    fn key_ref(&self, object: &str) -> String {
        format!("pkcs11:token={};object={object}", self.token)
    }

    fn pin_arg(&self) -> [&str; 2] {
        ["--key-secret-file", p(&self.hsm.pin_file)]
    }

    /// Issues a certificate; returns (serial, certificate PEM path).
    fn issue(&self, office: &str) -> (String, PathBuf) {
        let issued = Issued::from_output(&self.kxca(&common::issue_args(office, "001")));
        (issued.serial, issued.cert)
    }
}

fn tools_present() -> bool {
    softhsm::available()
        && require_tool("openssl", &["version"])
        && require_tool("pkcs11-tool", &["--help"])
}

fn openssl_verify(ca: &TestCa, cert: &Path, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["verify", "-x509_strict", "-purpose", "sslclient"];
    args.extend_from_slice(extra);
    let root = ca.path("ca/root.pem");
    let inter = ca.path("ca/issuing-1.pem");
    args.extend_from_slice(&["-CAfile", p(&root), "-untrusted", p(&inter), p(cert)]);
    run("openssl", &args)
}

/// SHA-256 of the certificate's SubjectPublicKeyInfo, computed by openssl.
fn openssl_spki_sha256(cert: &Path) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("openssl x509 -in \"$1\" -noout -pubkey | openssl pkey -pubin -outform DER | openssl dgst -sha256 -r")
        .arg("sh")
        .arg(cert)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn ca_on_token(algorithm: &str, key_algorithm: &str) {
    let token = format!("KX-CA-{key_algorithm}");
    let t = TokenCa {
        ca: TestCa::uninitialised(),
        hsm: SoftHsm::new(&[&token]),
        token,
    };
    let pin = t.pin_arg();

    // The root key is made in a ceremony; the issuing key by init.
    let root_ref = t.key_ref("root");
    let issuing_ref = t.key_ref("issuing-1");
    let out = t.kxca(&[
        "key",
        "generate",
        "--ref",
        &root_ref,
        "--algorithm",
        algorithm,
        "--json",
        pin[0],
        pin[1],
    ]);
    assert_ok(&out, "key generate");
    let generated: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Never a second key under the same label.
    let out = t.kxca(&[
        "key",
        "generate",
        "--ref",
        &root_ref,
        "--algorithm",
        algorithm,
        pin[0],
        pin[1],
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to overwrite") && err.lines().count() == 1,
        "{err}"
    );

    let out = t.kxca(&[
        "init",
        "--root-key",
        &root_ref,
        "--issuing-key",
        &issuing_ref,
        "--ca-key-algorithm",
        key_algorithm,
        pin[0],
        pin[1],
    ]);
    assert_ok(&out, "init");
    let config = std::fs::read_to_string(t.ca.path("kxca.toml")).unwrap();
    assert!(
        config.contains("[pkcs11]") && !config.contains(USER_PIN),
        "{config}"
    );
    assert!(!t.ca.path("keys/root.p8").exists());

    // The root certificate carries the ceremony's key.
    assert_eq!(
        openssl_spki_sha256(&t.ca.path("ca/root.pem")),
        generated["spki_sha256"].as_str().unwrap()
    );

    let (good_serial, good) = t.issue("1234567");
    let (revoked_serial, revoked) = t.issue("7654321");
    assert_ne!(good_serial, revoked_serial);
    for cert in [&good, &revoked] {
        let (ok, text) = openssl_verify(&t.ca, cert, &[]);
        assert!(ok && text.contains(": OK"), "openssl verify: {text}");
    }
    assert_ok(
        &t.kxca(&["revoke", &revoked_serial, "--reason", "keyCompromise"]),
        "revoke",
    );
    assert_ok(&t.kxca(&["crl"]), "crl");
    let crl = t.ca.path("crl/issuing-1.pem");
    let (ok, text) = run(
        "openssl",
        &[
            "crl",
            "-in",
            p(&crl),
            "-CAfile",
            p(&t.ca.path("ca/issuing-1.pem")),
            "-verify",
            "-noout",
        ],
    );
    assert!(
        ok && text.contains("verify OK"),
        "openssl crl -verify: {text}"
    );
    let crl_check = ["-crl_check", "-CRLfile", p(&crl)];
    let (ok, text) = openssl_verify(&t.ca, &good, &crl_check);
    assert!(ok && text.contains(": OK"), "good cert with CRL: {text}");
    let (ok, text) = openssl_verify(&t.ca, &revoked, &crl_check);
    assert!(!ok && text.contains("certificate revoked"), "{text}");

    common::pkilint_certificates_and_crl(
        &[
            good.clone(),
            t.ca.path("ca/root.pem"),
            t.ca.path("ca/issuing-1.pem"),
        ],
        &crl,
    );

    // `kxca key list` (PIN and module from the home's config) shows both
    // keys, sign-only and non-extractable, with the certificates' fingerprints.
    let out = t.kxca(&["key", "list", "--token", &t.token, "--json"]);
    assert_ok(&out, "key list");
    let keys: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys = keys.as_array().unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for (label, pem) in [("root", "ca/root.pem"), ("issuing-1", "ca/issuing-1.pem")] {
        let k = keys.iter().find(|k| k["label"] == label).unwrap();
        assert_eq!(k["extractable"], false, "{k}");
        assert_eq!(k["sensitive"], true, "{k}");
        assert_eq!(k["other_uses"].as_array().unwrap().len(), 0, "{k}");
        assert_eq!(k["algorithm"], key_algorithm, "{k}");
        assert_eq!(
            k["spki_sha256"],
            openssl_spki_sha256(&t.ca.path(pem)).as_str()
        );
    }
    let out = t.kxca(&["key", "list"]);
    assert_ok(&out, "key list table");
    assert!(String::from_utf8_lossy(&out.stdout).contains("sign only, non-extractable"));

    // OpenSC reads the token on its own.
    let out = t
        .hsm
        .pkcs11_tool()
        .args(["--token-label", &t.token, "--login", "--pin", USER_PIN])
        .args(["--list-objects", "--type", "privkey"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches("never extractable").count(), 2, "{text}");
    assert!(
        !text.contains("decrypt") && !text.contains("unwrap"),
        "{text}"
    );

    // With a home, a new key takes the home's PIN source and module and
    // goes in the audit trail with its fingerprint; the PIN goes nowhere.
    let spare = t.key_ref("spare");
    let out = t.kxca(&[
        "key",
        "generate",
        "--ref",
        &spare,
        "--algorithm",
        algorithm,
        "--json",
    ]);
    assert_ok(&out, "key generate in a home");
    let spare_key: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let out = t.kxca(&["audit", "--json", "--limit", "1000"]);
    assert_ok(&out, "audit");
    let audit = String::from_utf8_lossy(&out.stdout);
    assert!(
        audit.contains("key.generate") && audit.contains(&spare),
        "{audit}"
    );
    assert!(
        audit.contains(spare_key["spki_sha256"].as_str().unwrap()),
        "{audit}"
    );
    assert!(!audit.contains(USER_PIN));
    let db = std::fs::read(t.ca.path("kxca.db")).unwrap();
    assert!(!db.windows(USER_PIN.len()).any(|w| w == USER_PIN.as_bytes()));

    ocsp_responder_on_token(&t, &good, &revoked);
}

/// The OCSP responder's key lives on the token too: `kxca daemon` creates it
/// there, has the issuing CA (on the token) certify it, and its answers
/// verify with only the root as trust anchor.
fn ocsp_responder_on_token(t: &TokenCa, good: &Path, revoked: &Path) {
    if !support_ocsp::tools_present() {
        return;
    }
    let responder_ref = t.key_ref("ocsp-responder");
    let config_path = t.ca.path("kxca.toml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    // init wrote a soft responder key with a random passphrase: move it to
    // the token, unlocked by the token's PIN.
    let config: String = config
        .lines()
        .map(|l| {
            if l.starts_with("responder_key = ") {
                format!("responder_key = \"{responder_ref}\"")
            } else if l.starts_with("responder_key_secret_file = ") {
                format!("responder_key_secret_file = {:?}", t.hsm.pin_file)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(config.contains(&responder_ref), "{config}");
    std::fs::write(&config_path, config).unwrap();

    let server = support_ocsp::Server::start_with(&t.ca, &[("SOFTHSM2_CONF", &t.hsm.conf)]);
    for (cert, status) in [(good, ": good"), (revoked, ": revoked")] {
        let resp = t.ca.dir.path().join("resp.der");
        let (ok, text) = support_ocsp::openssl_ocsp(
            &t.ca,
            &server,
            &["-cert", p(cert), "-respout", p(&resp), "-resp_text"],
        );
        assert!(ok, "openssl ocsp: {text}\n{}", server.log_text());
        assert!(text.contains("Response verify OK"), "{text}");
        assert!(text.contains(status), "{status}: {text}");
        assert!(
            text.contains("OCSP Signing"),
            "responder certificate: {text}"
        );
        support_ocsp::lint(&std::fs::read(&resp).unwrap(), t.ca.dir.path(), status);
    }

    // The responder key is on the token, sign-only and non-extractable, and
    // the responder certificate the server sent carries it.
    let out = t.kxca(&["key", "list", "--token", &t.token, "--json"]);
    assert_ok(&out, "key list");
    let keys: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["label"] == "ocsp-responder")
        .unwrap_or_else(|| panic!("no responder key on the token: {keys}"))
        .clone();
    assert_eq!(key["extractable"], false, "{key}");
    let resp = t.ca.dir.path().join("resp.der");
    let responder_pem = t.ca.dir.path().join("responder.pem");
    let (ok, text) = run(
        "openssl",
        &["ocsp", "-respin", p(&resp), "-resp_text", "-noverify"],
    );
    assert!(ok, "{text}");
    let begin = text.find("-----BEGIN CERTIFICATE-----").unwrap();
    let end = text.find("-----END CERTIFICATE-----").unwrap() + "-----END CERTIFICATE-----".len();
    std::fs::write(&responder_pem, &text[begin..end]).unwrap();
    assert_eq!(
        openssl_spki_sha256(&responder_pem),
        key["spki_sha256"].as_str().unwrap()
    );
}

#[test]
fn ca_with_p256_keys_on_a_token() {
    if tools_present() {
        ca_on_token("p256", "ecdsa-p256");
    }
}

#[test]
fn ca_with_rsa2048_keys_on_a_token() {
    if tools_present() {
        ca_on_token("rsa2048", "rsa-2048");
    }
}

#[test]
fn key_commands_refuse_bad_input_with_one_line() {
    if !tools_present() {
        return;
    }
    let t = TokenCa {
        ca: TestCa::uninitialised(),
        hsm: SoftHsm::new(&["KX-BAD"]),
        token: "KX-BAD".into(),
    };
    let pin = t.pin_arg();
    for (args, expect) in [
        (
            vec![
                "key",
                "generate",
                "--ref",
                "pkcs11:token=KX-BAD;object=a",
                "--algorithm",
                "dsa",
            ],
            "unsupported key algorithm",
        ),
        (
            vec!["key", "generate", "--ref", "soft:/tmp/x.p8"],
            "makes pkcs11: keys",
        ),
        (
            vec!["key", "generate", "--ref", "pkcs11:token=NOPE;object=a"],
            "token not present",
        ),
        (vec!["key", "list", "--token", "NOPE"], "token not present"),
    ] {
        let mut full = args.clone();
        full.extend_from_slice(&pin);
        let out = t.kxca(&full);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            err.contains(expect) && err.trim().lines().count() == 1,
            "{args:?}: {err}"
        );
    }
    // A wrong PIN names the problem, never the PIN.
    let wrong = t.ca.dir.path().join("wrong-pin");
    std::fs::write(&wrong, "wrong-pin-771\n").unwrap();
    let out = t.kxca(&["key", "list", "--key-secret-file", p(&wrong)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("wrong PIN") && !err.contains("wrong-pin-771"),
        "{err}"
    );
}

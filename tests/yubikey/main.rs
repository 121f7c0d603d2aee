//! `kxca yubikey ...` and a CA whose keys are on a (virtual) YubiKey,
//! driven through the real binary; certificates and CRLs checked by
//! openssl, the card's state by yubico-piv-tool.

use kxca_test_support::piv as card;
use kxca_test_support::{common, softhsm};

use std::path::Path;
use std::process::Output;

use common::{assert_ok, p, run, TestCa};

const NEW_PIN: &str = "24681357";
const NEW_PUK: &str = "97531864";

/// Production keeps the OCSP responder key off the CA keys' device and PIN:
/// here it is on a SoftHSM2 token of its own. Returns the token (kept alive
/// for the test), the responder's `init` arguments and the PIN file. The
/// card lock serialises the tests that set SOFTHSM2_CONF.
fn responder_token() -> Option<(softhsm::SoftHsm, Vec<String>)> {
    if !softhsm::available() {
        return None;
    }
    let hsm = softhsm::SoftHsm::new(&["KX-OCSP"]);
    std::env::set_var("SOFTHSM2_CONF", &hsm.conf);
    let args = vec![
        "--responder-key".to_string(),
        "pkcs11:token=KX-OCSP;object=ocsp-responder".to_string(),
        "--responder-key-secret-file".to_string(),
        hsm.pin_file.display().to_string(),
    ];
    Some((hsm, args))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn yk(ca: &TestCa, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = ca.cmd();
    for v in [
        "KXCA_YUBIKEY_PIN",
        "KXCA_YUBIKEY_NEW_PIN",
        "KXCA_YUBIKEY_PUK",
        "KXCA_YUBIKEY_NEW_PUK",
        "KXCA_YUBIKEY_PIN_FILE",
    ] {
        c.env_remove(v);
    }
    c.arg("yubikey").args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn no_secrets(out: &Output, secrets: &[&str]) {
    let t = text(out);
    for s in secrets {
        assert!(!t.contains(s), "a secret leaked into the output: {t}");
    }
}

fn openssl_verify(ca: &TestCa, cert: &Path) {
    let (ok, t) = run(
        "openssl",
        &[
            "verify",
            "-x509_strict",
            "-purpose",
            "sslclient",
            "-CAfile",
            p(&ca.path("ca/root.pem")),
            "-untrusted",
            p(&ca.path("ca/issuing-1.pem")),
            p(cert),
        ],
    );
    assert!(ok && t.contains(": OK"), "openssl verify: {t}");
}

fn crl_verifies(ca: &TestCa) {
    assert_ok(&ca.kxca(&["crl"]), "crl");
    let (ok, t) = run(
        "openssl",
        &[
            "crl",
            "-in",
            p(&ca.path("crl/issuing-1.pem")),
            "-CAfile",
            p(&ca.path("ca/issuing-1.pem")),
            "-noout",
            "-verify",
        ],
    );
    assert!(ok && t.contains("verify OK"), "openssl crl -verify: {t}");
}

#[test]
fn production_ca_on_a_yubikey_from_setup_to_pin_reset() {
    let Some(card) = card::card() else { return };
    let ca = TestCa::uninitialised();
    let serial = card.serial.to_string();
    let dev = ["--serial", serial.as_str()];

    let out = yk(&ca, &["list"], &[]);
    assert_ok(&out, "yubikey list");
    assert!(text(&out).contains(&serial), "{}", text(&out));
    let out = yk(&ca, &["status", "--serial", &serial], &[]);
    assert_ok(&out, "yubikey status");
    assert!(
        text(&out).contains("factory management key:  YES"),
        "{}",
        text(&out)
    );

    // Setup: new PIN and PUK, management key stored PIN-protected.
    let out = yk(
        &ca,
        &["setup", "--serial", &serial],
        &[
            ("KXCA_YUBIKEY_NEW_PIN", NEW_PIN),
            ("KXCA_YUBIKEY_NEW_PUK", NEW_PUK),
        ],
    );
    assert_ok(&out, "yubikey setup");
    no_secrets(&out, &[NEW_PIN, NEW_PUK]);
    let out = yk(&ca, &["status", "--serial", &serial], &[]);
    assert!(
        text(&out).contains("factory management key:  no"),
        "{}",
        text(&out)
    );

    // Root in 9d, issuing in 9c, generated with the PIN-protected management key.
    let pin_file = ca.dir.path().join("pin");
    std::fs::write(&pin_file, format!("{NEW_PIN}\n")).unwrap();
    let pin_env = [("KXCA_YUBIKEY_PIN_FILE", p(&pin_file))];
    for slot in ["9d", "9c"] {
        let pub_pem = ca.dir.path().join(format!("{slot}.pem"));
        let out = yk(
            &ca,
            &[
                "generate",
                "--serial",
                &serial,
                "--slot",
                slot,
                "--public-key-out",
                p(&pub_pem),
            ],
            &pin_env,
        );
        assert_ok(&out, "yubikey generate");
        let (ok, t) = run(
            "openssl",
            &["pkey", "-pubin", "-in", p(&pub_pem), "-noout", "-text"],
        );
        assert!(ok && t.contains("prime256v1"), "openssl pkey: {t}");
    }
    let out = yk(&ca, &["generate", "--slot", "9c"], &pin_env);
    assert!(!out.status.success(), "generated over an existing key");
    assert!(text(&out).contains("already holds a key"), "{}", text(&out));

    // A production CA: soft keys refused, factory defaults refused, keys on the card.
    let root_ref = format!("yubikey:serial={serial};slot=9d");
    let issuing_ref = format!("yubikey:serial={serial};slot=9c");
    let Some((_responder_hsm, responder_args)) = responder_token() else {
        return;
    };
    let mut args = vec![
        "init",
        "--production",
        "--root-key",
        &root_ref,
        "--issuing-key",
        &issuing_ref,
        "--key-secret-file",
        p(&pin_file),
    ];
    args.extend(responder_args.iter().map(String::as_str));
    let out = ca.kxca(&args);
    assert_ok(&out, "init on the YubiKey");
    no_secrets(&out, &[NEW_PIN]);
    let issued = ca.issue("1234567", "001", &[]);
    openssl_verify(&ca, &issued.cert);
    crl_verifies(&ca);

    // A wrong PIN says how many tries are left; three block it.
    let wrong = [
        ("KXCA_YUBIKEY_PIN", "99999999"),
        ("KXCA_YUBIKEY_NEW_PIN", "55555555"),
    ];
    let out = yk(&ca, &["change-pin", dev[0], dev[1]], &wrong);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("wrong PIN, 2 tries left"),
        "{}",
        text(&out)
    );
    yk(&ca, &["change-pin", dev[0], dev[1]], &wrong);
    let out = yk(&ca, &["change-pin", dev[0], dev[1]], &wrong);
    assert!(text(&out).contains("blocked"), "{}", text(&out));
    let out = ca.kxca(&["crl"]);
    assert!(!out.status.success(), "signed with a blocked PIN");
    assert!(text(&out).contains("PIN is blocked"), "{}", text(&out));
    assert!(!text(&out).contains("panicked"), "{}", text(&out));

    // The PIN reset with the PUK, then the CA signs again with the new PIN.
    let reset_pin = "11335577";
    let out = yk(
        &ca,
        &["unblock-pin", dev[0], dev[1]],
        &[
            ("KXCA_YUBIKEY_PUK", NEW_PUK),
            ("KXCA_YUBIKEY_NEW_PIN", reset_pin),
        ],
    );
    assert_ok(&out, "unblock-pin");
    no_secrets(&out, &[NEW_PUK, reset_pin]);
    std::fs::write(&pin_file, format!("{reset_pin}\n")).unwrap();
    let issued = ca.issue("7654321", "002", &[]);
    openssl_verify(&ca, &issued.cert);
    crl_verifies(&ca);

    // Change it once more the ordinary way; the CA follows the PIN file.
    let out = yk(
        &ca,
        &["change-pin", dev[0], dev[1]],
        &[
            ("KXCA_YUBIKEY_PIN", reset_pin),
            ("KXCA_YUBIKEY_NEW_PIN", NEW_PIN),
        ],
    );
    assert_ok(&out, "change-pin");
    std::fs::write(&pin_file, format!("{NEW_PIN}\n")).unwrap();
    crl_verifies(&ca);
    // Officer actions on the CA's device are in its audit trail, without secrets.
    let out = ca.kxca(&["audit", "--json"]);
    assert_ok(&out, "audit");
    let audit = text(&out);
    for action in ["yubikey.unblock_pin", "yubikey.change_pin"] {
        assert!(
            audit.contains(action),
            "{action} missing from the audit: {audit}"
        );
    }
    no_secrets(&out, &[NEW_PIN, NEW_PUK, reset_pin]);

    // Attestation is not offered by the virtual card: one clear line.
    let out = yk(&ca, &["attest", dev[0], dev[1], "--slot", "9c"], &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("not supported"), "{}", text(&out));
}

#[test]
fn production_refuses_a_factory_default_yubikey() {
    let Some(card) = card::card() else { return };
    let ca = TestCa::uninitialised();
    let serial = card.serial.to_string();
    // Generating outside production works on factory defaults ...
    let out = yk(
        &ca,
        &["generate", "--serial", &serial],
        &[("KXCA_YUBIKEY_PIN", "123456")],
    );
    assert_ok(&out, "generate on factory defaults");
    // ... but a production CA refuses the device until `kxca yubikey setup`.
    let pin_file = ca.dir.path().join("pin");
    std::fs::write(&pin_file, "123456\n").unwrap();
    let key = format!("yubikey:serial={serial};slot=9c");
    let Some((_responder_hsm, responder_args)) = responder_token() else {
        return;
    };
    let mut args = vec![
        "init",
        "--production",
        "--root-key",
        &key,
        "--issuing-key",
        &key,
        "--key-secret-file",
        p(&pin_file),
    ];
    args.extend(responder_args.iter().map(String::as_str));
    let out = ca.kxca(&args);
    assert!(!out.status.success(), "production init on factory defaults");
    assert!(text(&out).contains("factory PIN"), "{}", text(&out));
    assert_eq!(text(&out).trim().lines().count(), 1, "{}", text(&out));
}

//! The `yubikey` backend against the virtual PIV card that
//! tests/services/piv.sh starts (pcscd + vpcd + piv-authenticator).
//! Signatures are checked by openssl. Every test takes the card lock and
//! resets the card to factory state first, since they share one card.

use std::path::{Path, PathBuf};
use std::process::Command;

use kxca_hsm::yubikey::officer;
use kxca_hsm::{BackendOptions, Error, KeyAlgorithm, KeyRef, SecretSource, SecretString, Signer};

const FACTORY_PIN: &str = "123456";
const FACTORY_PUK: &str = "12345678";

#[path = "support/piv_card.rs"]
mod piv_card;

struct Card {
    serial: u32,
    _card: piv_card::LockedCard,
    dir: tempfile::TempDir,
}

/// The virtual card, locked for this test and reset; `None` (with a loud
/// message) when the service is not running under bare `cargo test`.
fn card() -> Option<Card> {
    let Some(locked) = piv_card::locked_card() else {
        kxca_test_support::require(
            "the virtual PIV card",
            false,
            "tests/run starts tests/services/piv.sh",
        );
        return None;
    };
    Some(Card {
        serial: locked.serial,
        _card: locked,
        dir: tempfile::tempdir().unwrap(),
    })
}

impl Card {
    fn key_ref(&self, slot: &str) -> KeyRef {
        format!("yubikey:serial={};slot={slot}", self.serial)
            .parse()
            .unwrap()
    }

    fn secret(&self, name: &str, value: &str) -> SecretSource {
        let path = self.dir.path().join(name);
        std::fs::write(&path, format!("{value}\n")).unwrap();
        SecretSource::File(path)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn s(v: &str) -> SecretString {
    SecretString::from(v.to_string())
}

/// Signs `message` and has openssl verify it with the exported public key.
fn sign_and_verify_with_openssl(signer: &dyn Signer, dir: &Path, message: &[u8]) {
    let sig = signer.sign(message).unwrap();
    std::fs::write(dir.join("pub.der"), signer.public_key_der()).unwrap();
    std::fs::write(dir.join("msg"), message).unwrap();
    std::fs::write(dir.join("sig"), &sig).unwrap();
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-keyform", "DER", "-verify"])
        .arg(dir.join("pub.der"))
        .arg("-signature")
        .arg(dir.join("sig"))
        .arg(dir.join("msg"))
        .output()
        .expect("openssl");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified OK"),
        "openssl rejected the card's signature: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn generate_sign_and_verify_with_openssl() {
    let Some(card) = card() else { return };
    let pin = card.secret("pin", FACTORY_PIN);
    let key = card.key_ref("9c");
    let signer = kxca_hsm::generate_with(
        &key,
        KeyAlgorithm::EcdsaP256,
        &pin,
        &BackendOptions::default(),
    )
    .unwrap();
    assert_eq!(signer.algorithm(), KeyAlgorithm::EcdsaP256);
    assert!(signer.health().ok, "{}", signer.health().detail);
    sign_and_verify_with_openssl(signer.as_ref(), card.dir.path(), b"kxca tbsCertificate");
    drop(signer);

    // Reopened from the reference alone: same public key, still signs.
    let reopened = kxca_hsm::open(&key, &pin).unwrap();
    sign_and_verify_with_openssl(reopened.as_ref(), card.dir.path(), b"second message");

    // The slot is taken now; generating again must not replace the key.
    match kxca_hsm::generate(&key, KeyAlgorithm::EcdsaP256, &pin) {
        Err(Error::SlotOccupied { .. }) => {}
        Err(e) => panic!("expected SlotOccupied, got {e}"),
        Ok(_) => panic!("a second generation replaced the key"),
    }
    // yubico-piv-tool, an independent client, sees the certificate kxca stored.
    let out = Command::new("yubico-piv-tool")
        .args(["-r", "Yubico", "-a", "status"])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.contains("Slot 9c"),
        "yubico-piv-tool status: {status}"
    );
}

#[test]
fn empty_slot_and_missing_device_are_clear_errors() {
    let Some(card) = card() else { return };
    let pin = card.secret("pin", FACTORY_PIN);
    match kxca_hsm::open(&card.key_ref("9d"), &pin) {
        Err(e @ Error::SlotEmpty { .. }) => assert!(e.to_string().contains("slot 9d")),
        Err(e) => panic!("expected SlotEmpty, got {e}"),
        Ok(_) => panic!("opened an empty slot"),
    }
    let missing: KeyRef = "yubikey:serial=1;slot=9c".parse().unwrap();
    match kxca_hsm::open(&missing, &pin) {
        Err(e @ Error::DeviceNotFound { .. }) => assert!(e.to_string().contains("serial 1")),
        Err(e) => panic!("expected DeviceNotFound, got {e}"),
        Ok(_) => panic!("opened a device that does not exist"),
    }
}

#[test]
fn change_pin_block_it_unblock_with_puk_and_sign_again() {
    let Some(card) = card() else { return };
    let key = card.key_ref("9c");
    let signer = kxca_hsm::generate(
        &key,
        KeyAlgorithm::EcdsaP256,
        &card.secret("pin", FACTORY_PIN),
    )
    .unwrap();
    drop(signer);

    officer::change_pin(Some(card.serial), &s(FACTORY_PIN), &s("24681357")).unwrap();
    // The old PIN is wrong now, and says how many tries are left.
    match kxca_hsm::open(&key, &card.secret("old", FACTORY_PIN)) {
        Err(Error::WrongPin { retries, .. }) => assert_eq!(retries, 2),
        Err(e) => panic!("expected WrongPin, got {e}"),
        Ok(_) => panic!("the old PIN still works"),
    }
    let signer = kxca_hsm::open(&key, &card.secret("new", "24681357")).unwrap();
    sign_and_verify_with_openssl(signer.as_ref(), card.dir.path(), b"after change-pin");
    drop(signer);

    // Block it with wrong tries.
    let wrong = card.secret("wrong", "99999999");
    let mut last = None;
    for _ in 0..3 {
        last = kxca_hsm::open(&key, &wrong).err();
    }
    assert!(matches!(last, Some(Error::PinBlocked { .. })), "{last:?}");
    match kxca_hsm::open(&key, &card.secret("new", "24681357")) {
        Err(e @ Error::PinBlocked { .. }) => assert!(e.to_string().contains("unblock-pin")),
        Err(e) => panic!("expected PinBlocked, got {e}"),
        Ok(_) => panic!("a blocked PIN still opened the key"),
    }
    let status = officer::status(Some(card.serial)).unwrap();
    assert_eq!(status.pin_retries, 0);

    // A wrong PUK is refused with its tries left; the right one resets the PIN.
    match officer::unblock_pin(Some(card.serial), &s("87654321"), &s("13572468")) {
        Err(Error::WrongPin { what, retries, .. }) => {
            assert_eq!(what, "PUK");
            assert_eq!(retries, 2);
        }
        other => panic!("expected a wrong PUK, got {:?}", other.map(|_| ())),
    }
    officer::unblock_pin(Some(card.serial), &s(FACTORY_PUK), &s("13572468")).unwrap();
    let signer = kxca_hsm::open(&key, &card.secret("reset", "13572468")).unwrap();
    sign_and_verify_with_openssl(signer.as_ref(), card.dir.path(), b"after unblock-pin");
    assert!(signer.health().ok);
}

#[test]
fn setup_replaces_factory_secrets_and_production_refuses_defaults() {
    let Some(card) = card() else { return };
    let key = card.key_ref("9c");
    let production = BackendOptions {
        yubikey: kxca_hsm::YubiKeyOptions {
            production: true,
            ..Default::default()
        },
        ..Default::default()
    };
    // Production refuses a device on factory defaults, before any change.
    match kxca_hsm::generate_with(
        &key,
        KeyAlgorithm::EcdsaP256,
        &card.secret("pin", FACTORY_PIN),
        &production,
    ) {
        Err(e @ Error::FactoryDefault { .. }) => assert!(e.to_string().contains("setup")),
        Err(e) => panic!("expected FactoryDefault, got {e}"),
        Ok(_) => panic!("production generated on a factory-default device"),
    }
    // A factory value as the "new" PIN is refused.
    let bad = officer::Setup {
        current_pin: s(FACTORY_PIN),
        new_pin: s(FACTORY_PIN),
        current_puk: s(FACTORY_PUK),
        new_puk: s("11223344"),
        current_management_key: None,
        storage: kxca_hsm::yubikey::ManagementKeyStorage::Printed,
    };
    assert!(officer::setup(Some(card.serial), &bad).is_err());
    assert_eq!(officer::status(Some(card.serial)).unwrap().pin_retries, 3);

    let outcome = officer::setup(
        Some(card.serial),
        &officer::Setup {
            new_pin: s("31415926"),
            ..bad
        },
    )
    .unwrap();
    let mgm = outcome
        .printed_management_key
        .expect("printed management key");
    let status = officer::status(Some(card.serial)).unwrap();
    assert!(!status.factory_management_key);

    // Without the management key, production cannot generate; with it, it can.
    let pin = card.secret("pin2", "31415926");
    assert!(kxca_hsm::generate_with(&key, KeyAlgorithm::EcdsaP256, &pin, &production).is_err());
    let mgm_file = card.path("mgm");
    std::fs::write(
        &mgm_file,
        format!("{}\n", secrecy::ExposeSecret::expose_secret(&mgm)),
    )
    .unwrap();
    let with_key = BackendOptions {
        yubikey: kxca_hsm::YubiKeyOptions {
            production: true,
            management_key_file: Some(mgm_file),
            ..Default::default()
        },
        ..Default::default()
    };
    let signer = kxca_hsm::generate_with(&key, KeyAlgorithm::EcdsaP256, &pin, &with_key).unwrap();
    sign_and_verify_with_openssl(signer.as_ref(), card.dir.path(), b"production key");
    // Attestation is not offered by the virtual card: a clean "not supported".
    match officer::attest(Some(card.serial), "9c") {
        Err(e @ Error::NotSupported { .. }) => assert!(e.to_string().contains("attestation")),
        other => panic!("expected NotSupported, got {:?}", other.map(|_| ())),
    }
}

/// The same card through Yubico's ykcs11 PKCS#11 module and kxca's
/// `pkcs11` backend: slot 9c keys have PIN policy "always" here, so every
/// signature needs the context-specific login.
#[test]
fn ykcs11_signs_through_the_pkcs11_backend() {
    let Some(card) = card() else { return };
    let module = "/usr/lib/x86_64-linux-gnu/libykcs11.so";
    if !kxca_test_support::require(
        &format!("{module} (Debian ykcs11)"),
        Path::new(module).exists(),
        "tests/deps/apt.txt lists ykcs11",
    ) {
        return;
    }
    let pin = card.secret("pin", FACTORY_PIN);
    let piv = kxca_hsm::generate(&card.key_ref("9c"), KeyAlgorithm::EcdsaP256, &pin).unwrap();
    let piv_public = piv.public_key_der().to_vec();
    drop(piv);

    let key: KeyRef = format!(
        "pkcs11:token=YubiKey PIV #{};object=Private key for Digital Signature;module-path={module}",
        card.serial
    )
    .parse()
    .unwrap();
    let signer = kxca_hsm::open(&key, &pin).unwrap();
    assert_eq!(
        signer.public_key_der(),
        piv_public.as_slice(),
        "ykcs11 sees another key"
    );
    for i in 0..3 {
        sign_and_verify_with_openssl(
            signer.as_ref(),
            card.dir.path(),
            format!("through ykcs11 #{i}").as_bytes(),
        );
    }
    drop(signer);

    // Concurrent signers over the default pool of several sessions: the
    // card has one PIN state, so the backend takes the context-specific
    // login and the signature as one turn, or a second session's login
    // would be spent by the first signature.
    let pool = BackendOptions::default();
    assert!(pool.pkcs11.max_sessions > 1);
    let shared: std::sync::Arc<dyn Signer> = kxca_hsm::open_with(&key, &pin, &pool).unwrap().into();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let s = shared.clone();
            std::thread::spawn(move || {
                (0..3)
                    .map(|i| {
                        let msg = format!("signer {t} #{i}");
                        (
                            msg.clone(),
                            s.sign(msg.as_bytes()).expect("concurrent sign"),
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for (msg, sig) in threads.into_iter().flat_map(|h| h.join().unwrap()) {
        kxca_hsm::verify(KeyAlgorithm::EcdsaP256, &piv_public, msg.as_bytes(), &sig).unwrap();
    }
}

/// RSA-2048: the device does raw RSA, kxca builds the PKCS#1 v1.5 block;
/// openssl checks the result against the exported public key.
#[test]
fn rsa_2048_generate_sign_and_verify_with_openssl() {
    let Some(card) = card() else { return };
    let pin = card.secret("pin", FACTORY_PIN);
    let signer = kxca_hsm::generate(&card.key_ref("9a"), KeyAlgorithm::Rsa2048, &pin).unwrap();
    assert_eq!(signer.algorithm(), KeyAlgorithm::Rsa2048);
    sign_and_verify_with_openssl(signer.as_ref(), card.dir.path(), b"RSA tbsCertificate");
    let reopened = kxca_hsm::open(&card.key_ref("9a"), &pin).unwrap();
    assert_eq!(reopened.algorithm(), KeyAlgorithm::Rsa2048);
    sign_and_verify_with_openssl(reopened.as_ref(), card.dir.path(), b"again");
}

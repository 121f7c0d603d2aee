//! The PKCS#11 backend against SoftHSM2: key generation, signing checked
//! by an independent implementation, and faults injected behind the
//! backend's back (sessions closed, library finalised, token directory
//! replaced) — the next signature heals or fails clearly, never hangs.

use kxca_test_support::softhsm;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::UserType;
use kxca_hsm::{
    generate_with, list_keys, open_with, BackendOptions, Error, KeyAlgorithm, KeyRef, SecretSource,
    Signer,
};
use softhsm::{SoftHsm, MODULE, USER_PIN};

const TOKEN: &str = "KX-TEST";

fn pin(conf: &Path) -> SecretSource {
    SecretSource::File(conf.parent().unwrap().join("pin"))
}

fn tokens(conf: &Path) -> PathBuf {
    conf.parent().unwrap().join("tokens")
}

fn key_ref(object: &str) -> KeyRef {
    format!("pkcs11:token={TOKEN};object={object}")
        .parse()
        .unwrap()
}

fn options() -> BackendOptions {
    BackendOptions::default()
}

fn check(signer: &dyn Signer, message: &[u8]) {
    let sig = signer.sign(message).expect("sign");
    // RustCrypto checks what SoftHSM2 (OpenSSL inside) signed.
    kxca_hsm::verify(signer.algorithm(), signer.public_key_der(), message, &sig)
        .expect("signature verifies");
}

/// A second handle on the module, as another library in the process would have.
fn other_handle() -> Pkcs11 {
    let ctx = Pkcs11::new(MODULE).unwrap();
    let _ = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    ctx
}

fn slot_of(ctx: &Pkcs11, label: &str) -> cryptoki::slot::Slot {
    ctx.get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == label)
        .expect("token present")
}

#[test]
fn generated_keys_sign_and_are_sign_only_non_extractable() {
    SoftHsm::isolated(
        "generated_keys_sign_and_are_sign_only_non_extractable",
        &[TOKEN],
        |conf| {
            for (label, alg) in [
                ("ca-p256", KeyAlgorithm::EcdsaP256),
                ("ca-rsa2048", KeyAlgorithm::Rsa2048),
                ("ca-rsa3072", KeyAlgorithm::Rsa3072),
            ] {
                let r = key_ref(label);
                let g = generate_with(&r, alg, &pin(conf), &options()).unwrap();
                assert_eq!(g.algorithm(), alg);
                check(g.as_ref(), b"tbs bytes");
                // Opened afresh, the same key.
                let o = open_with(&r, &pin(conf), &options()).unwrap();
                assert_eq!(o.public_key_der(), g.public_key_der());
                check(o.as_ref(), b"other tbs bytes");
                assert!(o.health().ok, "{}", o.health().detail);
                // Never a second key under the same label.
                let again = generate_with(&r, alg, &pin(conf), &options());
                assert!(
                    matches!(again, Err(Error::TokenKeyExists { .. })),
                    "{:?}",
                    again.err()
                );
            }
            let keys =
                list_keys(Path::new(MODULE), Some(TOKEN), &pin(conf).read().unwrap()).unwrap();
            assert_eq!(keys.len(), 3, "{keys:?}");
            for k in &keys {
                assert!(!k.extractable && k.sensitive, "{k:?}");
                assert!(k.other_uses.is_empty(), "{k:?}");
                assert_eq!(k.spki_sha256.len(), 64);
            }

            // OpenSC's pkcs11-tool, an independent reader, sees the same.
            let out = std::process::Command::new("pkcs11-tool")
                .args(["--module", MODULE, "--token-label", TOKEN, "--login"])
                .args(["--pin", USER_PIN, "--list-objects", "--type", "privkey"])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{text}");
            assert_eq!(text.matches("never extractable").count(), 3, "{text}");
            assert_eq!(text.matches("Usage:      sign\n").count(), 3, "{text}");
            assert!(
                !text.contains("decrypt") && !text.contains("unwrap") && !text.contains("derive"),
                "{text}"
            );
        },
    );
}

#[test]
fn clear_errors_for_wrong_pin_missing_key_and_missing_token() {
    SoftHsm::isolated(
        "clear_errors_for_wrong_pin_missing_key_and_missing_token",
        &[TOKEN],
        |conf| {
            let r = key_ref("ca");
            generate_with(&r, KeyAlgorithm::EcdsaP256, &pin(conf), &options()).unwrap();
            let wrong = conf.parent().unwrap().join("wrong-pin");
            std::fs::write(&wrong, "000000\n").unwrap();
            let e = open_with(&r, &SecretSource::File(wrong), &options())
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains("wrong PIN") && !e.contains("000000"), "{e}");
            let e = open_with(&key_ref("absent"), &pin(conf), &options())
                .err()
                .unwrap();
            assert!(matches!(e, Error::TokenKeyMissing { .. }), "{e}");
            let nope: KeyRef = "pkcs11:token=NOPE;object=ca".parse().unwrap();
            let e = open_with(&nope, &pin(conf), &options())
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains("token not present") && e.contains("NOPE"), "{e}");
            let mut o = options();
            o.pkcs11.module_path = "/nonexistent/libnothing.so".into();
            let e = open_with(&r, &pin(conf), &o).err().unwrap().to_string();
            assert!(e.contains("/nonexistent/libnothing.so"), "{e}");
        },
    );
}

#[test]
fn heals_after_all_sessions_are_closed_behind_its_back() {
    SoftHsm::isolated(
        "heals_after_all_sessions_are_closed_behind_its_back",
        &[TOKEN],
        |conf| {
            let r = key_ref("ca");
            let s = generate_with(&r, KeyAlgorithm::EcdsaP256, &pin(conf), &options()).unwrap();
            check(s.as_ref(), b"before");
            let ctx = other_handle();
            let slot = slot_of(&ctx, TOKEN);
            // cryptoki does not wrap C_CloseAllSessions; call the module directly.
            let rv = unsafe {
                let raw = cryptoki_sys::Pkcs11::new(MODULE).unwrap();
                raw.C_CloseAllSessions(slot.id())
            };
            assert_eq!(rv, cryptoki_sys::CKR_OK);
            check(s.as_ref(), b"after the sessions died");
            check(s.as_ref(), b"and again");
            assert!(s.health().ok, "{}", s.health().detail);
        },
    );
}

#[test]
fn heals_after_the_library_is_finalized_behind_its_back() {
    SoftHsm::isolated(
        "heals_after_the_library_is_finalized_behind_its_back",
        &[TOKEN],
        |conf| {
            let r = key_ref("ca");
            let s = generate_with(&r, KeyAlgorithm::Rsa2048, &pin(conf), &options()).unwrap();
            check(s.as_ref(), b"before");
            // A second key on the same module: one re-initialisation must
            // serve both, and neither may reuse the other's new sessions.
            let r2 = key_ref("issuing");
            let s2 = generate_with(&r2, KeyAlgorithm::EcdsaP256, &pin(conf), &options()).unwrap();
            check(s2.as_ref(), b"before");
            for round in 0..3 {
                other_handle().finalize().unwrap();
                check(s.as_ref(), format!("after finalize {round}").as_bytes());
                check(s2.as_ref(), format!("after finalize {round}").as_bytes());
                check(s.as_ref(), format!("again {round}").as_bytes());
            }
            // A health check is the first call after a finalize, too.
            other_handle().finalize().unwrap();
            assert!(s.health().ok, "{}", s.health().detail);
        },
    );
}

#[test]
fn token_directory_replaced_mid_run_fails_clearly_then_heals() {
    SoftHsm::isolated(
        "token_directory_replaced_mid_run_fails_clearly_then_heals",
        &[TOKEN],
        |conf| {
            let r = key_ref("ca");
            let s = generate_with(&r, KeyAlgorithm::EcdsaP256, &pin(conf), &options()).unwrap();
            check(s.as_ref(), b"before");
            let dir = tokens(conf);
            let saved = conf.parent().unwrap().join("tokens.saved");
            std::fs::rename(&dir, &saved).unwrap();
            std::fs::create_dir(&dir).unwrap();
            // A different token under the same label, without our key.
            let out = std::process::Command::new("softhsm2-util")
                .args(["--init-token", "--free", "--label", TOKEN])
                .args(["--so-pin", softhsm::SO_PIN, "--pin", USER_PIN])
                .output()
                .unwrap();
            assert!(out.status.success());
            other_handle().finalize().unwrap();
            match s.sign(b"while replaced") {
                Ok(_) => panic!("signed with a key that is no longer on the token"),
                Err(e) => {
                    let e = e.to_string();
                    assert!(e.contains(TOKEN) && !e.contains(USER_PIN), "{e}");
                    eprintln!("replaced token: {e}");
                }
            }
            assert!(!s.health().ok);
            // The original token comes back (restored from backup).
            std::fs::remove_dir_all(&dir).unwrap();
            std::fs::rename(&saved, &dir).unwrap();
            other_handle().finalize().unwrap();
            check(s.as_ref(), b"after restore");
        },
    );
}

#[test]
fn concurrent_signers_share_a_bounded_session_pool() {
    SoftHsm::isolated(
        "concurrent_signers_share_a_bounded_session_pool",
        &[TOKEN],
        |conf| {
            let r = key_ref("ca");
            let mut o = options();
            o.pkcs11.max_sessions = 2;
            let s: Arc<dyn Signer> = generate_with(&r, KeyAlgorithm::EcdsaP256, &pin(conf), &o)
                .unwrap()
                .into();
            let round = |tag: &str| {
                let threads: Vec<_> = (0..6)
                    .map(|t| {
                        let s = s.clone();
                        let tag = tag.to_string();
                        std::thread::spawn(move || {
                            for i in 0..20 {
                                check(s.as_ref(), format!("{tag} {t}/{i}").as_bytes());
                            }
                        })
                    })
                    .collect();
                for t in threads {
                    t.join().expect("a signer thread failed");
                }
            };
            round("first");
            // Every pooled session dies between rounds. (Not during one:
            // closing a session another thread is inside is undefined
            // behaviour in PKCS#11, and SoftHSM2 may crash on it.)
            let ctx = other_handle();
            let slot = slot_of(&ctx, TOKEN);
            let rv = unsafe {
                cryptoki_sys::Pkcs11::new(MODULE)
                    .unwrap()
                    .C_CloseAllSessions(slot.id())
            };
            assert_eq!(rv, cryptoki_sys::CKR_OK);
            round("after the sessions died");
            other_handle().finalize().unwrap();
            round("after the library was finalized");
            let ctx = other_handle();
            let info = ctx.get_token_info(slot_of(&ctx, TOKEN)).unwrap();
            // Our two pooled sessions at most (and this handle opened none).
            assert!(info.session_count().unwrap_or(0) <= 2, "{info:?}");
        },
    );
}

#[test]
fn keys_demanding_context_specific_login_sign() {
    SoftHsm::isolated(
        "keys_demanding_context_specific_login_sign",
        &[TOKEN],
        |conf| {
            // A PIV-style key (CKA_ALWAYS_AUTHENTICATE), made directly.
            let ctx = other_handle();
            let slot = slot_of(&ctx, TOKEN);
            let session = ctx.open_rw_session(slot).unwrap();
            let pin_secret = pin(conf).read().unwrap();
            session.login(UserType::User, Some(&pin_secret)).unwrap();
            let label = b"piv-like".to_vec();
            let (_, private) = session
                .generate_key_pair(
                    &Mechanism::RsaPkcsKeyPairGen,
                    &[
                        Attribute::Token(true),
                        Attribute::ModulusBits(2048u64.into()),
                        Attribute::PublicExponent(vec![1, 0, 1]),
                        Attribute::Label(label.clone()),
                        Attribute::Id(vec![0x9c]),
                    ],
                    &[
                        Attribute::Token(true),
                        Attribute::Private(true),
                        Attribute::Sensitive(true),
                        Attribute::Sign(true),
                        Attribute::AlwaysAuthenticate(true),
                        Attribute::Label(label),
                        Attribute::Id(vec![0x9c]),
                    ],
                )
                .unwrap();
            // The one-shot sign such keys refuse.
            let one_shot = session.sign(&Mechanism::Sha256RsaPkcs, private, b"x");
            assert!(
                matches!(
                    one_shot,
                    Err(cryptoki::error::Error::Pkcs11(
                        cryptoki::error::RvError::UserNotLoggedIn,
                        _
                    ))
                ),
                "{one_shot:?}"
            );
            let found = session
                .find_objects(&[
                    Attribute::Class(ObjectClass::PRIVATE_KEY),
                    Attribute::AlwaysAuthenticate(true),
                ])
                .unwrap();
            assert_eq!(found.len(), 1);
            drop(session);
            let r: KeyRef = format!("pkcs11:token={TOKEN};object=piv-like;id=9c")
                .parse()
                .unwrap();
            let s = open_with(&r, &pin(conf), &options()).unwrap();
            check(s.as_ref(), b"with a context-specific login");
            check(s.as_ref(), b"and each time");
        },
    );
}

use std::path::Path;

use kxca_hsm::KeyAlgorithm;

use super::pickup::{self, Claim, Refusal, RequestStatus};
use super::*;
use crate::Store;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("kxca.db"), true).unwrap();
    (dir, s)
}

fn policy() -> PickupPolicy {
    PickupPolicy::parse(SHIPPED_PICKUP, Path::new("pickup.toml")).unwrap()
}

fn holder() -> Holder {
    Holder {
        centre: "JC".into(),
        union_code: "26276".into(),
        branch_code: "00".into(),
        contract_unit: "2627600".into(),
        office_code: "123".into(),
        contact_code: "001".into(),
        office_name: "テスト設計事務所".into(),
        contact_name: "設計 太郎".into(),
        email: "taro@example.jp".into(),
    }
}

const ID: &str = "TI26276000000000123001";

fn open_one(s: &mut Store, supersedes: Option<Serial>) -> EnrolmentId {
    let h = holder();
    s.write(|tx| {
        open(
            tx,
            &NewEnrolment {
                certificate_id: ID,
                holder: &h,
                profile: "office-client",
                supersedes,
                key_algorithm: Some(KeyAlgorithm::EcdsaP256),
            },
            "admin",
            1000,
        )
    })
    .unwrap()
}

fn attempt(s: &mut Store, typed: &str, now: i64) -> Result<Claim, Refusal> {
    let p = policy();
    let c = s.read(|c| pickup::check(c, ID, now)).unwrap()?;
    let ok = c.verify(typed);
    Ok(s.write(|tx| {
        pickup::claim(
            tx,
            &c,
            ok,
            b"spki",
            KeyAlgorithm::EcdsaP256,
            &p,
            "pickup",
            now,
        )
    })
    .unwrap())
}

fn state(s: &Store, id: EnrolmentId, now: i64) -> EnrolmentState {
    s.read(|c| get(c, id, now)).unwrap().unwrap().state
}

#[test]
fn a_code_is_single_use_and_only_its_hash_is_stored() {
    let (dir, mut s) = store();
    let id = open_one(&mut s, None);
    assert_eq!(attempt(&mut s, "x", 1001), Err(Refusal::NoCode));
    let code = s.write(|tx| mint_code(tx, id, &policy(), 1000)).unwrap();
    assert_eq!(state(&s, id, 1001), EnrolmentState::Waiting);
    let got = attempt(&mut s, &code, 1001).unwrap();
    let Claim::Claimed(req) = got else {
        panic!("{got:?}")
    };
    assert_eq!(state(&s, id, 1001), EnrolmentState::Used);
    // A second (racing or replayed) claim with the same code is refused.
    assert_eq!(attempt(&mut s, &code, 1002), Err(Refusal::InProgress));
    assert!(matches!(
        s.read(|c| pickup::request_status(c, req)).unwrap(),
        RequestStatus::Pending
    ));
    // The public role gives up: the code works again, once.
    assert!(s
        .write(|tx| pickup::abandon(tx, req, "test", "pickup", 1003))
        .unwrap());
    assert!(!s
        .write(|tx| pickup::abandon(tx, req, "test", "pickup", 1003))
        .unwrap());
    assert_eq!(state(&s, id, 1004), EnrolmentState::Waiting);
    assert!(matches!(
        attempt(&mut s, &code, 1004),
        Ok(Claim::Claimed(_))
    ));
    // No code in the database or its WAL.
    s.truncate_wal("test").unwrap();
    for f in ["kxca.db", "kxca.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.path().join(f)) {
            let plain: String = code.chars().filter(|c| *c != '-').collect();
            for needle in [code.as_str(), plain.as_str()] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "{f} holds the code"
                );
            }
        }
    }
}

#[test]
fn wrong_codes_lock_at_the_policy_limit_and_renew_reopens() {
    let (_d, mut s) = store();
    let id = open_one(&mut s, None);
    let code = s.write(|tx| mint_code(tx, id, &policy(), 1000)).unwrap();
    for left in (1..5).rev() {
        assert_eq!(
            attempt(&mut s, "AAAA-AAAA-AAAA-AAAA-AAAA", 1001),
            Ok(Claim::Wrong { tries_left: left })
        );
    }
    assert_eq!(
        attempt(&mut s, "AAAA-AAAA-AAAA-AAAA-AAAA", 1001),
        Ok(Claim::Locked)
    );
    // Locked: even the right code is refused now.
    assert_eq!(attempt(&mut s, &code, 1002), Err(Refusal::Locked));
    let e = s.read(|c| get(c, id, 1002)).unwrap().unwrap();
    assert_eq!((e.state, e.tries), (EnrolmentState::Locked, 5));
    let listed = s
        .read(|c| {
            list(
                c,
                &Filter {
                    state: Some(EnrolmentState::Locked),
                    ..Default::default()
                },
                1002,
            )
        })
        .unwrap();
    assert_eq!(listed.len(), 1);
    s.write(|tx| renew(tx, id, "admin", 1003)).unwrap();
    // The old code no longer works: no code at all until a new one is minted.
    assert_eq!(attempt(&mut s, &code, 1004), Err(Refusal::NoCode));
    let new = s.write(|tx| mint_code(tx, id, &policy(), 1005)).unwrap();
    assert!(matches!(attempt(&mut s, &new, 1006), Ok(Claim::Claimed(_))));
}

#[test]
fn expired_codes_issue_nothing_and_reminting_kills_the_old_code() {
    let (_d, mut s) = store();
    let id = open_one(&mut s, None);
    let p = policy();
    let first = s.write(|tx| mint_code(tx, id, &p, 1000)).unwrap();
    let second = s.write(|tx| mint_code(tx, id, &p, 1000)).unwrap();
    assert_eq!(
        attempt(&mut s, &first, 1001),
        Ok(Claim::Wrong { tries_left: 4 })
    );
    let expiry = 1000 + p.code_lifetime_seconds;
    assert_eq!(attempt(&mut s, &second, expiry), Err(Refusal::Expired));
    assert_eq!(state(&s, id, expiry), EnrolmentState::Expired);
    assert!(matches!(
        attempt(&mut s, &second, expiry - 1),
        Ok(Claim::Claimed(_))
    ));
}

#[test]
fn a_new_enrolment_cancels_the_live_one_and_its_request() {
    let (_d, mut s) = store();
    let old = open_one(&mut s, None);
    let code = s.write(|tx| mint_code(tx, old, &policy(), 1000)).unwrap();
    let Ok(Claim::Claimed(req)) = attempt(&mut s, &code, 1001) else {
        panic!()
    };
    let new = open_one(&mut s, Some(Serial::from_bytes(&[1, 2, 3])));
    assert_ne!(old, new);
    assert_eq!(state(&s, old, 1002), EnrolmentState::Cancelled);
    assert!(matches!(
        s.read(|c| pickup::request_status(c, req)).unwrap(),
        RequestStatus::Abandoned
    ));
    // The old code opens nothing; the new enrolment has no code yet.
    assert_eq!(attempt(&mut s, &code, 1003), Err(Refusal::NoCode));
    assert!(s.write(|tx| mint_code(tx, old, &policy(), 1003)).is_err());
    let e = s.read(|c| by_certificate_id(c, ID, 1003)).unwrap().unwrap();
    assert_eq!(e.id, new);
    assert_eq!(e.supersedes.as_deref(), Some("010203"));
}

#[test]
fn a_code_reminted_during_verification_is_checked_again() {
    let (_d, mut s) = store();
    let id = open_one(&mut s, None);
    let p = policy();
    let code = s.write(|tx| mint_code(tx, id, &p, 1000)).unwrap();
    let c = s.read(|c| pickup::check(c, ID, 1001)).unwrap().unwrap();
    assert!(c.verify(&code));
    s.write(|tx| mint_code(tx, id, &p, 1001)).unwrap();
    let got = s
        .write(|tx| {
            pickup::claim(
                tx,
                &c,
                true,
                b"spki",
                KeyAlgorithm::EcdsaP256,
                &p,
                "pickup",
                1002,
            )
        })
        .unwrap();
    assert_eq!(got, Claim::Changed);
}

// The outbox sender hashes mail 2's code before taking the write lock: a
// prepared code opens nothing until it is stored, storing it kills the
// previous code, and a reset that cancels the enrolment while the sender
// was hashing makes the storing fail (that mail 2 must not go out).
#[test]
fn a_prepared_code_works_only_once_stored_and_never_after_a_reset() {
    let (_d, mut s) = store();
    let id = open_one(&mut s, None);
    let p = policy();
    let old = s.write(|tx| mint_code(tx, id, &p, 1000)).unwrap();
    let prepared = prepare_code(&p).unwrap();
    let typed = prepared.code.clone();
    assert_eq!(
        attempt(&mut s, &typed, 1001),
        Ok(Claim::Wrong { tries_left: 4 })
    );
    let stored = s
        .write(|tx| store_code(tx, id, prepared, &p, 1002))
        .unwrap();
    assert_eq!(*stored, *typed);
    assert_eq!(
        attempt(&mut s, &old, 1003),
        Ok(Claim::Wrong { tries_left: 4 })
    );

    let late = prepare_code(&p).unwrap();
    let late_code = late.code.clone();
    let new = open_one(&mut s, Some(Serial::from_bytes(&[1, 2, 3])));
    let err = s
        .write(|tx| store_code(tx, id, late, &p, 1004))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("a code can only be minted for a waiting enrolment"),
        "{err}"
    );
    assert_eq!(attempt(&mut s, &late_code, 1005), Err(Refusal::NoCode));
    assert_eq!(attempt(&mut s, &typed, 1005), Err(Refusal::NoCode));
    assert_eq!(state(&s, id, 1005), EnrolmentState::Cancelled);
    assert_ne!(new, id);
}

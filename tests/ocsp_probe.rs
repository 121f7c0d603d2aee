//! kxca_ca::ocsp::probe, the relying party's checks the console makes on
//! what `kxca serve` answers: a real answer and a real CRL from the public
//! role pass; the same bytes tampered with, an answer about another
//! serial, one read after its nextUpdate, one checked against another CA
//! are each refused with the reason.

use kxca_ca::ocsp::probe::{self, ProbeFailure};
use kxca_ca::ocsp::Status;
use kxca_test_support::common::{self, TestCa};
use kxca_test_support::ocsp as support_ocsp;

fn issuing(ca: &TestCa) -> kxca_ca::Authority {
    let ca = kxca_ca::Ca::open(
        kxca_ca::Home::new(ca.home.clone()),
        kxca_ca::Clock::system(),
    )
    .unwrap();
    ca.store()
        .read(|s| kxca_ca::store::authorities::active(s, kxca_ca::AuthorityRole::Issuing))
        .unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn answers_and_crls_from_the_public_role_pass_and_tampered_ones_do_not() {
    if !support_ocsp::tools_present() {
        return;
    }
    let ca = TestCa::new();
    let good = ca.issue("1234567", "001", &[]);
    let gone = ca.issue("1234568", "001", &[]);
    common::assert_ok(
        &ca.kxca(&["revoke", &gone.serial, "--reason", "keyCompromise"]),
        "revoke",
    );
    let server = support_ocsp::Server::start(&ca);
    let issuer = issuing(&ca);
    let dir = ca.dir.path();
    let ask = |serial: &str| {
        let probe = probe::request(&issuer, &hex::decode(serial).unwrap()).unwrap();
        let (status, body) = support_ocsp::post(
            &server.url("/"),
            "application/ocsp-request",
            &probe.der,
            dir,
        );
        assert_eq!(status, 200);
        (probe, body)
    };

    // A good and a revoked certificate, as the responder answers them
    // (the daemon may still be signing the revocation: bounded wait).
    let (probe, body) = ask(&good.serial);
    let answer = probe::check_answer(&body, &issuer, &probe, now()).unwrap();
    assert_eq!(answer.status, Status::Good);
    assert!(answer.next_update.unwrap() > now());
    let mut revoked = None;
    support_ocsp::eventually("the revocation over OCSP", || {
        let (probe, body) = ask(&gone.serial);
        revoked = Some(probe::check_answer(&body, &issuer, &probe, now()).unwrap());
        matches!(revoked.unwrap().status, Status::Revoked { .. })
    });
    assert!(
        matches!(revoked.unwrap().status, Status::Revoked { reason: 1, .. }),
        "{revoked:?}"
    );

    // The answer about `good`, checked as an answer about `gone`.
    let (other, _) = ask(&gone.serial);
    assert!(
        matches!(
            probe::check_answer(&body, &issuer, &other, now()),
            Err(ProbeFailure::Mismatch(_))
        ),
        "an answer about another serial was taken"
    );
    // Read after its nextUpdate, or dated in the future.
    let late = answer.next_update.unwrap() + 1;
    assert_eq!(
        probe::check_answer(&body, &issuer, &probe, late),
        Err(ProbeFailure::Stale(late - 1))
    );
    // (An hour early the responder certificate is not valid yet either.)
    assert!(matches!(
        probe::check_answer(&body, &issuer, &probe, answer.this_update - 3600),
        Err(ProbeFailure::FromTheFuture(_)) | Err(ProbeFailure::Signature(_))
    ));
    // Every byte of the signed part flipped in turn: never a good answer.
    // (The last bytes are the signature; earlier ones the signed data or
    // the responder certificate.)
    for i in (0..body.len()).step_by(7) {
        let mut bad = body.clone();
        bad[i] ^= 0x01;
        if let Ok(a) = probe::check_answer(&bad, &issuer, &probe, now()) {
            // A flip in an unsigned, unchecked place (e.g. the outer
            // lengths' padding) cannot change what is said.
            assert_eq!(a, answer, "byte {i} flipped changed the answer");
        }
    }
    let mut sig = body.clone();
    let last = sig.len() - 2;
    sig[last] ^= 0x55;
    assert!(
        matches!(
            probe::check_answer(&sig, &issuer, &probe, now()),
            Err(ProbeFailure::Signature(_)) | Err(ProbeFailure::Malformed(_))
        ),
        "a broken signature was taken"
    );
    // Checked against another CA (the root): the responder is not its.
    let root = {
        let c = kxca_ca::Ca::open(
            kxca_ca::Home::new(ca.home.clone()),
            kxca_ca::Clock::system(),
        )
        .unwrap();
        c.store()
            .read(|s| kxca_ca::store::authorities::active(s, kxca_ca::AuthorityRole::Root))
            .unwrap()
    };
    let root_probe = probe::request(&root, &hex::decode(&good.serial).unwrap()).unwrap();
    assert!(probe::check_answer(&body, &root, &root_probe, now()).is_err());

    // The CRL the public role serves.
    let (status, _, crl) =
        support_ocsp::get(&server.url(&format!("/crl/{}.crl", issuer.name)), &[], dir);
    assert_eq!(status, 200);
    let facts = probe::check_crl(&crl, &issuer, now()).unwrap();
    assert!(facts.number >= 1 && facts.next_update > now(), "{facts:?}");
    assert_eq!(
        probe::check_crl(&crl, &issuer, facts.next_update + 1),
        Err(ProbeFailure::Stale(facts.next_update))
    );
    let mut bad = crl.clone();
    let last = bad.len() - 2;
    bad[last] ^= 0x55;
    assert!(probe::check_crl(&bad, &issuer, now()).is_err());
    assert!(matches!(
        probe::check_crl(&crl, &root, now()),
        Err(ProbeFailure::Mismatch(_))
    ));
}

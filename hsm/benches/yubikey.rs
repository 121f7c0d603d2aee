//! Signatures per second through the virtual PIV card (tests/services/piv.sh)
//! — by the `yubikey` backend and by ykcs11 through the `pkcs11` backend —
//! with 1 and 4 concurrent signers, as ratios to a soft P-256 key measured
//! in the same run.
//!
//! `KXCA_TEST_RUN_DIR=<dir with piv.env> cargo bench -p kxca-hsm --bench yubikey`
//! (KXCA_BENCH_SECS changes the 2 s measured per case). Resets the card.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kxca_hsm::{KeyAlgorithm, KeyRef, SecretSource, Signer};

#[path = "../tests/support/piv_card.rs"]
mod piv_card;

fn rate(signer: &Arc<dyn Signer>, threads: usize, secs: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let s = signer.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    s.sign(format!("tbs {t} {n}").as_bytes()).expect("sign");
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    total as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let secs: f64 = std::env::var("KXCA_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let Some(card) = piv_card::locked_card() else {
        eprintln!(
            "SKIPPED: no virtual PIV card (start tests/services/piv.sh with KXCA_TEST_RUN_DIR set)"
        );
        return;
    };
    let serial = card.serial;

    let dir = tempfile::tempdir().unwrap();
    let pin_file = dir.path().join("pin");
    std::fs::write(&pin_file, "123456\n").unwrap();
    let pin = SecretSource::File(pin_file);
    let soft: Arc<dyn Signer> = kxca_hsm::generate(
        &KeyRef::Soft {
            path: dir.path().join("p256.p8"),
        },
        KeyAlgorithm::EcdsaP256,
        &pin,
    )
    .unwrap()
    .into();
    let piv_ref: KeyRef = format!("yubikey:serial={serial};slot=9c").parse().unwrap();
    let piv: Arc<dyn Signer> = kxca_hsm::generate(&piv_ref, KeyAlgorithm::EcdsaP256, &pin)
        .unwrap()
        .into();
    let ykcs11_ref: KeyRef = format!(
        "pkcs11:token=YubiKey PIV #{serial};object=Private key for Digital Signature;module-path=/usr/lib/x86_64-linux-gnu/libykcs11.so"
    )
    .parse()
    .unwrap();
    // One session: a PIV card has one PIN state, and with PIN policy
    // "always" a second session's VERIFY is consumed by the first's sign
    // (CKR_USER_NOT_LOGGED_IN with the default pool of 4).
    let mut options = kxca_hsm::BackendOptions::default();
    options.pkcs11.max_sessions = 1;
    let ykcs11: Option<Arc<dyn Signer>> = kxca_hsm::open_with(&ykcs11_ref, &pin, &options)
        .ok()
        .map(Into::into);

    println!("\nP-256 signatures/s, {secs} s per case (soft = in-memory RustCrypto key)");
    println!(
        "{:>7} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "signers", "soft", "piv", "piv/soft", "ykcs11", "ykcs11/soft"
    );
    for threads in [1, 4] {
        let s = rate(&soft, threads, secs);
        let p = rate(&piv, threads, secs);
        let y = ykcs11.as_ref().map(|k| rate(k, threads, secs));
        println!(
            "{threads:>7} {s:>10.0} {p:>10.1} {:>10.5} {:>10} {:>12}",
            p / s,
            y.map_or("-".to_string(), |y| format!("{y:.1}")),
            y.map_or("-".to_string(), |y| format!("{:.5}", y / s)),
        );
    }
}

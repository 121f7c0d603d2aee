//! Signatures per second through each key backend, 1 and 4 concurrent
//! signers, as ratios to the soft backend measured in the same run.
//!
//! `cargo bench -p kxca-hsm --bench signers` (needs SoftHSM2; set
//! KXCA_BENCH_SECS to change the 2 s measured per case).

use kxca_test_support::softhsm;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kxca_hsm::{BackendOptions, KeyAlgorithm, KeyRef, SecretSource, Signer};

fn rate(signer: &Arc<dyn Signer>, threads: usize, secs: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let s = signer.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let msg = format!("tbs {t} {n}");
                    s.sign(msg.as_bytes()).expect("sign");
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
    if !softhsm::available() {
        return;
    }
    let hsm = softhsm::SoftHsm::new(&["KX-BENCH"]);
    // Before the module is loaded: SoftHSM2 reads it once, at C_Initialize.
    std::env::set_var("SOFTHSM2_CONF", &hsm.conf);
    let pin = SecretSource::File(hsm.pin_file.clone());
    let mut options = BackendOptions::default();
    // The raw backend; the CA verifies each signature once more anyway.
    options.pkcs11.verify_signatures = false;

    let mut rows = Vec::new();
    for (name, alg) in [
        ("p256", KeyAlgorithm::EcdsaP256),
        ("rsa2048", KeyAlgorithm::Rsa2048),
    ] {
        let soft_ref = KeyRef::Soft {
            path: hsm.dir.path().join(format!("{name}.p8")),
        };
        let soft: Arc<dyn Signer> = kxca_hsm::generate_with(&soft_ref, alg, &pin, &options)
            .unwrap()
            .into();
        let token_ref: KeyRef = format!("pkcs11:token=KX-BENCH;object={name}")
            .parse()
            .unwrap();
        let token: Arc<dyn Signer> = kxca_hsm::generate_with(&token_ref, alg, &pin, &options)
            .unwrap()
            .into();
        for threads in [1, 4] {
            let s = rate(&soft, threads, secs);
            let t = rate(&token, threads, secs);
            rows.push((name, threads, s, t));
        }
    }
    println!("\nsignatures/s, {secs} s per case (soft = in-memory RustCrypto key)");
    println!(
        "{:<8} {:>7} {:>12} {:>12} {:>16}",
        "key", "signers", "soft", "softhsm2", "softhsm2/soft"
    );
    for (name, threads, s, t) in rows {
        println!("{name:<8} {threads:>7} {s:>12.0} {t:>12.0} {:>16.2}", t / s);
    }
}

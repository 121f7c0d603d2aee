//! Foundation benchmarks (run through `benches/foundation.sh`, which adds
//! peak-memory figures and the OpenSSL baseline):
//!
//!   foundation issue [N]   certificates + PKCS#12 per second, P-256 and RSA-2048
//!                          client keys, against bare key generation as baseline
//!   foundation crl N       build and sign a CRL with N revoked entries

use std::time::Instant;

use kxca_ca::{Ca, Clock, Holder, Home, InitOptions, IssueRequest, Pkcs12Profile, RevokedEntry};
use kxca_hsm::{KeyAlgorithm, SecretSource};

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

fn holder(i: usize) -> Holder {
    Holder {
        centre: "JC".into(),
        union_code: "26276".into(),
        branch_code: "00".into(),
        contract_unit: "2627600".into(),
        office_code: format!("{}", 1_000_000 + i),
        contact_code: "001".into(),
        office_name: "ベンチマーク事務所".into(),
        contact_name: "計測 太郎".into(),
        email: format!("bench{i}@example.jp"),
    }
}

fn issue(n: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "bench-passphrase\n").expect("write");
    let policies = vec![(
        std::path::PathBuf::from("profiles/office-client.toml"),
        include_str!("../../policies/profiles/office-client.toml").to_string(),
    )];
    let mut ca = Ca::init(
        Home::new(dir.path().join("home")),
        InitOptions {
            union_name: "全国設計事務所健康保険組合".into(),
            union_code: "26276".into(),
            ca_key_algorithm: KeyAlgorithm::EcdsaP256,
            root_key: None,
            issuing_key: None,
            key_secret: SecretSource::File(pass),
            responder_key: None,
            responder_key_secret: None,
            audit_key: None,
            audit_key_secret: None,
            base_url: "http://127.0.0.1:8080".into(),
            production: false,
            policies,
            root_common_name: "Bench Root".into(),
            issuing_common_name: "Bench Issuing".into(),
            serve: None,
            mail: None,
        },
        "bench",
        Clock::system(),
    )
    .expect("init");
    println!("issue: {n} certificates per algorithm, soft P-256 CA key, modern PKCS#12");
    println!(
        "{:<12} {:>14} {:>22} {:>8}",
        "client key", "issued/s", "baseline keygen/s", "ratio"
    );
    for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Rsa2048] {
        let t = Instant::now();
        for _ in 0..n {
            let k = kxca_hsm::EphemeralKey::generate(alg).expect("keygen");
            std::hint::black_box(k.public_key_der().len());
        }
        let base = n as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        for i in 0..n {
            let req = IssueRequest {
                profile: "office-client".into(),
                holder: holder(i + if alg.is_rsa() { n } else { 0 }),
                key_algorithm: Some(alg),
                pkcs12: Some(Pkcs12Profile::Modern),
            };
            let issued = ca.issue(&req, None, "bench").expect("issue");
            std::hint::black_box(issued.pkcs12.len());
        }
        let rate = n as f64 / t.elapsed().as_secs_f64();
        println!(
            "{:<12} {:>14.1} {:>22.1} {:>8.2}",
            alg.name(),
            rate,
            base,
            rate / base
        );
    }
}

fn crl(n: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "bench-passphrase\n").expect("write");
    let key_ref: kxca_hsm::KeyRef = format!("soft:{}", dir.path().join("k.p8").display())
        .parse()
        .expect("ref");
    let signer = kxca_hsm::generate(&key_ref, KeyAlgorithm::EcdsaP256, &SecretSource::File(pass))
        .expect("key");
    let issuer_der = [
        0x30, 0x0d, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x02, b'C', b'A',
    ];
    let start_rss = peak_rss_mib();
    let t = Instant::now();
    let entries = (0..n).map(|i| {
        let mut serial = [0u8; 16];
        serial[0] = 0x40 | (i % 63) as u8;
        serial[8..].copy_from_slice(&(i as u64).to_be_bytes());
        RevokedEntry {
            serial: serial.to_vec(),
            revoked_at: 1_764_000_000 + i as i64,
            reason: (i % 6) as u8,
        }
    });
    let input = kxca_ca::CrlInput {
        issuer_der: &issuer_der,
        authority_key_id: &[7; 20],
        number: 1,
        this_update: 1_764_115_200,
        next_update: 1_764_720_000,
        signature_algorithm: KeyAlgorithm::EcdsaP256.signature_algorithm(),
    };
    let out = kxca_ca::build_crl(&input, entries, |tbs| Ok(signer.sign(tbs)?)).expect("crl");
    let secs = t.elapsed().as_secs_f64();
    std::fs::write(dir.path().join("bench.crl"), &out.der).expect("write");
    if let Ok(path) = std::env::var("KXCA_BENCH_CRL_OUT") {
        std::fs::write(path, &out.der).expect("write");
    }
    println!(
        "crl: {n} entries built and signed in {secs:.3} s, {:.1} MiB DER, peak RSS {:.1} MiB (process start {:.1} MiB)",
        out.der.len() as f64 / 1048576.0,
        peak_rss_mib(),
        start_rss
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.first().map(String::as_str) {
        Some("issue") => issue(args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20)),
        Some("crl") => crl(args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100_000)),
        _ => {
            issue(20);
            crl(100_000);
        }
    }
}

//! For benches/pickup.sh: opens N enrolments in a CA home and mints their
//! pickup codes through the library, as approval will, and writes one
//! `POST /pickup` form body per line to OUT (mode 0600), for the load
//! generator. Benchmark data only: the codes are synthetic.
//!
//! Usage: cargo run --example pickup_enrol -- HOME N KEY OUT
//! (KEY: ecdsa-p256 or rsa-2048; office codes 1..=N, contact 001)

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use kxca_ca::enrolment::{self, NewEnrolment, PickupPolicy};
use kxca_ca::{Clock, Holder, Home, Store};
use kxca_hsm::KeyAlgorithm;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [home, n, key, out] = args.as_slice() else {
        bail!("usage: pickup_enrol HOME N KEY OUT");
    };
    let home = Home::new(PathBuf::from(home));
    let n: u32 = n.parse().context("N")?;
    let key: KeyAlgorithm = key.parse()?;
    let policy = PickupPolicy::load(&home.policies())?;
    let mut store = Store::open(&home.database(), false)?;
    let mut file = std::fs::OpenOptions::new();
    file.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
    let mut file = file.open(out).with_context(|| out.clone())?;
    let now = Clock::system().now();
    // The key type is part of the run's name: offices 1..N per run, a
    // second run (the other key) uses offices N+1..2N.
    let base: u32 = if key == KeyAlgorithm::EcdsaP256 { 0 } else { n };
    for i in 1..=n {
        let office = (base + i).to_string();
        let holder = Holder {
            centre: "JC".into(),
            union_code: "26276".into(),
            branch_code: "00".into(),
            contract_unit: "2627600".into(),
            office_code: office.clone(),
            contact_code: "001".into(),
            office_name: "ベンチ事務所".into(),
            contact_name: "試験 太郎".into(),
            email: format!("bench{office}@example.jp"),
        };
        let id = format!("TI2627600{office:0>10}001");
        let code = store.write(|tx| {
            let e = enrolment::open(
                tx,
                &NewEnrolment {
                    certificate_id: &id,
                    holder: &holder,
                    profile: "office-client",
                    supersedes: None,
                    key_algorithm: Some(key),
                },
                "bench",
                now,
            )?;
            enrolment::mint_code(tx, e, &policy, now)
        })?;
        writeln!(
            file,
            "certificate_id={id}&code={}&password=Bench{office:0>6}x&password_confirm=Bench{office:0>6}x&format=modern",
            code.as_str()
        )?;
    }
    Ok(())
}

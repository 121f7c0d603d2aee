//! `kxca demo`: the main job end to end on a soft key, for a newcomer.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kxca_ca::{Ca, Clock, Home, RevocationReason, Serial};

use crate::init::{self, InitArgs};
use crate::issue::{self, IssueArgs};

fn passphrase_file(home: &Path) -> PathBuf {
    let name = home
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "kxca".into());
    home.with_file_name(format!("{name}.passphrase"))
}

pub fn run(dir: Option<PathBuf>, actor: &str) -> Result<()> {
    let home_dir = match dir {
        Some(d) => d,
        None => tempfile::Builder::new()
            .prefix("kxca-demo-")
            .tempdir()
            .context("creating a temporary directory")?
            .keep()
            .join("home"),
    };
    let home_dir = std::path::absolute(&home_dir).unwrap_or(home_dir);
    let home = Home::new(&home_dir);
    println!("== kxca demo in {}", home_dir.display());
    let mut ca = if home.config().exists() {
        println!("-- using the existing CA there");
        Ca::open(home, Clock::system())?
    } else {
        let pass_path = passphrase_file(&home_dir);
        if !pass_path.exists() {
            // A demo soft key needs a passphrase; a random one in a private file.
            let pass = kxca_ca::generate_password();
            if let Some(parent) = pass_path.parent() {
                std::fs::create_dir_all(parent).with_context(|| format!("{}", parent.display()))?;
            }
            issue::write_private(&pass_path, format!("{}\n", pass.expose()).as_bytes())?;
        }
        println!(
            "-- 1. init: root CA and issuing CA (soft ECDSA P-256 keys, passphrase in {})",
            pass_path.display()
        );
        let args = InitArgs {
            union_name: "全国設計事務所健康保険組合".into(),
            union_code: "26276".into(),
            ca_key_algorithm: "ecdsa-p256".into(),
            root_key: None,
            issuing_key: None,
            key_secret_env: "KXCA_KEY_PASSPHRASE".into(),
            key_secret_file: Some(pass_path),
            responder_key: None,
            responder_key_secret_env: None,
            responder_key_secret_file: None,
            audit_key: None,
            audit_key_secret_env: None,
            audit_key_secret_file: None,
            base_url: "http://127.0.0.1:8080".into(),
            production: false,
            root_name: "KX Root CA".into(),
            issuing_name: "KX Issuing CA 1".into(),
        };
        let ca = Ca::init(home, init::init_options(&args)?, actor, Clock::system())?;
        init::append_console_section(&ca.home().config())?;
        ca
    };

    println!("-- 2. issue two office contacts' certificates");
    let offices = [
        (
            "1234567",
            "設計事務所アルファ",
            "山田 太郎",
            "yamada@alpha.example.jp",
            "modern",
            "rsa-2048",
        ),
        (
            "7654321",
            "株式会社ベータ設計",
            "佐藤 花子",
            "sato@beta.example.jp",
            "legacy",
            "ecdsa-p256",
        ),
    ];
    let mut issued = Vec::new();
    for (office, office_name, contact, email, p12, key) in offices {
        let args = IssueArgs {
            profile: "office-client".into(),
            centre: Some("JC".into()),
            union_code: Some("26276".into()),
            branch_code: Some("00".into()),
            contract_unit: Some("2627600".into()),
            office_code: Some(office.into()),
            contact_code: Some("001".into()),
            office_name: Some(office_name.into()),
            contact_name: Some(contact.into()),
            email: Some(email.into()),
            key: Some(key.into()),
            pkcs12: Some(p12.into()),
            ..Default::default()
        };
        issued.push(issue::issue(&mut ca, &args, actor)?);
    }

    let revoked = &issued[1];
    println!(
        "-- 3. revoke {} ({})",
        revoked.serial, revoked.certificate_id
    );
    let serial: Serial = revoked.serial.parse()?;
    ca.revoke(&serial, RevocationReason::AffiliationChanged, actor)?;

    println!("-- 4. sign a CRL");
    let (authority, crl) = ca.generate_crl(actor)?;
    let crl_pem = ca.home().crl_dir().join(format!("{}.pem", authority.name));
    println!(
        "CRL #{} with {} entry(ies): {}",
        crl.number,
        crl.entries,
        crl_pem.display()
    );

    println!("-- 5. pre-sign OCSP responses with a delegated responder certificate");
    let home = ca.home().clone();
    let ocsp_url = ca.config().publication.ocsp_url.clone();
    let clock = ca.clock().clone();
    drop(kxca_ca::ocsp::Maintainer::start(ca, actor)?);
    // Shown as `kxca serve` would answer: read back from the store.
    let (engine, _publisher) = kxca_responder::Publisher::start(home.clone(), clock)?;
    let revoked_serial: Serial = revoked.serial.parse()?;
    let revoked_response = home.root().join("ocsp-revoked.der");
    if let Some(c) = engine.presigned(revoked_serial.as_bytes(), kxca_ca::ocsp::HashAlg::Sha1) {
        std::fs::write(&revoked_response, &c.der)?;
    }
    println!(
        "{} pre-signed OCSP responses; the revoked certificate's: {}",
        engine.presigned_count(),
        revoked_response.display()
    );

    let h = &home;
    let root = h.ca_dir().join("root.pem");
    let inter = h.ca_dir().join("issuing-1.pem");
    println!();
    println!("== Where everything is");
    println!("  home:        {}", h.root().display());
    println!("  root CA:     {}", root.display());
    println!("  issuing CA:  {}", inter.display());
    println!("  CRL:         {}", crl_pem.display());
    for i in &issued {
        println!("  {}:", i.certificate_id);
        println!("    certificate: {}", i.cert_pem_path.display());
        println!("    PKCS#12:     {}", i.p12_path.display());
        if let Some(p) = &i.password {
            println!("    password:    {}", p.as_str());
        }
    }
    println!();
    println!("== Check it with openssl");
    let good = &issued[0];
    println!(
        "  openssl verify -x509_strict -purpose sslclient -CAfile {} -untrusted {} {}",
        root.display(),
        inter.display(),
        good.cert_pem_path.display()
    );
    println!(
        "  openssl crl -in {} -CAfile {} -verify -noout",
        crl_pem.display(),
        inter.display()
    );
    for i in &issued {
        println!(
            "  openssl verify -crl_check -CRLfile {} -CAfile {} -untrusted {} {}    # {}",
            crl_pem.display(),
            root.display(),
            inter.display(),
            i.cert_pem_path.display(),
            if std::ptr::eq(i, revoked) {
                "revoked"
            } else {
                "OK"
            }
        );
    }
    for i in &issued {
        if let Some(p) = &i.password {
            println!(
                "  openssl pkcs12 -info -noout -in {} -passin pass:{}",
                i.p12_path.display(),
                p.as_str()
            );
        }
    }
    println!(
        "  openssl ocsp -respin {} -issuer {} -cert {} -CAfile {} -no_nonce    # revoked (affiliationChanged)",
        revoked_response.display(),
        inter.display(),
        revoked.cert_pem_path.display(),
        root.display()
    );
    println!();
    println!("== The revocation service");
    println!(
        "  KXCA_HOME={} kxca daemon &   # private role: signs CRLs and OCSP answers (CA keys)",
        h.root().display()
    );
    println!(
        "  KXCA_HOME={} kxca serve &    # public role, no CA key: OCSP, CRL, CA certificates, /healthz, /metrics",
        h.root().display()
    );
    println!(
        "  openssl ocsp -issuer {} -cert {} -CAfile {} -url {}    # revoked",
        inter.display(),
        revoked.cert_pem_path.display(),
        root.display(),
        ocsp_url
    );
    println!();
    println!("  KXCA_HOME={} kxca list", h.root().display());
    println!();
    println!("== The admin console (Japanese, for the union's admins)");
    println!(
        "  uncomment the [console] section of {} (127.0.0.1:8470), then add the first admin:",
        h.config().display()
    );
    println!(
        "  KXCA_HOME={} kxca admin add alice --role admin   # password shown once + TOTP QR for an authenticator app",
        h.root().display()
    );
    println!(
        "  restart kxca daemon and open http://127.0.0.1:8470/ (from elsewhere: ssh -L 8470:127.0.0.1:8470 this-host)"
    );
    Ok(())
}

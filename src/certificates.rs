//! The certificate commands for officers and scripts: revoke, sign a
//! CRL, list and show. Each is one call into `kxca_ca::Ca`, the code the
//! daemon runs too.

use anyhow::{Context, Result};
use kxca_ca::{rfc3339, Ca, Clock, Home, RevocationReason, Serial};

use crate::output::table;

pub fn revoke(home: Home, serial: &str, reason: &str, actor: &str) -> Result<()> {
    let serial: Serial = serial.parse()?;
    let reason: RevocationReason = reason.parse()?;
    let mut ca = Ca::open(home, Clock::system())?;
    let rec = ca.revoke(&serial, reason, actor)?;
    println!(
        "Revoked {} ({}) reason {}",
        rec.serial, rec.certificate_id, reason
    );
    println!(
        "Next: kxca daemon signs the new CRL and OCSP answers within seconds; without it, kxca crl"
    );
    Ok(())
}

pub fn crl(home: Home, actor: &str) -> Result<()> {
    let mut ca = Ca::open(home, Clock::system())?;
    let (authority, crl) = ca.generate_crl(actor)?;
    let dir = ca.home().crl_dir();
    println!(
        "CRL #{} for {} with {} revoked certificate(s), next update {}",
        crl.number,
        authority.name,
        crl.entries,
        rfc3339(crl.next_update)
    );
    println!(
        "  {}",
        dir.join(format!("{}.crl", authority.name)).display()
    );
    println!(
        "  {}",
        dir.join(format!("{}.pem", authority.name)).display()
    );
    Ok(())
}

pub fn list(home: Home, json: bool, limit: i64) -> Result<()> {
    let ca = Ca::open(home, Clock::system())?;
    let certs = ca.certificates(limit)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&certs)?);
    } else {
        let rows: Vec<Vec<String>> = certs
            .iter()
            .map(|c| {
                vec![
                    c.serial.clone(),
                    c.certificate_id.clone(),
                    status(c),
                    rfc3339(c.not_after),
                    c.email.clone(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &["SERIAL", "CERTIFICATE ID", "STATUS", "NOT AFTER", "E-MAIL"],
                &rows
            )
        );
    }
    Ok(())
}

pub fn show(home: Home, serial: &str, json: bool, pem: bool) -> Result<()> {
    let serial: Serial = serial.parse()?;
    let ca = Ca::open(home, Clock::system())?;
    let c = ca.certificate(&serial)?;
    if pem {
        let der = c.der.clone().context("certificate was never signed")?;
        print!(
            "{}",
            der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &der)?
        );
    } else if json {
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        println!("serial:          {}", c.serial);
        println!("certificate id:  {}", c.certificate_id);
        println!("subject:         {}", c.subject);
        println!("e-mail:          {}", c.email);
        println!(
            "office:          {} ({})",
            c.holder.office_name, c.holder.office_code
        );
        println!(
            "contact:         {} ({})",
            c.holder.contact_name, c.holder.contact_code
        );
        println!("profile:         {}", c.profile);
        println!("key:             {}", c.key_algorithm);
        println!("not before:      {}", rfc3339(c.not_before));
        println!("not after:       {}", rfc3339(c.not_after));
        println!("status:          {}", status(&c));
        if let Some(r) = &c.revocation {
            println!(
                "revoked at:      {} by {} ({})",
                rfc3339(r.revoked_at),
                r.actor,
                r.reason
            );
        }
    }
    Ok(())
}

fn status(c: &kxca_ca::CertificateRecord) -> String {
    match &c.revocation {
        Some(r) => format!("revoked ({})", r.reason),
        None => c.state.as_str().to_string(),
    }
}

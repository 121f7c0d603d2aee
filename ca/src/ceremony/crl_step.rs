//! CRLs signed in a ceremony, and an issuing CA's retirement with its final CRL.

use std::path::PathBuf;

use der::Decode;
use kxca_hsm::{KeyRef, Signer};
use rusqlite::params;
use serde_json::json;

use super::keys::destroy_soft_key;
use super::run::{Ctx, Transcript};
use super::Retire;
use super::{authority_states, fingerprint};
use crate::ca::{pem, sign_checked};
use crate::clock::rfc3339;
use crate::crl::{self, CrlInput, RevokedEntry};
use crate::store::{audit, authorities, crls, revocations, sql, Snapshot};
use crate::{AuditAction, Authority, AuthorityRole, Ca, Error};

impl Ctx<'_> {
    pub(super) fn crl(&mut self, t: &mut Transcript<'_>) -> Result<(), Error> {
        let a = self.issuer()?;
        let s = self
            .checked
            .spec
            .crl
            .clone()
            .ok_or_else(|| self.missing("crl"))?;
        let signer = self.open_key(&a, t)?;
        let now = self.ca.clock().now();
        let next_update = if s.final_crl {
            a.not_after
        } else {
            match s.next_update_days {
                Some(d) => now + i64::from(d) * 86_400,
                None => now + i64::from(self.ca.config().crl.validity_hours) * 3600,
            }
        };
        let der = sign_crl(
            self.ca,
            &a,
            signer.as_ref(),
            now,
            next_update,
            self.actor,
            t,
        )?;
        self.output("crl", pem("X509 CRL", &der).as_bytes(), t)?;
        if s.final_crl {
            let disposal = match s.retire {
                Some(Retire::Destroy) => {
                    let key_ref: KeyRef = a.key_ref.parse()?;
                    drop(signer);
                    match &key_ref {
                        KeyRef::Soft { path } => destroy_soft_key(path)?,
                        _ => kxca_hsm::destroy_with(
                            &key_ref,
                            &self.ca.config().key_secret(),
                            &self.ca.config().backend_options(),
                            &a.spki,
                        )?,
                    }
                    format!("destroyed ({})", a.key_ref)
                }
                _ => format!(
                    "archived: {}",
                    s.archive_location.clone().unwrap_or_default()
                ),
            };
            self.ca.store_mut().write(|tx| {
                tx.execute(
                    "INSERT INTO authority_states (authority_id, retired_at, key_disposal) VALUES (?1, ?2, ?3)
                     ON CONFLICT (authority_id) DO UPDATE SET retired_at = ?2, key_disposal = ?3",
                    params![a.id, now, disposal],
                )
                .map_err(sql)?;
                audit::append(
                    tx,
                    now,
                    self.actor,
                    AuditAction::AuthorityRetire,
                    None,
                    json!({"ceremony": self.ceremony_id, "authority": a.name, "key": disposal, "final_crl_sha256": fingerprint(&der)}),
                )
            })?;
            t.line(format!("{} retired; key {disposal}", a.name));
        }
        Ok(())
    }
}

/// Signs a CRL of `a` in a ceremony: an issuing CA's lists its revoked
/// certificates; a root's lists the issuing CAs revoked at it.
pub(super) fn sign_crl(
    ca: &mut Ca,
    a: &Authority,
    signer: &dyn Signer,
    now: i64,
    next_update: i64,
    actor: &str,
    t: &mut Transcript<'_>,
) -> Result<Vec<u8>, Error> {
    let (number, entries) = ca.store().read(|c| {
        let number = crls::next_number(c, a.id)?;
        let mut entries = Vec::new();
        match a.role {
            AuthorityRole::Issuing => {
                revocations::for_each_revoked(c, a.id, i64::MIN, |serial, at, reason| {
                    entries.push(RevokedEntry {
                        serial: hex::decode(serial)
                            .map_err(|e| Error::encoding("stored serial", e))?,
                        revoked_at: at,
                        reason,
                    });
                    Ok(())
                })?;
            }
            AuthorityRole::Root => {
                for (child, state) in revoked_children(c, a.id)? {
                    entries.push(RevokedEntry {
                        serial: certificate_serial(&child.certificate)?,
                        revoked_at: state.0,
                        reason: state.1 as u8,
                    });
                }
            }
        }
        Ok((number, entries))
    })?;
    let input = CrlInput {
        issuer_der: &a.subject_der,
        authority_key_id: &a.key_id,
        number: number as u64,
        this_update: now,
        next_update,
        signature_algorithm: signer.algorithm().signature_algorithm(),
    };
    let out = crl::build(&input, entries, |tbs| sign_checked(signer, tbs))?;
    crl::check(&out.der, &input, out.entries, signer.algorithm(), &a.spki)?;
    ca.store_mut().write(|tx| {
        if crls::next_number(tx, a.id)? != number {
            return Err(Error::Database {
                path: PathBuf::new(),
                message: format!("CRL number {number} of {} was taken meanwhile", a.name),
            });
        }
        crls::insert(
            tx,
            a.id,
            number,
            out.this_update,
            out.next_update,
            out.entries as i64,
            &out.der,
        )?;
        audit::append(
            tx,
            now,
            actor,
            AuditAction::CrlSign,
            None,
            json!({"authority": a.name, "number": number, "entries": out.entries, "sha256": fingerprint(&out.der)}),
        )
    })?;
    ca.write_crl_files_for(a)?;
    t.line(format!(
        "CRL of {}: number {}, {} entries, next update {}, SHA-256 {}",
        a.name,
        number,
        out.entries,
        rfc3339(next_update),
        fingerprint(&out.der)
    ));
    Ok(out.der)
}

/// An issuing CA revoked at its root: (authority, (revoked_at, reason)).
type RevokedChild = (Authority, (i64, i64));

/// Issuing CAs of a root revoked at it.
pub(super) fn revoked_children(
    conn: &Snapshot<'_>,
    root_id: i64,
) -> Result<Vec<RevokedChild>, Error> {
    let states = authority_states(conn)?;
    let mut out = Vec::new();
    for a in authorities::all(conn)? {
        if a.parent_id != Some(root_id) {
            continue;
        }
        if let Some(s) = states.get(&a.id) {
            if let (Some(at), Some(reason)) = (s.revoked_at, s.revocation_reason) {
                out.push((a, (at, reason)));
            }
        }
    }
    Ok(out)
}

pub(super) fn certificate_serial(der: &[u8]) -> Result<Vec<u8>, Error> {
    let cert =
        x509_cert::Certificate::from_der(der).map_err(|e| Error::encoding("CA certificate", e))?;
    let bytes = cert.tbs_certificate().serial_number().as_bytes();
    // The CRL entry takes the magnitude: a leading 0x00 sign octet is not part of it.
    Ok(match bytes {
        [0, rest @ ..] if !rest.is_empty() => rest.to_vec(),
        b => b.to_vec(),
    })
}

//! The issuing-CA rollover.

use std::fs;

use serde_json::json;

use super::run::{write_new, Ctx, Transcript};
use super::{certs, fingerprint};
use crate::ca::pem;
use crate::store::{audit, authorities, sql};
use crate::x509;
use crate::{AuditAction, Authority, AuthorityRole, Error};

impl Ctx<'_> {
    /// The issuing-CA rollover: a new issuing CA under the active root
    /// takes over new issuance at once. Returns it.
    pub(super) fn intermediate(&mut self, t: &mut Transcript<'_>) -> Result<Authority, Error> {
        let root = self.issuer()?;
        let root_signer = self.open_key(&root, t)?;
        let key = self.new_key(t)?;
        let (c, subject) = self.new_ca_subject()?;
        let der = certs::make(
            t,
            &format!("issuing CA {}", c.name),
            root_signer.as_ref(),
            &root.subject_der,
            &root.key_id,
            &subject,
            key.public_key_der(),
            Some(0),
            self.checked.not_before,
            self.checked.not_after,
        )?;
        let now = self.ca.clock().now();
        let subject_der = x509::subject_der(&der)?;
        let key_id = x509::key_id(key.public_key_der())?;
        let previous = self.ca.authority(AuthorityRole::Issuing).ok();
        let fp = fingerprint(&der);
        let new = self.ca.store_mut().write(|tx| {
            tx.execute(
                "UPDATE authorities SET active = 0 WHERE role = 'issuing' AND active = 1",
                [],
            )
            .map_err(sql)?;
            let id = authorities::insert(
                tx,
                &authorities::NewAuthority {
                    name: &c.name,
                    role: AuthorityRole::Issuing,
                    parent_id: Some(root.id),
                    key_ref: &self
                        .checked
                        .new_key
                        .as_ref()
                        .map(|k| k.text.clone())
                        .unwrap_or_default(),
                    certificate: &der,
                    subject_der: &subject_der,
                    spki: key.public_key_der(),
                    key_id: &key_id,
                    not_before: self.checked.not_before,
                    not_after: self.checked.not_after,
                },
                now,
            )?;
            audit::append(
                tx,
                now,
                self.actor,
                AuditAction::CeremonyStep,
                None,
                json!({
                    "ceremony": self.ceremony_id,
                    "step": "issuing CA rollover",
                    "authority": c.name,
                    "previous": previous.as_ref().map(|p| p.name.clone()),
                    "certificate_sha256": fp,
                    "key": self.checked.new_key.as_ref().map(|k| k.text.clone()),
                }),
            )?;
            authorities::by_id(tx, id)
        })?;
        t.line(format!(
            "{} is the issuing CA for new certificates{}",
            new.name,
            previous
                .as_ref()
                .map(|p| format!(
                    "; {} keeps signing its CRLs and OCSP answers until everything it issued has expired or been revoked",
                    p.name
                ))
                .unwrap_or_default()
        ));
        self.output("certificate", pem("CERTIFICATE", &der).as_bytes(), t)?;
        // The CA certificate under the home's ca/ too, as `kxca init` does
        // for the first one; only when not there yet.
        for (file, bytes) in [
            (
                format!("{}.pem", new.name),
                pem("CERTIFICATE", &der).into_bytes(),
            ),
            (format!("{}.cer", new.name), der.clone()),
        ] {
            let p = self.ca.home().ca_dir().join(file);
            if !self.written.contains(&p) && fs::symlink_metadata(&p).is_err() {
                write_new(&p, &bytes)?;
            }
        }
        let union = self.union_name();
        // The responder certificate, so that `kxca serve` answers for the
        // new CA at once; the daemon renews it from then on.
        match crate::ocsp::responder_key::open_responder_key(
            self.ca.config(),
            self.ca.home(),
            false,
        ) {
            Ok((responder, responder_ref)) => {
                let policy = self.ca.config().ocsp.clone();
                let row = crate::ocsp::responder_cert::issue_and_record(
                    self.ca.store_mut(),
                    &new,
                    key.as_ref(),
                    responder.as_ref(),
                    &responder_ref,
                    &union,
                    &policy,
                    now,
                    self.actor,
                )?;
                t.line(format!(
                    "OCSP responder certificate for {}: SHA-256 {}",
                    new.name,
                    fingerprint(&row.certificate)
                ));
            }
            Err(e) => t.line(format!(
                "OCSP responder certificate for {} not issued now ({e}); kxca daemon issues it",
                new.name
            )),
        }
        let (_, crl) = self.ca.generate_crl_with(&new, key.as_ref(), self.actor)?;
        t.line(format!(
            "first CRL of {}: number {}, SHA-256 {}",
            new.name,
            crl.number,
            fingerprint(&crl.der)
        ));
        t.line("a running kxca daemon takes up the new issuing key within seconds".to_string());
        Ok(new)
    }
}

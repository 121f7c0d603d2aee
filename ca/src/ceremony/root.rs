//! A new root with link certificates both ways, and a link certificate alone (cross).

use std::fs;

use der::Decode;
use rusqlite::params;
use serde_json::json;

use super::run::{write_new, Ctx, Transcript};
use super::{certs, fingerprint};
use crate::ca::pem;
use crate::store::{audit, authorities, sql};
use crate::x509;
use crate::{AuditAction, AuthorityRole, Error};

impl Ctx<'_> {
    /// A new root, and link certificates both ways with the current one.
    pub(super) fn root(&mut self, t: &mut Transcript<'_>) -> Result<(), Error> {
        let old = self.issuer()?;
        let old_signer = self.open_key(&old, t)?;
        let key = self.new_key(t)?;
        let (c, subject) = self.new_ca_subject()?;
        let subject_der = x509::enc("subject", &subject)?;
        let key_id = x509::key_id(key.public_key_der())?;
        // Self-signed, with an AKI like every certificate kxca makes: when
        // two roots share a name, the key identifiers pick the right one.
        let root_der = certs::make(
            t,
            &format!("root {}", c.name),
            key.as_ref(),
            &subject_der,
            &key_id,
            &subject,
            key.public_key_der(),
            Some(1),
            self.checked.not_before,
            self.checked.not_after,
        )?;
        // A link must not outlive the root whose key it certifies, nor the
        // one that signs it.
        let link_end = self.checked.not_after.min(old.not_after);
        let now = self.ca.clock().now();
        // Backdated a little for slow clocks, but never before either root's
        // own notBefore (BR 7.1.2.2.1's rule for cross-certificates).
        let link_start = (now - 300).max(old.not_before).max(self.checked.not_before);
        let new_by_old = certs::make(
            t,
            &format!("link {} certified by {} (NewWithOld)", c.name, old.name),
            old_signer.as_ref(),
            &old.subject_der,
            &old.key_id,
            &subject,
            key.public_key_der(),
            Some(1),
            link_start,
            link_end,
        )?;
        let old_subject = der::asn1::Any::from_der(&old.subject_der)
            .map_err(|e| Error::encoding("root subject", e))?;
        let old_by_new = certs::make(
            t,
            &format!("link {} certified by {} (OldWithNew)", old.name, c.name),
            key.as_ref(),
            &subject_der,
            &key_id,
            &old_subject,
            &old.spki,
            Some(1),
            link_start,
            link_end,
        )?;
        let key_text = self
            .checked
            .new_key
            .as_ref()
            .map(|k| k.text.clone())
            .unwrap_or_default();
        let (nb, na) = (self.checked.not_before, self.checked.not_after);
        let new = self.ca.store_mut().write(|tx| {
            tx.execute(
                "UPDATE authorities SET active = 0 WHERE role = 'root' AND active = 1",
                [],
            )
            .map_err(sql)?;
            let id = authorities::insert(
                tx,
                &authorities::NewAuthority {
                    name: &c.name,
                    role: AuthorityRole::Root,
                    parent_id: None,
                    key_ref: &key_text,
                    certificate: &root_der,
                    subject_der: &subject_der,
                    spki: key.public_key_der(),
                    key_id: &key_id,
                    not_before: nb,
                    not_after: na,
                },
                now,
            )?;
            for (issuer, subject, der) in [(old.id, id, &new_by_old), (id, old.id, &old_by_new)] {
                tx.execute(
                    "INSERT INTO link_certificates (issuer_id, subject_id, certificate, not_after, ceremony_id) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![issuer, subject, der, link_end, self.ceremony_id],
                )
                .map_err(sql)?;
            }
            audit::append(
                tx,
                now,
                self.actor,
                AuditAction::CeremonyStep,
                None,
                json!({
                    "ceremony": self.ceremony_id,
                    "step": "root rollover",
                    "authority": c.name,
                    "previous": old.name,
                    "certificate_sha256": fingerprint(&root_der),
                    "link_new_by_old_sha256": fingerprint(&new_by_old),
                    "link_old_by_new_sha256": fingerprint(&old_by_new),
                    "key": key_text,
                }),
            )?;
            authorities::by_id(tx, id)
        })?;
        t.line(format!(
            "{} is the root for new issuing CAs; issuing CAs under {} go on as they are",
            new.name, old.name
        ));
        self.output("certificate", pem("CERTIFICATE", &root_der).as_bytes(), t)?;
        self.output(
            "link_new_by_old",
            pem("CERTIFICATE", &new_by_old).as_bytes(),
            t,
        )?;
        self.output(
            "link_old_by_new",
            pem("CERTIFICATE", &old_by_new).as_bytes(),
            t,
        )?;
        for (file, bytes) in [
            (
                format!("{}.pem", new.name),
                pem("CERTIFICATE", &root_der).into_bytes(),
            ),
            (format!("{}.cer", new.name), root_der.clone()),
        ] {
            let p = self.ca.home().ca_dir().join(file);
            if !self.written.contains(&p) && fs::symlink_metadata(&p).is_err() {
                write_new(&p, &bytes)?;
            }
        }
        Ok(())
    }

    pub(super) fn cross(&mut self, t: &mut Transcript<'_>) -> Result<(), Error> {
        let issuer = self.issuer()?;
        let subject = self
            .checked
            .subject
            .clone()
            .ok_or_else(|| self.missing("subject"))?;
        let signer = self.open_key(&issuer, t)?;
        let subject_name = der::asn1::Any::from_der(&subject.subject_der)
            .map_err(|e| Error::encoding("subject", e))?;
        let now = self.ca.clock().now();
        let start = (now - 300).max(issuer.not_before).max(subject.not_before);
        let path_len = if subject.role == AuthorityRole::Root {
            1
        } else {
            0
        };
        let der = certs::make(
            t,
            &format!("link {} certified by {}", subject.name, issuer.name),
            signer.as_ref(),
            &issuer.subject_der,
            &issuer.key_id,
            &subject_name,
            &subject.spki,
            Some(path_len),
            start,
            self.checked.not_after,
        )?;
        let not_after = self.checked.not_after;
        self.ca.store_mut().write(|tx| {
            tx.execute(
                "INSERT INTO link_certificates (issuer_id, subject_id, certificate, not_after, ceremony_id) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![issuer.id, subject.id, der, not_after, self.ceremony_id],
            )
            .map_err(sql)?;
            audit::append(
                tx,
                now,
                self.actor,
                AuditAction::CeremonyStep,
                None,
                json!({"ceremony": self.ceremony_id, "step": "link certificate", "issuer": issuer.name, "subject": subject.name, "certificate_sha256": fingerprint(&der)}),
            )
        })?;
        self.output("certificate", pem("CERTIFICATE", &der).as_bytes(), t)
    }
}

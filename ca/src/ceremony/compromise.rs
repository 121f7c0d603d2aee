//! A compromised issuing CA: revoked at its root, its holders put into the reset flow.

use rusqlite::params;
use serde_json::json;

use super::crl_step::sign_crl;
use super::live_certificates;
use super::run::{Ctx, Transcript};
use crate::ca::pem;
use crate::clock::rfc3339;
use crate::store::{audit, authorities, sql};
use crate::{AuditAction, Error, RevocationReason};

impl Ctx<'_> {
    pub(super) fn compromise(&mut self, t: &mut Transcript<'_>) -> Result<(), Error> {
        let old = self
            .checked
            .subject
            .clone()
            .ok_or_else(|| self.missing("subject"))?;
        let section = self
            .checked
            .spec
            .compromise
            .clone()
            .ok_or_else(|| self.missing("compromise"))?;
        let reason: RevocationReason = section.reason.parse()?;
        let parent_id = old.parent_id.ok_or_else(|| self.missing("parent"))?;
        let parent = self.ca.store().read(|c| authorities::by_id(c, parent_id))?;
        let parent_signer = self.open_key(&parent, t)?;
        let now = self.ca.clock().now();
        // The revocation first, in its own transaction: whatever happens
        // next, the compromised CA is revoked.
        self.ca.store_mut().write(|tx| {
            tx.execute(
                "INSERT INTO authority_states (authority_id, revoked_at, revocation_reason) VALUES (?1, ?2, ?3)
                 ON CONFLICT (authority_id) DO UPDATE SET revoked_at = ?2, revocation_reason = ?3",
                params![old.id, now, reason.code()],
            )
            .map_err(sql)?;
            audit::append(
                tx,
                now,
                self.actor,
                AuditAction::AuthorityRevoke,
                None,
                json!({"ceremony": self.ceremony_id, "authority": old.name, "reason": reason.name(), "by": parent.name}),
            )
        })?;
        t.line(format!("{} revoked ({})", old.name, reason.name()));
        let next_update = now + i64::from(section.root_crl_days) * 86_400;
        let der = sign_crl(
            self.ca,
            &parent,
            parent_signer.as_ref(),
            now,
            next_update,
            self.actor,
            t,
        )?;
        self.output("crl", pem("X509 CRL", &der).as_bytes(), t)?;
        drop(parent_signer);
        let new = self.intermediate(t)?;
        let live = self
            .ca
            .store()
            .read(|c| live_certificates(c, old.id, now))?;
        let mut list = String::new();
        for (serial, id, email, not_after) in &live {
            list.push_str(
                &json!({"serial": serial, "certificate_id": id, "email": email, "not_after": rfc3339(*not_after), "old_issuer": old.name, "new_issuer": new.name})
                    .to_string(),
            );
            list.push('\n');
            self.reset.push((serial.clone(), id.clone(), email.clone()));
        }
        let serials: Vec<&str> = live.iter().map(|l| l.0.as_str()).collect();
        self.ca.store_mut().write(|tx| {
            audit::append(
                tx,
                now,
                self.actor,
                AuditAction::CeremonyStep,
                None,
                json!({"ceremony": self.ceremony_id, "step": "reset list", "authority": old.name, "count": live.len(), "serials": serials}),
            )
        })?;
        t.line(format!(
            "{} live certificates of {} need new ones (reset flow)",
            live.len(),
            old.name
        ));
        self.output("reset_list", list.as_bytes(), t)
    }
}

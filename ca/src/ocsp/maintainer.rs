//! The private role's keyed half (`kxca daemon`, and `kxca publish` / `kxca
//! demo` once): holds the CA keys, renews responder certificates, pre-signs
//! OCSP answers and signs CRLs into the store. It fills no in-memory
//! responder: the public role reads the store (`kxca_responder::Publisher`).

use std::collections::HashMap;
use std::sync::Arc;

use kxca_hsm::Signer;

use super::asn1::HashAlg;
use super::issuer::{cert_id, issuer_for, Issuer};
use super::responder_cert;
use super::responder_key::{certifies, open_responder_key};
use super::response::{self, Status};
use super::store::{self as ostore, ResponseRow, Statuses};
use crate::store::crls;
use crate::{AuthorityRole, Ca, Error};

/// An answer this maintainer signed (or found current in the store): its
/// bytes are in the store; this is what deciding to re-sign needs.
#[derive(Debug, Clone, Copy)]
struct Answer {
    this_update: i64,
    next_update: i64,
    status: Status,
}

/// Signed answers by (authority, hash algorithm), then serial bytes.
type Signed = HashMap<(i64, HashAlg), HashMap<Box<[u8]>, Answer>>;

/// The private role's half: owns the CA, its keys and the responder key on
/// one thread (the store connection is not `Sync`); signs CRLs after
/// revocations and before nextUpdate, renews responder certificates, and
/// pre-signs responses into the store for the public role to serve. It
/// writes to the store only: what it signed is read back through the
/// public role's reader (`kxca_responder::Publisher`).
pub struct Maintainer {
    ca: Ca,
    /// The issuing CAs with a usable responder certificate.
    issuers: Vec<Issuer>,
    /// What this maintainer signed or found current, to re-sign only what changed.
    signed: Signed,
    /// The statuses the answers in `signed` were signed for.
    statuses: Statuses,
    actor: String,
    responder_key: Arc<dyn Signer>,
    responder_ref: String,
    ca_signers: HashMap<i64, Box<dyn Signer>>,
    data_version: i64,
    last_sweep: i64,
}

impl std::fmt::Debug for Maintainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Maintainer").finish_non_exhaustive()
    }
}

impl Maintainer {
    /// Loads everything the responder needs and brings it up to date: responder
    /// certificates, pre-signed responses, CRLs. `actor` signs the audit trail.
    pub fn start(mut ca: Ca, actor: &str) -> Result<Maintainer, Error> {
        ca.config().ocsp.check().map_err(|message| Error::Config {
            path: ca.home().config(),
            message,
        })?;
        ca.store_mut().migrate("ocsp", ostore::MIGRATIONS)?;
        let (responder_key, responder_ref) = open_responder_key(ca.config(), ca.home(), true)?;
        let mut m = Maintainer {
            ca,
            issuers: Vec::new(),
            signed: HashMap::new(),
            statuses: HashMap::new(),
            actor: actor.to_string(),
            responder_key,
            responder_ref,
            ca_signers: HashMap::new(),
            data_version: -1,
            last_sweep: 0,
        };
        m.open_ca_signers()?;
        m.ensure_responder_certs()?;
        m.reload(true)?;
        Ok(m)
    }

    /// A CA key that cannot be opened is a warning (the responder still serves
    /// what is signed); a store that cannot be read is an error, not "no CAs".
    fn open_ca_signers(&mut self) -> Result<(), Error> {
        let authorities = self.ca.authorities()?;
        for a in authorities
            .iter()
            .filter(|a| a.role == AuthorityRole::Issuing)
        {
            match self.ca.signer(a) {
                Ok(s) => {
                    self.ca_signers.insert(a.id, s);
                }
                Err(e) => {
                    tracing::warn!(authority = %a.name, error = %e, "CA key not available: no new responder certificates or CRLs for it");
                }
            }
        }
        Ok(())
    }

    /// Makes sure each issuing CA has a responder certificate for the current
    /// responder key that is not about to expire; issues one when needed.
    fn ensure_responder_certs(&mut self) -> Result<bool, Error> {
        let now = self.ca.clock().now();
        let policy = self.ca.config().ocsp.clone();
        let union = self.ca.config().union.name.clone();
        let mut issuers = Vec::new();
        let mut renewed = false;
        let authorities = self.ca.authorities()?;
        for a in authorities
            .iter()
            .filter(|a| a.role == AuthorityRole::Issuing)
        {
            let current = self
                .ca
                .store()
                .read(|s| ostore::latest_responder_cert(s, a.id))?;
            let usable = current.as_ref().is_some_and(|c| {
                c.key_ref == self.responder_ref
                    && certifies(&c.certificate, self.responder_key.as_ref())
                    && c.not_after - now > i64::from(policy.responder_renew_days) * 86_400
            });
            let row = if usable {
                current
            } else if let Some(ca_signer) = self.ca_signers.get(&a.id) {
                renewed = true;
                Some(responder_cert::issue_and_record(
                    self.ca.store_mut(),
                    a,
                    ca_signer.as_ref(),
                    self.responder_key.as_ref(),
                    &self.responder_ref,
                    &union,
                    &policy,
                    now,
                    &self.actor,
                )?)
            } else {
                // No CA key: keep answering with the last certificate while it lasts.
                current.filter(|c| {
                    c.key_ref == self.responder_ref
                        && c.not_after > now
                        && certifies(&c.certificate, self.responder_key.as_ref())
                })
            };
            let Some(row) = row else {
                tracing::warn!(authority = %a.name, "no responder certificate: requests for this CA get unauthorized");
                continue;
            };
            issuers.push(issuer_for(a, row, &self.responder_key)?);
        }
        self.issuers = issuers;
        Ok(renewed)
    }

    /// Checks the store for changes made by anyone (cheap when nothing
    /// changed) and does the periodic work that is due. Call about once a second.
    pub fn tick(&mut self) -> Result<(), Error> {
        let now = self.ca.clock().now();
        let version = self.ca.store().read(ostore::data_version)?;
        // A full sweep (refresh, renewals, CRL nextUpdate) once a minute.
        let sweep = now - self.last_sweep >= 60;
        if sweep {
            // Rows a crashed `kxca issue` left pending while the daemon runs.
            self.ca.resolve_abandoned(&self.actor)?;
        }
        if version != self.data_version || sweep {
            if sweep && self.ensure_responder_certs()? {
                self.reload(true)?;
            } else {
                self.reload(sweep)?;
            }
        }
        Ok(())
    }

    /// Re-reads statuses; re-signs what changed (and, on a sweep, what is
    /// due); regenerates CRLs after revocations and before nextUpdate.
    fn reload(&mut self, sweep: bool) -> Result<(), Error> {
        let now = self.ca.clock().now();
        let (version, statuses) = self
            .ca
            .store()
            .read(|s| Ok((ostore::data_version(s)?, ostore::issued_statuses(s)?)))?;
        self.data_version = version;
        let policy = self.ca.config().ocsp.clone();
        let validity = i64::from(policy.response_validity_hours) * 3600;
        let refresh = i64::from(policy.refresh_hours) * 3600;

        // What the store already holds, on first load.
        let mut stored: HashMap<(i64, HashAlg, String), ResponseRow> = HashMap::new();
        let first = self.last_sweep == 0;
        if first {
            for r in self.ca.store().read(ostore::all_responses)? {
                stored.insert((r.authority_id, r.hash, r.serial.clone()), r);
            }
        }
        let mut changed_crl: Vec<i64> = Vec::new();
        let mut new_rows = Vec::new();
        let mut new_map: Signed = HashMap::new();
        {
            let old_map = &self.signed;
            let old_status = &self.statuses;
            for issuer in self.issuers.iter() {
                let id = issuer.authority.id;
                let Some(certs) = statuses.get(&id) else {
                    continue;
                };
                for (serial, known) in certs {
                    let was = old_status.get(&id).and_then(|m| m.get(serial));
                    if !first
                        && was.map(|k| k.status) != Some(known.status)
                        && matches!(known.status, Status::Revoked { .. })
                        && !changed_crl.contains(&id)
                    {
                        changed_crl.push(id);
                    }
                    if known.not_after < now {
                        continue;
                    }
                    for alg in [HashAlg::Sha1, HashAlg::Sha256] {
                        let old = old_map.get(&(id, alg)).and_then(|m| m.get(serial));
                        let fresh_enough = |this_update: i64, status: Status| {
                            status == known.status && (!sweep || now - this_update < refresh)
                        };
                        if let Some(c) = old {
                            if fresh_enough(c.this_update, c.status) && c.next_update > now {
                                new_map
                                    .entry((id, alg))
                                    .or_default()
                                    .insert(serial.clone(), *c);
                                continue;
                            }
                        }
                        let hexs = hex::encode(serial);
                        if let Some(r) = stored.remove(&(id, alg, hexs.clone())) {
                            // Also re-signed: one the public role would call near
                            // expiry (the daemon was down for days).
                            if r.status == known.status.fingerprint()
                                && r.responder == issuer.cred.id
                                && now - r.this_update < refresh
                                && r.next_update - now > refresh
                            {
                                let c = Answer {
                                    this_update: r.this_update,
                                    next_update: r.next_update,
                                    status: known.status,
                                };
                                new_map
                                    .entry((id, alg))
                                    .or_default()
                                    .insert(serial.clone(), c);
                                continue;
                            }
                        }
                        let cid = cert_id(issuer, alg, serial)?;
                        let der = response::sign(
                            &issuer.cred,
                            &[(cid, known.status)],
                            now,
                            now + validity,
                            None,
                        )?;
                        new_rows.push(ResponseRow {
                            authority_id: id,
                            hash: alg,
                            serial: hexs,
                            status: known.status.fingerprint(),
                            responder: issuer.cred.id,
                            this_update: now,
                            next_update: now + validity,
                            der,
                        });
                        let c = Answer {
                            this_update: now,
                            next_update: now + validity,
                            status: known.status,
                        };
                        new_map
                            .entry((id, alg))
                            .or_default()
                            .insert(serial.clone(), c);
                    }
                }
            }
        }
        self.statuses = statuses;
        self.signed = new_map;
        if !new_rows.is_empty() || sweep {
            let signed = new_rows.len();
            self.ca.store_mut().write(|tx| {
                for r in &new_rows {
                    ostore::upsert_response(tx, r)?;
                }
                ostore::delete_expired(tx, now)?;
                Ok(())
            })?;
            if signed > 0 {
                tracing::info!(signed, "OCSP responses pre-signed");
            }
        }
        if sweep {
            self.last_sweep = now;
        }
        // Also catches revocations made while the service was down.
        let newest_revocation: HashMap<i64, i64> = self
            .statuses
            .iter()
            .map(|(id, m)| {
                let newest = m
                    .values()
                    .filter_map(|k| match k.status {
                        Status::Revoked { at, .. } => Some(at),
                        _ => None,
                    })
                    .max()
                    .unwrap_or(i64::MIN);
                (*id, newest)
            })
            .collect();
        self.refresh_crls(&changed_crl, &newest_revocation)?;
        // Our own writes bump nothing for this connection, but be sure.
        self.data_version = self.ca.store().read(ostore::data_version)?;
        Ok(())
    }

    /// Regenerates the CRL of each authority in `revoked` and of any whose
    /// CRL is missing or near its nextUpdate.
    fn refresh_crls(
        &mut self,
        revoked: &[i64],
        newest_revocation: &HashMap<i64, i64>,
    ) -> Result<(), Error> {
        let now = self.ca.clock().now();
        let margin = i64::from(self.ca.config().ocsp.crl_refresh_before_hours) * 3600;
        let authorities = self.ca.authorities()?;
        for a in authorities
            .iter()
            .filter(|a| a.role == AuthorityRole::Issuing)
        {
            let latest = self.ca.store().read(|s| crls::latest(s, a.id))?;
            let due = latest.as_ref().is_none_or(|c| {
                revoked.contains(&a.id)
                    || newest_revocation
                        .get(&a.id)
                        .is_some_and(|at| *at > c.this_update)
                    || c.next_update - now < margin
                    || c.der.is_empty()
            });
            if let (true, Some(signer)) = (due, self.ca_signers.get(&a.id)) {
                self.ca.generate_crl_with(a, signer.as_ref(), &self.actor)?;
            }
        }
        Ok(())
    }
}

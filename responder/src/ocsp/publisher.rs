//! The public role's store reader: fills the [`Engine`] with what the
//! private role signed into the store (responder certificates, pre-signed
//! answers, CRLs) and notices when the daemon is behind. Opens the
//! delegated responder key only, never a CA key.

use std::collections::HashMap;
use std::sync::Arc;

use kxca_ca::ocsp::issuer::issuer_for;
use kxca_ca::ocsp::responder_key::{certifies, open_responder_key};
use kxca_ca::ocsp::store as ostore;
use kxca_ca::store::authorities;
use kxca_ca::{AuthorityRole, Clock, Config, Error, Home, Store};
use kxca_hsm::Signer;

use super::engine::{Engine, HealthCheck, Responses};
use super::headers::Cached;
use super::publication::published_from_store;
use super::request::HashAlg;

/// A certificate with no answer matching its status for longer than this
/// makes /healthz unhealthy: the daemon is down or behind.
const BEHIND_GRACE_SECONDS: i64 = 60;

/// The public role re-reads the store at least this often even when nothing
/// was committed, so that expiring answers and CRLs are noticed.
const PUBLISHER_RELOAD_SECONDS: i64 = 30;

/// The public role's half: fills the engine from the store with what the
/// private role signed (responder certificates, pre-signed responses,
/// CRLs), and re-reads it whenever another process commits. Holds the
/// store, the configuration and the responder key, and nothing that can
/// reach a CA key: it has no `kxca_ca::Ca`.
pub struct Publisher {
    home: Home,
    config: Config,
    clock: Clock,
    store: Store,
    engine: Engine,
    responder_key: Arc<dyn Signer>,
    responder_ref: String,
    data_version: i64,
    last_reload: i64,
    /// Served issuers at the last reload, to log a change once.
    served: Vec<String>,
    /// Since when some certificate has had no answer matching its status.
    behind_since: Option<i64>,
    behind: usize,
    /// Earliest nextUpdate of the answers served (`None`: none held).
    earliest_next_update: Option<i64>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("home", &self.home)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Opens the store and the responder key (never a CA key) and loads
    /// what the store holds. Returns the engine the HTTP handlers share.
    pub fn start(home: Home, clock: Clock) -> Result<(Engine, Publisher), Error> {
        let config = Config::load(&home.config())?;
        config.ocsp.check().map_err(|message| Error::Config {
            path: home.config(),
            message,
        })?;
        let mut store = Store::open(&home.database(), false)?;
        store.migrate("ocsp", ostore::MIGRATIONS)?;
        let (responder_key, responder_ref) = open_responder_key(&config, &home, false)?;
        let engine = Engine::empty(config.ocsp.clone(), clock.clone());
        let mut p = Publisher {
            home,
            config,
            clock,
            store,
            engine: engine.clone(),
            responder_key,
            responder_ref,
            data_version: -1,
            last_reload: 0,
            served: Vec::new(),
            behind_since: None,
            behind: 0,
            earliest_next_update: None,
        };
        p.reload()?;
        Ok((engine, p))
    }

    /// Re-reads the store when another process committed (cheap to poll:
    /// call about once a second) or when the last read is getting old.
    pub fn tick(&mut self) -> Result<(), Error> {
        let now = self.clock.now();
        let version = self.store.read(ostore::data_version)?;
        if version != self.data_version || now - self.last_reload >= PUBLISHER_RELOAD_SECONDS {
            self.reload()?;
        } else {
            self.update_health(now);
        }
        Ok(())
    }

    fn reload(&mut self) -> Result<(), Error> {
        let now = self.clock.now();
        // One read snapshot: the version, the authorities, their responder
        // certificates, the statuses and the answers agree with each other.
        let (version, authorities, certs, statuses, stored) = self.store.read(|c| {
            let authorities = authorities::all(c)?;
            let mut certs = Vec::new();
            for a in authorities
                .iter()
                .filter(|a| a.role == AuthorityRole::Issuing)
            {
                certs.push((a.clone(), ostore::latest_responder_cert(c, a.id)?));
            }
            Ok((
                ostore::data_version(c)?,
                authorities,
                certs,
                ostore::issued_statuses(c)?,
                ostore::all_responses(c)?,
            ))
        })?;
        self.data_version = version;
        let mut issuers = Vec::new();
        let mut missing = Vec::new();
        for (a, row) in certs {
            // The key behind the reference may have been replaced (a token
            // re-initialised): a certificate for another key would make every
            // answer fail verification, so it does not count.
            let row = row.filter(|c| {
                c.key_ref == self.responder_ref
                    && c.not_after > now
                    && certifies(&c.certificate, self.responder_key.as_ref())
            });
            match row {
                Some(row) => issuers.push(issuer_for(&a, row, &self.responder_key)?),
                None => missing.push(a.name.clone()),
            }
        }
        let served: Vec<String> = issuers.iter().map(|i| i.authority.name.clone()).collect();
        if served != self.served {
            if missing.is_empty() {
                tracing::info!(issuers = ?served, "answering for these issuing CAs");
            } else {
                tracing::warn!(without = ?missing, "no valid responder certificate for the current responder key: requests for these CAs get unauthorized until kxca daemon issues one");
            }
            self.served = served;
        }
        let mut responses: Responses = HashMap::new();
        let mut earliest: Option<i64> = None;
        for r in stored {
            if !issuers.iter().any(|i| i.authority.id == r.authority_id) {
                continue;
            }
            let Ok(serial) = hex::decode(&r.serial) else {
                continue;
            };
            let Some(known) = statuses
                .get(&r.authority_id)
                .and_then(|m| m.get(serial.as_slice()))
            else {
                continue;
            };
            // An answer whose status the store has since changed is not
            // served: until the daemon re-signs it, the live path answers
            // from the store's status with the responder key.
            if known.status.fingerprint() != r.status
                || r.next_update <= now
                || known.not_after < now
            {
                continue;
            }
            earliest = Some(earliest.map_or(r.next_update, |e| e.min(r.next_update)));
            let c = Cached::new(r.der, r.this_update, r.next_update, known.status);
            responses
                .entry((r.authority_id, r.hash))
                .or_default()
                .insert(serial.into_boxed_slice(), Arc::new(c));
        }
        let mut behind = 0;
        for i in &issuers {
            let Some(certs) = statuses.get(&i.authority.id) else {
                continue;
            };
            for (serial, known) in certs {
                if known.not_after < now {
                    continue;
                }
                let held = [HashAlg::Sha1, HashAlg::Sha256].iter().all(|alg| {
                    responses
                        .get(&(i.authority.id, *alg))
                        .is_some_and(|m| m.contains_key(serial))
                });
                if !held {
                    behind += 1;
                }
            }
        }
        let published = published_from_store(&self.store, &authorities)?;
        if let Ok(mut g) = self.engine.shared.issuers.write() {
            *g = Arc::new(issuers);
        }
        if let Ok(mut s) = self.engine.shared.statuses.write() {
            *s = statuses;
        }
        if let Ok(mut r) = self.engine.shared.responses.write() {
            *r = responses;
        }
        if let Ok(mut p) = self.engine.shared.published.write() {
            *p = published;
        }
        self.behind = behind;
        self.behind_since = if behind == 0 {
            None
        } else {
            self.behind_since.or(Some(now))
        };
        self.earliest_next_update = earliest;
        self.last_reload = now;
        self.update_health(now);
        Ok(())
    }

    /// The public role's own health lines: pre-signed answers present for
    /// every live certificate and not near expiry, and a responder
    /// certificate for every issuing CA.
    fn update_health(&self, now: i64) {
        let margin = i64::from(self.config.ocsp.refresh_hours) * 3600;
        let near = self.earliest_next_update.is_some_and(|n| n - now < margin);
        let behind = self
            .behind_since
            .is_some_and(|t| now - t > BEHIND_GRACE_SECONDS);
        let detail = match (near, behind) {
            (true, _) => "pre-signed answers near expiry: is kxca daemon running?".to_string(),
            (false, true) => format!(
                "{} certificate(s) without a pre-signed answer for their status: is kxca daemon running?",
                self.behind
            ),
            (false, false) => "pre-signed answers current".to_string(),
        };
        let mut checks = vec![HealthCheck {
            name: "presigned_responses".into(),
            ok: !near && !behind,
            detail,
        }];
        let issuing = self
            .engine
            .shared
            .issuers
            .read()
            .map(|g| g.len())
            .unwrap_or(0);
        let without_crl: Vec<String> = self
            .served
            .iter()
            .filter(|name| self.engine.published(&format!("/crl/{name}.crl")).is_none())
            .cloned()
            .collect();
        if !without_crl.is_empty() {
            checks.push(HealthCheck {
                name: "crl".into(),
                ok: false,
                detail: format!(
                    "no CRL yet for {}: is kxca daemon running?",
                    without_crl.join(", ")
                ),
            });
        }
        if issuing == 0 {
            checks.push(HealthCheck {
                name: "responder_certificate".into(),
                ok: false,
                detail: "no valid responder certificate for the responder key".into(),
            });
        }
        self.engine.set_health(checks);
    }

    /// The engine this publisher keeps.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

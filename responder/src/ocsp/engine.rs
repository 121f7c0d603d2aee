//! The answer path: [`Engine`] answers parsed requests from memory (the
//! pre-signed answers, the statuses, the published files) and signs live
//! answers with the delegated responder key within the budget. The
//! [`Publisher`](super::Publisher) fills it from the store; it holds no CA key.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use kxca_ca::ocsp::asn1::ResponseStatus;
use kxca_ca::ocsp::issuer::{cert_id, Issuer};
use kxca_ca::ocsp::response::{self, Status};
use kxca_ca::ocsp::store::Statuses;
use kxca_ca::ocsp::{NoncePolicy, OcspConfig};
use kxca_ca::Clock;

use super::headers::{Cached, Published};
use super::live::{Live, LiveStats};
use super::request::{self, HashAlg, ParsedRequest};

pub(crate) type Responses = HashMap<(i64, HashAlg), HashMap<Box<[u8]>, Arc<Cached>>>;

pub(crate) struct Shared {
    pub(crate) config: OcspConfig,
    pub(crate) clock: Clock,
    pub(crate) issuers: RwLock<Arc<Vec<Issuer>>>,
    pub(crate) responses: RwLock<Responses>,
    pub(crate) statuses: RwLock<Statuses>,
    pub(crate) published: RwLock<HashMap<String, Arc<Published>>>,
    pub(crate) health: RwLock<Vec<HealthCheck>>,
    pub(crate) live: Live,
}

/// One line of the health report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HealthCheck {
    /// What is checked, e.g. `responder_certificate/issuing-1`.
    pub name: String,
    /// Healthy or not.
    pub ok: bool,
    /// Why, for an operator.
    pub detail: String,
}

/// The answer to one request.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A pre-signed response from the cache.
    Cached(Arc<Cached>),
    /// A response signed for this request (nonce, several certificates, unknown serial).
    Fresh {
        /// The signed OCSPResponse.
        der: Vec<u8>,
        /// The status of the first certificate asked about.
        status: Status,
    },
    /// An OCSP error status (malformedRequest, unauthorized, internalError).
    Error(ResponseStatus),
}

/// The responder, shared by every request handler.
#[derive(Clone)]
pub struct Engine {
    pub(crate) shared: Arc<Shared>,
}

impl Engine {
    /// The `[ocsp]` policy it answers under.
    pub fn config(&self) -> &OcspConfig {
        &self.shared.config
    }

    /// Now, by the CA's clock.
    pub fn now(&self) -> i64 {
        self.shared.clock.now()
    }

    /// Answers a parsed request. Never `good` for a serial this CA did not issue.
    /// Signs only within the live-signing budget (`[ocsp]
    /// live_signatures_per_second`): past it, the answer is the pre-signed
    /// one without the nonce, or `tryLater`.
    pub fn answer(&self, req: &ParsedRequest) -> Answer {
        let issuers = match self.shared.issuers.read() {
            Ok(g) => Arc::clone(&g),
            Err(_) => return Answer::Error(ResponseStatus::InternalError),
        };
        let mut found = Vec::with_capacity(req.queries.len());
        for q in &req.queries {
            let Some(alg) = q.hash else {
                return Answer::Error(ResponseStatus::Unauthorized);
            };
            match find_issuer(&issuers, alg, q) {
                Some(i) => found.push(i),
                None => return Answer::Error(ResponseStatus::Unauthorized),
            }
        }
        let use_nonce = req.nonce.is_some() && self.shared.config.nonce == NoncePolicy::Echo;
        if req.queries.len() == 1 && !use_nonce {
            let (issuer, q) = (&issuers[found[0]], &req.queries[0]);
            if let Some(c) = self
                .cached_for(issuer, q)
                .or_else(|| self.unknown_cached(issuer, q))
            {
                return Answer::Cached(c);
            }
        }
        // Live signing: all answers must come from one responder certificate.
        let first = found[0];
        if found.iter().any(|i| *i != first) {
            // Several issuing CAs in one request: each has its own responder
            // certificate, and one response carries one signature.
            return Answer::Error(ResponseStatus::Unauthorized);
        }
        if !self.shared.live.take() {
            return self.refuse(req);
        }
        let issuer = &issuers[first];
        let statuses = match self.shared.statuses.read() {
            Ok(g) => g,
            Err(_) => return Answer::Error(ResponseStatus::InternalError),
        };
        let mut answers = Vec::with_capacity(req.queries.len());
        let mut overall = Status::Unknown;
        for q in &req.queries {
            let status = q
                .serial
                .as_ref()
                .and_then(|s| statuses.get(&issuer.authority.id)?.get(s.as_slice()))
                .map(|k| k.status)
                .unwrap_or(Status::Unknown);
            if answers.is_empty() {
                overall = status;
            }
            answers.push((q.cert_id.clone(), status));
        }
        drop(statuses);
        let now = self.shared.clock.now();
        let next = now + i64::from(self.shared.config.response_validity_hours) * 3600;
        let nonce = if use_nonce {
            req.nonce.as_deref()
        } else {
            None
        };
        match response::sign(&issuer.cred, &answers, now, next, nonce) {
            Ok(der) => {
                self.shared.live.signed();
                let q = &req.queries[0];
                if let (1, None, Status::Unknown, Some(serial), Some(alg)) =
                    (answers.len(), nonce, overall, &q.serial, q.hash)
                {
                    // The same bytes answer the next request for this serial.
                    let c = Cached::new(der.clone(), now, next, overall);
                    self.shared.live.remember_unknown(
                        (issuer.authority.id, alg, serial.as_slice().into()),
                        Arc::new(c),
                    );
                }
                Answer::Fresh {
                    der,
                    status: overall,
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "signing an OCSP response failed");
                Answer::Error(ResponseStatus::InternalError)
            }
        }
    }

    /// The answer to a request that would need a live signature when none
    /// may be made (budget spent, or too many waiting for a signing slot):
    /// the pre-signed (or cached unknown) answer without the nonce when the
    /// request asks for one certificate, else `tryLater`. Never queues.
    pub fn refuse(&self, req: &ParsedRequest) -> Answer {
        let fallback = match &req.queries[..] {
            [q] => q.hash.and_then(|alg| {
                let issuers = Arc::clone(&*self.shared.issuers.read().ok()?);
                let issuer = &issuers[find_issuer(&issuers, alg, q)?];
                self.cached_for(issuer, q)
                    .or_else(|| self.unknown_cached(issuer, q))
            }),
            _ => None,
        };
        self.shared.live.refused(fallback.is_some());
        match fallback {
            Some(c) => Answer::Cached(c),
            None => Answer::Error(ResponseStatus::TryLater),
        }
    }

    /// Live signing counters for /metrics.
    pub fn live_stats(&self) -> LiveStats {
        self.shared.live.stats()
    }

    /// The pre-signed answer to `req` (or the answer already signed for its
    /// unknown serial), if it has one: a lookup that never signs, so the
    /// HTTP layer can answer it in place and hand everything else (live
    /// signing) to a thread where it cannot hold up other requests.
    pub fn presigned_answer(&self, req: &ParsedRequest) -> Option<Arc<Cached>> {
        if req.queries.len() != 1
            || (req.nonce.is_some() && self.shared.config.nonce == NoncePolicy::Echo)
        {
            return None;
        }
        let q = &req.queries[0];
        let alg = q.hash?;
        let issuers = Arc::clone(&*self.shared.issuers.read().ok()?);
        let issuer = &issuers[find_issuer(&issuers, alg, q)?];
        self.cached_for(issuer, q)
            .or_else(|| self.unknown_cached(issuer, q))
    }

    /// The answer signed earlier for a serial the store does not know.
    fn unknown_cached(&self, issuer: &Issuer, q: &request::Query) -> Option<Arc<Cached>> {
        let (serial, alg) = (q.serial.as_ref()?, q.hash?);
        let id = issuer.authority.id;
        // Issued since (or expired out of the pre-signed set): its real
        // status is signed live, never the old `unknown`.
        let known = self
            .shared
            .statuses
            .read()
            .ok()?
            .get(&id)
            .is_some_and(|m| m.contains_key(serial.as_slice()));
        if known {
            return None;
        }
        self.shared.live.unknown(
            &(id, alg, serial.as_slice().into()),
            self.shared.clock.now(),
        )
    }

    fn cached_for(&self, issuer: &Issuer, q: &request::Query) -> Option<Arc<Cached>> {
        let (serial, alg) = (q.serial.as_ref()?, q.hash?);
        let map = self.shared.responses.read().ok()?;
        let c = map
            .get(&(issuer.authority.id, alg))?
            .get(serial.as_slice())?;
        (c.next_update > self.shared.clock.now()).then(|| Arc::clone(c))
    }

    /// A published CRL or CA certificate by URL path (`/crl/x.crl`, `/ca/x.cer`).
    pub fn published(&self, path: &str) -> Option<Arc<Published>> {
        self.shared.published.read().ok()?.get(path).cloned()
    }

    /// Every published file, by URL path.
    pub fn published_all(&self) -> Vec<(String, Arc<Published>)> {
        self.shared
            .published
            .read()
            // Writers only swap the whole map (publisher.rs), so a poisoned lock
            // still holds a complete map: serve it rather than "nothing published".
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect()
    }

    /// Every pre-signed response with the GET path (after `/ocsp/`) of the
    /// request that fetches it.
    pub fn presigned_with_paths(&self) -> Vec<(String, Arc<Cached>)> {
        let issuers = match self.shared.issuers.read() {
            Ok(g) => Arc::clone(&g),
            Err(_) => return Vec::new(),
        };
        let Ok(map) = self.shared.responses.read() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for ((authority, alg), entries) in map.iter() {
            let Some(issuer) = issuers.iter().find(|i| i.authority.id == *authority) else {
                continue;
            };
            for (serial, cached) in entries {
                if let Ok(id) = cert_id(issuer, *alg, serial) {
                    if let Ok(der) = request::single_request_der(&id) {
                        out.push((request::get_path(&der), Arc::clone(cached)));
                    }
                }
            }
        }
        out
    }

    /// The pre-signed response for a serial (of any served issuer), if held.
    pub fn presigned(&self, serial: &[u8], alg: HashAlg) -> Option<Arc<Cached>> {
        let map = self.shared.responses.read().ok()?;
        map.iter()
            .filter(|((_, a), _)| *a == alg)
            .find_map(|(_, entries)| entries.get(serial).cloned())
    }

    /// Age in seconds of the oldest pre-signed response (0 when none).
    pub fn oldest_response_age(&self) -> i64 {
        let now = self.shared.clock.now();
        self.shared
            .responses
            .read()
            .map(|m| {
                m.values()
                    .flat_map(|e| e.values())
                    .map(|c| now - c.this_update)
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    }

    /// Number of pre-signed responses held.
    pub fn presigned_count(&self) -> usize {
        self.shared
            .responses
            .read()
            .map(|m| m.values().map(HashMap::len).sum())
            .unwrap_or(0)
    }

    /// The health report: signers, CRL ages, responder certificate expiry.
    pub fn health(&self) -> Vec<HealthCheck> {
        let mut checks = self
            .shared
            .health
            .read()
            // Whole-value swaps only (set_health): a poisoned lock still holds a
            // complete list, and dropping it would hide failing checks.
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let now = self.shared.clock.now();
        if let Ok(issuers) = self.shared.issuers.read() {
            for i in issuers.iter() {
                let left = i.cred.not_after - now;
                checks.push(HealthCheck {
                    name: format!("responder_certificate/{}", i.authority.name),
                    ok: left > 86_400,
                    detail: format!("expires in {} hours", left / 3600),
                });
                let h = i.cred.signer.health();
                checks.push(HealthCheck {
                    name: format!("responder_key/{}", i.authority.name),
                    ok: h.ok,
                    detail: h.detail,
                });
            }
        }
        for (path, p) in self.published_all() {
            if let Some(next) = p.next_update {
                checks.push(HealthCheck {
                    name: format!("crl{}", path.trim_start_matches("/crl")),
                    ok: next > now,
                    detail: format!(
                        "age {} s, next update in {} s",
                        now - p.this_update,
                        next - now
                    ),
                });
            }
        }
        checks.sort_by(|a, b| a.name.cmp(&b.name));
        checks
    }

    /// Ages of the published CRLs, by authority name.
    pub fn crl_ages(&self) -> Vec<(String, i64)> {
        let now = self.shared.clock.now();
        self.published_all()
            .into_iter()
            .filter(|(_, p)| p.next_update.is_some())
            .map(|(path, p)| {
                let name = path
                    .trim_start_matches("/crl/")
                    .trim_end_matches(".crl")
                    .to_string();
                (name, now - p.this_update)
            })
            .collect()
    }
}

/// The served issuer a query names, by issuerNameHash and issuerKeyHash.
fn find_issuer(issuers: &[Issuer], alg: HashAlg, q: &request::Query) -> Option<usize> {
    issuers.iter().position(|i| {
        let (n, k) = match alg {
            HashAlg::Sha1 => &i.sha1,
            HashAlg::Sha256 => &i.sha256,
        };
        n.as_slice() == q.cert_id.issuer_name_hash.as_bytes()
            && k.as_slice() == q.cert_id.issuer_key_hash.as_bytes()
    })
}

impl Engine {
    /// An empty engine, filled by a [`Publisher`] or a [`Maintainer`].
    pub(crate) fn empty(config: OcspConfig, clock: Clock) -> Engine {
        let live = Live::new(&config);
        Engine {
            shared: Arc::new(Shared {
                config,
                clock,
                issuers: RwLock::new(Arc::new(Vec::new())),
                responses: RwLock::new(HashMap::new()),
                statuses: RwLock::new(HashMap::new()),
                published: RwLock::new(HashMap::new()),
                health: RwLock::new(Vec::new()),
                live,
            }),
        }
    }

    pub(crate) fn set_health(&self, checks: Vec<HealthCheck>) {
        if let Ok(mut h) = self.shared.health.write() {
            *h = checks;
        }
    }
}

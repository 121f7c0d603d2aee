//! The responder engine: answers parsed requests from memory, and keeps that
//! memory right. [`Engine`] is the shared, read-mostly half the HTTP handlers
//! use. Two roles fill it: [`Publisher`] (the public role, `kxca serve`)
//! reads from the store what was signed, holding no CA key; [`Maintainer`]
//! (the private role, `kxca daemon`) owns the CA keys on its own thread and
//! re-signs, re-issues and regenerates into the store as time passes and
//! revocations arrive.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use kxca_hsm::{KeyAlgorithm, KeyRef, SecretSource, Signer};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::asn1::{CertId, ResponseStatus};
use super::config::{NoncePolicy, OcspConfig};
use super::live::{Live, LiveStats};
use super::request::{self, HashAlg, ParsedRequest};
use super::responder_cert;
use super::response::{self, Credential, Status};
use super::store::{self as ostore, KnownCert, ResponseRow};
use crate::store::{audit, authorities, crls};
use crate::{Authority, AuthorityRole, Ca, Clock, Config, Error, Home, Store};

/// A pre-signed response with its RFC 5019 caching metadata.
#[derive(Debug, Clone)]
pub struct Cached {
    pub der: Bytes,
    pub this_update: i64,
    pub next_update: i64,
    /// Quoted strong ETag: a hash of the bytes.
    pub etag: String,
    pub last_modified: String,
    pub expires: String,
    pub status: Status,
    /// ETag, Last-Modified and Expires, ready to send: built once at signing,
    /// not per request.
    pub headers: [http::HeaderValue; 3],
}

impl Cached {
    pub(crate) fn new(der: Vec<u8>, this_update: i64, next_update: i64, status: Status) -> Cached {
        let digest = Sha256::digest(&der);
        let etag = format!("\"{}\"", hex::encode(&digest[..16]));
        let last_modified = http_date(this_update);
        let expires = http_date(next_update);
        // Hex, digits and ASCII dates are always valid header values.
        let h =
            |v: &str| http::HeaderValue::from_str(v).unwrap_or(http::HeaderValue::from_static(""));
        Cached {
            headers: [h(&etag), h(&last_modified), h(&expires)],
            etag,
            last_modified,
            expires,
            der: Bytes::from(der),
            this_update,
            next_update,
            status,
        }
    }
}

/// A file the service publishes (CRL or CA certificate).
#[derive(Debug, Clone)]
pub struct Published {
    pub der: Bytes,
    pub content_type: &'static str,
    pub last_modified: String,
    pub etag: String,
    /// For CRLs: thisUpdate and nextUpdate.
    pub this_update: i64,
    pub next_update: Option<i64>,
}

/// RFC 9110 IMF-fixdate.
pub fn http_date(unix: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.format(&fmt).unwrap_or_default()
}

struct Issuer {
    authority: Authority,
    sha1: (Vec<u8>, Vec<u8>),
    sha256: (Vec<u8>, Vec<u8>),
    cred: Arc<Credential>,
}

type Responses = HashMap<(i64, HashAlg), HashMap<Box<[u8]>, Arc<Cached>>>;
pub(crate) type Statuses = HashMap<i64, HashMap<Box<[u8]>, KnownCert>>;

struct Shared {
    config: OcspConfig,
    clock: Clock,
    issuers: RwLock<Arc<Vec<Issuer>>>,
    responses: RwLock<Responses>,
    statuses: RwLock<Statuses>,
    published: RwLock<HashMap<String, Arc<Published>>>,
    health: RwLock<Vec<HealthCheck>>,
    live: Live,
}

/// One line of the health report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HealthCheck {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// The answer to one request.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A pre-signed response from the cache.
    Cached(Arc<Cached>),
    /// A response signed for this request (nonce, several certificates, unknown serial).
    Fresh { der: Vec<u8>, status: Status },
    /// An OCSP error status (malformedRequest, unauthorized, internalError).
    Error(ResponseStatus),
}

/// The responder, shared by every request handler.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

impl Engine {
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
            .map(|m| m.iter().map(|(k, v)| (k.clone(), Arc::clone(v))).collect())
            .unwrap_or_default()
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
            .map(|h| h.clone())
            .unwrap_or_default();
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

fn cert_id(issuer: &Issuer, alg: HashAlg, serial: &[u8]) -> Result<CertId, Error> {
    use der::asn1::{Any, Int, OctetString};
    let (oid, (name, key)) = match alg {
        HashAlg::Sha1 => (super::asn1::SHA1, &issuer.sha1),
        HashAlg::Sha256 => (super::asn1::SHA256, &issuer.sha256),
    };
    let mut int = Vec::with_capacity(serial.len() + 1);
    if serial.first().is_none_or(|b| b & 0x80 != 0) {
        int.push(0);
    }
    int.extend_from_slice(serial);
    Ok(CertId {
        hash_algorithm: spki::AlgorithmIdentifierOwned {
            oid,
            // As OpenSSL and most clients send it: parameters NULL.
            parameters: Some(Any::from(der::asn1::Null)),
        },
        issuer_name_hash: OctetString::new(name.clone())
            .map_err(|e| Error::encoding("name hash", e))?,
        issuer_key_hash: OctetString::new(key.clone())
            .map_err(|e| Error::encoding("key hash", e))?,
        serial_number: Int::new(&int).map_err(|e| Error::encoding("serial", e))?,
    })
}

// The two roles over one store. From here to `issue_responder_cert` is the
// keyless side that `kxca serve` (the public role) runs: it reads what the
// private role signed and opens no key but the delegated responder's.
// `issue_responder_cert` and `Maintainer` hold CA keys; only `kxca daemon`
// and the signing CLI commands reach them. Keep it that way: this line is a
// crate boundary to be.

/// A certificate with no answer matching its status for longer than this
/// makes /healthz unhealthy: the daemon is down or behind.
const BEHIND_GRACE_SECONDS: i64 = 60;

/// The public role re-reads the store at least this often even when nothing
/// was committed, so that expiring answers and CRLs are noticed.
const PUBLISHER_RELOAD_SECONDS: i64 = 30;

impl Engine {
    /// An empty engine, filled by a [`Publisher`] or a [`Maintainer`].
    fn empty(config: OcspConfig, clock: Clock) -> Engine {
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

    fn set_health(&self, checks: Vec<HealthCheck>) {
        if let Ok(mut h) = self.shared.health.write() {
            *h = checks;
        }
    }
}

/// The responder key's reference text (the default is a soft key under
/// `<home>/keys`, kept for homes made before `kxca init` wrote one).
fn responder_ref_text(config: &Config, home: &Home) -> String {
    config
        .ocsp
        .responder_key
        .clone()
        .unwrap_or_else(|| format!("soft:{}", home.keys().join("ocsp-responder.p8").display()))
}

/// The responder key's secret source, with the production rules checked:
/// its own secret, not the CA keys', and its own token. `kxca init` checks
/// these before it creates any key.
pub(crate) fn responder_secret_checked(
    config: &Config,
    home: &Home,
    text: &str,
) -> Result<SecretSource, Error> {
    let bad = |message: String| Error::Config {
        path: home.config(),
        message,
    };
    let secret =
        match config.ocsp.responder_secret() {
            Some(s) => s,
            None if config.production => return Err(bad(
                "production: set ocsp.responder_key_secret_env or ocsp.responder_key_secret_file \
                 (the responder key's own PIN, so that kxca serve never needs the CA keys' PIN)"
                    .into(),
            )),
            None => {
                tracing::warn!(
                    "[ocsp] has no responder_key_secret_env or responder_key_secret_file: the \
                 responder key is opened with the CA key secret (see docs/PUBLISH.md)"
                );
                config.key_secret()
            }
        };
    if config.production {
        if secret == config.key_secret() {
            return Err(bad(
                "production: the OCSP responder key's secret must not be the CA keys' secret \
                 (ocsp.responder_key_secret_* vs ca.key_secret_*)"
                    .into(),
            ));
        }
        let token = |r: &str| match r.parse::<KeyRef>() {
            Ok(KeyRef::Pkcs11 { attributes }) => attributes.get("token").cloned(),
            _ => None,
        };
        let mine = token(text);
        if mine.is_some()
            && [&config.ca.root_key, &config.ca.issuing_key]
                .iter()
                .any(|k| token(k) == mine)
        {
            return Err(bad(format!(
                "production: the OCSP responder key must be on its own token (with its own PIN), \
                 not on the CA keys' token {:?}",
                mine.unwrap_or_default()
            )));
        }
    }
    Ok(secret)
}

/// Opens the delegated responder key with its own secret. `create`: a
/// missing key is made (the private role and `kxca init`); the public role
/// only opens, so it never writes key material.
pub(crate) fn open_responder_key(
    config: &Config,
    home: &Home,
    create: bool,
) -> Result<(Arc<dyn Signer>, String), Error> {
    let text = responder_ref_text(config, home);
    let bad = |message: String| Error::Config {
        path: home.config(),
        message,
    };
    let key_ref: KeyRef = text
        .parse()
        .map_err(|e: kxca_hsm::Error| bad(format!("ocsp.responder_key: {e}")))?;
    if config.production && key_ref.is_soft() {
        return Err(Error::SoftKeyInProduction {
            path: home.config(),
            role: "OCSP responder".into(),
            key_ref: text,
        });
    }
    let secret = responder_secret_checked(config, home, &text)?;
    let backend = config.backend_options();
    // P-256: live (nonce) responses are signed per request, and ECDSA is cheap.
    let signer = match &key_ref {
        KeyRef::Soft { path } if !path.exists() => {
            if !create {
                return Err(bad(format!(
                    "the OCSP responder key {text} does not exist yet: run `kxca daemon` \
                     (or `kxca init`), which creates and certifies it"
                )));
            }
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
            kxca_hsm::generate_with(&key_ref, KeyAlgorithm::EcdsaP256, &secret, &backend)?
        }
        // A responder key on a token is created on first use, as `kxca init` does for CA keys.
        KeyRef::Pkcs11 { .. } if create => match kxca_hsm::open_with(&key_ref, &secret, &backend) {
            Err(kxca_hsm::Error::TokenKeyMissing { .. }) => {
                kxca_hsm::generate_with(&key_ref, KeyAlgorithm::EcdsaP256, &secret, &backend)?
            }
            other => other?,
        },
        _ => kxca_hsm::open_with(&key_ref, &secret, &backend)?,
    };
    Ok((Arc::from(signer), text))
}

/// (issuerNameHash, issuerKeyHash) of an authority.
type HashPair = (Vec<u8>, Vec<u8>);

fn hashes(a: &Authority) -> Result<(HashPair, HashPair), Error> {
    let spki = crate::x509::spki(&a.spki)?;
    let key = spki.subject_public_key.raw_bytes();
    Ok((
        (
            Sha1::digest(&a.subject_der).to_vec(),
            Sha1::digest(key).to_vec(),
        ),
        (
            Sha256::digest(&a.subject_der).to_vec(),
            Sha256::digest(key).to_vec(),
        ),
    ))
}

fn issuer_for(
    a: &Authority,
    row: ostore::ResponderCertRow,
    responder_key: &Arc<dyn Signer>,
) -> Result<Issuer, Error> {
    let (sha1, sha256) = hashes(a)?;
    Ok(Issuer {
        authority: a.clone(),
        sha1,
        sha256,
        cred: Arc::new(Credential {
            id: row.id,
            signer: Arc::clone(responder_key),
            certificate: row.certificate,
            key_hash: crate::x509::key_id(responder_key.public_key_der())?,
            not_after: row.not_after,
        }),
    })
}

/// Whether a certificate is for this key.
fn certifies(cert_der: &[u8], key: &dyn Signer) -> bool {
    use der::{Decode, Encode};
    x509_cert::Certificate::from_der(cert_der)
        .ok()
        .and_then(|c| c.tbs_certificate().subject_public_key_info().to_der().ok())
        .is_some_and(|spki| spki == key.public_key_der())
}

/// The CA certificates and the newest CRL of each issuing CA, as the store
/// holds them, by URL path.
fn published_from_store(
    conn: &rusqlite::Connection,
    authorities: &[Authority],
) -> Result<HashMap<String, Arc<Published>>, Error> {
    let mut published = HashMap::new();
    for a in authorities {
        let der = Bytes::from(a.certificate.clone());
        published.insert(
            format!("/ca/{}.cer", a.name),
            Arc::new(Published {
                etag: format!("\"{}\"", hex::encode(&Sha256::digest(&der)[..16])),
                der,
                content_type: "application/pkix-cert",
                last_modified: http_date(a.not_before),
                this_update: a.not_before,
                next_update: None,
            }),
        );
        if a.role != AuthorityRole::Issuing {
            continue;
        }
        if let Some(c) = crls::latest(conn, a.id)?.filter(|c| !c.der.is_empty()) {
            let der = Bytes::from(c.der);
            published.insert(
                format!("/crl/{}.crl", a.name),
                Arc::new(Published {
                    etag: format!("\"{}\"", hex::encode(&Sha256::digest(&der)[..16])),
                    der,
                    content_type: "application/pkix-crl",
                    last_modified: http_date(c.this_update),
                    this_update: c.this_update,
                    next_update: Some(c.next_update),
                }),
            );
        }
    }
    // The audit record's latest checkpoint and its key (docs/AUDIT.md).
    for (path, body, content_type, at) in crate::audit_log::published(conn)? {
        let der = Bytes::from(body);
        published.insert(
            path,
            Arc::new(Published {
                etag: format!("\"{}\"", hex::encode(&Sha256::digest(&der)[..16])),
                der,
                content_type,
                last_modified: http_date(at),
                this_update: at,
                next_update: None,
            }),
        );
    }
    Ok(published)
}

/// The public role's half: fills the engine from the store with what the
/// private role signed (responder certificates, pre-signed responses,
/// CRLs), and re-reads it whenever another process commits. Holds the
/// store, the configuration and the responder key, and nothing that can
/// reach a CA key: it has no [`Ca`].
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
        let version = ostore::data_version(self.store.conn())?;
        if version != self.data_version || now - self.last_reload >= PUBLISHER_RELOAD_SECONDS {
            self.reload()?;
        } else {
            self.update_health(now);
        }
        Ok(())
    }

    fn reload(&mut self) -> Result<(), Error> {
        let now = self.clock.now();
        let conn = self.store.conn();
        self.data_version = ostore::data_version(conn)?;
        let authorities = authorities::all(conn)?;
        let mut issuers = Vec::new();
        let mut missing = Vec::new();
        for a in authorities
            .iter()
            .filter(|a| a.role == AuthorityRole::Issuing)
        {
            // The key behind the reference may have been replaced (a token
            // re-initialised): a certificate for another key would make every
            // answer fail verification, so it does not count.
            let row = ostore::latest_responder_cert(conn, a.id)?.filter(|c| {
                c.key_ref == self.responder_ref
                    && c.not_after > now
                    && certifies(&c.certificate, self.responder_key.as_ref())
            });
            match row {
                Some(row) => issuers.push(issuer_for(a, row, &self.responder_key)?),
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
        let statuses = ostore::issued_statuses(conn)?;
        let mut responses: Responses = HashMap::new();
        let mut earliest: Option<i64> = None;
        for r in ostore::all_responses(conn)? {
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
        let published = published_from_store(conn, &authorities)?;
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

// ---- The private role: everything below holds CA keys. ----

/// Has `ca_signer` certify the responder key for `a` (RFC 6960 delegated
/// responder) and records it, with its audit event, in one transaction.
/// The daemon's renewals and `kxca init` both come here.
#[allow(clippy::too_many_arguments)]
pub(crate) fn issue_responder_cert(
    store: &mut Store,
    a: &Authority,
    ca_signer: &dyn Signer,
    responder_key: &dyn Signer,
    key_ref: &str,
    union: &str,
    policy: &OcspConfig,
    now: i64,
    actor: &str,
) -> Result<ostore::ResponderCertRow, Error> {
    store.migrate("ocsp", ostore::MIGRATIONS)?;
    let issued = responder_cert::issue(
        a,
        ca_signer,
        responder_key,
        union,
        now,
        policy.responder_cert_days,
    )?;
    let serial = issued.serial.to_hex();
    let id = store.write(|tx| {
        let id = ostore::insert_responder_cert(
            tx,
            a.id,
            key_ref,
            &serial,
            &issued.der,
            issued.not_before,
            issued.not_after,
            now,
        )?;
        audit::append(
            tx,
            now,
            actor,
            "ocsp.responder_certificate",
            Some(&serial),
            serde_json::json!({"authority": a.name, "key": key_ref, "not_after": crate::rfc3339(issued.not_after)}),
        )?;
        Ok(id)
    })?;
    tracing::info!(authority = %a.name, serial = %serial, "OCSP responder certificate issued");
    Ok(ostore::ResponderCertRow {
        id,
        key_ref: key_ref.to_string(),
        certificate: issued.der,
        not_after: issued.not_after,
    })
}

/// The private role's half: owns the CA, its keys and the responder key on
/// one thread (the store connection is not `Sync`); signs CRLs after
/// revocations and before nextUpdate, renews responder certificates, and
/// pre-signs responses into the store for the public role to serve. Its
/// engine is its own memory of what it signed; only `kxca publish` reads it.
pub struct Maintainer {
    ca: Ca,
    engine: Engine,
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
    pub fn start(mut ca: Ca, actor: &str) -> Result<(Engine, Maintainer), Error> {
        ca.config().ocsp.check().map_err(|message| Error::Config {
            path: ca.home().config(),
            message,
        })?;
        ca.store_mut().migrate("ocsp", ostore::MIGRATIONS)?;
        let (responder_key, responder_ref) = open_responder_key(ca.config(), ca.home(), true)?;
        let engine = Engine::empty(ca.config().ocsp.clone(), ca.clock().clone());
        let mut m = Maintainer {
            ca,
            engine: engine.clone(),
            actor: actor.to_string(),
            responder_key,
            responder_ref,
            ca_signers: HashMap::new(),
            data_version: -1,
            last_sweep: 0,
        };
        m.open_ca_signers();
        m.ensure_responder_certs()?;
        m.reload(true)?;
        Ok((engine, m))
    }

    /// The engine this maintainer keeps.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn open_ca_signers(&mut self) {
        let mut health = Vec::new();
        let authorities = self.ca.authorities().unwrap_or_default();
        for a in authorities
            .iter()
            .filter(|a| a.role == AuthorityRole::Issuing)
        {
            match self.ca.signer(a) {
                Ok(s) => {
                    let h = s.health();
                    health.push(HealthCheck {
                        name: format!("ca_key/{}", a.name),
                        ok: h.ok,
                        detail: h.detail,
                    });
                    self.ca_signers.insert(a.id, s);
                }
                Err(e) => {
                    tracing::warn!(authority = %a.name, error = %e, "CA key not available: no new responder certificates or CRLs for it");
                    health.push(HealthCheck {
                        name: format!("ca_key/{}", a.name),
                        // A previous CA whose key is retired is expected; the active one is not.
                        ok: !a.active,
                        detail: e.to_string(),
                    });
                }
            }
        }
        if let Ok(mut h) = self.engine.shared.health.write() {
            *h = health;
        }
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
            let current = ostore::latest_responder_cert(self.ca.store().conn(), a.id)?;
            let usable = current.as_ref().is_some_and(|c| {
                c.key_ref == self.responder_ref
                    && certifies(&c.certificate, self.responder_key.as_ref())
                    && c.not_after - now > i64::from(policy.responder_renew_days) * 86_400
            });
            let row = if usable {
                current
            } else if let Some(ca_signer) = self.ca_signers.get(&a.id) {
                renewed = true;
                Some(issue_responder_cert(
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
        if let Ok(mut g) = self.engine.shared.issuers.write() {
            *g = Arc::new(issuers);
        }
        Ok(renewed)
    }

    /// Checks the store for changes made by anyone (cheap when nothing
    /// changed) and does the periodic work that is due. Call about once a second.
    pub fn tick(&mut self) -> Result<(), Error> {
        let now = self.ca.clock().now();
        let version = ostore::data_version(self.ca.store().conn())?;
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
        self.data_version = ostore::data_version(self.ca.store().conn())?;
        let statuses = ostore::issued_statuses(self.ca.store().conn())?;
        let issuers = self
            .engine
            .shared
            .issuers
            .read()
            .map(|g| Arc::clone(&g))
            .map_err(|_| Error::encoding("engine", "lock poisoned"))?;
        let policy = self.ca.config().ocsp.clone();
        let validity = i64::from(policy.response_validity_hours) * 3600;
        let refresh = i64::from(policy.refresh_hours) * 3600;

        // What the store already holds, on first load.
        let mut stored: HashMap<(i64, HashAlg, String), ResponseRow> = HashMap::new();
        let first = self.last_sweep == 0;
        if first {
            for r in ostore::all_responses(self.ca.store().conn())? {
                stored.insert((r.authority_id, r.hash, r.serial.clone()), r);
            }
        }
        let mut changed_crl: Vec<i64> = Vec::new();
        let mut new_rows = Vec::new();
        let mut new_map: Responses = HashMap::new();
        {
            let old_map = self
                .engine
                .shared
                .responses
                .read()
                .map_err(|_| Error::encoding("engine", "lock poisoned"))?;
            let old_status = self
                .engine
                .shared
                .statuses
                .read()
                .map_err(|_| Error::encoding("engine", "lock poisoned"))?;
            for issuer in issuers.iter() {
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
                                    .insert(serial.clone(), Arc::clone(c));
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
                                let c =
                                    Cached::new(r.der, r.this_update, r.next_update, known.status);
                                new_map
                                    .entry((id, alg))
                                    .or_default()
                                    .insert(serial.clone(), Arc::new(c));
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
                            der: der.clone(),
                        });
                        let c = Cached::new(der, now, now + validity, known.status);
                        new_map
                            .entry((id, alg))
                            .or_default()
                            .insert(serial.clone(), Arc::new(c));
                    }
                }
            }
        }
        // Publish to the handlers before touching the disk: a revocation must
        // be visible as soon as its response is signed.
        if let Ok(mut s) = self.engine.shared.statuses.write() {
            *s = statuses;
        }
        if let Ok(mut r) = self.engine.shared.responses.write() {
            *r = new_map;
        }
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
            .engine
            .shared
            .statuses
            .read()
            .map(|s| {
                s.iter()
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
                    .collect()
            })
            .unwrap_or_default();
        self.refresh_crls(&changed_crl, &newest_revocation)?;
        // Our own writes bump nothing for this connection, but be sure.
        self.data_version = ostore::data_version(self.ca.store().conn())?;
        Ok(())
    }

    /// Regenerates the CRL of each authority in `revoked` and of any whose
    /// CRL is missing or near its nextUpdate; republishes CRLs and CA certificates.
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
            let latest = crls::latest(self.ca.store().conn(), a.id)?;
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
        let published = published_from_store(self.ca.store().conn(), &authorities)?;
        if let Ok(mut p) = self.engine.shared.published.write() {
            *p = published;
        }
        Ok(())
    }
}

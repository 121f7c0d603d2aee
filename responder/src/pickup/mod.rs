//! The office contact's certificate pickup (`GET /pickup`, `POST /pickup`),
//! in the public role: keyless, like the rest of this crate.
//!
//! A POST checks the form (the PKCS#12 password rule first, so a typo
//! there costs no try), verifies the pickup code against its Argon2id hash,
//! generates the key pair here, and records a request with the public key
//! (`kxca_ca::enrolment::pickup::claim`, one IMMEDIATE transaction). The
//! private role (`kxca daemon`) signs it; this side polls the store for the
//! certificate for at most `[request] wait_seconds` of
//! `policies/pickup.toml`, then packages key, certificate and chain as
//! PKCS#12 with the contact's password. The key pair exists only in this
//! request's memory and is wiped when the answer is built. If the daemon
//! does not answer in time the request is abandoned (only if still
//! pending) and the contact is told to try again: the code still works.

mod form;
mod page;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use kxca_ca::enrolment::pickup::{self, Claim, Refusal, RequestId, RequestStatus};
use kxca_ca::enrolment::PickupPolicy;
use kxca_ca::{Clock, Error, Home, Pkcs12Profile, Profiles, Store};
use kxca_hsm::EphemeralKey;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use form::Form;
pub(crate) use page::Notice;

/// The actor of the public role's audit events.
const ACTOR: &str = "kxca-serve";

/// How often the store is read while waiting for the daemon.
const POLL: Duration = Duration::from_millis(50);

/// How long a pickup waits for a CPU slot (key generation, Argon2id,
/// PKCS#12) before it is told the service is busy.
const SLOT_WAIT: Duration = Duration::from_secs(10);

/// The pickup service: its own store connection (the publisher keeps the
/// other), the policy and profiles, and a bound on concurrent CPU work.
pub struct Pickup {
    store: Mutex<Store>,
    policy: PickupPolicy,
    profiles: Profiles,
    clock: Clock,
    /// Key generation, Argon2id and PKCS#12 packaging are CPU-bound: at
    /// most this many run at once, on the blocking pool.
    slots: Semaphore,
}

impl std::fmt::Debug for Pickup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pickup").finish_non_exhaustive()
    }
}

/// What the HTTP layer sends back.
pub(crate) enum Outcome {
    /// The PKCS#12, for `<certificate id>.p12`.
    Pkcs12 {
        certificate_id: String,
        der: Zeroizing<Vec<u8>>,
        serial: String,
    },
    /// The page with a notice.
    Page {
        status: StatusCode,
        notice: Notice,
        certificate_id: String,
        legacy: bool,
    },
}

impl Outcome {
    fn page(status: StatusCode, notice: Notice, form: &Form) -> Outcome {
        Outcome::Page {
            status,
            notice,
            certificate_id: form.certificate_id.clone(),
            legacy: form.legacy,
        }
    }

    /// The status code.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Outcome::Pkcs12 { .. } => StatusCode::OK,
            Outcome::Page { status, .. } => *status,
        }
    }

    /// A word for the access log (never a secret).
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Outcome::Pkcs12 { .. } => "issued",
            Outcome::Page { notice, .. } => match notice {
                Notice::None => "form",
                Notice::Missing(_) => "missing_field",
                Notice::BadCertificateId => "bad_certificate_id",
                Notice::BadFormat => "bad_format",
                Notice::PasswordRule => "password_rule",
                Notice::PasswordMismatch => "password_mismatch",
                Notice::WrongCode { .. } => "wrong_code",
                Notice::Locked => "locked",
                Notice::Expired => "expired",
                Notice::Used => "used",
                Notice::InProgress => "in_progress",
                Notice::NoCode => "no_code",
                Notice::Unknown => "unknown",
                Notice::Cancelled => "cancelled",
                Notice::TryLater => "daemon_timeout",
                Notice::Failed => "failed",
                Notice::Busy => "busy",
            },
        }
    }

    /// The certificate id the form named (not a secret: it is in the certificate).
    pub(crate) fn certificate_id(&self) -> &str {
        match self {
            Outcome::Pkcs12 { certificate_id, .. } | Outcome::Page { certificate_id, .. } => {
                certificate_id
            }
        }
    }
}

/// The form page, blank.
pub(crate) fn form_page() -> String {
    page::render(Notice::None, "", false)
}

/// The page of a refused or failed pickup.
pub(crate) fn render(notice: Notice, certificate_id: &str, legacy: bool) -> String {
    page::render(notice, certificate_id, legacy)
}

fn refusal_notice(r: Refusal) -> (StatusCode, Notice) {
    match r {
        Refusal::Unknown => (StatusCode::NOT_FOUND, Notice::Unknown),
        Refusal::NoCode => (StatusCode::CONFLICT, Notice::NoCode),
        Refusal::Locked => (StatusCode::LOCKED, Notice::Locked),
        Refusal::Expired => (StatusCode::GONE, Notice::Expired),
        Refusal::InProgress => (StatusCode::CONFLICT, Notice::InProgress),
        Refusal::Used => (StatusCode::CONFLICT, Notice::Used),
    }
}

/// What a successful claim hands to the waiting half.
struct Claimed {
    request: RequestId,
    key: EphemeralKey,
    iterations: u32,
}

impl Pickup {
    /// Opens the pickup's own store connection and reads
    /// `policies/pickup.toml` and the profiles. Touches no key.
    pub fn start(home: &Home, clock: Clock) -> Result<Pickup, Error> {
        let policy = PickupPolicy::load(&home.policies())?;
        let profiles = Profiles::load(&home.policies())?;
        let store = Store::open(&home.database(), false)?;
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Ok(Pickup {
            store: Mutex::new(store),
            policy,
            profiles,
            clock,
            slots: Semaphore::new(cpus.max(1) * 2),
        })
    }

    fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> Result<T, Error>) -> Result<T, Error> {
        // A panic in another request while it held the store leaves the
        // connection itself intact (SQLite rolled back its transaction).
        let mut guard = self.store.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// Answers one `POST /pickup` body.
    pub(crate) async fn post(self: &Arc<Self>, body: Bytes) -> Outcome {
        let form = Form::parse(&body);
        drop(body);
        let mut form = match form {
            Ok(f) => f,
            Err((notice, partial)) => {
                return Outcome::page(StatusCode::BAD_REQUEST, notice, &partial);
            }
        };
        let password = match form.password.take() {
            Some(p) => p,
            None => {
                return Outcome::page(StatusCode::BAD_REQUEST, Notice::PasswordRule, &form);
            }
        };
        let Ok(permit) = tokio::time::timeout(SLOT_WAIT, self.slots.acquire()).await else {
            return Outcome::page(StatusCode::SERVICE_UNAVAILABLE, Notice::Busy, &form);
        };
        let this = Arc::clone(self);
        let id = form.certificate_id.clone();
        let code = std::mem::take(&mut form.code);
        let claimed = tokio::task::spawn_blocking(move || this.claim(&id, &code)).await;
        drop(permit);
        let claimed = match claimed {
            Ok(Ok(c)) => c,
            Ok(Err((status, notice))) => return Outcome::page(status, notice, &form),
            Err(e) => {
                tracing::error!(error = %e, "pickup claim task failed");
                return Outcome::page(StatusCode::INTERNAL_SERVER_ERROR, Notice::Failed, &form);
            }
        };
        let (certificate, chain, serial) = match self.wait(claimed.request).await {
            Ok(signed) => signed,
            Err((status, notice)) => return Outcome::page(status, notice, &form),
        };
        let Ok(permit) = tokio::time::timeout(SLOT_WAIT, self.slots.acquire()).await else {
            // Signed but not delivered: the same as a lost download; the
            // contact asks for a reset. Rare enough (the slot was ours a
            // moment ago) not to hold the slot across the wait instead.
            return Outcome::page(StatusCode::SERVICE_UNAVAILABLE, Notice::Failed, &form);
        };
        let profile = if form.legacy {
            Pkcs12Profile::Legacy
        } else {
            Pkcs12Profile::Modern
        };
        let name = form.certificate_id.clone();
        let packaged = tokio::task::spawn_blocking(move || {
            let mut all: Vec<&[u8]> = vec![&certificate];
            all.extend(chain.iter().map(Vec::as_slice));
            let p12 = kxca_ca::package_pkcs12(
                claimed.key.pkcs8_der(),
                &all,
                &name,
                &password,
                profile,
                claimed.iterations,
            );
            // The private key is wiped here (EphemeralKey zeroizes on
            // drop), whether or not packaging worked.
            drop(claimed);
            p12
        })
        .await;
        drop(permit);
        match packaged {
            Ok(Ok(der)) => Outcome::Pkcs12 {
                certificate_id: form.certificate_id.clone(),
                der,
                serial,
            },
            Ok(Err(e)) => {
                tracing::error!(error = %e, certificate_id = %form.certificate_id, "pickup: PKCS#12 packaging failed after signing");
                Outcome::page(StatusCode::INTERNAL_SERVER_ERROR, Notice::Failed, &form)
            }
            Err(e) => {
                tracing::error!(error = %e, "pickup packaging task failed");
                Outcome::page(StatusCode::INTERNAL_SERVER_ERROR, Notice::Failed, &form)
            }
        }
    }

    /// Check, verify, generate, claim (blocking: Argon2id and key generation).
    fn claim(&self, certificate_id: &str, code: &str) -> Result<Claimed, (StatusCode, Notice)> {
        let internal = |e: Error| {
            tracing::error!(error = %e, "pickup: store error");
            (StatusCode::INTERNAL_SERVER_ERROR, Notice::Failed)
        };
        // A re-mint between verifying and claiming is retried; more than a
        // few in a row is someone minting in a loop.
        for _ in 0..3 {
            let now = self.clock.now();
            let candidate = match self
                .with_store(|s| s.read(|c| pickup::check(c, certificate_id, now)))
                .map_err(internal)?
            {
                Ok(c) => c,
                Err(r) => return Err(refusal_notice(r)),
            };
            let ok = candidate.verify(code);
            let profile = self.profiles.get(&candidate.profile).map_err(internal)?;
            let algorithm = candidate.key_algorithm.unwrap_or(profile.default_key);
            let key = if ok {
                Some(EphemeralKey::generate(algorithm).map_err(|e| internal(e.into()))?)
            } else {
                None
            };
            let spki = key
                .as_ref()
                .map(EphemeralKey::public_key_der)
                .unwrap_or(&[]);
            let now = self.clock.now();
            let decided = self
                .with_store(|s| {
                    s.write(|tx| {
                        pickup::claim(
                            tx,
                            &candidate,
                            ok,
                            spki,
                            algorithm,
                            &self.policy,
                            ACTOR,
                            now,
                        )
                    })
                })
                .map_err(internal)?;
            match (decided, key) {
                (Claim::Claimed(request), Some(key)) => {
                    return Ok(Claimed {
                        request,
                        key,
                        iterations: profile.pkcs12_iterations,
                    })
                }
                (Claim::Claimed(_), None) => {
                    // claim() records a request only for a right code.
                    return Err((StatusCode::INTERNAL_SERVER_ERROR, Notice::Failed));
                }
                (Claim::Wrong { tries_left }, _) => {
                    return Err((StatusCode::FORBIDDEN, Notice::WrongCode { tries_left }))
                }
                (Claim::Locked, _) => return Err((StatusCode::LOCKED, Notice::Locked)),
                (Claim::Refused(r), _) => return Err(refusal_notice(r)),
                (Claim::Changed, _) => continue,
            }
        }
        Err((StatusCode::SERVICE_UNAVAILABLE, Notice::Busy))
    }

    /// Waits for the daemon's signature, bounded by the policy; gives the
    /// request up (and the code back) when the time is over.
    async fn wait(
        self: &Arc<Self>,
        request: RequestId,
    ) -> Result<(Vec<u8>, Vec<Vec<u8>>, String), (StatusCode, Notice)> {
        let deadline = Instant::now() + Duration::from_secs(u64::from(self.policy.wait_seconds));
        let mut gave_up = false;
        loop {
            let this = Arc::clone(self);
            let status = tokio::task::spawn_blocking(move || {
                this.with_store(|s| s.read(|c| pickup::request_status(c, request)))
            })
            .await;
            let status = match status {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "pickup: reading the request failed");
                    return Err((StatusCode::INTERNAL_SERVER_ERROR, Notice::Failed));
                }
                Err(e) => {
                    tracing::error!(error = %e, "pickup: status task failed");
                    return Err((StatusCode::INTERNAL_SERVER_ERROR, Notice::Failed));
                }
            };
            match status {
                RequestStatus::Signed {
                    serial,
                    certificate,
                    chain,
                } => return Ok((certificate, chain, serial)),
                RequestStatus::Abandoned if gave_up => {
                    return Err((StatusCode::SERVICE_UNAVAILABLE, Notice::TryLater))
                }
                RequestStatus::Abandoned => return Err((StatusCode::CONFLICT, Notice::Cancelled)),
                RequestStatus::Failed(error) => {
                    tracing::warn!(request = request.0, %error, "pickup: the daemon could not sign");
                    return Err((StatusCode::INTERNAL_SERVER_ERROR, Notice::Failed));
                }
                RequestStatus::Pending if Instant::now() >= deadline => {
                    let this = Arc::clone(self);
                    let abandoned = tokio::task::spawn_blocking(move || {
                        let now = this.clock.now();
                        this.with_store(|s| {
                            s.write(|tx| {
                                pickup::abandon(
                                    tx,
                                    request,
                                    "the daemon did not sign in time",
                                    ACTOR,
                                    now,
                                )
                            })
                        })
                    })
                    .await;
                    match abandoned {
                        Ok(Ok(true)) => {
                            tracing::warn!(
                                request = request.0,
                                "pickup: no signature from kxca daemon in time; request abandoned, code usable again"
                            );
                            return Err((StatusCode::SERVICE_UNAVAILABLE, Notice::TryLater));
                        }
                        // Signed (or failed) just now: read it once more.
                        Ok(Ok(false)) => gave_up = true,
                        Ok(Err(e)) => {
                            tracing::error!(error = %e, "pickup: abandoning the request failed");
                            return Err((StatusCode::INTERNAL_SERVER_ERROR, Notice::Failed));
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "pickup: abandon task failed");
                            return Err((StatusCode::INTERNAL_SERVER_ERROR, Notice::Failed));
                        }
                    }
                }
                RequestStatus::Pending => tokio::time::sleep(POLL).await,
            }
        }
    }
}

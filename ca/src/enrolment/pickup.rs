//! The pickup itself, split between the roles.
//!
//! Public role (`kxca serve`, keyless): [`check`] finds the live enrolment
//! of a certificate id, the typed code is verified against its Argon2id
//! hash outside any transaction ([`Candidate::verify`]), then [`claim`]
//! decides in one IMMEDIATE transaction, re-reading the row: a wrong code
//! counts a try and locks at the policy's limit, an expired or locked code
//! issues nothing, and a right one moves the enrolment to `claimed` with a
//! pending request holding the new public key. Two racing claims on one
//! code: the second sees `claimed` and is refused. If the code was
//! re-minted while it was being verified, the claim says [`Claim::Changed`]
//! and the caller checks again. The public role then polls
//! [`request_status`]; if the daemon does not sign in time it calls
//! [`abandon`] (only a pending request is abandoned) and the code works
//! again.
//!
//! Private role (`kxca daemon`): [`sign_pending`] signs each pending
//! request through [`Ca`]'s issuance gate and, in the transaction that
//! records the certificate as issued, marks the request signed, the
//! enrolment issued, and revokes the superseded certificate. A request
//! abandoned meanwhile makes that transaction fail: the certificate is
//! recorded `failed`, never issued.

use kxca_hsm::KeyAlgorithm;
use rusqlite::{params, OptionalExtension};
use serde_json::json;

use super::{code, row, EnrolmentId, PickupPolicy, Stored};
use crate::store::{audit, authorities, certificates, revocations, sql, Snapshot, Tx};
use crate::{AuditAction, Ca, Error, Holder, IssueRequest, RevocationReason};

/// A pickup request's row id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(pub i64);

/// Why a pickup cannot go ahead (each has its own Japanese page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No enrolment for this certificate id (or only cancelled ones).
    Unknown,
    /// Approved, but no pickup password minted yet (mail 2 not sent).
    NoCode,
    /// Too many wrong codes.
    Locked,
    /// The code's lifetime is over.
    Expired,
    /// A pickup with this code is already with the daemon.
    InProgress,
    /// The certificate was already picked up.
    Used,
}

impl Refusal {
    /// A word for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Unknown => "unknown",
            Refusal::NoCode => "no_code",
            Refusal::Locked => "locked",
            Refusal::Expired => "expired",
            Refusal::InProgress => "in_progress",
            Refusal::Used => "used",
        }
    }
}

/// The live enrolment a typed code is checked against.
pub struct Candidate {
    /// The enrolment the code is checked against.
    pub enrolment: EnrolmentId,
    /// Its certificate id.
    pub certificate_id: String,
    /// Its certificate profile (the public role reads the default key
    /// and PKCS#12 iterations there).
    pub profile: String,
    /// `None`: the profile's default.
    pub key_algorithm: Option<KeyAlgorithm>,
    code_hash: String,
}

impl std::fmt::Debug for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Candidate")
            .field("enrolment", &self.enrolment)
            .field("certificate_id", &self.certificate_id)
            .finish_non_exhaustive()
    }
}

impl Candidate {
    /// Whether `typed` is this enrolment's code (Argon2id, constant-time
    /// comparison). Call outside a transaction: it costs the hash's time.
    pub fn verify(&self, typed: &str) -> bool {
        code::verify(typed, &self.code_hash)
    }
}

fn refusal_of(row: &super::Row_, now: i64) -> Option<Refusal> {
    match row.state {
        Stored::Claimed => Some(Refusal::InProgress),
        Stored::Issued => Some(Refusal::Used),
        Stored::Cancelled => Some(Refusal::Unknown),
        Stored::Open if row.locked_at.is_some() => Some(Refusal::Locked),
        Stored::Open if row.code_hash.is_none() => Some(Refusal::NoCode),
        Stored::Open if row.code_expires_at.is_some_and(|t| now >= t) => Some(Refusal::Expired),
        Stored::Open => None,
    }
}

/// The live enrolment of `certificate_id`, or why it cannot be picked up.
pub fn check(
    conn: &Snapshot<'_>,
    certificate_id: &str,
    now: i64,
) -> Result<Result<Candidate, Refusal>, Error> {
    let row = match super::live(conn, certificate_id)? {
        Some(r) => r,
        None => {
            // Not live: picked up already, or never (or only cancelled).
            let issued: Option<i64> = conn
                .query_row(
                    "SELECT id FROM enrolments WHERE certificate_id = ?1 AND state = 'issued' LIMIT 1",
                    [certificate_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql)?;
            return Ok(Err(if issued.is_some() {
                Refusal::Used
            } else {
                Refusal::Unknown
            }));
        }
    };
    if let Some(r) = refusal_of(&row, now) {
        return Ok(Err(r));
    }
    let key_algorithm = row
        .key_algorithm
        .as_deref()
        .map(str::parse::<KeyAlgorithm>)
        .transpose()
        .map_err(|e| Error::Enrolment {
            id: row.id,
            message: format!("enrolments.key_algorithm: {e}"),
        })?;
    Ok(Ok(Candidate {
        enrolment: EnrolmentId(row.id),
        certificate_id: row.certificate_id,
        profile: row.profile,
        key_algorithm,
        code_hash: row.code_hash.unwrap_or_default(),
    }))
}

/// What [`claim`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The code was right: the request is with the daemon.
    Claimed(RequestId),
    /// The code was wrong; this many tries are left.
    Wrong {
        /// Wrong codes still allowed before the pickup locks.
        tries_left: u32,
    },
    /// The code was wrong and that was the last try, or it was locked already.
    Locked,
    /// Refused whatever the code (expired, used, in progress, ...).
    Refused(Refusal),
    /// The code was re-minted (or the enrolment replaced) while it was
    /// being verified: check and verify again.
    Changed,
}

/// Decides a pickup in one transaction (see the module doc). `code_ok` is
/// [`Candidate::verify`]'s answer for `candidate`; `public_key` is the DER
/// SPKI of the key pair the public role generated for this pickup.
#[allow(clippy::too_many_arguments)]
pub fn claim(
    tx: &Tx<'_>,
    candidate: &Candidate,
    code_ok: bool,
    public_key: &[u8],
    key_algorithm: KeyAlgorithm,
    policy: &PickupPolicy,
    actor: &str,
    now: i64,
) -> Result<Claim, Error> {
    let Some(row) = row(tx, candidate.enrolment.0)? else {
        return Ok(Claim::Changed);
    };
    if row.code_hash.as_deref() != Some(candidate.code_hash.as_str()) && row.state == Stored::Open {
        return Ok(Claim::Changed);
    }
    if let Some(r) = refusal_of(&row, now) {
        return Ok(match r {
            Refusal::Locked => Claim::Locked,
            Refusal::Unknown => Claim::Changed,
            r => Claim::Refused(r),
        });
    }
    if !code_ok {
        let tries = row.tries + 1;
        let locked = tries >= policy.max_tries;
        tx.execute(
            "UPDATE enrolments SET tries = ?2, locked_at = ?3 WHERE id = ?1",
            params![row.id, tries, if locked { Some(now) } else { None }],
        )
        .map_err(sql)?;
        audit::append(
            tx,
            now,
            actor,
            if locked {
                AuditAction::PickupLocked
            } else {
                AuditAction::PickupWrongCode
            },
            None,
            json!({"enrolment": row.id, "certificate_id": row.certificate_id, "tries": tries, "max_tries": policy.max_tries}),
        )?;
        return Ok(if locked {
            Claim::Locked
        } else {
            Claim::Wrong {
                tries_left: policy.max_tries - tries,
            }
        });
    }
    tx.execute(
        "INSERT INTO pickup_requests (enrolment_id, public_key, key_algorithm, state, created_at)
         VALUES (?1, ?2, ?3, 'pending', ?4)",
        params![row.id, public_key, key_algorithm.name(), now],
    )
    .map_err(sql)?;
    let request = tx.last_insert_rowid();
    tx.execute(
        "UPDATE enrolments SET state = 'claimed' WHERE id = ?1",
        [row.id],
    )
    .map_err(sql)?;
    audit::append(
        tx,
        now,
        actor,
        AuditAction::PickupRequest,
        None,
        json!({"enrolment": row.id, "request": request, "certificate_id": row.certificate_id, "key": key_algorithm.name()}),
    )?;
    Ok(Claim::Claimed(RequestId(request)))
}

/// Where a request stands, as the public role waiting for it sees it.
#[derive(Debug, Clone)]
pub enum RequestStatus {
    /// Waiting for the daemon.
    Pending,
    /// Signed: the certificate and its chain (issuing CA, then root).
    Signed {
        /// The serial, in hex.
        serial: String,
        /// The certificate, DER.
        certificate: Vec<u8>,
        /// Issuing CA, then root, DER.
        chain: Vec<Vec<u8>>,
    },
    /// Given up on (by the public role, the daemon's age limit, or a newer
    /// enrolment); never signed.
    Abandoned,
    /// The daemon could not sign it; the error is for the logs and admins.
    Failed(String),
}

/// The state of a request, with the certificate and chain once signed.
pub fn request_status(conn: &Snapshot<'_>, id: RequestId) -> Result<RequestStatus, Error> {
    let (state, serial, error): (String, Option<String>, Option<String>) = conn
        .query_row(
            "SELECT state, serial, error FROM pickup_requests WHERE id = ?1",
            [id.0],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(sql)?;
    Ok(match (state.as_str(), serial) {
        ("pending", _) => RequestStatus::Pending,
        ("abandoned", _) => RequestStatus::Abandoned,
        ("failed", _) => RequestStatus::Failed(error.unwrap_or_default()),
        ("signed", Some(serial)) => {
            let record =
                certificates::by_serial(conn, &serial)?.ok_or_else(|| Error::UnknownSerial {
                    serial: serial.clone(),
                })?;
            let certificate = record.der.ok_or_else(|| Error::NotIssued {
                serial: serial.clone(),
                state: record.state.as_str().to_string(),
            })?;
            let all = authorities::all(conn)?;
            let mut chain = Vec::new();
            let mut next = Some(record.authority_id);
            // Issuing CA, then its parents up to the root (two tiers today;
            // the bound keeps a corrupt parent loop from spinning).
            while let Some(id) = next.filter(|_| chain.len() < 8) {
                let a = all
                    .iter()
                    .find(|a| a.id == id)
                    .ok_or_else(|| Error::NoAuthority {
                        role: format!("authority {id} (issuer of {serial})"),
                    })?;
                next = a.parent_id;
                chain.push(a.certificate.clone());
            }
            RequestStatus::Signed {
                serial,
                certificate,
                chain,
            }
        }
        (other, _) => {
            return Err(Error::Database {
                path: Default::default(),
                message: format!("pickup_requests.state: unknown value '{other}'"),
            })
        }
    })
}

/// Gives a pending request up (compare-and-set: a request the daemon
/// signed meanwhile stays signed and false is returned) and gives the
/// enrolment its code back.
pub fn abandon(
    tx: &Tx<'_>,
    id: RequestId,
    why: &str,
    actor: &str,
    now: i64,
) -> Result<bool, Error> {
    let enrolment: Option<i64> = tx
        .query_row(
            "SELECT enrolment_id FROM pickup_requests WHERE id = ?1 AND state = 'pending'",
            [id.0],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql)?;
    let Some(enrolment) = enrolment else {
        return Ok(false);
    };
    tx.execute(
        "UPDATE pickup_requests SET state = 'abandoned', done_at = ?2, error = ?3 WHERE id = ?1",
        params![id.0, now, why],
    )
    .map_err(sql)?;
    tx.execute(
        "UPDATE enrolments SET state = 'open' WHERE id = ?1 AND state = 'claimed'",
        [enrolment],
    )
    .map_err(sql)?;
    audit::append(
        tx,
        now,
        actor,
        AuditAction::PickupAbandoned,
        None,
        json!({"enrolment": enrolment, "request": id.0, "reason": why}),
    )?;
    Ok(true)
}

/// A pending request as the daemon reads it.
struct Pending {
    id: i64,
    enrolment: i64,
    certificate_id: String,
    profile: String,
    holder: Holder,
    supersedes: Option<String>,
    public_key: Vec<u8>,
    key_algorithm: String,
    created_at: i64,
}

fn pending(conn: &Snapshot<'_>) -> Result<Vec<Pending>, Error> {
    let mut stmt = conn
        .prepare(
            "SELECT r.id, e.id, e.certificate_id, e.profile, e.holder, e.supersedes, r.public_key,
                    r.key_algorithm, r.created_at
             FROM pickup_requests r JOIN enrolments e ON e.id = r.enrolment_id
             WHERE r.state = 'pending' ORDER BY r.id",
        )
        .map_err(sql)?;
    let rows = stmt
        .query_map([], |r| {
            let holder: String = r.get(4)?;
            Ok(Pending {
                id: r.get(0)?,
                enrolment: r.get(1)?,
                certificate_id: r.get(2)?,
                profile: r.get(3)?,
                holder: serde_json::from_str(&holder).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        4,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })?,
                supersedes: r.get(5)?,
                public_key: r.get(6)?,
                key_algorithm: r.get(7)?,
                created_at: r.get(8)?,
            })
        })
        .map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}

/// Whether a pending request is waiting (cheap: one indexed lookup), so
/// the daemon can poll often.
pub fn any_pending(conn: &Snapshot<'_>) -> Result<bool, Error> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM pickup_requests WHERE state = 'pending')",
        [],
        |r| r.get(0),
    )
    .map_err(sql)
}

/// In the issuing transaction: the request signed, the enrolment issued,
/// the superseded certificate revoked. Fails (and so the certificate is
/// never issued) if the request is no longer pending.
fn complete(tx: &Tx<'_>, p: &Pending, serial: &str, actor: &str, now: i64) -> Result<(), Error> {
    let signed = tx
        .execute(
            "UPDATE pickup_requests SET state = 'signed', serial = ?2, done_at = ?3
             WHERE id = ?1 AND state = 'pending'",
            params![p.id, serial, now],
        )
        .map_err(sql)?;
    let issued = tx
        .execute(
            "UPDATE enrolments SET state = 'issued', serial = ?2, closed_at = ?3, code_hash = NULL, code_expires_at = NULL
             WHERE id = ?1 AND state = 'claimed'",
            params![p.enrolment, serial, now],
        )
        .map_err(sql)?;
    if signed != 1 || issued != 1 {
        return Err(Error::Enrolment {
            id: p.enrolment,
            message: format!(
                "pickup request {} was abandoned or cancelled before it was signed; not issued",
                p.id
            ),
        });
    }
    let mut revoked = None;
    if let Some(old) = &p.supersedes {
        match certificates::by_serial(tx, old)? {
            Some(rec)
                if rec.state == certificates::CertificateState::Issued
                    && rec.revocation.is_none() =>
            {
                revocations::insert(tx, rec.id, now, RevocationReason::Superseded, actor)?;
                audit::append(
                    tx,
                    now,
                    actor,
                    AuditAction::CertificateRevoke,
                    Some(old),
                    json!({"reason": RevocationReason::Superseded.name(), "certificate_id": rec.certificate_id, "superseded_by": serial}),
                )?;
                revoked = Some(old.clone());
            }
            // Already revoked (an admin was quicker) or never issued:
            // nothing left to supersede.
            _ => {}
        }
    }
    audit::append(
        tx,
        now,
        actor,
        AuditAction::PickupIssued,
        Some(serial),
        json!({"enrolment": p.enrolment, "request": p.id, "certificate_id": p.certificate_id, "revoked": revoked}),
    )
}

fn fail(tx: &Tx<'_>, p: &Pending, error: &str, actor: &str, now: i64) -> Result<(), Error> {
    let n = tx
        .execute(
            "UPDATE pickup_requests SET state = 'failed', done_at = ?2, error = ?3 WHERE id = ?1 AND state = 'pending'",
            params![p.id, now, error],
        )
        .map_err(sql)?;
    if n == 0 {
        return Ok(());
    }
    // The code works again: a contact whose pickup failed on our side
    // (a token away, a profile being edited) can try later.
    tx.execute(
        "UPDATE enrolments SET state = 'open' WHERE id = ?1 AND state = 'claimed'",
        [p.enrolment],
    )
    .map_err(sql)?;
    audit::append(
        tx,
        now,
        actor,
        AuditAction::PickupFailed,
        None,
        json!({"enrolment": p.enrolment, "request": p.id, "certificate_id": p.certificate_id, "error": error}),
    )
}

/// Signs every pending pickup request (the private role: `kxca daemon`).
/// A request older than the policy's `[request] wait_seconds` is abandoned
/// instead: the public role has given up on it (or died), so nobody would
/// receive the certificate. Returns how many were signed.
pub fn sign_pending(ca: &mut Ca, policy: &PickupPolicy, actor: &str) -> Result<usize, Error> {
    let requests = ca.store().read(pending)?;
    let mut signed = 0;
    for p in requests {
        let now = ca.clock().now();
        if now - p.created_at >= i64::from(policy.wait_seconds) {
            ca.store_mut()
                .write(|tx| abandon(tx, RequestId(p.id), "not signed in time", actor, now))?;
            tracing::warn!(request = p.id, certificate_id = %p.certificate_id, "pickup request too old to sign; abandoned");
            continue;
        }
        let result = p
            .key_algorithm
            .parse::<KeyAlgorithm>()
            .map_err(Error::from)
            .and_then(|algorithm| {
                let request = IssueRequest {
                    profile: p.profile.clone(),
                    holder: p.holder.clone(),
                    key_algorithm: Some(algorithm),
                    pkcs12: None,
                };
                ca.issue_for_public_key(
                    &request,
                    &p.public_key,
                    &p.certificate_id,
                    actor,
                    &mut |tx, serial| complete(tx, &p, serial, actor, now),
                )
            });
        match result {
            Ok(serial) => {
                signed += 1;
                tracing::info!(request = p.id, certificate_id = %p.certificate_id, %serial, "pickup signed");
            }
            Err(e) => {
                let message = e.to_string();
                tracing::warn!(request = p.id, certificate_id = %p.certificate_id, error = %message, "pickup not signed");
                let now = ca.clock().now();
                ca.store_mut()
                    .write(|tx| fail(tx, &p, &message, actor, now))?;
            }
        }
    }
    Ok(signed)
}

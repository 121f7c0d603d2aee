//! Enrolments: the one-time right of an office contact to pick up one
//! certificate (issue 12).
//!
//! Approval (the `accounts` side) calls [`open`] for a holder and, when
//! mail 2 is actually sent, [`mint_code`] in the same transaction as the
//! outbox row: the pickup password exists in clear only in that mail. The
//! contact types it on the public role's pickup page (`kxca serve`,
//! `POST /pickup`), which checks it ([`pickup::check`]), generates the key
//! pair, and records a request with the public key ([`pickup::claim`]);
//! the daemon signs it ([`pickup::sign_pending`]), revoking the certificate
//! the enrolment supersedes in the same transaction.
//!
//! What admins see ([`list`], [`get`]) is derived from the stored row: a
//! code is `locked` after the policy's wrong tries, `expired` after its
//! lifetime, and can be [`renew`]ed, after which a new code is minted.
//!
//! The values (code lifetime, tries, Argon2id cost, the public role's
//! wait) are read from `policies/pickup.toml` ([`PickupPolicy`]).

mod code;
pub mod pickup;
mod policy;
#[cfg(test)]
mod tests;

use kxca_hsm::KeyAlgorithm;
use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;
use serde_json::json;
use zeroize::Zeroizing;

use crate::store::{audit, sql, Snapshot, Tx};
use crate::{AuditAction, Error, Holder, Serial};

pub use code::verify as verify_code;
pub use policy::{PickupPolicy, SHIPPED_PICKUP};

/// An enrolment's row id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct EnrolmentId(pub i64);

impl std::fmt::Display for EnrolmentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What [`open`] records: who may pick up which certificate.
#[derive(Debug, Clone)]
pub struct NewEnrolment<'a> {
    /// The certificate id the profile's template gives this holder (the
    /// daemon checks it again before signing).
    pub certificate_id: &'a str,
    /// The office contact.
    pub holder: &'a Holder,
    /// The certificate profile (`policies/profiles/<name>.toml`).
    pub profile: &'a str,
    /// A certificate the new one replaces (a reset): revoked with reason
    /// superseded in the transaction that records the new one as issued.
    pub supersedes: Option<Serial>,
    /// `None`: the profile's default key.
    pub key_algorithm: Option<KeyAlgorithm>,
}

/// What an admin sees of an enrolment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EnrolmentState {
    /// Waiting for the contact (no code yet, or a valid code).
    Waiting,
    /// Too many wrong codes: the contact calls the union, an admin renews.
    Locked,
    /// The code's lifetime passed: nothing is issued; an admin renews.
    Expired,
    /// The code was accepted and the key is with the daemon for signing.
    Used,
    /// Replaced by a newer enrolment for the same certificate id, or withdrawn.
    Cancelled,
    /// The certificate was issued (see `serial`).
    Issued,
}

impl EnrolmentState {
    /// The name admins see (and `--json` writes).
    pub fn as_str(self) -> &'static str {
        match self {
            EnrolmentState::Waiting => "waiting",
            EnrolmentState::Locked => "locked",
            EnrolmentState::Expired => "expired",
            EnrolmentState::Used => "used",
            EnrolmentState::Cancelled => "cancelled",
            EnrolmentState::Issued => "issued",
        }
    }
}

impl std::fmt::Display for EnrolmentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EnrolmentState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "waiting" => EnrolmentState::Waiting,
            "locked" => EnrolmentState::Locked,
            "expired" => EnrolmentState::Expired,
            "used" => EnrolmentState::Used,
            "cancelled" => EnrolmentState::Cancelled,
            "issued" => EnrolmentState::Issued,
            other => {
                return Err(Error::field(
                    "state",
                    format!(
                        "unknown enrolment state {other:?} (waiting, locked, expired, used, cancelled, issued)"
                    ),
                ))
            }
        })
    }
}

/// The stored `enrolments.state` (what [`EnrolmentState`] is derived from).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    Open,
    Claimed,
    Issued,
    Cancelled,
}

impl Stored {
    fn parse(s: &str) -> Option<Stored> {
        Some(match s {
            "open" => Stored::Open,
            "claimed" => Stored::Claimed,
            "issued" => Stored::Issued,
            "cancelled" => Stored::Cancelled,
            _ => return None,
        })
    }
}

/// One enrolment as admins see it. Holds no secret: the code's hash never
/// leaves this crate.
#[derive(Debug, Clone, Serialize)]
pub struct Enrolment {
    /// Its id.
    pub id: EnrolmentId,
    /// The certificate id to be picked up.
    pub certificate_id: String,
    /// The certificate profile.
    pub profile: String,
    /// The office contact.
    pub holder: Holder,
    /// `None`: the profile's default.
    pub key_algorithm: Option<String>,
    /// The serial (hex) the new certificate replaces.
    pub supersedes: Option<String>,
    /// What admins see now.
    pub state: EnrolmentState,
    /// Whether a code has been minted (mail 2 sent).
    pub has_code: bool,
    /// When the current code was minted (Unix seconds).
    pub code_minted_at: Option<i64>,
    /// When the current code stops working (Unix seconds).
    pub code_expires_at: Option<i64>,
    /// Wrong codes so far (reset by a new code).
    pub tries: u32,
    /// When it locked (Unix seconds).
    pub locked_at: Option<i64>,
    /// When it was opened (Unix seconds).
    pub opened_at: i64,
    /// Who opened it.
    pub opened_by: String,
    /// When it was issued or cancelled.
    pub closed_at: Option<i64>,
    /// The resulting certificate's serial (hex), once issued.
    pub serial: Option<String>,
    /// The error of the last failed signing, if the last request failed.
    pub last_error: Option<String>,
}

/// Which enrolments [`list`] returns.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this derived state.
    pub state: Option<EnrolmentState>,
    /// Only this certificate id.
    pub certificate_id: Option<String>,
    /// At most this many, newest first (`None`: all).
    pub limit: Option<i64>,
}

/// The stored row behind an [`Enrolment`] (crate-internal: holds the hash).
#[derive(Debug, Clone)]
pub(crate) struct Row_ {
    pub id: i64,
    pub certificate_id: String,
    pub profile: String,
    pub holder: Holder,
    pub key_algorithm: Option<String>,
    pub supersedes: Option<String>,
    pub state: Stored,
    pub code_hash: Option<String>,
    pub code_minted_at: Option<i64>,
    pub code_expires_at: Option<i64>,
    pub tries: u32,
    pub locked_at: Option<i64>,
    pub opened_at: i64,
    pub opened_by: String,
    pub closed_at: Option<i64>,
    pub serial: Option<String>,
}

const SELECT: &str = "SELECT id, certificate_id, profile, holder, key_algorithm, supersedes, state,
        code_hash, code_minted_at, code_expires_at, tries, locked_at, opened_at, opened_by,
        closed_at, serial
    FROM enrolments";

fn unknown_value(index: usize, column: &str, value: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        index,
        rusqlite::types::Type::Text,
        format!("{column}: unknown value '{value}'").into(),
    )
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<Row_> {
    let holder: String = r.get(3)?;
    let state: String = r.get(6)?;
    let tries: i64 = r.get(10)?;
    Ok(Row_ {
        id: r.get(0)?,
        certificate_id: r.get(1)?,
        profile: r.get(2)?,
        holder: serde_json::from_str(&holder).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
        })?,
        key_algorithm: r.get(4)?,
        supersedes: r.get(5)?,
        state: Stored::parse(&state).ok_or_else(|| unknown_value(6, "enrolments.state", &state))?,
        code_hash: r.get(7)?,
        code_minted_at: r.get(8)?,
        code_expires_at: r.get(9)?,
        tries: u32::try_from(tries).map_err(|_| unknown_value(10, "enrolments.tries", tries))?,
        locked_at: r.get(11)?,
        opened_at: r.get(12)?,
        opened_by: r.get(13)?,
        closed_at: r.get(14)?,
        serial: r.get(15)?,
    })
}

impl Row_ {
    /// What an admin sees at `now`.
    pub(crate) fn state_at(&self, now: i64) -> EnrolmentState {
        match self.state {
            Stored::Cancelled => EnrolmentState::Cancelled,
            Stored::Issued => EnrolmentState::Issued,
            Stored::Claimed => EnrolmentState::Used,
            Stored::Open if self.locked_at.is_some() => EnrolmentState::Locked,
            Stored::Open if self.code_expires_at.is_some_and(|t| now >= t) => {
                EnrolmentState::Expired
            }
            Stored::Open => EnrolmentState::Waiting,
        }
    }

    fn view(self, now: i64, last_error: Option<String>) -> Enrolment {
        let state = self.state_at(now);
        Enrolment {
            id: EnrolmentId(self.id),
            certificate_id: self.certificate_id,
            profile: self.profile,
            holder: self.holder,
            key_algorithm: self.key_algorithm,
            supersedes: self.supersedes,
            state,
            has_code: self.code_hash.is_some(),
            code_minted_at: self.code_minted_at,
            code_expires_at: self.code_expires_at,
            tries: self.tries,
            locked_at: self.locked_at,
            opened_at: self.opened_at,
            opened_by: self.opened_by,
            closed_at: self.closed_at,
            serial: self.serial,
            last_error,
        }
    }
}

pub(crate) fn row(conn: &Snapshot<'_>, id: i64) -> Result<Option<Row_>, Error> {
    conn.query_row(&format!("{SELECT} WHERE id = ?1"), [id], from_row)
        .optional()
        .map_err(sql)
}

fn row_required(conn: &Snapshot<'_>, id: EnrolmentId) -> Result<Row_, Error> {
    row(conn, id.0)?.ok_or_else(|| Error::Enrolment {
        id: id.0,
        message: "no such enrolment".to_string(),
    })
}

/// The live (open or claimed) enrolment of a certificate id.
pub(crate) fn live(conn: &Snapshot<'_>, certificate_id: &str) -> Result<Option<Row_>, Error> {
    conn.query_row(
        &format!("{SELECT} WHERE certificate_id = ?1 AND state IN ('open', 'claimed')"),
        [certificate_id],
        from_row,
    )
    .optional()
    .map_err(sql)
}

fn last_error(conn: &Snapshot<'_>, id: i64) -> Result<Option<String>, Error> {
    let last: Option<(String, Option<String>)> = conn
        .query_row(
            "SELECT state, error FROM pickup_requests WHERE enrolment_id = ?1 ORDER BY id DESC LIMIT 1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(sql)?;
    Ok(last.and_then(|(state, error)| if state == "failed" { error } else { None }))
}

/// Records that `holder` may pick up one certificate. A live enrolment for
/// the same certificate id (waiting, locked, expired, or mid-pickup) is
/// cancelled first: its code stops working and a request it had with the
/// daemon is abandoned, never signed. One audit event each, in `tx`.
pub fn open(
    tx: &Tx<'_>,
    new: &NewEnrolment<'_>,
    actor: &str,
    now: i64,
) -> Result<EnrolmentId, Error> {
    if new.certificate_id.is_empty() {
        return Err(Error::field("certificate_id", "is required"));
    }
    if let Some(old) = live(tx, new.certificate_id)? {
        cancel_row(tx, &old, actor, now, "replaced by a newer enrolment")?;
    }
    let holder = serde_json::to_string(new.holder).map_err(|e| Error::encoding("holder", e))?;
    let supersedes = new.supersedes.as_ref().map(Serial::to_hex);
    tx.execute(
        "INSERT INTO enrolments (certificate_id, profile, holder, key_algorithm, supersedes, state, opened_at, opened_by)
         VALUES (?1, ?2, ?3, ?4, ?5, 'open', ?6, ?7)",
        params![
            new.certificate_id,
            new.profile,
            holder,
            new.key_algorithm.map(|a| a.name()),
            supersedes,
            now,
            actor
        ],
    )
    .map_err(sql)?;
    let id = tx.last_insert_rowid();
    audit::append(
        tx,
        now,
        actor,
        AuditAction::EnrolmentOpen,
        supersedes.as_deref(),
        json!({
            "enrolment": id,
            "certificate_id": new.certificate_id,
            "profile": new.profile,
            "email": new.holder.email,
            "key": new.key_algorithm.map(|a| a.name()),
            "supersedes": supersedes,
        }),
    )?;
    Ok(EnrolmentId(id))
}

fn cancel_row(tx: &Tx<'_>, old: &Row_, actor: &str, now: i64, why: &str) -> Result<(), Error> {
    let abandoned = tx
        .execute(
            "UPDATE pickup_requests SET state = 'abandoned', done_at = ?2, error = ?3
             WHERE enrolment_id = ?1 AND state = 'pending'",
            params![old.id, now, why],
        )
        .map_err(sql)?;
    tx.execute(
        "UPDATE enrolments SET state = 'cancelled', closed_at = ?2, code_hash = NULL, code_expires_at = NULL
         WHERE id = ?1",
        params![old.id, now],
    )
    .map_err(sql)?;
    audit::append(
        tx,
        now,
        actor,
        AuditAction::EnrolmentCancel,
        None,
        json!({"enrolment": old.id, "certificate_id": old.certificate_id, "reason": why, "requests_abandoned": abandoned}),
    )
}

/// Withdraws a live enrolment (e.g. the account was revoked before the
/// pickup): its code stops working. Returns false if it was not live.
pub fn cancel(
    tx: &Tx<'_>,
    id: EnrolmentId,
    actor: &str,
    now: i64,
    reason: &str,
) -> Result<bool, Error> {
    let row = row_required(tx, id)?;
    if !matches!(row.state, Stored::Open | Stored::Claimed) {
        return Ok(false);
    }
    cancel_row(tx, &row, actor, now, reason)?;
    Ok(true)
}

/// Mints the one-time pickup password of a waiting enrolment and returns
/// it, for mail 2 only: 20 characters from an unambiguous 23-character
/// alphabet (90 bits, system CSPRNG), grouped `XXXX-XXXX-XXXX-XXXX-XXXX`.
/// The store keeps its Argon2id PHC string and its expiry
/// (`policy`: `[code] lifetime_days`); tries are reset and a previous code
/// stops working. Audited without the code.
///
/// Hashing costs the policy's Argon2id time (about 20–50 ms) inside `tx`,
/// holding the write lock: a caller that can, prepares the code first
/// ([`prepare_code`], no transaction) and stores it ([`store_code`]).
pub fn mint_code(
    tx: &Tx<'_>,
    id: EnrolmentId,
    policy: &PickupPolicy,
    now: i64,
) -> Result<Zeroizing<String>, Error> {
    store_code(tx, id, prepare_code(policy)?, policy, now)
}

/// A pickup code generated and hashed, not stored yet: it works only once
/// [`store_code`] has written its hash. Dropping it wipes the code.
pub struct PreparedCode {
    code: Zeroizing<String>,
    hash: String,
}

impl std::fmt::Debug for PreparedCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreparedCode(..)")
    }
}

/// Generates a code and its Argon2id hash outside any transaction, so the
/// policy's hashing time is not spent holding the store's write lock.
pub fn prepare_code(policy: &PickupPolicy) -> Result<PreparedCode, Error> {
    let code = code::generate()?;
    let hash = code::hash(&code, policy)?;
    Ok(PreparedCode { code, hash })
}

/// Stores a [`prepare_code`]d code for enrolment `id`, checking in `tx`
/// that it is still waiting (a reset may have cancelled it meanwhile), as
/// [`mint_code`] does; returns the code.
pub fn store_code(
    tx: &Tx<'_>,
    id: EnrolmentId,
    prepared: PreparedCode,
    policy: &PickupPolicy,
    now: i64,
) -> Result<Zeroizing<String>, Error> {
    let PreparedCode { code, hash } = prepared;
    let row = row_required(tx, id)?;
    if row.state != Stored::Open {
        return Err(Error::Refused {
            kind: crate::Refusal::PickupNotWaiting,
            field: None,
            message: format!(
                "enrolment {}: is {}; a code can only be minted for a waiting enrolment",
                id.0,
                row.state_at(now)
            ),
        });
    }
    let expires = now + policy.code_lifetime_seconds;
    tx.execute(
        "UPDATE enrolments SET code_hash = ?2, code_minted_at = ?3, code_expires_at = ?4, tries = 0, locked_at = NULL
         WHERE id = ?1",
        params![id.0, hash, now, expires],
    )
    .map_err(sql)?;
    audit::append(
        tx,
        now,
        "kxca",
        AuditAction::EnrolmentCode,
        None,
        json!({"enrolment": id.0, "certificate_id": row.certificate_id, "expires_at": crate::rfc3339(expires), "replaced": row.code_hash.is_some()}),
    )?;
    Ok(code)
}

/// An admin reopens a locked or expired (or waiting) pickup: tries are
/// reset and the old code stops working. Mint a new code afterwards
/// ([`mint_code`], with mail 2). An issued, cancelled or mid-pickup
/// enrolment cannot be renewed.
pub fn renew(tx: &Tx<'_>, id: EnrolmentId, actor: &str, now: i64) -> Result<(), Error> {
    let row = row_required(tx, id)?;
    let was = row.state_at(now);
    if row.state != Stored::Open {
        // Claimed: the daemon is signing its certificate right now.
        let kind = if row.state == Stored::Claimed {
            crate::Refusal::PickupBeingSigned
        } else {
            crate::Refusal::PickupFinished
        };
        return Err(Error::Refused {
            kind,
            field: None,
            message: format!(
                "enrolment {}: is {was}; only a waiting, locked or expired pickup can be renewed (an issued certificate is replaced by a reset)",
                id.0
            ),
        });
    }
    tx.execute(
        "UPDATE enrolments SET code_hash = NULL, code_minted_at = NULL, code_expires_at = NULL, tries = 0, locked_at = NULL
         WHERE id = ?1",
        [id.0],
    )
    .map_err(sql)?;
    audit::append(
        tx,
        now,
        actor,
        AuditAction::EnrolmentRenew,
        None,
        json!({"enrolment": id.0, "certificate_id": row.certificate_id, "was": was.as_str(), "tries": row.tries}),
    )
}

/// One enrolment as admins see it at `now`.
pub fn get(conn: &Snapshot<'_>, id: EnrolmentId, now: i64) -> Result<Option<Enrolment>, Error> {
    match row(conn, id.0)? {
        Some(r) => {
            let e = last_error(conn, r.id)?;
            Ok(Some(r.view(now, e)))
        }
        None => Ok(None),
    }
}

/// The newest enrolment of a certificate id at `now`.
pub fn by_certificate_id(
    conn: &Snapshot<'_>,
    certificate_id: &str,
    now: i64,
) -> Result<Option<Enrolment>, Error> {
    let r = conn
        .query_row(
            &format!("{SELECT} WHERE certificate_id = ?1 ORDER BY id DESC LIMIT 1"),
            [certificate_id],
            from_row,
        )
        .optional()
        .map_err(sql)?;
    match r {
        Some(r) => {
            let e = last_error(conn, r.id)?;
            Ok(Some(r.view(now, e)))
        }
        None => Ok(None),
    }
}

/// Enrolments as admins see them at `now`, newest first.
pub fn list(conn: &Snapshot<'_>, filter: &Filter, now: i64) -> Result<Vec<Enrolment>, Error> {
    let mut stmt = conn
        .prepare(&format!(
            "{SELECT} WHERE (?1 IS NULL OR certificate_id = ?1) ORDER BY id DESC"
        ))
        .map_err(sql)?;
    let rows = stmt
        .query_map([filter.certificate_id.as_deref()], from_row)
        .map_err(sql)?;
    let mut out = Vec::new();
    for r in rows {
        let r = r.map_err(sql)?;
        if filter.state.is_some_and(|s| s != r.state_at(now)) {
            continue;
        }
        if filter.limit.is_some_and(|l| out.len() as i64 >= l) {
            break;
        }
        let e = last_error(conn, r.id)?;
        out.push(r.view(now, e));
    }
    Ok(out)
}

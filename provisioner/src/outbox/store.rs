//! The `outbox` table and its one state machine.

use kxca_ca::store::Migration;
use kxca_ca::Store;
use rusqlite::{params, OptionalExtension};

use kxca_ca::store::{Snapshot, Tx};
use serde::Serialize;

use crate::error::sql;

/// The outbox's schema, applied as component "outbox".
pub fn migrations() -> &'static [Migration] {
    MIGRATIONS
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "outbox and its attachments",
        sql: r#"
CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY,
    idempotency_key  TEXT NOT NULL UNIQUE,
    kind             TEXT NOT NULL,
    message_id       TEXT NOT NULL UNIQUE,
    to_addr          TEXT NOT NULL,
    subject          TEXT NOT NULL,
    body             TEXT NOT NULL,
    in_reply_to      TEXT,
    refs             TEXT NOT NULL DEFAULT '[]',
    state            TEXT NOT NULL CHECK (state IN ('queued', 'sending', 'sent', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    claimed_at       INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    sent_at          INTEGER
);
CREATE INDEX outbox_due ON outbox(state, next_attempt_at);
CREATE TABLE outbox_attachments (
    outbox_id     INTEGER NOT NULL REFERENCES outbox(id),
    position      INTEGER NOT NULL,
    file_name     TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    bytes         BLOB NOT NULL,
    PRIMARY KEY (outbox_id, position)
);
"#,
    },
    Migration {
        version: 2,
        description: "delivery failures reported back by bounces",
        sql: r#"
CREATE TABLE outbox_delivery_failures (
    id              INTEGER PRIMARY KEY,
    outbox_id       INTEGER NOT NULL REFERENCES outbox(id),
    recipient       TEXT NOT NULL,
    action          TEXT NOT NULL,
    status          TEXT,
    diagnostic      TEXT,
    -- The intake_mails row of the report (provisioner component).
    report_mail_id  INTEGER,
    reported_at     INTEGER NOT NULL
);
CREATE INDEX outbox_delivery_failures_by_mail ON outbox_delivery_failures(outbox_id);
"#,
    },
    Migration {
        version: 3,
        description: "outbox by recipient (an account's mails)",
        sql: r#"
CREATE INDEX outbox_by_recipient ON outbox(to_addr, id);
"#,
    },
];

/// Where an outbox mail stands; stored in `outbox.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxState {
    /// Waiting for its next attempt.
    Queued,
    /// Taken by a sender (a crashed sender's mail is taken again).
    Sending,
    /// Accepted by the SMTP server.
    Sent,
    /// Given up: attempts used up, or refused for good.
    Failed,
}

impl OutboxState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Queued => "queued",
            OutboxState::Sending => "sending",
            OutboxState::Sent => "sent",
            OutboxState::Failed => "failed",
        }
    }
    fn parse(s: &str) -> Option<OutboxState> {
        match s {
            "queued" => Some(OutboxState::Queued),
            "sending" => Some(OutboxState::Sending),
            "sent" => Some(OutboxState::Sent),
            "failed" => Some(OutboxState::Failed),
            _ => None,
        }
    }
}

/// What an outbox mail is. Stored in `outbox.kind` (and counted by it, see
/// crate::loops): the strings never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxKind {
    /// The report on a received form.
    IntakeReply,
    /// The answer to a mail that was refused whole.
    IntakeRejected,
    /// Mail 1: the certificate is ready, the pickup URL; no secret.
    CertificateReady,
    /// Mail 2: the two initial passwords, minted when it is sent.
    InitialPasswords,
    /// Rows an admin rejected, answering the signup mail.
    ApplicationRejected,
    /// A contact's certificate was revoked.
    AccountRevoked,
    /// A certificate expires soon.
    ExpiryReminder,
}

impl OutboxKind {
    /// Every kind, for reading a stored name back.
    pub const ALL: &'static [OutboxKind] = &[
        OutboxKind::IntakeReply,
        OutboxKind::IntakeRejected,
        OutboxKind::CertificateReady,
        OutboxKind::InitialPasswords,
        OutboxKind::ApplicationRejected,
        OutboxKind::AccountRevoked,
        OutboxKind::ExpiryReminder,
    ];

    /// The stored name; never changes (the loop limits count by it).
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxKind::IntakeReply => "intake-reply",
            OutboxKind::IntakeRejected => "intake-rejected",
            OutboxKind::CertificateReady => "certificate-ready",
            OutboxKind::InitialPasswords => "initial-passwords",
            OutboxKind::ApplicationRejected => "application-rejected",
            OutboxKind::AccountRevoked => "account-revoked",
            OutboxKind::ExpiryReminder => "expiry-reminder",
        }
    }

    /// The kind of a stored name; `None` for a name this version does not know.
    pub fn parse(s: &str) -> Option<OutboxKind> {
        OutboxKind::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for OutboxKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for OutboxKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A stored value outside its column's vocabulary, as a rusqlite error so
/// that it leaves `row` like any other unreadable column.
fn unknown_value(index: usize, column: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        index,
        rusqlite::types::Type::Text,
        format!("{column}: unknown value '{value}'").into(),
    )
}

/// A file attached to an outbound mail.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxAttachment {
    /// The name the recipient sees.
    pub file_name: String,
    /// Its MIME type.
    pub content_type: String,
    /// Its content.
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

/// A mail to queue. Its body must not hold a secret: the outbox keeps it
/// in clear until (and after) it is sent.
#[derive(Debug, Clone)]
pub struct NewMail {
    /// Unique per logical mail: queuing the same key twice queues once.
    pub idempotency_key: String,
    /// What the mail is, for the loop limits and the audit record.
    pub kind: OutboxKind,
    /// The recipient's address.
    pub to: String,
    /// The subject (Japanese allowed).
    pub subject: String,
    /// The text body.
    pub body: String,
    /// Message-ID of the mail this answers, if any.
    pub in_reply_to: Option<String>,
    /// The thread's Message-IDs, for References.
    pub references: Vec<String>,
    /// Files to attach.
    pub attachments: Vec<OutboxAttachment>,
}

/// A row of the outbox.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxMail {
    /// Row id.
    pub id: i64,
    /// The key it was queued under.
    pub idempotency_key: String,
    /// What the mail is.
    pub kind: OutboxKind,
    /// The Message-ID kxca gave it, to match bounces.
    pub message_id: String,
    /// The recipient's address.
    pub to: String,
    /// The subject.
    pub subject: String,
    /// The text body.
    #[serde(skip)]
    pub body: String,
    /// Mail 2's body with its secrets, minted when the mail was claimed for
    /// sending; held in memory only, wiped on drop.
    #[serde(skip)]
    pub secret_body: Option<zeroize::Zeroizing<String>>,
    /// Message-ID of the mail it answers, if any.
    pub in_reply_to: Option<String>,
    /// The thread's Message-IDs.
    pub references: Vec<String>,
    /// Queued, sending, sent or failed.
    pub state: OutboxState,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt may start, Unix seconds.
    pub next_attempt_at: i64,
    /// What the last failed attempt said.
    pub last_error: Option<String>,
    /// When it was queued, Unix seconds.
    pub created_at: i64,
    /// When the SMTP server accepted it, Unix seconds.
    pub sent_at: Option<i64>,
    /// Its attachments.
    pub attachments: Vec<OutboxAttachment>,
    /// What delivery-status reports said about this mail's recipients.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub delivery_failures: Vec<DeliveryFailure>,
}

/// A recipient a delivery-status report said this mail did not reach
/// (`failed`) or has not reached yet (`delayed`).
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryFailure {
    /// The recipient the report is about.
    pub recipient: String,
    /// The report's Action (`failed`, `delayed`).
    pub action: String,
    /// The report's Status code (e.g. 5.1.1), if given.
    pub status: Option<String>,
    /// The remote server's Diagnostic-Code, if given.
    pub diagnostic: Option<String>,
    /// The received report (row in `intake_mails`), if recorded.
    pub report_mail_id: Option<i64>,
    /// When the report was recorded, Unix seconds.
    pub reported_at: i64,
}

/// Records what a delivery-status report says about one of kxca's own
/// mails, found by any of `message_ids` (the report's Original-Message-ID,
/// returned headers, In-Reply-To). Returns the outbox id, or None when the
/// report is about no mail kxca sent. Only `failed` and `delayed`
/// recipients are recorded: a `delivered` notice is no failure.
pub fn record_delivery_report(
    tx: &Tx<'_>,
    message_ids: &[String],
    recipients: &[(String, String, Option<String>, Option<String>)],
    report_mail_id: i64,
    now: i64,
    actor: &str,
) -> Result<Option<i64>, kxca_ca::Error> {
    let mut found = None;
    for id in message_ids {
        found = tx
            .query_row(
                "SELECT id, to_addr FROM outbox WHERE message_id = ?1",
                [id],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()
            .map_err(sql)?;
        if found.is_some() {
            break;
        }
    }
    let Some((outbox_id, to)) = found else {
        return Ok(None);
    };
    let mut recorded = Vec::new();
    for (recipient, action, status, diagnostic) in recipients {
        if action != "failed" && action != "delayed" {
            continue;
        }
        tx.execute(
            "INSERT INTO outbox_delivery_failures (outbox_id, recipient, action, status, diagnostic, report_mail_id, reported_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![outbox_id, recipient, action, status, diagnostic, report_mail_id, now],
        )
        .map_err(sql)?;
        recorded.push(
            serde_json::json!({ "recipient": recipient, "action": action, "status": status }),
        );
    }
    if recipients.is_empty() {
        // A report without readable per-recipient fields is still a bounce
        // of this mail: its one recipient did not get it.
        tx.execute(
            "INSERT INTO outbox_delivery_failures (outbox_id, recipient, action, status, diagnostic, report_mail_id, reported_at)
             VALUES (?1, ?2, 'failed', NULL, NULL, ?3, ?4)",
            params![outbox_id, to, report_mail_id, now],
        )
        .map_err(sql)?;
        recorded.push(serde_json::json!({ "recipient": to, "action": "failed" }));
    }
    tx.audit(now,
        actor,
        kxca_ca::AuditAction::OutboxDeliveryReport,
        None,
        serde_json::json!({ "outbox_id": outbox_id, "report_mail_id": report_mail_id, "recipients": recorded }),
    )?;
    Ok(Some(outbox_id))
}

fn delivery_failures(conn: &Snapshot<'_>, id: i64) -> Result<Vec<DeliveryFailure>, kxca_ca::Error> {
    let mut stmt = conn
        .prepare("SELECT recipient, action, status, diagnostic, report_mail_id, reported_at FROM outbox_delivery_failures WHERE outbox_id = ?1 ORDER BY id")
        .map_err(sql)?;
    let rows = stmt
        .query_map([id], |r| {
            Ok(DeliveryFailure {
                recipient: r.get(0)?,
                action: r.get(1)?,
                status: r.get(2)?,
                diagnostic: r.get(3)?,
                report_mail_id: r.get(4)?,
                reported_at: r.get(5)?,
            })
        })
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    Ok(rows)
}

/// Queues `mail` inside the caller's transaction; returns its id. A mail
/// with an idempotency key already queued is not queued again (the earlier
/// id is returned).
pub fn enqueue(
    tx: &Tx<'_>,
    mail: &NewMail,
    message_id_domain: &str,
    now: i64,
) -> Result<i64, kxca_ca::Error> {
    if let Some(id) = tx
        .query_row(
            "SELECT id FROM outbox WHERE idempotency_key = ?1",
            [&mail.idempotency_key],
            |r| r.get::<_, i64>(0),
        )
        .optional()
        .map_err(sql)?
    {
        return Ok(id);
    }
    // Fixed at queue time so a resend after a crash carries the same id.
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).map_err(|e| kxca_ca::Error::Random {
        what: "Message-ID".to_string(),
        message: e.to_string(),
    })?;
    let message_id = format!("{}.{}@{}", now, hex::encode(random), message_id_domain);
    tx.execute(
        "INSERT INTO outbox (idempotency_key, kind, message_id, to_addr, subject, body, in_reply_to, refs, state, next_attempt_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', ?9, ?9)",
        params![
            mail.idempotency_key,
            mail.kind.as_str(),
            message_id,
            mail.to,
            mail.subject,
            mail.body,
            mail.in_reply_to,
            serde_json::to_string(&mail.references).unwrap_or_else(|_| "[]".into()),
            now
        ],
    )
    .map_err(sql)?;
    let id = tx.last_insert_rowid();
    for (i, a) in mail.attachments.iter().enumerate() {
        tx.execute(
            "INSERT INTO outbox_attachments (outbox_id, position, file_name, content_type, bytes) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, i as i64, a.file_name, a.content_type, a.bytes],
        )
        .map_err(sql)?;
    }
    Ok(id)
}

const COLUMNS: &str = "id, idempotency_key, kind, message_id, to_addr, subject, body, in_reply_to, refs, state, attempts, next_attempt_at, last_error, created_at, sent_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxMail> {
    let kind: String = r.get(2)?;
    let kind = OutboxKind::parse(&kind).ok_or_else(|| unknown_value(2, "outbox.kind", &kind))?;
    let state: String = r.get(9)?;
    let state =
        OutboxState::parse(&state).ok_or_else(|| unknown_value(9, "outbox.state", &state))?;
    Ok(OutboxMail {
        id: r.get(0)?,
        idempotency_key: r.get(1)?,
        kind,
        message_id: r.get(3)?,
        to: r.get(4)?,
        subject: r.get(5)?,
        body: r.get(6)?,
        secret_body: None,
        in_reply_to: r.get(7)?,
        references: crate::error::json_column(r, 8)?,
        state,
        attempts: r.get(10)?,
        next_attempt_at: r.get(11)?,
        last_error: r.get(12)?,
        created_at: r.get(13)?,
        sent_at: r.get(14)?,
        attachments: Vec::new(),
        delivery_failures: Vec::new(),
    })
}

fn attachments(conn: &Snapshot<'_>, id: i64) -> Result<Vec<OutboxAttachment>, kxca_ca::Error> {
    let mut stmt = conn
        .prepare("SELECT file_name, content_type, bytes FROM outbox_attachments WHERE outbox_id = ?1 ORDER BY position")
        .map_err(sql)?;
    let rows = stmt
        .query_map([id], |r| {
            Ok(OutboxAttachment {
                file_name: r.get(0)?,
                content_type: r.get(1)?,
                bytes: r.get(2)?,
            })
        })
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    Ok(rows)
}

/// The rows `sql_where` selects (`?1`, `?2`: `params`), newest first, with
/// their delivery failures: the one loader behind the lists below.
fn load(
    conn: &Snapshot<'_>,
    sql_where: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<OutboxMail>, kxca_ca::Error> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {COLUMNS} FROM outbox {sql_where} ORDER BY id DESC LIMIT ?{}",
            sql_where.matches('?').count() + 1
        ))
        .map_err(sql)?;
    let mut mails = stmt
        .query_map(params, row)
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    for m in &mut mails {
        m.delivery_failures = delivery_failures(conn, m.id)?;
    }
    Ok(mails)
}

/// Outbox rows, newest first.
pub fn list(conn: &Snapshot<'_>, limit: i64) -> Result<Vec<OutboxMail>, kxca_ca::Error> {
    load(conn, "", [limit])
}

/// The mails to any of `recipients`, newest first (an account's page).
pub fn to_recipients(
    conn: &Snapshot<'_>,
    recipients: &[&str],
    limit: i64,
) -> Result<Vec<OutboxMail>, kxca_ca::Error> {
    let mut mails = Vec::new();
    for to in recipients.iter().filter(|t| !t.is_empty()) {
        mails.extend(load(conn, "WHERE to_addr = ?1", params![to, limit])?);
    }
    mails.sort_by_key(|m| std::cmp::Reverse(m.id));
    mails.dedup_by_key(|m| m.id);
    mails.truncate(usize::try_from(limit).unwrap_or(0));
    Ok(mails)
}

/// How many mails are in `state`, whatever their number (the dashboard's
/// count, not a capped list's length).
pub fn count(conn: &Snapshot<'_>, state: OutboxState) -> Result<i64, kxca_ca::Error> {
    conn.query_row(
        "SELECT COUNT(*) FROM outbox WHERE state = ?1",
        [state.as_str()],
        |r| r.get(0),
    )
    .map_err(sql)
}

/// The newest `limit` mails in `state`.
pub fn in_state(
    conn: &Snapshot<'_>,
    state: OutboxState,
    limit: i64,
) -> Result<Vec<OutboxMail>, kxca_ca::Error> {
    load(conn, "WHERE state = ?1", params![state.as_str(), limit])
}

/// One page of the outbox, newest first.
pub fn page(
    conn: &Snapshot<'_>,
    req: &kxca_ca::store::paging::PageRequest,
) -> Result<kxca_ca::store::paging::Page<OutboxMail>, kxca_ca::Error> {
    let mut page = kxca_ca::store::paging::page(
        req,
        |m: &OutboxMail| m.id,
        |k| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM outbox WHERE id {} ?1 ORDER BY id {} LIMIT ?2",
                    k.op, k.order
                ))
                .map_err(sql)?;
            let mails = stmt
                .query_map(params![k.key, k.limit], row)
                .map_err(sql)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql)?;
            Ok(mails)
        },
    )?;
    for m in &mut page.items {
        m.delivery_failures = delivery_failures(conn, m.id)?;
    }
    Ok(page)
}

/// How long a claim holds before the mail counts as not sent. Longer than
/// any SMTP transaction, so a live sender is never overtaken.
pub(super) const CLAIM_SECONDS: i64 = 600;

/// Claims the next due mail: `queued` and due, or `sending` with an expired
/// claim (its sender died). One transaction; two senders never claim the
/// same row.
///
/// Mail 2 (`initial-passwords`) is claimed only by a sender that can mint
/// its secrets (`pickup` given); others leave it queued. Its secrets are
/// generated and hashed after the claim's transaction, with no lock held,
/// and stored in a second short one that re-checks the claim: the hashes
/// are stored before a body holding the secrets exists, and a later
/// attempt mints new ones. A crash between the two leaves the row
/// `sending`; it is claimed again when its claim expires and minted anew.
pub(super) fn claim_next(
    store: &mut Store,
    now: i64,
    actor: &str,
    pickup: Option<&kxca_ca::enrolment::PickupPolicy>,
) -> Result<Option<OutboxMail>, kxca_ca::Error> {
    loop {
        let Some(mut mail) = claim_row(store, now, pickup.is_some())? else {
            return Ok(None);
        };
        let Some(pickup) = pickup.filter(|_| mail.kind == OutboxKind::InitialPasswords) else {
            return Ok(Some(mail));
        };
        let started = std::time::Instant::now();
        let prepared = store
            .read(|s| crate::accounts::delivery::kx_length(s, &mail))
            .and_then(|len| crate::accounts::delivery::prepare_secrets(pickup, len));
        let prepare_ms = started.elapsed().as_secs_f64() * 1e3;
        let stored = store.write(|tx| {
            // Ours still: `sending` with the attempt this claim counted.
            let held = tx
                .query_row(
                    "SELECT 1 FROM outbox WHERE id = ?1 AND state = 'sending' AND attempts = ?2",
                    params![mail.id, mail.attempts],
                    |_| Ok(()),
                )
                .optional()
                .map_err(sql)?
                .is_some();
            if !held {
                return Ok(None);
            }
            let minted = prepared.and_then(|secrets| {
                crate::accounts::delivery::store_secrets(tx, &mail, secrets, pickup, now, actor)
            });
            match minted {
                Ok(body) => Ok(Some(Some(body))),
                Err(e) => {
                    // No code can be minted (the pickup was cancelled by a
                    // newer reset, or used): this mail must not go out.
                    let error = format!("not sent: {e}");
                    tx.execute(
                        "UPDATE outbox SET state = 'failed', last_error = ?2, claimed_at = NULL WHERE id = ?1",
                        params![mail.id, error],
                    )
                    .map_err(sql)?;
                    tx.audit(now,
                        actor,
                        kxca_ca::AuditAction::OutboxFailed,
                        None,
                        serde_json::json!({ "outbox_id": mail.id, "kind": mail.kind, "to": mail.to, "attempts": mail.attempts, "error": error }),
                    )?;
                    tracing::warn!(outbox_id = mail.id, error = %error, "mail 2 not sent");
                    Ok(Some(None))
                }
            }
        })?;
        tracing::debug!(
            outbox_id = mail.id,
            prepare_ms,
            total_ms = started.elapsed().as_secs_f64() * 1e3,
            "mail 2 secrets minted"
        );
        match stored {
            Some(Some(body)) => {
                mail.secret_body = Some(body);
                return Ok(Some(mail));
            }
            Some(None) => continue,
            None => {
                // Another sender took it over (our claim expired while we
                // hashed): it mints and sends; we must not.
                tracing::warn!(
                    outbox_id = mail.id,
                    "claim lost before mail 2 was minted; left to its new sender"
                );
                continue;
            }
        }
    }
}

/// The claim itself: the due row set `sending`, its attempt counted.
fn claim_row(
    store: &mut Store,
    now: i64,
    may_mint: bool,
) -> Result<Option<OutboxMail>, kxca_ca::Error> {
    store.write(|tx| {
        let mail = tx
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM outbox
                     WHERE ((state = 'queued' AND next_attempt_at <= ?1)
                        OR (state = 'sending' AND claimed_at <= ?1 - ?2))
                       AND (?3 OR kind <> ?4)
                     ORDER BY next_attempt_at, id LIMIT 1"
                ),
                params![
                    now,
                    CLAIM_SECONDS,
                    may_mint,
                    OutboxKind::InitialPasswords.as_str()
                ],
                row,
            )
            .optional()
            .map_err(sql)?;
        let Some(mut mail) = mail else {
            return Ok(None);
        };
        tx.execute(
            "UPDATE outbox SET state = 'sending', claimed_at = ?2, attempts = attempts + 1 WHERE id = ?1",
            params![mail.id, now],
        )
        .map_err(sql)?;
        mail.attempts += 1;
        mail.attachments = attachments(tx, mail.id)?;
        Ok(Some(mail))
    })
}

/// Marks a claimed mail sent (once: a row no longer `sending` is left as is).
pub(super) fn mark_sent(
    store: &mut Store,
    mail: &OutboxMail,
    now: i64,
    actor: &str,
) -> Result<(), kxca_ca::Error> {
    store.write(|tx| {
        let n = tx
            .execute(
                "UPDATE outbox SET state = 'sent', sent_at = ?2, last_error = NULL WHERE id = ?1 AND state = 'sending'",
                params![mail.id, now],
            )
            .map_err(sql)?;
        if n == 1 {
            tx.audit(now,
                actor,
                kxca_ca::AuditAction::OutboxSent,
                None,
                serde_json::json!({ "outbox_id": mail.id, "kind": mail.kind, "to": mail.to, "message_id": mail.message_id, "attempts": mail.attempts }),
            )?;
        }
        Ok(())
    })
}

/// Returns a claimed mail to the queue after a failed attempt, or marks it
/// failed after the last one.
pub(super) fn mark_attempt_failed(
    store: &mut Store,
    mail: &OutboxMail,
    error: &str,
    retry_at: Option<i64>,
    now: i64,
    actor: &str,
) -> Result<(), kxca_ca::Error> {
    store.write(|tx| {
        match retry_at {
            Some(at) => {
                tx.execute(
                    "UPDATE outbox SET state = 'queued', next_attempt_at = ?2, last_error = ?3, claimed_at = NULL WHERE id = ?1 AND state = 'sending'",
                    params![mail.id, at, error],
                )
                .map_err(sql)?;
            }
            None => {
                tx.execute(
                    "UPDATE outbox SET state = 'failed', last_error = ?2, claimed_at = NULL WHERE id = ?1 AND state = 'sending'",
                    params![mail.id, error],
                )
                .map_err(sql)?;
                tx.audit(now,
                    actor,
                    kxca_ca::AuditAction::OutboxFailed,
                    None,
                    serde_json::json!({ "outbox_id": mail.id, "kind": mail.kind, "to": mail.to, "attempts": mail.attempts, "error": error }),
                )?;
            }
        }
        Ok(())
    })
}

/// Puts a failed mail back in the queue for a new round of attempts (an
/// admin's retry, after the SMTP problem was fixed). `false` when mail `id`
/// is not failed (sent, queued or sending: nothing to retry).
pub fn retry(store: &mut Store, id: i64, actor: &str, now: i64) -> Result<bool, kxca_ca::Error> {
    store.write(|tx| {
        let changed = tx
            .execute(
                "UPDATE outbox SET state = 'queued', attempts = 0, next_attempt_at = ?2, claimed_at = NULL WHERE id = ?1 AND state = 'failed'",
                params![id, now],
            )
            .map_err(sql)?;
        if changed == 1 {
            tx.audit(now,
                actor,
                kxca_ca::AuditAction::OutboxRetry,
                None,
                serde_json::json!({ "outbox_id": id }),
            )?;
        }
        Ok(changed == 1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // A kind or state this version does not know is refused by name, not
    // read as some other kind (the loop limits count kinds) or as `queued`
    // (which would send it again).
    #[test]
    fn unknown_kind_or_state_is_an_error_naming_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = kxca_ca::Store::open(&dir.path().join("kxca.db"), true).unwrap();
        store.migrate("outbox", migrations()).unwrap();
        // The setup and the tampering come from outside, as another
        // program writing the file would.
        let conn = rusqlite::Connection::open(dir.path().join("kxca.db")).unwrap();
        conn.execute_batch(
            "INSERT INTO outbox (idempotency_key, kind, message_id, to_addr, subject, body, state, next_attempt_at, created_at)
               VALUES ('k', 'intake-reply', '<m@example.jp>', 'a@example.jp', 's', 'b', 'queued', 0, 0);",
        )
        .unwrap();
        let rows = store.read(|c| list(c, 10)).unwrap();
        assert_eq!(rows[0].kind, OutboxKind::IntakeReply);
        assert_eq!(rows[0].state, OutboxState::Queued);

        conn.execute_batch("UPDATE outbox SET kind = 'certificate-issued'")
            .unwrap();
        let err = store.read(|c| list(c, 10)).unwrap_err().to_string();
        assert!(
            err.contains("outbox.kind: unknown value 'certificate-issued'"),
            "{err}"
        );

        conn.execute_batch(
            "UPDATE outbox SET kind = 'intake-rejected';
             PRAGMA ignore_check_constraints = ON;
             UPDATE outbox SET state = 'bounced';",
        )
        .unwrap();
        let err = store.read(|c| list(c, 10)).unwrap_err().to_string();
        assert!(
            err.contains("outbox.state: unknown value 'bounced'"),
            "{err}"
        );
    }
}

//! Expiry reminders, queued by the daemon's mail pass: for every valid
//! certificate of an active account, one mail at each threshold of
//! `[reminders] days_before_expiry`. The outbox row's idempotency key
//! (`expiry-reminder:<serial>:<days>`, UNIQUE) is the record that a
//! reminder was queued, written in the same transaction as the row: two
//! daemons, or a pass that crashed half-way and ran again, queue each
//! reminder once.

use rusqlite::params;
use serde::Serialize;

use super::policy;
use crate::error::sql;
use crate::outbox::{self, NewMail, OutboxKind};

const DAY: i64 = 86_400;

#[derive(Debug, Default, Clone, Serialize)]
/// What one reminder pass queued.
pub struct ReminderSummary {
    /// Reminders queued by this pass.
    pub queued: usize,
    /// Reminders due that an earlier pass (or another daemon) had queued.
    pub already_queued: usize,
}

/// Queues the reminders due at `now`. A certificate first seen inside
/// several thresholds (e.g. 3 days left) gets the nearest one only: the
/// contact needs one mail saying how long is left, not three.
pub fn queue_due(
    store: &mut kxca_ca::Store,
    setup: &super::Setup,
    actor: &str,
    now: i64,
) -> Result<ReminderSummary, kxca_ca::Error> {
    let provisioning = &setup.policy;
    let union_name = setup.union_name.as_str();
    let message_id_domain = setup.message_id_domain.as_str();
    let Some(max_days) = provisioning
        .reminders
        .days_before_expiry
        .iter()
        .max()
        .copied()
    else {
        return Ok(ReminderSummary::default());
    };
    store.migrate("accounts", super::migrations())?;
    let template = setup.templates.get(policy::EXPIRY_REMINDER)?;
    let summary = store.write(|tx| {
        let mut stmt = tx
            .prepare(
                "SELECT a.id, a.certificate_id, a.office_name, a.contact_name, a.email1, c.serial, c.not_after
                 FROM certificates c
                 JOIN accounts a ON a.certificate_id = c.certificate_id
                 LEFT JOIN revocations r ON r.certificate = c.id
                 WHERE c.state = 'issued' AND r.certificate IS NULL AND a.state = 'active'
                   AND c.not_after > ?1 AND c.not_after <= ?1 + ?2
                 ORDER BY c.not_after",
            )
            .map_err(sql)?;
        type Due = (i64, String, String, String, String, String, i64);
        let due: Vec<Due> = stmt
            .query_map(params![now, i64::from(max_days) * DAY], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })
            .map_err(sql)?
            .collect::<Result<_, _>>()
            .map_err(sql)?;
        let mut summary = ReminderSummary::default();
        for (account_id, certificate_id, office_name, contact_name, email, serial, not_after) in due {
            let left = not_after - now;
            let Some(days) = provisioning
                .reminders
                .days_before_expiry
                .iter()
                .copied()
                .filter(|d| left <= i64::from(*d) * DAY)
                .min()
            else {
                continue;
            };
            let key = format!("expiry-reminder:{serial}:{days}");
            let exists: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM outbox WHERE idempotency_key = ?1)",
                    [&key],
                    |r| r.get(0),
                )
                .map_err(sql)?;
            if exists {
                summary.already_queued += 1;
                continue;
            }
            // Days as the contact counts them: rounded up.
            let days_left = ((left + DAY - 1) / DAY).to_string();
            let date = time::OffsetDateTime::from_unix_timestamp(not_after + 9 * 3600)
                .map(|t| format!("{}年{}月{}日", t.year(), u8::from(t.month()), t.day()))
                .unwrap_or_else(|_| kxca_ca::rfc3339(not_after));
            let text = template.render(&[
                ("union_name", union_name),
                ("office_name", &office_name),
                ("contact_name", &contact_name),
                ("certificate_id", &certificate_id),
                ("days", &days_left),
                ("not_after", &date),
            ])?;
            outbox::enqueue(
                tx,
                &NewMail {
                    idempotency_key: key,
                    kind: OutboxKind::ExpiryReminder,
                    to: email,
                    subject: text.subject,
                    body: text.body,
                    in_reply_to: None,
                    references: Vec::new(),
                    attachments: Vec::new(),
                },
                message_id_domain,
                now,
            )?;
            tx.audit(now,
                actor,
                kxca_ca::AuditAction::AccountExpiryReminder,
                Some(&serial),
                serde_json::json!({ "account_id": account_id, "certificate_id": certificate_id, "threshold_days": days }),
            )?;
            summary.queued += 1;
        }
        Ok(summary)
    })?;
    if summary.queued > 0 {
        tracing::info!(queued = summary.queued, "expiry reminders queued");
    }
    Ok(summary)
}

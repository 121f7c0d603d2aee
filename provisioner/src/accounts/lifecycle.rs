//! After approval: reset (a new certificate superseding the current one),
//! revocation of one contact or a whole office, and renewal of a pickup
//! that locked or expired. Each is one transaction with its mails.

use std::str::FromStr;

use kxca_ca::enrolment::{self, EnrolmentId, NewEnrolment};
use kxca_ca::store::{revocations, Tx};
use kxca_ca::{Refusal, RevocationReason, Serial};
use rusqlite::params;
use serde::Serialize;

use super::delivery::{self, DeliveryContext, Mails};
use super::policy;
use super::register::{self, Account, AccountState};
use crate::error::sql;
use crate::outbox::{self, NewMail, OutboxKind};

fn not_found(kind: Refusal, what: String) -> kxca_ca::Error {
    kxca_ca::Error::refused(kind, "certificate_id", what)
}

fn active_account(tx: &Tx<'_>, certificate_id: &str) -> Result<Account, kxca_ca::Error> {
    let a = register::by_certificate_id(tx, certificate_id)?.ok_or_else(|| {
        not_found(
            Refusal::UnknownAccount,
            format!("no account with certificate id {certificate_id:?} (see `kxca accounts list`)"),
        )
    })?;
    if a.state != AccountState::Active {
        return Err(not_found(
            Refusal::AccountRevoked,
            format!("account {certificate_id} is revoked; approve a new application row for it"),
        ));
    }
    Ok(a)
}

/// What a reset, renewal or revocation did.
#[derive(Debug, Clone, Serialize)]
pub struct LifecycleOutcome {
    /// The account's certificate id.
    pub certificate_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The pickup opened or renewed (reset, renewal).
    pub enrolment_id: Option<i64>,
    /// The serial the next pickup supersedes (reset) or the serials revoked.
    pub serials: Vec<String>,
    /// Outbox rows queued.
    pub mails_queued: usize,
}

/// `kxca accounts reset`: a new pickup superseding the current certificate
/// (revoked `superseded` by the daemon in the transaction that issues the
/// new one), and a new mail 1 + mail 2. A pickup still open is cancelled by
/// opening the new one.
pub fn reset(
    store: &mut kxca_ca::Store,
    certificate_id: &str,
    ctx: &DeliveryContext<'_>,
    actor: &str,
    now: i64,
) -> Result<LifecycleOutcome, kxca_ca::Error> {
    store.migrate("accounts", super::migrations())?;
    let out = store.write(|tx| {
        let a = active_account(tx, certificate_id)?;
        let supersedes = a
            .current_serial
            .as_deref()
            .map(Serial::from_str)
            .transpose()?;
        let enrolment = enrolment::open(
            tx,
            &NewEnrolment {
                certificate_id: &a.certificate_id,
                holder: &a.holder(),
                profile: &a.profile,
                supersedes,
                key_algorithm: None,
            },
            actor,
            now,
        )?;
        let mails = delivery::queue(tx, &a, enrolment, Mails::Both, ctx, now)?;
        tx.audit(now,
            actor,
            kxca_ca::AuditAction::AccountReset,
            a.current_serial.as_deref(),
            serde_json::json!({ "account_id": a.id, "certificate_id": a.certificate_id, "enrolment_id": enrolment.0 }),
        )?;
        Ok(LifecycleOutcome {
            certificate_id: a.certificate_id.clone(),
            enrolment_id: Some(enrolment.0),
            serials: a.current_serial.into_iter().collect(),
            mails_queued: mails,
        })
    })?;
    tracing::info!(certificate_id, enrolment_id = out.enrolment_id, supersedes = ?out.serials.first(), %actor, "account reset");
    Ok(out)
}

/// `kxca accounts renew-pickup`: renews the account's current pickup (one
/// that locked after wrong codes, or expired) and sends a new mail 2; the
/// code is minted when it is sent, as always.
pub fn renew_pickup(
    store: &mut kxca_ca::Store,
    certificate_id: &str,
    ctx: &DeliveryContext<'_>,
    actor: &str,
    now: i64,
) -> Result<LifecycleOutcome, kxca_ca::Error> {
    store.migrate("accounts", super::migrations())?;
    let out = store.write(|tx| {
        let a = active_account(tx, certificate_id)?;
        let id = a.enrolment_id.ok_or_else(|| {
            not_found(Refusal::NoPickup, format!(
                "account {certificate_id} has no pickup to renew; use `kxca accounts reset`"
            ))
        })?;
        enrolment::renew(tx, EnrolmentId(id), actor, now)?;
        let nth: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM account_deliveries WHERE enrolment_id = ?1",
                [id],
                |r| r.get(0),
            )
            .map_err(sql)?;
        let mails = delivery::queue(
            tx,
            &a,
            EnrolmentId(id),
            Mails::SecretsOnly { nth },
            ctx,
            now,
        )?;
        tx.audit(now,
            actor,
            kxca_ca::AuditAction::AccountRenewPickup,
            None,
            serde_json::json!({ "account_id": a.id, "certificate_id": a.certificate_id, "enrolment_id": id }),
        )?;
        Ok(LifecycleOutcome {
            certificate_id: a.certificate_id.clone(),
            enrolment_id: Some(id),
            serials: Vec::new(),
            mails_queued: mails,
        })
    })?;
    tracing::info!(certificate_id, enrolment_id = out.enrolment_id, %actor, "pickup renewed");
    Ok(out)
}

/// `kxca accounts resend-mail1`: mail 1 (the pickup URL, no secret) again
/// for the account's current pickup, e.g. after the contact deleted it.
/// Mail 2 is not resent: a new code comes with `renew_pickup`.
pub fn resend_mail1(
    store: &mut kxca_ca::Store,
    certificate_id: &str,
    ctx: &DeliveryContext<'_>,
    actor: &str,
    now: i64,
) -> Result<LifecycleOutcome, kxca_ca::Error> {
    store.migrate("accounts", super::migrations())?;
    let out = store.write(|tx| {
        let a = active_account(tx, certificate_id)?;
        let id = a.enrolment_id.ok_or_else(|| {
            not_found(Refusal::NoPickup, format!(
                "account {certificate_id} has no pickup to send mail 1 for; use `kxca accounts reset`"
            ))
        })?;
        let nth: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM outbox WHERE idempotency_key LIKE ?1",
                [format!("certificate-ready:{id}:resend:%")],
                |r| r.get(0),
            )
            .map_err(sql)?;
        let outbox_id = delivery::enqueue_ready(
            tx,
            &a,
            format!("certificate-ready:{id}:resend:{}", nth + 1),
            ctx,
            now,
        )?;
        tx.audit(now,
            actor,
            kxca_ca::AuditAction::AccountResendMail1,
            None,
            serde_json::json!({ "account_id": a.id, "certificate_id": a.certificate_id, "enrolment_id": id, "outbox_id": outbox_id }),
        )?;
        Ok(LifecycleOutcome {
            certificate_id: a.certificate_id.clone(),
            enrolment_id: Some(id),
            serials: Vec::new(),
            mails_queued: 1,
        })
    })?;
    tracing::info!(certificate_id, enrolment_id = out.enrolment_id, %actor, "mail 1 resent");
    Ok(out)
}

/// Whom `kxca accounts revoke` is about.
#[derive(Debug, Clone)]
pub enum RevokeTarget {
    /// One contact, by certificate id.
    Contact(String),
    /// Every active account with this office code.
    Office(String),
}

/// Revokes every valid certificate of one contact or of every active
/// account of an office through the CA's revocation (one transaction),
/// marks the accounts revoked, cancels their open pickups, and tells each
/// contact, and the address the office applied from, by mail.
pub fn revoke(
    store: &mut kxca_ca::Store,
    target: &RevokeTarget,
    reason: RevocationReason,
    setup: &super::Setup,
    actor: &str,
    now: i64,
) -> Result<Vec<LifecycleOutcome>, kxca_ca::Error> {
    store.migrate("accounts", super::migrations())?;
    let out = store.write(|tx| {
        let accounts: Vec<Account> = match target {
            RevokeTarget::Contact(id) => vec![active_account(tx, id)?],
            RevokeTarget::Office(code) => {
                let mut stmt = tx
                    .prepare("SELECT certificate_id FROM accounts WHERE office_code = ?1 AND state = 'active' ORDER BY id")
                    .map_err(sql)?;
                let ids = stmt
                    .query_map([code], |r| r.get::<_, String>(0))
                    .map_err(sql)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(sql)?;
                if ids.is_empty() {
                    return Err(kxca_ca::Error::refused(
                        Refusal::NoOfficeAccount,
                        "office",
                        format!("no active account for office code {code:?}"),
                    ));
                }
                ids.iter()
                    .map(|id| active_account(tx, id))
                    .collect::<Result<_, _>>()?
            }
        };
        let mut out = Vec::new();
        let mut told_applicants: Vec<String> = Vec::new();
        for a in accounts {
            let mut serials = Vec::new();
            for c in &a.certificates {
                if c.state == "issued" {
                    revocations::revoke(tx, &c.serial, reason, actor, now)?;
                    serials.push(c.serial.clone());
                }
            }
            if let Some(e) = a.enrolment_id {
                enrolment::cancel(
                    tx,
                    EnrolmentId(e),
                    actor,
                    now,
                    "the account was revoked",
                )?;
            }
            tx.execute(
                "UPDATE accounts SET state = 'revoked', revoked_at = ?2, revoke_reason = ?3, updated_at = ?2 WHERE id = ?1",
                params![a.id, now, reason.name()],
            )
            .map_err(sql)?;
            let template = setup.templates.get(policy::ACCOUNT_REVOKED)?;
            let text = template.render(&[
                ("union_name", &setup.union_name),
                ("office_name", &a.office_name),
                ("contact_name", &a.contact_name),
                ("certificate_id", &a.certificate_id),
                ("reason", template.reason(reason.name())),
            ])?;
            let mut recipients = vec![a.email1.clone()];
            if let Some(applicant) = &a.applicant_email {
                if !applicant.eq_ignore_ascii_case(&a.email1)
                    && !told_applicants.iter().any(|t| t.eq_ignore_ascii_case(applicant))
                {
                    recipients.push(applicant.clone());
                    told_applicants.push(applicant.clone());
                }
            }
            let mut mails = 0;
            for to in recipients {
                outbox::enqueue(
                    tx,
                    &NewMail {
                        idempotency_key: format!("account-revoked:{}:{now}:{to}", a.id),
                        kind: OutboxKind::AccountRevoked,
                        to,
                        subject: text.subject.clone(),
                        body: text.body.clone(),
                        in_reply_to: None,
                        references: Vec::new(),
                        attachments: Vec::new(),
                    },
                    &setup.message_id_domain,
                    now,
                )?;
                mails += 1;
            }
            tx.audit(now,
                actor,
                kxca_ca::AuditAction::AccountRevoke,
                None,
                serde_json::json!({ "account_id": a.id, "certificate_id": a.certificate_id, "reason": reason.name(), "serials": serials }),
            )?;
            out.push(LifecycleOutcome {
                certificate_id: a.certificate_id.clone(),
                enrolment_id: a.enrolment_id,
                serials,
                mails_queued: mails,
            });
        }
        Ok(out)
    })?;
    for o in &out {
        tracing::info!(certificate_id = %o.certificate_id, serials = ?o.serials, reason = %reason, %actor, "account revoked");
    }
    Ok(out)
}

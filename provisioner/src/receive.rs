//! One received mail → applications, a reply in the outbox and an audit
//! event, all in one transaction keyed by where the mail came from.

use kxca_ca::store::audit;
use kxca_ca::Store;
use serde::Serialize;

use crate::applications::{self, NewApplication, NewIntakeMail};
use crate::forms::{FormCheck, FormChecker};
use crate::intake::Replies;
use crate::loops::{self, NoReply};
use crate::mail::mime::{self, Limits};
use crate::outbox::{self, NewMail};
use crate::reply::{self, FileOutcome, ReplyFacts};
use crate::Error;

/// What receiving one mail did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Received {
    /// Recorded before (same source key): nothing done.
    AlreadyProcessed,
    /// Recorded now.
    Processed {
        mail_id: i64,
        applications: Vec<i64>,
        duplicates: usize,
        replied: bool,
        /// Why no answer was queued, when none was.
        #[serde(skip_serializing_if = "Option::is_none")]
        not_answered: Option<NoReply>,
    },
    /// Same Message-ID as an earlier mail: recorded as a duplicate.
    DuplicateMail { mail_id: i64, first: i64 },
    /// Not readable within the limits: recorded, not answered.
    Rejected { mail_id: i64, code: String },
}

/// Context of a receive pass.
pub struct Receiver<'a> {
    pub checker: &'a dyn FormChecker,
    pub limits: Limits,
    /// Domain for the Message-IDs of replies.
    pub reply_domain: String,
    pub actor: String,
    /// Which mail is answered and how often (policies/intake.toml `[replies]`).
    pub replies: Replies,
}

impl Receiver<'_> {
    /// Records `raw` under `source_key` (e.g. `imap:INBOX:<uidvalidity>:<uid>`).
    /// Idempotent: a source key seen before does nothing.
    pub fn receive(
        &self,
        store: &mut Store,
        source_key: &str,
        raw: &[u8],
        now: i64,
    ) -> Result<Received, Error> {
        if applications::mail_seen(store.conn(), source_key)? {
            return Ok(Received::AlreadyProcessed);
        }
        let mail = match mime::read(raw, &self.limits) {
            Ok(m) => m,
            Err(e) => {
                use sha2::Digest;
                let digest = hex::encode(sha2::Sha256::digest(raw));
                return self.reject(store, source_key, raw.len(), &digest, &e, now);
            }
        };
        let no_reply = loops::not_to_answer(&mail, &self.replies);
        // A delivery report's parts are returned mail, not submissions.
        let is_report = mail.auto.delivery_report.is_some();
        // Forms are checked before the transaction: reading a spreadsheet
        // takes time the write lock should not be held for.
        let checked: Vec<Option<FormCheck>> = mail
            .attachments
            .iter()
            .map(|a| {
                (a.kind.is_spreadsheet() && !is_report)
                    .then(|| self.checker.check(&a.name, &a.bytes))
            })
            .collect();
        let received_at = now;
        let actor = self.actor.clone();
        let reply_domain = self.reply_domain.clone();
        let out = store.write(|tx| {
            if applications::mail_seen(tx, source_key)? {
                return Ok(Received::AlreadyProcessed);
            }
            let sender = mail.reply_to.as_deref();
            if let Some(first) = applications::mail_by_message_id(tx, &mail.message_id)? {
                let mail_id = applications::insert_mail(
                    tx,
                    &NewIntakeMail {
                        source_key,
                        message_id: &mail.message_id,
                        sender,
                        subject: &mail.subject,
                        received_at,
                        outcome: "duplicate",
                        duplicate_of: Some(first),
                        detail: serde_json::json!({}),
                    },
                    now,
                )?;
                audit::append(
                    tx,
                    now,
                    &actor,
                    "intake.mail_duplicate",
                    None,
                    serde_json::json!({ "mail_id": mail_id, "first": first, "message_id": mail.message_id }),
                )?;
                return Ok(Received::DuplicateMail { mail_id, first });
            }
            let mail_id = applications::insert_mail(
                tx,
                &NewIntakeMail {
                    source_key,
                    message_id: &mail.message_id,
                    sender,
                    subject: &mail.subject,
                    received_at,
                    outcome: "processed",
                    duplicate_of: None,
                    detail: serde_json::json!({
                        "attachments": mail.attachments.iter().map(|a| serde_json::json!({
                            "name": a.name, "content_type": a.content_type, "sha256": a.sha256,
                            "size": a.bytes.len(), "forwarded": a.forwarded,
                        })).collect::<Vec<_>>()
                    }),
                },
                now,
            )?;
            let mut facts = ReplyFacts {
                original_subject: mail.subject.clone(),
                ..Default::default()
            };
            let mut created = Vec::new();
            let mut duplicates = 0;
            for (a, check) in mail.attachments.iter().zip(&checked) {
                let Some(check) = check else {
                    facts.ignored.push(a.name.clone());
                    continue;
                };
                if let Some(existing) = applications::application_by_hash(tx, &a.sha256)? {
                    duplicates += 1;
                    facts.files.push(FileOutcome::Duplicate {
                        file: a.name.clone(),
                        application_id: existing,
                    });
                    continue;
                }
                match check {
                    FormCheck::NotAForm { message_ja, .. } => {
                        facts.files.push(FileOutcome::NotAForm {
                            file: a.name.clone(),
                            message_ja: message_ja.clone(),
                        });
                    }
                    FormCheck::Form {
                        sheet,
                        rows,
                        report,
                        copy,
                    } => {
                        let (id, status) = applications::insert_application(
                            tx,
                            &NewApplication {
                                mail_id,
                                sender,
                                message_id: &mail.message_id,
                                received_at,
                                file_name: &a.name,
                                sha256: &a.sha256,
                                // Never the received bytes: they hold the
                                // passwords typed into the form.
                                file: copy.as_ref().map(|c| c.bytes.as_slice()).unwrap_or(&[]),
                                stored_format: if copy.is_some() {
                                    applications::STORED_REDACTED_XLSX
                                } else {
                                    applications::STORED_NONE
                                },
                                original_size: a.bytes.len(),
                                original_format: copy
                                    .as_ref()
                                    .map(|c| c.original_format)
                                    .unwrap_or("unknown"),
                                sheet,
                                report,
                                rows,
                            },
                            now,
                        )?;
                        audit::append(
                            tx,
                            now,
                            &actor,
                            "intake.application",
                            None,
                            serde_json::json!({
                                "application_id": id, "mail_id": mail_id, "file": a.name,
                                "sha256": a.sha256, "status": status.as_str(), "rows": rows.len(),
                            }),
                        )?;
                        created.push(id);
                        facts.files.push(FileOutcome::Accepted {
                            file: a.name.clone(),
                            application_id: id,
                            rows: rows.clone(),
                        });
                    }
                }
            }
            if let Some(report) = &mail.auto.delivery_report {
                let recipients: Vec<_> = report
                    .recipients
                    .iter()
                    .map(|r| {
                        (
                            r.recipient.clone(),
                            r.action.clone(),
                            r.status.clone(),
                            r.diagnostic.clone(),
                        )
                    })
                    .collect();
                outbox::record_delivery_report(
                    tx,
                    &report.original_message_ids,
                    &recipients,
                    mail_id,
                    now,
                    &actor,
                )?;
            }
            let not_answered = match (no_reply, sender) {
                (Some(why), _) => Some(why),
                (None, Some(to)) if loops::over_rate(tx, to, &self.replies, now)? => {
                    Some(NoReply::RateLimited)
                }
                (None, _) => None,
            };
            applications::set_reply(
                tx,
                mail_id,
                not_answered.map(NoReply::as_str).unwrap_or("queued"),
            )?;
            let replied = match sender.filter(|_| not_answered.is_none()) {
                Some(to) => {
                    let (subject, body) = reply::compose(&facts);
                    let mut references = mail.references.clone();
                    references.push(mail.message_id.clone());
                    outbox::enqueue(
                        tx,
                        &NewMail {
                            idempotency_key: format!("intake-reply:{mail_id}"),
                            kind: "intake-reply".into(),
                            to: to.to_string(),
                            subject,
                            body,
                            in_reply_to: Some(mail.message_id.clone()),
                            references,
                            attachments: Vec::new(),
                        },
                        &reply_domain,
                        now,
                    )?;
                    true
                }
                None => false,
            };
            audit::append(
                tx,
                now,
                &actor,
                "intake.mail",
                None,
                serde_json::json!({
                    "mail_id": mail_id, "source": source_key, "message_id": mail.message_id,
                    "applications": created, "duplicates": duplicates,
                    "ignored": facts.ignored.len(), "replied": replied,
                    "not_answered": not_answered.map(NoReply::as_str),
                }),
            )?;
            if let Some(why) = not_answered {
                tracing::info!(mail_id, reason = why.as_str(), "mail recorded, not answered");
            }
            Ok(Received::Processed {
                mail_id,
                applications: created,
                duplicates,
                replied,
                not_answered,
            })
        })?;
        Ok(out)
    }

    /// Records a mail too large to download as rejected, without reading it.
    pub fn reject_too_large(
        &self,
        store: &mut Store,
        source_key: &str,
        size: usize,
        now: i64,
    ) -> Result<Received, Error> {
        if applications::mail_seen(store.conn(), source_key)? {
            return Ok(Received::AlreadyProcessed);
        }
        use sha2::Digest;
        let digest = hex::encode(sha2::Sha256::digest(source_key.as_bytes()));
        let error = mime::MimeError::TooLarge {
            size,
            limit: self.limits.max_message_bytes,
        };
        self.reject(store, source_key, size, &digest, &error, now)
    }

    fn reject(
        &self,
        store: &mut Store,
        source_key: &str,
        size: usize,
        digest: &str,
        error: &mime::MimeError,
        now: i64,
    ) -> Result<Received, Error> {
        tracing::warn!(source = source_key, size, error = %error, "mail rejected");
        let actor = self.actor.clone();
        let out = store.write(|tx| {
            if applications::mail_seen(tx, source_key)? {
                return Ok(Received::AlreadyProcessed);
            }
            let mail_id = applications::insert_mail(
                tx,
                &NewIntakeMail {
                    source_key,
                    message_id: &format!("{digest}@rejected.kxca.invalid"),
                    sender: None,
                    subject: "",
                    received_at: now,
                    outcome: "rejected",
                    duplicate_of: None,
                    detail: serde_json::json!({ "code": error.code(), "error": error.to_string(), "size": size }),
                },
                now,
            )?;
            audit::append(
                tx,
                now,
                &actor,
                "intake.mail_rejected",
                None,
                serde_json::json!({ "mail_id": mail_id, "source": source_key, "code": error.code(), "error": error.to_string() }),
            )?;
            Ok(Received::Rejected {
                mail_id,
                code: error.code().to_string(),
            })
        })?;
        Ok(out)
    }
}

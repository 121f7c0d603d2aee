//! One received mail → applications, a reply in the outbox and an audit
//! event, all in one transaction keyed by where the mail came from.
//!
//! Before it is parsed, a mail's attempt is counted in a transaction of
//! its own. A mail whose reader is stopped or dies is left for the next
//! pass once; the second time (or when a pass died while handling it and
//! it comes back a third time) it is rejected, answered and moved out of
//! the mailbox, so that no mail can stop intake for good.

use kxca_ca::Store;
use serde::Serialize;

use crate::applications::{self, NewApplication, NewIntakeMail};
use crate::forms::{FormCheck, FormChecker};
use crate::intake::Replies;
use crate::loops::{self, NoReply};
use crate::mail::mime::{self, Limits};
use crate::outbox::{self, NewMail, OutboxKind};
use crate::reply::{self, FileOutcome, ReplyFacts};
use crate::Error;

/// What receiving one mail did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Received {
    /// Recorded before (same source key): nothing done.
    AlreadyProcessed,
    /// Rejected before (same source key): nothing done but the move to
    /// the rejected folder a crash may have cut off.
    AlreadyRejected,
    /// Recorded now.
    Processed {
        /// Its row in `intake_mails`.
        mail_id: i64,
        /// The applications recorded from its forms.
        applications: Vec<i64>,
        /// Attached forms already received before.
        duplicates: usize,
        /// Whether an answer was queued.
        replied: bool,
        /// Why no answer was queued, when none was.
        #[serde(skip_serializing_if = "Option::is_none")]
        not_answered: Option<NoReply>,
    },
    /// Same Message-ID as an earlier mail: recorded as a duplicate.
    DuplicateMail {
        /// Its own row in `intake_mails`.
        mail_id: i64,
        /// The row of the mail it repeats.
        first: i64,
    },
    /// Not readable within the limits: recorded, answered when the
    /// sender is known, and moved out of the mailbox.
    Rejected {
        /// Its row in `intake_mails`.
        mail_id: i64,
        /// Why, as a stable code (e.g. `mail_too_large`).
        code: String,
    },
    /// The reader failed on this attempt: left in the mailbox for the next
    /// pass, which rejects it if it fails again.
    Deferred {
        /// Attempts made so far.
        attempts: i64,
        /// What failed, in English.
        error: String,
    },
}

/// Attempts at one mail before it is rejected unread.
pub const MAX_ATTEMPTS: i64 = 2;

/// Context of a receive pass.
pub struct Receiver<'a> {
    /// Reads and checks each attached spreadsheet.
    pub checker: &'a dyn FormChecker,
    /// Bounds on one mail.
    pub limits: Limits,
    /// Domain for the Message-IDs of replies.
    pub reply_domain: String,
    /// Who the audit events name.
    pub actor: String,
    /// The worker that parses the mail; `None` parses in this process
    /// (tests of the mail path only: mail from outside is always contained).
    pub sandbox: Option<crate::sandbox::Sandbox>,
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
        if let Some(seen) = already(store, source_key)? {
            return Ok(seen);
        }
        use sha2::Digest;
        let digest = hex::encode(sha2::Sha256::digest(raw));
        let attempts = store
            .write(|tx| applications::record_attempt(tx, source_key, raw.len(), &digest, now))?;
        if attempts > MAX_ATTEMPTS {
            let why = Rejection {
                code: "failed_repeatedly".into(),
                error: format!("processing failed {} times; not read again", attempts - 1),
            };
            return self.reject(store, source_key, raw.len(), &digest, Some(raw), &why, now);
        }
        let parsed = match &self.sandbox {
            Some(s) => mime::read_contained(raw, &self.limits, s),
            None => mime::read(raw, &self.limits).map_err(mime::ReadError::from),
        };
        let mail = match parsed {
            Ok(m) => m,
            Err(mime::ReadError::Mime(e)) => {
                let why = Rejection {
                    code: e.code().into(),
                    error: e.to_string(),
                };
                return self.reject(store, source_key, raw.len(), &digest, Some(raw), &why, now);
            }
            Err(mime::ReadError::Contained(crate::sandbox::Contained::Spawn(e))) => {
                // Not the mail's doing: uncount the attempt, fail the pass.
                store.write(|tx| applications::uncount_attempt(tx, source_key))?;
                return Err(Error::Worker(e));
            }
            Err(mime::ReadError::Contained(c)) => {
                return self.failed_attempt(
                    store,
                    source_key,
                    raw,
                    &digest,
                    attempts,
                    c.code(),
                    &c.to_string(),
                    now,
                );
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
        // A reader stopped or dead on a form counts as a failed attempt at
        // the whole mail, like one dead on the mail itself.
        let dead_reader = checked.iter().flatten().find_map(|c| match c {
            FormCheck::NotAForm { report, .. } if report["error"] == "could_not_read" => {
                Some(report["message"].as_str().unwrap_or_default().to_string())
            }
            _ => None,
        });
        if let Some(message) = dead_reader {
            // Contained::Spawn's text: the host's fault, as above.
            if message.contains("the reader could not be started") {
                store.write(|tx| applications::uncount_attempt(tx, source_key))?;
                return Err(Error::Worker(message));
            }
            return self.failed_attempt(
                store,
                source_key,
                raw,
                &digest,
                attempts,
                "form_unreadable",
                &message,
                now,
            );
        }
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
                tx.audit(now,
                    &actor,
                    kxca_ca::AuditAction::IntakeMailDuplicate,
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
                        tx.audit(now,
                            &actor,
                            kxca_ca::AuditAction::IntakeApplication,
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
                            kind: OutboxKind::IntakeReply,
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
            tx.audit(now,
                &actor,
                kxca_ca::AuditAction::IntakeMail,
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

    /// Records a mail too large to download as rejected, without reading
    /// it; `head`, its first bytes when at hand, tells whom to answer.
    pub fn reject_too_large(
        &self,
        store: &mut Store,
        source_key: &str,
        size: usize,
        head: Option<&[u8]>,
        now: i64,
    ) -> Result<Received, Error> {
        if let Some(seen) = already(store, source_key)? {
            return Ok(seen);
        }
        use sha2::Digest;
        let digest = hex::encode(sha2::Sha256::digest(source_key.as_bytes()));
        let error = mime::MimeError::TooLarge {
            size,
            limit: self.limits.max_message_bytes,
        };
        let why = Rejection {
            code: error.code().into(),
            error: error.to_string(),
        };
        self.reject(store, source_key, size, &digest, head, &why, now)
    }

    /// The reader failed on this attempt: rejected at the last attempt,
    /// else noted and left for the next pass.
    #[allow(clippy::too_many_arguments)]
    fn failed_attempt(
        &self,
        store: &mut Store,
        source_key: &str,
        raw: &[u8],
        digest: &str,
        attempts: i64,
        code: &str,
        error: &str,
        now: i64,
    ) -> Result<Received, Error> {
        if attempts >= MAX_ATTEMPTS {
            let why = Rejection {
                code: code.into(),
                error: error.into(),
            };
            return self.reject(store, source_key, raw.len(), digest, Some(raw), &why, now);
        }
        tracing::warn!(
            source = source_key,
            attempts,
            code,
            error,
            "mail could not be read; left for the next pass"
        );
        store.write(|tx| applications::note_attempt_error(tx, source_key, error))?;
        Ok(Received::Deferred {
            attempts,
            error: error.to_string(),
        })
    }

    /// Records the mail as rejected and, when its sender can be told from
    /// the raw header (never parsed by mail-parser here), queues the
    /// Japanese "could not be read, send it again as .xlsx" answer, in one
    /// transaction.
    #[allow(clippy::too_many_arguments)]
    fn reject(
        &self,
        store: &mut Store,
        source_key: &str,
        size: usize,
        digest: &str,
        raw: Option<&[u8]>,
        why: &Rejection,
        now: i64,
    ) -> Result<Received, Error> {
        tracing::warn!(source = source_key, size, code = %why.code, error = %why.error, "mail rejected");
        let head = raw.map(RawHead::of).unwrap_or_default();
        let actor = self.actor.clone();
        let reply_domain = self.reply_domain.clone();
        let out = store.write(|tx| {
            if applications::mail_seen(tx, source_key)? {
                return Ok(Received::AlreadyProcessed);
            }
            let not_answered = match head.reply_to() {
                None => Some(NoReply::NoAddress),
                Some(_) if head.is_automatic() => Some(NoReply::AutoSubmitted),
                Some(to) if loops::over_rate(tx, to, &self.replies, now)? => {
                    Some(NoReply::RateLimited)
                }
                Some(_) => None,
            };
            let reply_to = head.reply_to().filter(|_| not_answered.is_none());
            let mail_id = applications::insert_mail(
                tx,
                &NewIntakeMail {
                    source_key,
                    message_id: &format!("{digest}@rejected.kxca.invalid"),
                    sender: head.reply_to(),
                    subject: "",
                    received_at: now,
                    outcome: "rejected",
                    duplicate_of: None,
                    detail: serde_json::json!({ "code": why.code, "error": why.error, "size": size }),
                },
                now,
            )?;
            applications::set_reply(
                tx,
                mail_id,
                not_answered.map(NoReply::as_str).unwrap_or("queued"),
            )?;
            if let Some(to) = reply_to {
                let (subject, body) = reply::compose_unreadable();
                outbox::enqueue(
                    tx,
                    &NewMail {
                        idempotency_key: format!("intake-rejected:{mail_id}"),
                        kind: OutboxKind::IntakeRejected,
                        to: to.to_string(),
                        subject,
                        body,
                        in_reply_to: head.message_id.clone(),
                        references: head.message_id.iter().cloned().collect(),
                        attachments: Vec::new(),
                    },
                    &reply_domain,
                    now,
                )?;
            }
            tx.audit(now,
                &actor,
                kxca_ca::AuditAction::IntakeMailRejected,
                None,
                serde_json::json!({
                    "mail_id": mail_id, "source": source_key, "code": why.code,
                    "error": why.error, "replied": reply_to.is_some(),
                }),
            )?;
            Ok(Received::Rejected {
                mail_id,
                code: why.code.clone(),
            })
        })?;
        Ok(out)
    }
}

/// What to do with a mail whose source key is recorded already.
fn already(store: &Store, source_key: &str) -> Result<Option<Received>, Error> {
    Ok(store
        .read(|c| applications::mail_outcome(c, source_key))?
        .map(|outcome| {
            if outcome == "rejected" {
                Received::AlreadyRejected
            } else {
                Received::AlreadyProcessed
            }
        }))
}

/// Why a mail is rejected: a stable code and an English description.
struct Rejection {
    code: String,
    error: String,
}

/// What a rejected mail's header says, read by a small bounded scanner:
/// the mail could not be parsed, so mail-parser is not trusted with it.
#[derive(Debug, Default)]
struct RawHead {
    from: Option<String>,
    reply_to: Option<String>,
    message_id: Option<String>,
    auto_submitted: bool,
}

/// Header bytes looked at; the rest of a hostile mail is never scanned.
const HEAD_LIMIT: usize = 64 * 1024;

impl RawHead {
    fn of(raw: &[u8]) -> RawHead {
        let raw = &raw[..raw.len().min(HEAD_LIMIT)];
        let text = String::from_utf8_lossy(raw);
        let end = text
            .find("\r\n\r\n")
            .or_else(|| text.find("\n\n"))
            .unwrap_or(text.len());
        // Unfold: a line starting with white space continues the last.
        let mut fields: Vec<String> = Vec::new();
        for line in text[..end].lines() {
            match (line.starts_with([' ', '\t']), fields.last_mut()) {
                (true, Some(last)) => last.push_str(line),
                _ => fields.push(line.to_string()),
            }
        }
        let mut head = RawHead::default();
        for f in &fields {
            let Some((name, value)) = f.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "from" if head.from.is_none() => head.from = address(value),
                "reply-to" if head.reply_to.is_none() => head.reply_to = address(value),
                "message-id" if head.message_id.is_none() => {
                    head.message_id = value
                        .split_once('<')
                        .and_then(|(_, r)| r.split_once('>'))
                        .map(|(id, _)| id.trim().to_string())
                        .filter(|id| !id.is_empty() && id.len() <= 250 && id.is_ascii());
                }
                "auto-submitted" if !value.eq_ignore_ascii_case("no") => head.auto_submitted = true,
                "precedence"
                    if ["bulk", "junk", "list"]
                        .iter()
                        .any(|p| value.eq_ignore_ascii_case(p)) =>
                {
                    head.auto_submitted = true
                }
                _ => {}
            }
        }
        head
    }

    fn reply_to(&self) -> Option<&str> {
        self.reply_to.as_deref().or(self.from.as_deref())
    }

    /// Answering an automatic message or a mailer daemon could start a
    /// mail loop (RFC 3834): such a mail is recorded, not answered.
    fn is_automatic(&self) -> bool {
        let daemon = self.from.as_deref().is_some_and(|a| {
            let local = a.split('@').next().unwrap_or_default().to_ascii_lowercase();
            local == "mailer-daemon" || local == "postmaster"
        });
        self.auto_submitted || daemon
    }
}

/// The address in a From or Reply-To value: `<a@b>` or a bare `a@b`.
fn address(value: &str) -> Option<String> {
    let candidate = match value.rsplit_once('<') {
        Some((_, rest)) => rest.split_once('>').map(|(a, _)| a)?,
        None => value.split_whitespace().find(|w| w.contains('@'))?,
    };
    let a = candidate.trim();
    let ok = a.len() <= 254
        && a.is_ascii()
        && a.bytes().all(|b| b.is_ascii_graphic())
        && a.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && (d.contains('.') || d == "localhost"));
    ok.then(|| a.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_head_reads_sender_and_id() {
        let h = RawHead::of(
            b"From: =?UTF-8?B?5bGx55Sw?= <a@office.test>\r\nMessage-ID:\r\n <x1@office.test>\r\n\r\nFrom: b@evil.test\r\n",
        );
        assert_eq!(h.reply_to(), Some("a@office.test"));
        assert_eq!(h.message_id.as_deref(), Some("x1@office.test"));
        assert!(!h.is_automatic());
        let h = RawHead::of(b"From: MAILER-DAEMON@mx.test\r\n\r\n");
        assert!(h.is_automatic());
        let h = RawHead::of(b"From: a@b.test\r\nAuto-Submitted: auto-replied\r\n\r\n");
        assert!(h.is_automatic());
        assert_eq!(address("not an address"), None);
        assert_eq!(address("<a b@c.d>"), None);
    }
}

//! Mail loops (RFC 3834, RFC 3464, RFC 5321 §4.5.5): which received mail
//! kxca answers. A program's mail — an out-of-office answer, a bounce, a
//! list — is recorded but never answered, so two responders cannot answer
//! each other without end and bounces cause no backscatter; a person is
//! answered at most `[replies] max_per_sender_per_hour` times an hour
//! (policies/intake.toml), whatever they send.

use rusqlite::params;

use kxca_ca::store::Snapshot;
use serde::Serialize;

use crate::error::sql;
use crate::intake::Replies;
use crate::mail::mime::ReceivedMail;
use crate::outbox::OutboxKind;

/// Why a received mail gets no answer. Its `as_str` is what the mail's
/// record (`intake_mails.reply`) and the audit event carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoReply {
    /// A delivery-status report (a bounce, or a delay or success notice).
    DeliveryReport,
    /// `Auto-Submitted` with any value but `no`, or a pre-RFC 3834
    /// `X-Autoreply`/`X-Autorespond` header.
    AutoSubmitted,
    /// Envelope sender `<>` (`Return-Path: <>`): RFC 5321 says never answer.
    NullSender,
    /// From MAILER-DAEMON, postmaster or another mail-system sender.
    MailSystem,
    /// `Precedence: bulk|junk|list` (the values the policy lists).
    Bulk,
    /// Came through a mailing list (`List-Id`), when the policy says so.
    List,
    /// No address to answer.
    NoAddress,
    /// The sender was answered the policy's number of times this hour.
    RateLimited,
}

impl NoReply {
    /// The name recorded in `intake_mails.reply` and the audit event.
    pub fn as_str(self) -> &'static str {
        match self {
            NoReply::DeliveryReport => "delivery_report",
            NoReply::AutoSubmitted => "auto_submitted",
            NoReply::NullSender => "null_sender",
            NoReply::MailSystem => "mail_system_sender",
            NoReply::Bulk => "bulk",
            NoReply::List => "mailing_list",
            NoReply::NoAddress => "no_address",
            NoReply::RateLimited => "rate_limited",
        }
    }
}

/// Outbox kinds that answer a received mail: they carry
/// `Auto-Submitted: auto-replied` and count towards the per-sender limit.
/// Every other kind is a notice that answers nothing (`auto-generated`).
pub const ANSWER_KINDS: &[OutboxKind] = &[OutboxKind::IntakeReply, OutboxKind::IntakeRejected];

/// The `Auto-Submitted` value (RFC 3834 §5) of an outbox mail of `kind`.
pub fn auto_submitted(kind: OutboxKind) -> &'static str {
    if ANSWER_KINDS.contains(&kind) {
        "auto-replied"
    } else {
        "auto-generated"
    }
}

/// Whether `mail` must not be answered, judged from the mail alone (the
/// rate limit needs the store: [`over_rate`]). Checked in order, so the
/// most specific reason is recorded.
pub fn not_to_answer(mail: &ReceivedMail, policy: &Replies) -> Option<NoReply> {
    let auto = &mail.auto;
    if auto.delivery_report.is_some() {
        return Some(NoReply::DeliveryReport);
    }
    if auto.auto_submitted.as_deref().is_some_and(|v| v != "no") || auto.legacy_autoreply {
        return Some(NoReply::AutoSubmitted);
    }
    if auto.return_path.as_deref() == Some("") {
        return Some(NoReply::NullSender);
    }
    let system = |addr: &str| {
        let local = addr.rsplit_once('@').map(|(l, _)| l).unwrap_or(addr);
        policy
            .no_reply_senders
            .iter()
            .any(|s| s.eq_ignore_ascii_case(local.trim()))
    };
    if [
        mail.from.as_deref(),
        mail.reply_to.as_deref(),
        auto.return_path.as_deref(),
    ]
    .into_iter()
    .flatten()
    .any(system)
    {
        return Some(NoReply::MailSystem);
    }
    if auto.precedence.as_deref().is_some_and(|p| {
        policy
            .no_reply_precedence
            .iter()
            .any(|v| v.eq_ignore_ascii_case(p))
    }) {
        return Some(NoReply::Bulk);
    }
    if auto.list_id.is_some() && policy.no_reply_list_mail {
        return Some(NoReply::List);
    }
    if mail.reply_to.is_none() {
        return Some(NoReply::NoAddress);
    }
    None
}

/// Whether `to` has had the policy's number of answers within the hour
/// before `now`. Run inside the transaction that would queue the answer,
/// so two passes cannot both take the last slot.
pub fn over_rate(
    conn: &Snapshot<'_>,
    to: &str,
    policy: &Replies,
    now: i64,
) -> Result<bool, kxca_ca::Error> {
    let kinds: Vec<&str> = ANSWER_KINDS.iter().map(|k| k.as_str()).collect();
    let kinds = serde_json::to_string(&kinds).unwrap_or_else(|_| "[]".into());
    let answered: i64 = conn
        .query_row(
            "SELECT count(*) FROM outbox
             WHERE lower(to_addr) = lower(?1) AND created_at > ?2
               AND kind IN (SELECT value FROM json_each(?3))",
            params![to, now - 3600, kinds],
            |r| r.get(0),
        )
        .map_err(sql)?;
    Ok(answered >= i64::from(policy.max_per_sender_per_hour))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::mime::{read, Limits};

    fn policy() -> Replies {
        Replies::default()
    }

    fn judge(headers: &str) -> Option<NoReply> {
        let raw = format!("{headers}Message-ID: <x@y>\r\nSubject: s\r\n\r\nbody\r\n");
        let mail = read(raw.as_bytes(), &Limits::default()).unwrap();
        not_to_answer(&mail, &policy())
    }

    #[test]
    fn a_person_is_answered() {
        assert_eq!(judge("From: a@office.test\r\n"), None);
        assert_eq!(judge("From: a@office.test\r\nAuto-Submitted: no\r\n"), None);
        assert_eq!(
            judge("From: a@office.test\r\nPrecedence: first-class\r\n"),
            None
        );
    }

    #[test]
    fn programs_are_not_answered() {
        let from = "From: a@office.test\r\n";
        assert_eq!(
            judge(&format!(
                "{from}Auto-Submitted: auto-replied (vacation)\r\n"
            )),
            Some(NoReply::AutoSubmitted)
        );
        assert_eq!(
            judge(&format!("{from}Auto-Submitted: Auto-Generated\r\n")),
            Some(NoReply::AutoSubmitted)
        );
        assert_eq!(
            judge(&format!("{from}X-Autoreply: yes\r\n")),
            Some(NoReply::AutoSubmitted)
        );
        assert_eq!(
            judge(&format!("Return-Path: <>\r\n{from}")),
            Some(NoReply::NullSender)
        );
        assert_eq!(
            judge("From: Mail Delivery System <MAILER-DAEMON@mx.office.test>\r\n"),
            Some(NoReply::MailSystem)
        );
        assert_eq!(
            judge("From: postmaster@office.test\r\n"),
            Some(NoReply::MailSystem)
        );
        for p in ["bulk", "junk", "list", "Bulk"] {
            assert_eq!(
                judge(&format!("{from}Precedence: {p}\r\n")),
                Some(NoReply::Bulk),
                "{p}"
            );
        }
        assert_eq!(
            judge(&format!("{from}List-Id: <news.office.test>\r\n")),
            Some(NoReply::List)
        );
        assert_eq!(judge("Subject: x\r\n"), Some(NoReply::NoAddress));
    }

    #[test]
    fn a_delivery_status_report_names_the_bounced_mail() {
        let raw = "From: MAILER-DAEMON@mx.test (Mail Delivery System)\r\n\
To: signup@kx.test\r\nSubject: Undelivered Mail Returned to Sender\r\n\
Message-ID: <bounce1@mx.test>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry.\r\n\
--B\r\nContent-Type: message/delivery-status\r\n\r\n\
Reporting-MTA: dns; mx.test\r\n\r\nFinal-Recipient: rfc822; nobody@office.test\r\n\
Original-Recipient: rfc822;nobody@office.test\r\nAction: failed\r\nStatus: 5.1.1\r\n\
Diagnostic-Code: x-unix; user unknown\r\n\r\n\
--B\r\nContent-Type: text/rfc822-headers\r\n\r\n\
From: signup@kx.test\r\nTo: nobody@office.test\r\nMessage-ID: <1.abc@kx.test>\r\nSubject: r\r\n\r\n\
--B--\r\n";
        let mail = read(raw.as_bytes(), &Limits::default()).unwrap();
        assert_eq!(
            not_to_answer(&mail, &policy()),
            Some(NoReply::DeliveryReport)
        );
        let report = mail.auto.delivery_report.unwrap();
        assert_eq!(
            report.original_message_ids,
            vec!["1.abc@kx.test".to_string()]
        );
        assert_eq!(report.recipients.len(), 1);
        assert_eq!(report.recipients[0].recipient, "nobody@office.test");
        assert_eq!(report.recipients[0].action, "failed");
        assert_eq!(report.recipients[0].status.as_deref(), Some("5.1.1"));
        assert!(mail.attachments.is_empty(), "{:?}", mail.attachments);
    }

    #[test]
    fn kinds_say_whether_they_answer() {
        assert_eq!(auto_submitted(OutboxKind::IntakeReply), "auto-replied");
        assert_eq!(auto_submitted(OutboxKind::IntakeRejected), "auto-replied");
    }
}

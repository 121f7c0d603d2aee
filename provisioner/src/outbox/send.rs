//! Draining the outbox over SMTP submission (lettre).

use std::time::{Duration, SystemTime};

use kxca_ca::{Clock, Store};

use crate::{SmtpConfig, TlsMode};
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, TlsParameters};
use lettre::Message;
use secrecy::ExposeSecret;
use serde::Serialize;

use super::smtp::{Security, Submission};
use super::store::{self, OutboxMail};
use crate::Error;

/// An SMTP submission client built from `[mail.smtp]`.
pub struct Sender {
    submission: Submission,
    from: Mailbox,
    server: String,
    max_attempts: u32,
    backoff_seconds: u64,
    /// Set when this sender may send mail 2 (it mints the pickup code).
    pickup: Option<kxca_ca::enrolment::PickupPolicy>,
}

impl Sender {
    /// Reads the password (if AUTH is configured) and prepares the
    /// transport; nothing is connected yet.
    pub fn new(config: &SmtpConfig) -> Result<Sender, Error> {
        let server = format!("{}:{}", config.host, config.port);
        let smtp_err = |message: String| Error::Smtp {
            server: server.clone(),
            message,
        };
        let security = match config.tls {
            TlsMode::Implicit => {
                Security::Implicit(crate::mail::tls::connector(config.ca_file.as_deref())?)
            }
            TlsMode::Starttls => {
                let mut tls = TlsParameters::builder(config.host.clone());
                if let Some(path) = &config.ca_file {
                    let pem = std::fs::read(path).map_err(|e| Error::CaFile {
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                    let cert = Certificate::from_pem(&pem).map_err(|e| Error::CaFile {
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                    tls = tls.add_root_certificate(cert);
                }
                Security::Starttls(
                    tls.build_rustls()
                        .map_err(|e| smtp_err(format!("TLS setup: {e}")))?,
                )
            }
        };
        let mut credentials = None;
        if let (Some(user), Some(source)) = (&config.user, config.password_source()) {
            let source = source?;
            let secret = source.read()?;
            credentials = Some(Credentials::new(
                user.clone(),
                secret.expose_secret().to_string(),
            ));
        }
        let address = config
            .from
            .parse()
            .map_err(|e| Error::Config(format!("[mail.smtp] from = {:?}: {e}", config.from)))?;
        Ok(Sender {
            submission: Submission::new(
                config.host.clone(),
                config.port,
                security,
                credentials,
                Duration::from_secs(config.timeout_seconds.max(1)),
            ),
            from: Mailbox::new(config.from_name.clone(), address),
            server,
            max_attempts: config.max_attempts.max(1),
            backoff_seconds: config.backoff_seconds.max(1),
            pickup: None,
        })
    }

    /// Lets this sender send mail 2, minting its pickup code under `policy`
    /// (and its KX password) when it claims it. Without it, mail 2 stays
    /// queued for a sender that has it.
    pub fn minting(mut self, policy: kxca_ca::enrolment::PickupPolicy) -> Sender {
        self.pickup = Some(policy);
        self
    }

    /// The domain of the From address, for Message-IDs.
    pub fn domain(&self) -> String {
        self.from.email.domain().to_string()
    }

    fn retry_at(&self, attempts: u32, now: i64) -> Option<i64> {
        if attempts >= self.max_attempts {
            return None;
        }
        let exp = attempts.saturating_sub(1).min(16);
        let delay = self.backoff_seconds.saturating_mul(1 << exp).min(6 * 3600);
        Some(now + delay as i64)
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SendSummary {
    /// Mails the SMTP server accepted.
    pub sent: usize,
    /// Mails that failed this time and will be tried again.
    pub retrying: usize,
    /// Mails given up for good.
    pub failed: usize,
}

/// Sends every due mail once, oldest first. Errors of one mail are
/// recorded on its row (retried later with backoff), never returned: only
/// store errors end the pass.
pub async fn run_once(
    store: &mut Store,
    sender: &Sender,
    clock: &Clock,
    actor: &str,
) -> Result<SendSummary, Error> {
    let out = drain(store, sender, clock, actor).await;
    // One session per pass: an idle connection would only be closed by the
    // server's timeout before the next pass.
    sender.submission.close().await;
    out
}

async fn drain(
    store: &mut Store,
    sender: &Sender,
    clock: &Clock,
    actor: &str,
) -> Result<SendSummary, Error> {
    let mut summary = SendSummary::default();
    // Bounded so that a row the pass itself re-queues is not retried at once.
    let started = clock.now();
    loop {
        // Per-mail phase times, at debug level (KXCA_LOG=kxca_provisioner=debug):
        // where a slow pass spends its time, measured rather than guessed.
        let t_claim = std::time::Instant::now();
        let Some(mail) = store::claim_next(
            store,
            started.max(clock.now()),
            actor,
            sender.pickup.as_ref(),
        )?
        else {
            break;
        };
        let claim_ms = t_claim.elapsed().as_secs_f64() * 1e3;
        let t_send = std::time::Instant::now();
        let result = match build(&mail, &sender.from, clock.now()) {
            Ok(message) => {
                // Mail 2's wire bytes hold the minted secrets.
                let bytes = zeroize::Zeroizing::new(message.formatted());
                sender
                    .submission
                    .send(message.envelope(), &bytes)
                    .await
                    .map_err(|f| (f.permanent, f.message))
            }
            Err(message) => Err((true, message)),
        };
        let send_ms = t_send.elapsed().as_secs_f64() * 1e3;
        let now = clock.now();
        match result {
            Ok(()) => {
                let t_mark = std::time::Instant::now();
                store::mark_sent(store, &mail, now, actor)?;
                tracing::debug!(
                    outbox_id = mail.id,
                    kind = %mail.kind,
                    claim_ms,
                    send_ms,
                    mark_ms = t_mark.elapsed().as_secs_f64() * 1e3,
                    "mail timing"
                );
                tracing::info!(outbox_id = mail.id, kind = %mail.kind, to = %mail.to, "mail sent");
                summary.sent += 1;
            }
            Err((permanent, message)) => {
                let retry_at = if permanent {
                    None
                } else {
                    sender.retry_at(mail.attempts, now)
                };
                let message = format!("{}: {message}", sender.server);
                tracing::warn!(outbox_id = mail.id, attempts = mail.attempts, retry_at, error = %message, "sending failed");
                store::mark_attempt_failed(store, &mail, &message, retry_at, now, actor)?;
                if retry_at.is_some() {
                    summary.retrying += 1;
                } else {
                    summary.failed += 1;
                }
                if !permanent {
                    // The server is unreachable or refusing for now: the
                    // rest of the queue would fail the same way.
                    break;
                }
            }
        }
    }
    Ok(summary)
}

/// The RFC 5322 message for a row: UTF-8 text, Date and Message-ID fixed,
/// threading headers, attachments named both ways (RFC 2231 by lettre, and
/// the RFC 2047 `name` parameter that older Japanese clients read).
fn build(mail: &OutboxMail, from: &Mailbox, now: i64) -> Result<Message, String> {
    let to: Mailbox = mail
        .to
        .parse()
        .map_err(|e| format!("recipient {:?}: {e}", mail.to))?;
    let mut builder = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(mail.subject.clone())
        .date(SystemTime::UNIX_EPOCH + Duration::from_secs(now.max(0) as u64))
        .message_id(Some(format!("<{}>", mail.message_id)))
        // RFC 3834: a responder that reads this never answers it, so kxca
        // and an office's vacation responder cannot answer each other.
        .header(AutoSubmitted(
            crate::loops::auto_submitted(mail.kind).to_string(),
        ))
        // Exchange and Outlook ignore Auto-Submitted for their own
        // out-of-office answers but honour this.
        .header(AutoResponseSuppress);
    if let Some(parent) = &mail.in_reply_to {
        builder = builder.in_reply_to(format!("<{parent}>"));
    }
    if !mail.references.is_empty() {
        let refs: Vec<String> = mail.references.iter().map(|r| format!("<{r}>")).collect();
        builder = builder.references(refs.join(" "));
    }
    let body = match &mail.secret_body {
        Some(secret) => secret.to_string(),
        None => mail.body.clone(),
    };
    let text = SinglePart::builder()
        .header(ContentType::TEXT_PLAIN)
        .body(body);
    let message = if mail.attachments.is_empty() {
        builder.singlepart(text)
    } else {
        let mut multipart = MultiPart::mixed().singlepart(text);
        for a in &mail.attachments {
            let encoded_name = encode_word(&a.file_name);
            let content_type =
                ContentType::parse(&format!("{}; name=\"{}\"", a.content_type, encoded_name))
                    .or_else(|_| ContentType::parse(&a.content_type))
                    .map_err(|e| format!("content type {:?}: {e}", a.content_type))?;
            multipart = multipart.singlepart(
                Attachment::new(a.file_name.clone()).body(a.bytes.clone(), content_type),
            );
        }
        builder.multipart(multipart)
    };
    message.map_err(|e| e.to_string())
}

/// The `Auto-Submitted` header (RFC 3834 §5).
#[derive(Debug, Clone)]
struct AutoSubmitted(String);

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted(s.trim().to_string()))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// `X-Auto-Response-Suppress: All`: Microsoft's equivalent.
#[derive(Debug, Clone)]
struct AutoResponseSuppress;

impl Header for AutoResponseSuppress {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Auto-Response-Suppress")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoResponseSuppress)
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "All".to_string())
    }
}

/// RFC 2047 B-encoding of a UTF-8 file name (ASCII names stay as they are).
fn encode_word(name: &str) -> String {
    if name.is_ascii() {
        return name.replace('"', "");
    }
    use base64::Engine;
    format!(
        "=?UTF-8?B?{}?=",
        base64::engine::general_purpose::STANDARD.encode(name.as_bytes())
    )
}

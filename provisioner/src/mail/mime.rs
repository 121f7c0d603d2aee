//! Reading one received mail: sender, ids and the attached files, with
//! forwarded messages walked and hostile structure bounded.

use mail_parser::{HeaderName, Message, MessageParser, MimeHeaders, PartType};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::names;

/// Bounds on what one mail may be; past them the mail is rejected whole.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Limits {
    /// Largest raw mail, in bytes.
    pub max_message_bytes: usize,
    /// Nesting of multiparts and forwarded messages.
    pub max_depth: usize,
    /// Most MIME parts in one mail, all levels counted.
    pub max_parts: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 25 * 1024 * 1024,
            max_depth: 12,
            max_parts: 200,
        }
    }
}

/// Why a mail could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MimeError {
    /// The raw mail is over `max_message_bytes`.
    #[error("message is {size} bytes, above the limit of {limit}")]
    TooLarge {
        /// The mail's size in bytes.
        size: usize,
        /// `max_message_bytes`.
        limit: usize,
    },
    /// Multiparts or forwarded messages nest deeper than `max_depth`.
    #[error("MIME structure nested deeper than {limit} levels")]
    TooDeep {
        /// `max_depth`.
        limit: usize,
    },
    /// More parts than `max_parts`.
    #[error("more than {limit} MIME parts")]
    TooManyParts {
        /// `max_parts`.
        limit: usize,
    },
    /// Not a mail the parser can read.
    #[error("not a parseable RFC 5322 message")]
    Unparseable,
}

impl MimeError {
    /// A stable code for logs and the store.
    pub fn code(&self) -> &'static str {
        match self {
            MimeError::TooLarge { .. } => "mail_too_large",
            MimeError::TooDeep { .. } => "mime_too_deep",
            MimeError::TooManyParts { .. } => "mime_too_many_parts",
            MimeError::Unparseable => "mail_unparseable",
        }
    }
}

/// What a file is, told by its first bytes (never by name or MIME type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileKind {
    /// `PK\x03\x04`: .xlsx or .ods.
    Zip,
    /// `D0 CF 11 E0`: .xls.
    Ole2,
    /// Anything else: not a form.
    Other,
}

impl FileKind {
    /// The kind a file's first bytes say it is (its name is not trusted).
    pub fn of(bytes: &[u8]) -> FileKind {
        if bytes.starts_with(b"PK\x03\x04") {
            FileKind::Zip
        } else if bytes.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
            FileKind::Ole2
        } else {
            FileKind::Other
        }
    }

    /// Whether the file may be a spreadsheet form.
    pub fn is_spreadsheet(self) -> bool {
        matches!(self, FileKind::Zip | FileKind::Ole2)
    }
}

/// One attached file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attachment {
    /// Decoded file name; `添付ファイル<N>` when the part has none.
    pub name: String,
    /// The part's Content-Type as sent (not trusted).
    pub content_type: String,
    /// What its bytes say it is.
    pub kind: FileKind,
    /// Base64 on the worker's pipe: JSON arrays of numbers would be four
    /// times the size.
    #[serde(with = "crate::sandbox::b64")]
    pub bytes: Vec<u8>,
    /// Lower-case hex SHA-256 of `bytes`.
    pub sha256: String,
    /// True when found inside a forwarded message.
    pub forwarded: bool,
}

/// A received mail, reduced to what intake needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReceivedMail {
    /// The Message-ID without angle brackets; for a mail without one, a
    /// stable id derived from its bytes so duplicates are still recognised.
    pub message_id: String,
    /// The address replies go to (Reply-To, else From), if any.
    pub reply_to: Option<String>,
    /// The From address, if any.
    pub from: Option<String>,
    /// The decoded Subject.
    pub subject: String,
    /// Date header as Unix seconds.
    pub date: Option<i64>,
    /// The References chain for a reply, oldest first, without brackets.
    pub references: Vec<String>,
    /// Every attached file, forwarded messages' included.
    pub attachments: Vec<Attachment>,
    /// What the mail says about being automatic (RFC 3834, RFC 3464);
    /// [`crate::loops`] decides from it whether the mail is answered.
    pub auto: AutoSignals,
}

/// The headers and structure that tell a mail written by a program (an
/// out-of-office answer, a bounce, a list) from one written by a person.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoSignals {
    /// `Auto-Submitted`, lower-cased, without comments or parameters.
    pub auto_submitted: Option<String>,
    /// True when an `X-Autoreply` or `X-Autorespond` header is present
    /// (older responders that predate RFC 3834).
    pub legacy_autoreply: bool,
    /// `Precedence`, lower-cased.
    pub precedence: Option<String>,
    /// `List-Id`, when the mail came through a mailing list.
    pub list_id: Option<String>,
    /// The envelope sender as the delivering server recorded it
    /// (`Return-Path`); `Some("")` for the null sender `<>`.
    pub return_path: Option<String>,
    /// A delivery-status report (multipart/report; report-type=delivery-status,
    /// or a message/delivery-status part).
    pub delivery_report: Option<DeliveryReport>,
}

/// What a delivery-status notification (RFC 3464) reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryReport {
    /// Message-IDs (without brackets) the report may be about: its
    /// `Original-Message-ID` field, the returned message or headers, and
    /// the report's own In-Reply-To/References.
    pub original_message_ids: Vec<String>,
    /// What the report says per recipient.
    pub recipients: Vec<RecipientStatus>,
}

/// One per-recipient block of a delivery-status report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientStatus {
    /// `Final-Recipient` (else `Original-Recipient`) without its address type.
    pub recipient: String,
    /// `Action`, lower-cased: failed, delayed, delivered, relayed, expanded.
    pub action: String,
    /// `Status`, e.g. `5.1.1`.
    pub status: Option<String>,
    /// `Diagnostic-Code`, as the remote server gave it.
    pub diagnostic: Option<String>,
}

/// Why a mail could not be read: its content, or the worker reading it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The mail itself is over a bound or unreadable.
    #[error("{0}")]
    Mime(#[from] MimeError),
    /// The worker process reading it was stopped or died.
    #[error("{0}")]
    Contained(#[from] crate::sandbox::Contained),
}

/// Parses `raw` within `limits` in a worker process (see
/// [`crate::sandbox`]): the only way the mail path reads a message.
pub fn read_contained(
    raw: &[u8],
    limits: &Limits,
    sandbox: &crate::sandbox::Sandbox,
) -> Result<ReceivedMail, ReadError> {
    // Refused before a process is started for it.
    if raw.len() > limits.max_message_bytes {
        return Err(MimeError::TooLarge {
            size: raw.len(),
            limit: limits.max_message_bytes,
        }
        .into());
    }
    let job = crate::sandbox::Job::Mail { limits: *limits };
    let answer: Result<ReceivedMail, MimeError> = sandbox.run(&job, raw)?;
    Ok(answer?)
}

/// Parses `raw` within `limits`, in this process. For tests and tools;
/// received mail goes through [`read_contained`].
pub fn read(raw: &[u8], limits: &Limits) -> Result<ReceivedMail, MimeError> {
    let message = parse(raw, limits)?;
    reduce(raw, &message, limits)
}

/// [`read`] for the worker: the parsed message is leaked, not dropped, as
/// mail-parser drops a deeply nested message recursively and can overflow
/// the stack doing it. Only for a process that exits right after.
pub(crate) fn read_and_leak(raw: &[u8], limits: &Limits) -> Result<ReceivedMail, MimeError> {
    let message = parse(raw, limits)?;
    let out = reduce(raw, &message, limits);
    std::mem::forget(message);
    out
}

fn parse<'x>(raw: &'x [u8], limits: &Limits) -> Result<Message<'x>, MimeError> {
    if raw.len() > limits.max_message_bytes {
        return Err(MimeError::TooLarge {
            size: raw.len(),
            limit: limits.max_message_bytes,
        });
    }
    MessageParser::default()
        .parse(raw)
        .ok_or(MimeError::Unparseable)
}

fn reduce(raw: &[u8], message: &Message<'_>, limits: &Limits) -> Result<ReceivedMail, MimeError> {
    if message.parts.is_empty() {
        return Err(MimeError::Unparseable);
    }
    let mut walk = Walk {
        limits,
        root: raw,
        parts_seen: 0,
        attachments: Vec::new(),
        status_blocks: None,
        returned_ids: Vec::new(),
    };
    walk.part(message, 0, 0, false)?;

    let message_id = match message.message_id() {
        Some(id) if !id.trim().is_empty() => id.trim().to_string(),
        _ => format!(
            "{}@no-message-id.kxca.invalid",
            hex::encode(Sha256::digest(raw))
        ),
    };
    let first_address = |v: Option<&mail_parser::Address<'_>>| {
        v.and_then(|a| a.first())
            .and_then(|a| a.address())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let from = first_address(message.from());
    let reply_to = first_address(message.reply_to()).or_else(|| from.clone());
    let mut references: Vec<String> = message
        .references()
        .as_text_list()
        .map(|l| l.iter().map(|s| s.to_string()).collect())
        .unwrap_or_default();
    let in_reply_to: Vec<String> = message
        .in_reply_to()
        .as_text_list()
        .map(|l| l.iter().map(|s| s.to_string()).collect())
        .unwrap_or_default();
    if references.is_empty() {
        references.extend(in_reply_to.iter().cloned());
    }
    let auto = auto_signals(message, &mut walk, &in_reply_to, &references);
    Ok(ReceivedMail {
        message_id,
        reply_to,
        from,
        subject: message.subject().unwrap_or_default().to_string(),
        date: message.date().map(|d| d.to_timestamp()),
        references,
        attachments: walk.attachments,
        auto,
    })
}

/// The first value of a top-level header, unfolded and trimmed.
fn header_text<'m>(message: &'m Message<'_>, name: &str) -> Option<&'m str> {
    message
        .headers_raw()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// A header's keyword: lower-cased, before any `;` parameter or `(` comment.
fn keyword(value: &str) -> String {
    value
        .split([';', '('])
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn auto_signals(
    message: &Message<'_>,
    walk: &mut Walk<'_>,
    in_reply_to: &[String],
    references: &[String],
) -> AutoSignals {
    let return_path = header_text(message, "Return-Path").map(|v| {
        v.trim_start_matches('<')
            .trim_end_matches('>')
            .trim()
            .to_string()
    });
    let is_report = message.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
            && ct
                .attribute("report-type")
                .is_some_and(|t| t.to_ascii_lowercase().contains("delivery-status"))
    }) || walk.status_blocks.is_some();
    let delivery_report = is_report.then(|| {
        let blocks = walk.status_blocks.take().unwrap_or_default();
        let mut ids = Vec::new();
        let mut recipients = Vec::new();
        for block in &blocks {
            let field = |name: &str| {
                block
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.trim().to_string())
            };
            if let Some(id) = field("Original-Message-ID") {
                ids.push(strip_brackets(&id));
            }
            let Some(recipient) = field("Final-Recipient").or_else(|| field("Original-Recipient"))
            else {
                continue;
            };
            // `rfc822; user@example.org`: the address type is not part of it.
            let recipient = recipient
                .split_once(';')
                .map(|(_, a)| a)
                .unwrap_or(&recipient)
                .trim()
                .to_string();
            recipients.push(RecipientStatus {
                recipient,
                action: field("Action").map(|a| keyword(&a)).unwrap_or_default(),
                status: field("Status").map(|s| keyword(&s)),
                diagnostic: field("Diagnostic-Code"),
            });
        }
        ids.append(&mut walk.returned_ids);
        ids.extend(in_reply_to.iter().cloned());
        ids.extend(references.iter().cloned());
        ids.retain(|i| !i.is_empty());
        let mut seen = std::collections::HashSet::new();
        ids.retain(|i| seen.insert(i.clone()));
        DeliveryReport {
            original_message_ids: ids,
            recipients,
        }
    });
    AutoSignals {
        auto_submitted: header_text(message, "Auto-Submitted").map(keyword),
        legacy_autoreply: header_text(message, "X-Autoreply").is_some()
            || header_text(message, "X-Autorespond").is_some(),
        precedence: header_text(message, "Precedence").map(keyword),
        list_id: header_text(message, "List-Id").map(str::to_string),
        return_path,
        delivery_report,
    }
}

fn strip_brackets(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_string()
}

/// The field blocks of a message/delivery-status body: the per-message
/// block, then one per recipient, separated by blank lines (RFC 3464 §2.1).
/// Continuation lines are unfolded.
fn status_fields(body: &[u8]) -> Vec<Vec<(String, String)>> {
    let text = String::from_utf8_lossy(body);
    let mut blocks: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in text.lines() {
        if line.trim().is_empty() {
            if blocks.last().is_some_and(|b| !b.is_empty()) {
                blocks.push(Vec::new());
            }
            continue;
        }
        let Some(block) = blocks.last_mut() else {
            continue;
        };
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = block.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((n, v)) = line.split_once(':') {
            block.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    blocks.retain(|b| !b.is_empty());
    blocks
}

struct Walk<'l> {
    limits: &'l Limits,
    /// The outermost message's bytes: header offsets of a part inside an
    /// inline (not encoded) forwarded message point here.
    root: &'l [u8],
    parts_seen: usize,
    attachments: Vec<Attachment>,
    /// Field blocks of a message/delivery-status part, when one was seen.
    status_blocks: Option<Vec<Vec<(String, String)>>>,
    /// Message-IDs of returned messages or headers (message/rfc822,
    /// text/rfc822-headers): what a bounce is about.
    returned_ids: Vec<String>,
}

impl Walk<'_> {
    fn part(
        &mut self,
        message: &Message<'_>,
        id: usize,
        depth: usize,
        forwarded: bool,
    ) -> Result<(), MimeError> {
        if depth > self.limits.max_depth {
            return Err(MimeError::TooDeep {
                limit: self.limits.max_depth,
            });
        }
        self.parts_seen += 1;
        if self.parts_seen > self.limits.max_parts {
            return Err(MimeError::TooManyParts {
                limit: self.limits.max_parts,
            });
        }
        let Some(part) = message.parts.get(id) else {
            return Ok(());
        };
        let (ctype, subtype) = part
            .content_type()
            .map(|ct| {
                (
                    ct.ctype().to_ascii_lowercase(),
                    ct.subtype().unwrap_or("").to_ascii_lowercase(),
                )
            })
            .unwrap_or_default();
        match (ctype.as_str(), subtype.as_str()) {
            ("message", "delivery-status" | "global-delivery-status") => {
                self.status_blocks
                    .get_or_insert_with(Vec::new)
                    .extend(status_fields(part.contents()));
                return Ok(());
            }
            ("text", "rfc822-headers" | "global-headers") => {
                if let Some(id) = MessageParser::default()
                    .parse_headers(part.contents())
                    .and_then(|h| h.message_id().map(str::to_string))
                {
                    self.returned_ids.push(strip_brackets(&id));
                }
                return Ok(());
            }
            _ => {}
        }
        match &part.body {
            PartType::Multipart(children) => {
                for child in children {
                    // The root lists itself in no case, but a malformed tree
                    // must not loop: children always come after their parent.
                    if (*child as usize) > id {
                        self.part(message, *child as usize, depth + 1, forwarded)?;
                    }
                }
            }
            PartType::Message(inner) => {
                if let Some(id) = inner.message_id() {
                    self.returned_ids.push(strip_brackets(id));
                }
                if !inner.parts.is_empty() {
                    self.part(inner, 0, depth + 1, true)?;
                }
            }
            PartType::Text(_) | PartType::Html(_) if part.attachment_name().is_none() => {
                // A message body, not a file.
            }
            body => {
                let bytes: &[u8] = match body {
                    PartType::Text(t) | PartType::Html(t) => t.as_bytes(),
                    PartType::Binary(b) | PartType::InlineBinary(b) => b,
                    _ => &[],
                };
                let n = self.attachments.len() + 1;
                let name = attachment_name(message, self.root, part)
                    .unwrap_or_else(|| format!("添付ファイル{n}"));
                let content_type = part
                    .content_type()
                    .map(|ct| match &ct.c_subtype {
                        Some(s) => format!("{}/{}", ct.c_type, s),
                        None => ct.c_type.to_string(),
                    })
                    .unwrap_or_else(|| "application/octet-stream".to_string())
                    .to_ascii_lowercase();
                self.attachments.push(Attachment {
                    name,
                    content_type,
                    kind: FileKind::of(bytes),
                    sha256: hex::encode(Sha256::digest(bytes)),
                    bytes: bytes.to_vec(),
                    forwarded,
                });
            }
        }
        Ok(())
    }
}

/// The part's file name; re-decoded from the raw header bytes when
/// mail-parser's piecewise decoding lost characters.
fn attachment_name(
    message: &Message<'_>,
    root: &[u8],
    part: &mail_parser::MessagePart<'_>,
) -> Option<String> {
    let parsed = part.attachment_name().map(str::to_string);
    if parsed.as_deref().is_some_and(|n| !n.contains('\u{FFFD}')) {
        return parsed;
    }
    // Header offsets index the outermost message's bytes for a part of an
    // inline forwarded message (seen with a real Postfix/Dovecot delivery),
    // but the decoded bytes for an encoded message/rfc822: try the holding
    // message first, then the outermost, and keep only a clean decode.
    for raw in [message.raw_message(), root] {
        for (header, param) in [
            (HeaderName::ContentDisposition, "filename"),
            (HeaderName::ContentType, "name"),
        ] {
            for h in part.headers.iter().filter(|h| h.name == header) {
                let Some(value) = raw.get(h.offset_start as usize..h.offset_end as usize) else {
                    continue;
                };
                if let Some(name) = names::decode_param(value, param) {
                    if !name.contains('\u{FFFD}') {
                        return Some(name);
                    }
                }
            }
        }
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_kind_by_content() {
        assert_eq!(FileKind::of(b"PK\x03\x04rest"), FileKind::Zip);
        assert_eq!(
            FileKind::of(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1, 0]),
            FileKind::Ole2
        );
        assert_eq!(FileKind::of(b"%PDF"), FileKind::Other);
    }

    #[test]
    fn bounded_size() {
        let limits = Limits {
            max_message_bytes: 10,
            ..Limits::default()
        };
        assert!(matches!(
            read(b"Subject: a long enough message\r\n\r\nbody", &limits),
            Err(MimeError::TooLarge { .. })
        ));
    }
}

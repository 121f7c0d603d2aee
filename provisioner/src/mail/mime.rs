//! Reading one received mail: sender, ids and the attached files, with
//! forwarded messages walked and hostile structure bounded.

use mail_parser::{HeaderName, Message, MessageParser, MimeHeaders, PartType};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::names;

/// Bounds on what one mail may be; past them the mail is rejected whole.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Limits {
    pub max_message_bytes: usize,
    /// Nesting of multiparts and forwarded messages.
    pub max_depth: usize,
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
    #[error("message is {size} bytes, above the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("MIME structure nested deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("more than {limit} MIME parts")]
    TooManyParts { limit: usize },
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
    Other,
}

impl FileKind {
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
    pub content_type: String,
    pub kind: FileKind,
    /// Base64 on the worker's pipe: JSON arrays of numbers would be four
    /// times the size.
    #[serde(with = "b64")]
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
    pub from: Option<String>,
    pub subject: String,
    /// Date header as Unix seconds.
    pub date: Option<i64>,
    /// The References chain for a reply, oldest first, without brackets.
    pub references: Vec<String>,
    pub attachments: Vec<Attachment>,
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

/// Why a mail could not be read: its content, or the worker reading it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Mime(#[from] MimeError),
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
    if references.is_empty() {
        if let Some(parent) = message.in_reply_to().as_text() {
            references.push(parent.to_string());
        }
    }
    Ok(ReceivedMail {
        message_id,
        reply_to,
        from,
        subject: message.subject().unwrap_or_default().to_string(),
        date: message.date().map(|d| d.to_timestamp()),
        references,
        attachments: walk.attachments,
    })
}

struct Walk<'l> {
    limits: &'l Limits,
    /// The outermost message's bytes: header offsets of a part inside an
    /// inline (not encoded) forwarded message point here.
    root: &'l [u8],
    parts_seen: usize,
    attachments: Vec<Attachment>,
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

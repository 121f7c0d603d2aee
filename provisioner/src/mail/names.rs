//! Attachment names re-decoded from the raw header bytes.
//!
//! mail-parser decodes each RFC 2231 continuation and each RFC 2047 encoded
//! word on its own. Japanese mailers split names in the middle of a
//! multi-byte character (Thunderbird continuations, Outlook and Windows Mail
//! encoded words), so each piece alone is invalid and comes out with U+FFFD.
//! Here the pieces' bytes are joined first and the charset decoded once.

use encoding_rs::Encoding;

/// The file name in a raw `Content-Disposition` or `Content-Type` header
/// value (`param` is `filename` or `name`), decoded; None when the
/// parameter is absent or cannot be decoded without loss.
pub fn decode_param(raw_value: &[u8], param: &str) -> Option<String> {
    let unfolded = unfold(raw_value);
    let params = split_params(&unfolded);
    if let Some(name) = rfc2231(&params, param) {
        return Some(name);
    }
    let (_, value) = params.iter().find(|(k, _)| k.eq_ignore_ascii_case(param))?;
    let text = rfc2047(value)?;
    (!text.contains('\u{FFFD}')).then_some(text)
}

/// Decodes `bytes` in the named MIME charset. Japanese Windows mailers send
/// CP932 while labelling it Shift_JIS or ISO-2022-JP: encoding_rs decodes
/// both labels with the Windows extensions (NEC and IBM rows) included.
pub fn decode_charset(charset: &str, bytes: &[u8]) -> Option<String> {
    let label = charset.trim().to_ascii_lowercase();
    let encoding = match label.as_str() {
        "cp932" | "ms932" | "windows-31j" | "x-sjis" | "shift-jis" => encoding_rs::SHIFT_JIS,
        "" | "us-ascii" => encoding_rs::UTF_8,
        _ => Encoding::for_label(label.as_bytes())?,
    };
    let (text, had_errors) = encoding.decode_without_bom_handling(bytes);
    (!had_errors).then(|| text.into_owned())
}

fn unfold(raw: &[u8]) -> Vec<u8> {
    raw.iter()
        .copied()
        .filter(|b| *b != b'\r' && *b != b'\n')
        .collect()
}

/// `a; b=c; d="e;f"` → [(b, c), (d, e;f)]; the leading value is skipped.
fn split_params(raw: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut fields = Vec::new();
    let mut cur = Vec::new();
    let mut quoted = false;
    let mut escape = false;
    for &b in raw {
        if escape {
            cur.push(b);
            escape = false;
        } else if quoted && b == b'\\' {
            escape = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == b';' && !quoted {
            fields.push(std::mem::take(&mut cur));
        } else {
            cur.push(b);
        }
    }
    fields.push(cur);
    for f in fields.into_iter().skip(1) {
        let Some(eq) = f.iter().position(|b| *b == b'=') else {
            continue;
        };
        let key = String::from_utf8_lossy(&f[..eq]).trim().to_string();
        let value = trim_ws(&f[eq + 1..]).to_vec();
        out.push((key, value));
    }
    out
}

fn trim_ws(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

/// RFC 2231: `name*=cs'lang'%XX..` or `name*0*=cs''%XX; name*1*=%XX; name*2=plain`.
fn rfc2231(params: &[(String, Vec<u8>)], param: &str) -> Option<String> {
    let mut pieces: Vec<(u32, bool, &[u8])> = Vec::new();
    for (key, value) in params {
        let lower = key.to_ascii_lowercase();
        let Some(rest) = lower.strip_prefix(param) else {
            continue;
        };
        let Some(rest) = rest.strip_prefix('*') else {
            continue;
        };
        if rest.is_empty() {
            pieces.push((0, true, value));
            continue;
        }
        let (num, encoded) = match rest.strip_suffix('*') {
            Some(n) => (n, true),
            None => (rest, false),
        };
        let Ok(n) = num.parse::<u32>() else { continue };
        pieces.push((n, encoded, value));
    }
    if pieces.is_empty() {
        return None;
    }
    pieces.sort_by_key(|p| p.0);
    let mut charset = String::new();
    let mut bytes = Vec::new();
    for (i, (_, encoded, value)) in pieces.iter().enumerate() {
        let mut value: &[u8] = value;
        if i == 0 && *encoded {
            // charset'language'data
            let mut parts = value.splitn(3, |b| *b == b'\'');
            let cs = parts.next()?;
            let _lang = parts.next()?;
            value = parts.next()?;
            charset = String::from_utf8_lossy(cs).into_owned();
        }
        if *encoded {
            bytes.extend(percent_decode(value));
        } else {
            bytes.extend_from_slice(value);
        }
    }
    decode_charset(&charset, &bytes)
}

fn percent_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            if let (Some(h), Some(l)) = (hex(s[i + 1]), hex(s[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// RFC 2047: adjacent encoded words of one charset have their bytes joined
/// before decoding; text between words that is only whitespace is dropped.
fn rfc2047(value: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(value).ok()?;
    let mut out = String::new();
    let mut pending: Option<(String, Vec<u8>)> = None;
    let mut rest = text;
    let flush = |out: &mut String, pending: &mut Option<(String, Vec<u8>)>| -> Option<()> {
        if let Some((cs, bytes)) = pending.take() {
            out.push_str(&decode_charset(&cs, &bytes)?);
        }
        Some(())
    };
    while !rest.is_empty() {
        let Some(start) = rest.find("=?") else {
            flush(&mut out, &mut pending)?;
            out.push_str(rest);
            break;
        };
        let between = &rest[..start];
        let word = &rest[start + 2..];
        let parsed = (|| {
            let q1 = word.find('?')?;
            let cs = &word[..q1];
            let after = &word[q1 + 1..];
            let q2 = after.find('?')?;
            let enc = &after[..q2];
            let data_and_rest = &after[q2 + 1..];
            let end = data_and_rest.find("?=")?;
            let data = &data_and_rest[..end];
            let bytes = match enc {
                "B" | "b" => base64_decode(data.as_bytes())?,
                "Q" | "q" => q_decode(data.as_bytes()),
                _ => return None,
            };
            // RFC 2231 section 5 allows cs*lang; the language is irrelevant.
            let cs = cs.split('*').next().unwrap_or(cs).to_string();
            let consumed = 2 + q1 + 1 + q2 + 1 + end + 2;
            Some((cs, bytes, consumed))
        })();
        let Some((cs, bytes, consumed)) = parsed else {
            flush(&mut out, &mut pending)?;
            out.push_str(&rest[..start + 2]);
            rest = &rest[start + 2..];
            continue;
        };
        let whitespace_between_words = between.trim().is_empty() && pending.is_some();
        if !whitespace_between_words {
            flush(&mut out, &mut pending)?;
            out.push_str(between);
        }
        if pending
            .as_ref()
            .is_some_and(|(p, _)| !p.eq_ignore_ascii_case(&cs))
        {
            flush(&mut out, &mut pending)?;
        }
        match &mut pending {
            Some((_, buf)) => buf.extend(bytes),
            None => pending = Some((cs, bytes)),
        }
        rest = &rest[start + consumed..];
    }
    flush(&mut out, &mut pending)?;
    Some(out.trim().to_string())
}

fn q_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'_' => out.push(b' '),
            b'=' => {
                match (
                    s.get(i + 1).and_then(|b| hex(*b)),
                    s.get(i + 2).and_then(|b| hex(*b)),
                ) {
                    (Some(h), Some(l)) => {
                        out.push(h << 4 | l);
                        i += 2;
                    }
                    _ => out.push(b'='),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in s {
        if c == b'=' {
            break;
        }
        let v = TABLE.iter().position(|t| *t == c)? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2231_split_mid_character() {
        // 申請書.xlsx in UTF-8 with the split inside 請 (E8 AB 8B).
        let raw = b"attachment;\r\n filename*0*=UTF-8''%E7%94%B3%E8%AB;\r\n filename*1*=%8B%E6%9B%B8.xlsx";
        assert_eq!(
            decode_param(raw, "filename").as_deref(),
            Some("申請書.xlsx")
        );
    }

    #[test]
    fn rfc2047_split_mid_character() {
        // Shift_JIS 申請 = 90 5C 90 BF, split after the first byte of 請.
        let raw =
            b"application/octet-stream; name=\"=?shift_jis?B?kFyQ?= =?shift_jis?B?vy54bHN4?=\"";
        assert_eq!(decode_param(raw, "name").as_deref(), Some("申請.xlsx"));
    }

    #[test]
    fn plain_names_pass_through() {
        assert_eq!(
            decode_param(b"attachment; filename=\"form.xlsx\"", "filename").as_deref(),
            Some("form.xlsx")
        );
    }
}

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::Error;

/// Names a key without holding it: the string form goes in config files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    /// `soft:/path/key.p8`
    Soft {
        /// The encrypted PKCS#8 file.
        path: PathBuf,
    },
    /// `pkcs11:token=...;object=...` — attributes as in RFC 7512.
    Pkcs11 {
        /// `token`, `object`, `id`... and their values.
        attributes: BTreeMap<String, String>,
    },
    /// `yubikey:serial=...;slot=9c`
    YubiKey {
        /// The device's serial; `None`: the only one connected.
        serial: Option<u32>,
        /// The PIV slot, e.g. `9c`.
        slot: String,
    },
}

impl KeyRef {
    /// The backend's name: `soft`, `pkcs11` or `yubikey`.
    pub fn backend(&self) -> &'static str {
        match self {
            KeyRef::Soft { .. } => "soft",
            KeyRef::Pkcs11 { .. } => "pkcs11",
            KeyRef::YubiKey { .. } => "yubikey",
        }
    }

    /// Whether the key is a soft key (refused by a production CA).
    pub fn is_soft(&self) -> bool {
        matches!(self, KeyRef::Soft { .. })
    }
}

fn invalid(reference: &str, reason: impl Into<String>) -> Error {
    Error::InvalidKeyRef {
        reference: reference.to_string(),
        reason: reason.into(),
    }
}

fn parse_attributes(reference: &str, body: &str) -> Result<BTreeMap<String, String>, Error> {
    let mut map = BTreeMap::new();
    for part in body.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| invalid(reference, format!("attribute {part:?} has no '='")))?;
        let v = percent_decode(v).ok_or_else(|| invalid(reference, "bad percent-encoding"))?;
        if map.insert(k.to_string(), v).is_some() {
            return Err(invalid(reference, format!("attribute {k:?} given twice")));
        }
    }
    Ok(map)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl FromStr for KeyRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let (scheme, body) = s
            .split_once(':')
            .ok_or_else(|| invalid(s, "expected soft:, pkcs11: or yubikey:"))?;
        match scheme {
            "soft" => {
                if body.is_empty() {
                    return Err(invalid(s, "soft: needs a file path"));
                }
                Ok(KeyRef::Soft {
                    path: PathBuf::from(body),
                })
            }
            "pkcs11" => {
                let attributes = parse_attributes(s, body)?;
                if !attributes.contains_key("object") && !attributes.contains_key("id") {
                    return Err(invalid(s, "pkcs11: needs object= or id="));
                }
                Ok(KeyRef::Pkcs11 { attributes })
            }
            "yubikey" => {
                let mut attributes = parse_attributes(s, body)?;
                let serial = match attributes.remove("serial") {
                    Some(v) => Some(
                        v.parse()
                            .map_err(|_| invalid(s, format!("serial {v:?} is not a number")))?,
                    ),
                    None => None,
                };
                let slot = attributes
                    .remove("slot")
                    .unwrap_or_else(|| "9c".to_string())
                    .to_ascii_lowercase();
                if let Some(k) = attributes.keys().next() {
                    return Err(invalid(s, format!("unknown attribute {k:?}")));
                }
                Ok(KeyRef::YubiKey { serial, slot })
            }
            other => Err(invalid(s, format!("unknown key backend {other:?}"))),
        }
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyRef::Soft { path } => write!(f, "soft:{}", path.display()),
            KeyRef::Pkcs11 { attributes } => {
                f.write_str("pkcs11:")?;
                let parts: Vec<String> =
                    attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
                f.write_str(&parts.join(";"))
            }
            KeyRef::YubiKey { serial, slot } => match serial {
                Some(n) => write!(f, "yubikey:serial={n};slot={slot}"),
                None => write!(f, "yubikey:slot={slot}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_backend() {
        let k: KeyRef = "soft:/tmp/a.p8".parse().unwrap();
        assert_eq!(k.to_string(), "soft:/tmp/a.p8");
        let k: KeyRef = "pkcs11:token=KX%20CA;object=issuing".parse().unwrap();
        match &k {
            KeyRef::Pkcs11 { attributes } => assert_eq!(attributes["token"], "KX CA"),
            _ => panic!("wrong backend"),
        }
        let k: KeyRef = "yubikey:serial=123;slot=9C".parse().unwrap();
        assert_eq!(k.to_string(), "yubikey:serial=123;slot=9c");
    }

    #[test]
    fn rejects_garbage() {
        assert!("nothing".parse::<KeyRef>().is_err());
        assert!("soft:".parse::<KeyRef>().is_err());
        assert!("pkcs11:token=x".parse::<KeyRef>().is_err());
        assert!("yubikey:serial=abc".parse::<KeyRef>().is_err());
        assert!("hsm:foo".parse::<KeyRef>().is_err());
    }
}

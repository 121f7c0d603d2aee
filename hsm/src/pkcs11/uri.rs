//! The parts of a `pkcs11:` key reference.

use std::path::PathBuf;

use crate::{Error, KeyRef, Pkcs11Options};

/// Which token and which key a `pkcs11:` reference names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenKey {
    pub module_path: PathBuf,
    /// Matched against CKA_LABEL of the token, never a slot number: slot
    /// numbers change when a token is initialised or plugged in elsewhere.
    pub token: String,
    pub object: Option<String>,
    pub id: Option<Vec<u8>>,
}

const KNOWN: &[&str] = &["token", "object", "id", "module-path", "type"];

impl TokenKey {
    pub fn from_ref(key_ref: &KeyRef, options: &Pkcs11Options) -> Result<TokenKey, Error> {
        let KeyRef::Pkcs11 { attributes } = key_ref else {
            return Err(invalid(key_ref, "not a pkcs11: reference"));
        };
        if let Some(k) = attributes.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(invalid(key_ref, &format!("unknown attribute {k:?}")));
        }
        if let Some(t) = attributes.get("type") {
            if t != "private" {
                return Err(invalid(key_ref, "type= must be private (a signing key)"));
            }
        }
        let token = attributes
            .get("token")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| invalid(key_ref, "token= (the token label) is required"))?
            .clone();
        let id = match attributes.get("id") {
            Some(hex) => {
                Some(decode_hex(hex).ok_or_else(|| invalid(key_ref, "id= must be hex digits"))?)
            }
            None => None,
        };
        Ok(TokenKey {
            module_path: attributes
                .get("module-path")
                .map(PathBuf::from)
                .unwrap_or_else(|| options.module_path.clone()),
            token,
            object: attributes.get("object").cloned(),
            id,
        })
    }

    /// How the key is named in messages (no PIN, nothing secret).
    pub fn describe(&self) -> String {
        let mut s = format!("token {:?}", self.token);
        if let Some(o) = &self.object {
            s.push_str(&format!(" key {o:?}"));
        }
        if let Some(id) = &self.id {
            s.push_str(&format!(" id {}", encode_hex(id)));
        }
        s
    }
}

fn invalid(key_ref: &KeyRef, reason: &str) -> Error {
    Error::InvalidKeyRef {
        reference: key_ref.to_string(),
        reason: reason.to_string(),
    }
}

/// kxca writes `id=` as hex digits (`id=0a1b`, colons allowed), which
/// reads the same to people and to `pkcs11-tool --id`.
fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let s: String = s.chars().filter(|c| *c != ':').collect();
    if s.is_empty() || !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

pub(crate) fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_token_object_id_and_module() {
        let r: KeyRef = "pkcs11:token=KX%20CA;object=root;id=a1b2;module-path=/opt/m.so"
            .parse()
            .unwrap();
        let k = TokenKey::from_ref(&r, &Pkcs11Options::default()).unwrap();
        assert_eq!(k.token, "KX CA");
        assert_eq!(k.object.as_deref(), Some("root"));
        assert_eq!(k.id, Some(vec![0xa1, 0xb2]));
        assert_eq!(k.module_path, PathBuf::from("/opt/m.so"));
    }

    #[test]
    fn rejects_missing_token_bad_id_and_unknown_attributes() {
        let o = Pkcs11Options::default();
        for bad in [
            "pkcs11:object=root",
            "pkcs11:token=t;object=r;id=xyz",
            "pkcs11:token=t;object=r;slot-id=3",
            "pkcs11:token=t;object=r;type=public",
        ] {
            let r: KeyRef = bad.parse().unwrap();
            assert!(TokenKey::from_ref(&r, &o).is_err(), "{bad}");
        }
    }
}

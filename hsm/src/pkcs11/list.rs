//! What keys a token holds, for officers (`kxca key list`).

use std::path::Path;

use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{Error, SecretString};

use super::fault::describe;
use super::keys::public_key;
use super::module::Module;
use super::pool::{discard, open_session};
use super::uri::encode_hex;

/// One private key on a token.
#[derive(Debug, Clone, Serialize)]
pub struct TokenKeyInfo {
    /// The token's label.
    pub token: String,
    /// The key's CKA_LABEL.
    pub label: String,
    /// CKA_ID in hex.
    pub id: String,
    /// `ecdsa-p256`, `rsa-2048`, `rsa-3072`, or what the token holds instead.
    pub algorithm: String,
    /// SHA-256 of the DER SubjectPublicKeyInfo, hex (as `openssl pkey -pubin
    /// -outform DER | sha256sum` prints it); empty when unreadable.
    pub spki_sha256: String,
    /// CKA_EXTRACTABLE: a CA key must not be.
    pub extractable: bool,
    /// CKA_SENSITIVE: a CA key must be.
    pub sensitive: bool,
    /// Capabilities beyond signing (decrypt, unwrap, derive): a CA key has none.
    pub other_uses: Vec<String>,
    /// CKA_ALWAYS_AUTHENTICATE: the PIN is asked before every signature.
    pub always_authenticate: bool,
}

/// Lists the private keys on every token of the module (or the one
/// labelled `token`), logging in with `pin`.
pub fn list_keys(
    module_path: &Path,
    token: Option<&str>,
    pin: &SecretString,
) -> Result<Vec<TokenKeyInfo>, Error> {
    let module = Module::load(module_path)?;
    let loaded = module.read();
    let fail = |what: &str, e: cryptoki::error::Error| Error::Pkcs11 {
        key: what.to_string(),
        reason: describe(&e),
    };
    let mut out = Vec::new();
    let mut seen_token = false;
    for slot in loaded
        .ctx
        .get_slots_with_token()
        .map_err(|e| fail("slot list", e))?
    {
        let Ok(info) = loaded.ctx.get_token_info(slot) else {
            continue;
        };
        let label = info.label().trim_end().to_string();
        if token.is_some_and(|t| t != label) || !info.token_initialized() {
            continue;
        }
        seen_token = true;
        let what = format!("token {label:?}");
        let s = open_session(&loaded, slot, pin, false).map_err(|e| fail(&what, e))?;
        let listed = (|| -> Result<(), cryptoki::error::Error> {
            for handle in s
                .session
                .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])?
            {
                let attrs = s.session.get_attributes(
                    handle,
                    &[
                        AttributeType::Label,
                        AttributeType::Id,
                        AttributeType::Extractable,
                        AttributeType::Sensitive,
                        AttributeType::Decrypt,
                        AttributeType::Unwrap,
                        AttributeType::Derive,
                        AttributeType::AlwaysAuthenticate,
                    ],
                )?;
                let mut k = TokenKeyInfo {
                    token: label.clone(),
                    label: String::new(),
                    id: String::new(),
                    algorithm: String::new(),
                    spki_sha256: String::new(),
                    extractable: false,
                    sensitive: false,
                    other_uses: Vec::new(),
                    always_authenticate: false,
                };
                for a in attrs {
                    match a {
                        Attribute::Label(v) => k.label = String::from_utf8_lossy(&v).into(),
                        Attribute::Id(v) => k.id = encode_hex(&v),
                        Attribute::Extractable(b) => k.extractable = b,
                        Attribute::Sensitive(b) => k.sensitive = b,
                        Attribute::Decrypt(true) => k.other_uses.push("decrypt".into()),
                        Attribute::Unwrap(true) => k.other_uses.push("unwrap".into()),
                        Attribute::Derive(true) => k.other_uses.push("derive".into()),
                        Attribute::AlwaysAuthenticate(b) => k.always_authenticate = b,
                        _ => {}
                    }
                }
                match public_key(&s.session, handle)? {
                    Ok((algorithm, spki)) => {
                        k.algorithm = algorithm.name().to_string();
                        k.spki_sha256 = spki_fingerprint(&spki);
                    }
                    Err(reason) => k.algorithm = format!("unsupported: {reason}"),
                }
                out.push(k);
            }
            Ok(())
        })();
        discard(s, &loaded);
        listed.map_err(|e| fail(&what, e))?;
    }
    if let (Some(t), false) = (token, seen_token) {
        return Err(Error::Pkcs11 {
            key: format!("token {t:?}"),
            reason: "token not present".into(),
        });
    }
    out.sort_by(|a, b| (&a.token, &a.label).cmp(&(&b.token, &b.label)));
    Ok(out)
}

/// SHA-256 of a DER SubjectPublicKeyInfo, lower-case hex: the fingerprint
/// officers compare between the ceremony minutes, `kxca key list` and
/// `openssl pkey -pubin -outform DER | sha256sum`.
pub fn spki_fingerprint(spki_der: &[u8]) -> String {
    encode_hex(&Sha256::digest(spki_der))
}

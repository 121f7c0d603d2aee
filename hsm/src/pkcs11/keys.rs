//! Finding a key pair on a token and reading its public half as SPKI.

use cryptoki::error::Error as CkError;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use der::asn1::OctetStringRef;
use der::Decode;
use pkcs8::EncodePublicKey;

use crate::KeyAlgorithm;

use super::uri::TokenKey;

/// DER of the namedCurve OID prime256v1, as CKA_EC_PARAMS holds it.
pub(crate) const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// A private key found on the token.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FoundKey {
    pub handle: ObjectHandle,
    /// CKA_ALWAYS_AUTHENTICATE: each signature needs a context-specific login.
    pub always_authenticate: bool,
}

pub(crate) enum Lookup {
    Found(FoundKey),
    Missing,
    /// Two private keys match: the reference must say which (add id=).
    Ambiguous(usize),
}

fn template(key: &TokenKey, class: ObjectClass) -> Vec<Attribute> {
    let mut t = vec![Attribute::Class(class)];
    if let Some(label) = &key.object {
        t.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    if let Some(id) = &key.id {
        t.push(Attribute::Id(id.clone()));
    }
    t
}

pub(crate) fn find_private(session: &Session, key: &TokenKey) -> Result<Lookup, CkError> {
    let found = session.find_objects(&template(key, ObjectClass::PRIVATE_KEY))?;
    match found.as_slice() {
        [] => Ok(Lookup::Missing),
        [handle] => {
            let always_authenticate = session
                .get_attributes(*handle, &[AttributeType::AlwaysAuthenticate])?
                .into_iter()
                .any(|a| matches!(a, Attribute::AlwaysAuthenticate(true)));
            Ok(Lookup::Found(FoundKey {
                handle: *handle,
                always_authenticate,
            }))
        }
        many => Ok(Lookup::Ambiguous(many.len())),
    }
}

/// True when any object (key, certificate, data) already carries the label or id.
pub(crate) fn label_taken(session: &Session, key: &TokenKey) -> Result<bool, CkError> {
    let mut found = 0;
    if let Some(label) = &key.object {
        found += session
            .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])?
            .len();
    }
    if let Some(id) = &key.id {
        found += session.find_objects(&[Attribute::Id(id.clone())])?.len();
    }
    Ok(found > 0)
}

/// The algorithm and SPKI DER of the key pair whose private half is
/// `private`. RSA private keys carry the modulus and exponent; an EC
/// private key lacks the point, which comes from the public key object
/// with the same CKA_ID (or label).
pub(crate) fn public_key(
    session: &Session,
    private: ObjectHandle,
) -> Result<Result<(KeyAlgorithm, Vec<u8>), String>, CkError> {
    let attrs = session.get_attributes(
        private,
        &[
            AttributeType::KeyType,
            AttributeType::Id,
            AttributeType::Label,
            AttributeType::Modulus,
            AttributeType::PublicExponent,
            AttributeType::EcParams,
        ],
    )?;
    let mut key_type = None;
    let (mut id, mut label, mut modulus, mut exponent, mut params) = (None, None, None, None, None);
    for a in attrs {
        match a {
            Attribute::KeyType(t) => key_type = Some(t),
            Attribute::Id(v) => id = Some(v),
            Attribute::Label(v) => label = Some(v),
            Attribute::Modulus(v) => modulus = Some(v),
            Attribute::PublicExponent(v) => exponent = Some(v),
            Attribute::EcParams(v) => params = Some(v),
            _ => {}
        }
    }
    match key_type {
        Some(t) if t == KeyType::RSA => {
            let (Some(n), Some(e)) = (modulus, exponent) else {
                return Ok(Err("RSA key without modulus or exponent".into()));
            };
            Ok(rsa_spki(&n, &e))
        }
        Some(t) if t == KeyType::EC => {
            if params.as_deref() != Some(P256_PARAMS) {
                return Ok(Err("EC key on a curve other than P-256".into()));
            }
            let mut t = vec![Attribute::Class(ObjectClass::PUBLIC_KEY)];
            match (id, label) {
                (Some(id), _) if !id.is_empty() => t.push(Attribute::Id(id)),
                (_, Some(label)) => t.push(Attribute::Label(label)),
                _ => return Ok(Err("EC key with neither id nor label".into())),
            }
            let Some(public) = session.find_objects(&t)?.first().copied() else {
                return Ok(Err("no public key object beside the EC private key".into()));
            };
            let point = session
                .get_attributes(public, &[AttributeType::EcPoint])?
                .into_iter()
                .find_map(|a| match a {
                    Attribute::EcPoint(p) => Some(p),
                    _ => None,
                });
            match point {
                Some(p) => Ok(p256_spki(&p)),
                None => Ok(Err("public key object without CKA_EC_POINT".into())),
            }
        }
        _ => Ok(Err("neither an RSA nor an EC key".into())),
    }
}

/// CKA_EC_POINT is specified as a DER OCTET STRING around the SEC1 point,
/// but some modules return the bare point: accept both.
fn p256_spki(ec_point: &[u8]) -> Result<(KeyAlgorithm, Vec<u8>), String> {
    let sec1 = match <&OctetStringRef>::from_der(ec_point) {
        // A bare point can parse as an OCTET STRING by chance; only the
        // inner length of an uncompressed P-256 point tells them apart.
        Ok(inner) if inner.as_bytes().len() == 65 => inner.as_bytes(),
        _ => ec_point,
    };
    let pk = p256::PublicKey::from_sec1_bytes(sec1).map_err(|e| format!("EC point: {e}"))?;
    let der = pk.to_public_key_der().map_err(|e| e.to_string())?;
    Ok((KeyAlgorithm::EcdsaP256, der.as_bytes().to_vec()))
}

fn rsa_spki(modulus: &[u8], exponent: &[u8]) -> Result<(KeyAlgorithm, Vec<u8>), String> {
    let algorithm = match modulus.iter().skip_while(|b| **b == 0).count() * 8 {
        2048 => KeyAlgorithm::Rsa2048,
        3072 => KeyAlgorithm::Rsa3072,
        bits => return Err(format!("RSA-{bits} (kxca signs with RSA-2048 or RSA-3072)")),
    };
    let pkcs1 = rsa::pkcs1::RsaPublicKey {
        modulus: der::asn1::UintRef::new(modulus).map_err(|e| e.to_string())?,
        public_exponent: der::asn1::UintRef::new(exponent).map_err(|e| e.to_string())?,
    };
    let pkcs1_der = der::Encode::to_der(&pkcs1).map_err(|e| e.to_string())?;
    let pk = <rsa::RsaPublicKey as rsa::pkcs1::DecodeRsaPublicKey>::from_pkcs1_der(&pkcs1_der)
        .map_err(|e| format!("RSA public key: {e}"))?;
    let der = pk.to_public_key_der().map_err(|e| e.to_string())?;
    Ok((algorithm, der.as_bytes().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_point_wrapped_or_bare_gives_the_same_spki() {
        let sk = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
        let point = sk.public_key().to_sec1_bytes();
        let bare = p256_spki(&point).unwrap();
        let mut wrapped = vec![0x04, 0x41];
        wrapped.extend_from_slice(&point);
        assert_eq!(p256_spki(&wrapped).unwrap(), bare);
        assert!(p256_spki(&[0x04, 0x01, 0x02]).is_err());
    }
}

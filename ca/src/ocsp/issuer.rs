//! The issuing CAs the responder answers for, as a request names them: by
//! issuerNameHash and issuerKeyHash (SHA-1 and SHA-256), with the responder
//! credential that signs for each.

use std::sync::Arc;

use kxca_hsm::Signer;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::asn1::{self, CertId, HashAlg};
use super::response::Credential;
use super::store::ResponderCertRow;
use crate::{Authority, Error};

/// An issuing CA the responder answers for: its CertID hashes under each
/// algorithm and the delegated credential that signs its answers.
pub struct Issuer {
    /// The issuing CA.
    pub authority: Authority,
    /// (issuerNameHash, issuerKeyHash) with SHA-1.
    pub sha1: (Vec<u8>, Vec<u8>),
    /// (issuerNameHash, issuerKeyHash) with SHA-256.
    pub sha256: (Vec<u8>, Vec<u8>),
    /// The responder certificate and key that sign for it.
    pub cred: Arc<Credential>,
}

/// (issuerNameHash, issuerKeyHash) of an authority.
type HashPair = (Vec<u8>, Vec<u8>);

fn hashes(a: &Authority) -> Result<(HashPair, HashPair), Error> {
    let spki = crate::x509::spki(&a.spki)?;
    let key = spki.subject_public_key.raw_bytes();
    Ok((
        (
            Sha1::digest(&a.subject_der).to_vec(),
            Sha1::digest(key).to_vec(),
        ),
        (
            Sha256::digest(&a.subject_der).to_vec(),
            Sha256::digest(key).to_vec(),
        ),
    ))
}

/// The served issuer for `a`, signing with `responder_key` under the
/// responder certificate `row`.
pub fn issuer_for(
    a: &Authority,
    row: ResponderCertRow,
    responder_key: &Arc<dyn Signer>,
) -> Result<Issuer, Error> {
    let (sha1, sha256) = hashes(a)?;
    Ok(Issuer {
        authority: a.clone(),
        sha1,
        sha256,
        cred: Arc::new(Credential {
            id: row.id,
            signer: Arc::clone(responder_key),
            certificate: row.certificate,
            key_hash: crate::x509::key_id(responder_key.public_key_der())?,
            not_after: row.not_after,
        }),
    })
}

/// The CertID of `serial` under `issuer`, as a client would send it.
pub fn cert_id(issuer: &Issuer, alg: HashAlg, serial: &[u8]) -> Result<CertId, Error> {
    use der::asn1::{Any, Int, OctetString};
    let (oid, (name, key)) = match alg {
        HashAlg::Sha1 => (asn1::SHA1, &issuer.sha1),
        HashAlg::Sha256 => (asn1::SHA256, &issuer.sha256),
    };
    let mut int = Vec::with_capacity(serial.len() + 1);
    if serial.first().is_none_or(|b| b & 0x80 != 0) {
        int.push(0);
    }
    int.extend_from_slice(serial);
    Ok(CertId {
        hash_algorithm: spki::AlgorithmIdentifierOwned {
            oid,
            // As OpenSSL and most clients send it: parameters NULL.
            parameters: Some(Any::from(der::asn1::Null)),
        },
        issuer_name_hash: OctetString::new(name.clone())
            .map_err(|e| Error::encoding("name hash", e))?,
        issuer_key_hash: OctetString::new(key.clone())
            .map_err(|e| Error::encoding("key hash", e))?,
        serial_number: Int::new(&int).map_err(|e| Error::encoding("serial", e))?,
    })
}

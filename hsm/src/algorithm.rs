use std::fmt;
use std::str::FromStr;

use der::asn1::{AnyRef, ObjectIdentifier};
use spki::AlgorithmIdentifierOwned;

use crate::Error;

/// The key and signature algorithms kxca signs with.
///
/// ECDSA signatures use SHA-256 and are DER `Ecdsa-Sig-Value`s; RSA
/// signatures are PKCS#1 v1.5 with SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 (`ecdsa-p256`).
    EcdsaP256,
    /// RSA with a 2048-bit modulus (`rsa-2048`).
    Rsa2048,
    /// RSA with a 3072-bit modulus (`rsa-3072`).
    Rsa3072,
}

const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");

impl KeyAlgorithm {
    /// The name used in config and policy files.
    pub fn name(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::Rsa2048 => "rsa-2048",
            KeyAlgorithm::Rsa3072 => "rsa-3072",
        }
    }

    /// The signatureAlgorithm identifier for signatures made with this key.
    pub fn signature_algorithm(self) -> AlgorithmIdentifierOwned {
        match self {
            // RFC 5758: ecdsa-with-SHA256 has absent parameters.
            KeyAlgorithm::EcdsaP256 => AlgorithmIdentifierOwned {
                oid: ECDSA_WITH_SHA256,
                parameters: None,
            },
            // RFC 4055: sha256WithRSAEncryption carries an explicit NULL.
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 => AlgorithmIdentifierOwned {
                oid: SHA256_WITH_RSA,
                parameters: Some(AnyRef::NULL.into()),
            },
        }
    }

    /// Whether the algorithm is RSA (PKCS#1 v1.5 signatures).
    pub fn is_rsa(self) -> bool {
        !matches!(self, KeyAlgorithm::EcdsaP256)
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "ecdsa-p256" | "p256" | "p-256" | "ec-p256" => Ok(KeyAlgorithm::EcdsaP256),
            "rsa-2048" | "rsa2048" => Ok(KeyAlgorithm::Rsa2048),
            "rsa-3072" | "rsa3072" => Ok(KeyAlgorithm::Rsa3072),
            _ => Err(Error::UnknownAlgorithm(s.to_string())),
        }
    }
}

/// The DER DigestInfo of a SHA-256 digest (RFC 8017 section 9.2, note 1):
/// what PKCS#1 v1.5 signs. Tokens and cards that take a raw RSA block or
/// CKM_RSA_PKCS need it built by the caller.
pub(crate) fn sha256_digest_info(digest: &[u8]) -> Vec<u8> {
    const PREFIX: [u8; 19] = [
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    let mut info = Vec::with_capacity(PREFIX.len() + digest.len());
    info.extend_from_slice(&PREFIX);
    info.extend_from_slice(digest);
    info
}

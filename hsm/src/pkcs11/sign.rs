//! One signature on a session: the mechanism, the context-specific login
//! a key may demand, and the conversion to X.509's signature encoding.

use cryptoki::error::Error as CkError;
use cryptoki::mechanism::Mechanism;
use cryptoki::session::{Session, UserType};
use sha2::{Digest, Sha256};

use crate::{KeyAlgorithm, SecretString};

use super::keys::FoundKey;

/// A raw signature from the token, or why it cannot be turned into one.
pub(crate) enum Outcome {
    Signed(Vec<u8>),
    Malformed(String),
}

pub(crate) fn sign(
    session: &Session,
    key: FoundKey,
    algorithm: KeyAlgorithm,
    pin: &SecretString,
    message: &[u8],
) -> Result<Outcome, CkError> {
    let raw = if key.always_authenticate {
        // PIV keys (ykcs11, OpenSC) want C_SignInit, then C_Login as
        // CKU_CONTEXT_SPECIFIC, then the data; a one-shot C_Sign fails with
        // CKR_USER_NOT_LOGGED_IN. The hashing mechanisms are the ones such
        // modules (and SoftHSM2 for RSA) accept in multi-part form.
        let mechanism = match algorithm {
            KeyAlgorithm::EcdsaP256 => Mechanism::EcdsaSha256,
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 => Mechanism::Sha256RsaPkcs,
        };
        session.sign_init(&mechanism, key.handle)?;
        session.login(UserType::ContextSpecific, Some(pin))?;
        session.sign_update(message)?;
        session.sign_final()?
    } else {
        // Hash here: only 32 bytes travel to the token, and CKM_ECDSA is
        // there on every module (SoftHSM2 2.6 has no CKM_ECDSA_SHA256).
        let digest = Sha256::digest(message);
        match algorithm {
            KeyAlgorithm::EcdsaP256 => session.sign(&Mechanism::Ecdsa, key.handle, &digest)?,
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 => {
                let info = crate::algorithm::sha256_digest_info(&digest);
                session.sign(&Mechanism::RsaPkcs, key.handle, &info)?
            }
        }
    };
    Ok(match algorithm {
        KeyAlgorithm::EcdsaP256 => match ecdsa_raw_to_der(&raw) {
            Ok(der) => Outcome::Signed(der),
            Err(e) => Outcome::Malformed(e),
        },
        KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 => Outcome::Signed(raw),
    })
}

/// PKCS#11 returns ECDSA as r‖s (32 bytes each for P-256); X.509 wants a
/// DER `Ecdsa-Sig-Value`.
pub(crate) fn ecdsa_raw_to_der(raw: &[u8]) -> Result<Vec<u8>, String> {
    if raw.len() != 64 {
        return Err(format!(
            "ECDSA signature of {} bytes (expected 64 = r‖s)",
            raw.len()
        ));
    }
    let sig = p256::ecdsa::Signature::from_slice(raw)
        .map_err(|_| "ECDSA signature with r or s out of range".to_string())?;
    Ok(sig.to_der().as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_ecdsa_becomes_der() {
        let mut raw = [0u8; 64];
        raw[31] = 1;
        raw[63] = 2;
        assert_eq!(
            ecdsa_raw_to_der(&raw).unwrap(),
            vec![0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02]
        );
        assert!(ecdsa_raw_to_der(&raw[..63]).is_err());
        assert!(ecdsa_raw_to_der(&[0u8; 64]).is_err());
    }
}

use p256::ecdsa::signature::Verifier;
use pkcs8::DecodePublicKey;
use sha2::Sha256;

use crate::{Error, KeyAlgorithm};

/// Verifies `signature` over `message` with the SPKI `public_key_der`.
///
/// The CA checks every signature a backend returns before it lets the
/// result out: a faulty token (or an RSA-CRT fault) must not produce a
/// certificate that leaks the key or fails at the relying party.
pub fn verify(
    algorithm: KeyAlgorithm,
    public_key_der: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), Error> {
    let fail = |reason: String| Error::Sign {
        key: "signature check".to_string(),
        reason,
    };
    match algorithm {
        KeyAlgorithm::EcdsaP256 => {
            let vk = p256::ecdsa::VerifyingKey::from_public_key_der(public_key_der)
                .map_err(|e| fail(format!("public key: {e}")))?;
            let sig = p256::ecdsa::Signature::from_der(signature)
                .map_err(|e| fail(format!("not a DER ECDSA signature: {e}")))?;
            vk.verify(message, &sig)
                .map_err(|_| fail("the token returned an invalid ECDSA signature".to_string()))
        }
        KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 => {
            let pk = rsa::RsaPublicKey::from_public_key_der(public_key_der)
                .map_err(|e| fail(format!("public key: {e}")))?;
            let vk = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(pk);
            let sig = rsa::pkcs1v15::Signature::try_from(signature)
                .map_err(|e| fail(format!("not an RSA signature: {e}")))?;
            vk.verify(message, &sig)
                .map_err(|_| fail("the token returned an invalid RSA signature".to_string()))
        }
    }
}

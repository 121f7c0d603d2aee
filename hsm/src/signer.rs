use crate::{Error, KeyAlgorithm, KeyRef};

/// The state of a key's backend, as the health check sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// True when a signature can be made right now.
    pub ok: bool,
    /// One line for an operator, e.g. "soft key loaded" or "token KX-CA absent".
    pub detail: String,
}

/// A key that signs without handing out its private half.
///
/// Implementations are safe to share between threads; a backend that needs
/// exclusive access to a device serialises inside.
pub trait Signer: Send + Sync {
    /// The reference this key was opened from.
    fn key_ref(&self) -> &KeyRef;
    /// The key and signature algorithm.
    fn algorithm(&self) -> KeyAlgorithm;
    /// The public key as DER SubjectPublicKeyInfo.
    fn public_key_der(&self) -> &[u8];
    /// Signs `message` (hashing it with SHA-256 first) and returns the
    /// signature as it goes in an X.509 BIT STRING: a DER `Ecdsa-Sig-Value`
    /// for ECDSA, the raw PKCS#1 v1.5 signature for RSA.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error>;
    /// Checks the key can be used now.
    fn health(&self) -> Health;
}

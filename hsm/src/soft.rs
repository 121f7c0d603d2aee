//! The `soft` backend: a key in an encrypted PKCS#8 file.
//!
//! For tests and demonstrations only; a production configuration refuses it
//! (the CA checks that before opening a key). The RSA implementation here
//! has a known timing side channel (RUSTSEC-2023-0071), one more reason this
//! backend never signs where an attacker can time it in production.

use std::fs;
use std::io::Write;
use std::path::Path;

use getrandom::SysRng;
use p256::ecdsa::signature::Signer as _;
use pkcs8::der::{Decode, Encode};
use pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, EncryptedPrivateKeyInfoRef};
use rand_core::UnwrapErr;
use rsa::signature::SignatureEncoding;
use rsa::traits::PublicKeyParts;
use secrecy::ExposeSecret;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::{Error, Health, KeyAlgorithm, KeyRef, SecretString, Signer};

enum Key {
    P256(p256::ecdsa::SigningKey),
    Rsa(rsa::pkcs1v15::SigningKey<Sha256>),
}

/// A CA key held in memory, loaded from an encrypted PKCS#8 file.
pub(crate) struct SoftSigner {
    key_ref: KeyRef,
    algorithm: KeyAlgorithm,
    spki: Vec<u8>,
    key: Key,
}

const RSA_OID: &str = "1.2.840.113549.1.1.1";
const EC_OID: &str = "1.2.840.10045.2.1";

fn rng() -> UnwrapErr<SysRng> {
    UnwrapErr(SysRng)
}

/// Generates a private key and returns it as unencrypted PKCS#8 DER.
fn generate_pkcs8(algorithm: KeyAlgorithm) -> Result<Zeroizing<Vec<u8>>, Error> {
    let doc = match algorithm {
        KeyAlgorithm::EcdsaP256 => {
            <p256::SecretKey as p256::elliptic_curve::Generate>::generate_from_rng(&mut rng())
                .to_pkcs8_der()
                .map_err(|e| Error::Generate(e.to_string()))?
        }
        KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 => {
            let bits = if algorithm == KeyAlgorithm::Rsa2048 {
                2048
            } else {
                3072
            };
            rsa::RsaPrivateKey::new(&mut rng(), bits)
                .map_err(|e| Error::Generate(e.to_string()))?
                .to_pkcs8_der()
                .map_err(|e| Error::Generate(e.to_string()))?
        }
    };
    Ok(Zeroizing::new(doc.as_bytes().to_vec()))
}

fn key_from_pkcs8(path: &Path, der: &[u8]) -> Result<(KeyAlgorithm, Key, Vec<u8>), Error> {
    let unsupported = |detail: String| Error::UnsupportedKey {
        path: path.to_path_buf(),
        detail,
    };
    let info = pkcs8::PrivateKeyInfoRef::from_der(der).map_err(|e| unsupported(e.to_string()))?;
    let oid = info.algorithm.oid.to_string();
    match oid.as_str() {
        EC_OID => {
            let sk = p256::ecdsa::SigningKey::from_pkcs8_der(der)
                .map_err(|e| unsupported(format!("EC key is not P-256: {e}")))?;
            let spki = sk
                .verifying_key()
                .to_public_key_der()
                .map_err(|e| unsupported(e.to_string()))?;
            Ok((
                KeyAlgorithm::EcdsaP256,
                Key::P256(sk),
                spki.as_bytes().to_vec(),
            ))
        }
        RSA_OID => {
            let sk =
                rsa::RsaPrivateKey::from_pkcs8_der(der).map_err(|e| unsupported(e.to_string()))?;
            let algorithm = match sk.size() * 8 {
                2048 => KeyAlgorithm::Rsa2048,
                3072 => KeyAlgorithm::Rsa3072,
                other => return Err(unsupported(format!("RSA-{other}"))),
            };
            let spki = sk
                .to_public_key()
                .to_public_key_der()
                .map_err(|e| unsupported(e.to_string()))?;
            Ok((
                algorithm,
                Key::Rsa(rsa::pkcs1v15::SigningKey::<Sha256>::new(sk)),
                spki.as_bytes().to_vec(),
            ))
        }
        other => Err(unsupported(format!("algorithm {other}"))),
    }
}

impl SoftSigner {
    pub(crate) fn generate(
        key_ref: KeyRef,
        path: &Path,
        algorithm: KeyAlgorithm,
        passphrase: &SecretString,
    ) -> Result<Self, Error> {
        let der = generate_pkcs8(algorithm)?;
        let info =
            pkcs8::PrivateKeyInfoRef::from_der(&der).map_err(|e| Error::Generate(e.to_string()))?;
        // PBES2 (scrypt + AES-256-CBC), readable by `openssl pkey`.
        let encrypted = info
            .encrypt_with_rng(&mut rng(), passphrase.expose_secret().as_bytes())
            .map_err(|e| Error::Generate(e.to_string()))?;
        write_new_private_file(path, encrypted.as_bytes())?;
        let (algorithm, key, spki) = key_from_pkcs8(path, &der)?;
        Ok(SoftSigner {
            key_ref,
            algorithm,
            spki,
            key,
        })
    }

    pub(crate) fn open(
        key_ref: KeyRef,
        path: &Path,
        passphrase: &SecretString,
    ) -> Result<Self, Error> {
        let bytes = fs::read(path).map_err(|source| Error::KeyFileIo {
            path: path.to_path_buf(),
            source,
        })?;
        let encrypted =
            EncryptedPrivateKeyInfoRef::from_der(&bytes).map_err(|_| Error::KeyLocked {
                path: path.to_path_buf(),
            })?;
        let der = encrypted
            .decrypt(passphrase.expose_secret().as_bytes())
            .map_err(|_| Error::KeyLocked {
                path: path.to_path_buf(),
            })?;
        let (algorithm, key, spki) = key_from_pkcs8(path, der.as_bytes())?;
        Ok(SoftSigner {
            key_ref,
            algorithm,
            spki,
            key,
        })
    }
}

/// Creates `path` with owner-only permissions; fails if it exists.
fn write_new_private_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            Error::KeyExists {
                path: path.to_path_buf(),
            }
        } else {
            Error::KeyFileIo {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    file.write_all(bytes)
        .and_then(|_| file.sync_all())
        .map_err(|source| Error::KeyFileIo {
            path: path.to_path_buf(),
            source,
        })
}

impl Signer for SoftSigner {
    fn key_ref(&self) -> &KeyRef {
        &self.key_ref
    }
    fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }
    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let fail = |reason: String| Error::Sign {
            key: self.key_ref.to_string(),
            reason,
        };
        match &self.key {
            Key::P256(k) => {
                let sig: p256::ecdsa::Signature =
                    k.try_sign(message).map_err(|e| fail(e.to_string()))?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
            Key::Rsa(k) => {
                let sig = k.try_sign(message).map_err(|e| fail(e.to_string()))?;
                Ok(sig.to_vec())
            }
        }
    }
    fn health(&self) -> Health {
        Health {
            ok: true,
            detail: format!("soft {} key loaded from {}", self.algorithm, self.key_ref),
        }
    }
}

/// A freshly generated end-entity key pair that kxca hands out (inside a
/// PKCS#12) and never stores. The private half is wiped when dropped.
pub struct EphemeralKey {
    algorithm: KeyAlgorithm,
    pkcs8: Zeroizing<Vec<u8>>,
    spki: Vec<u8>,
}

impl EphemeralKey {
    /// Generates a key in memory.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self, Error> {
        let pkcs8 = generate_pkcs8(algorithm)?;
        let (_, _, spki) = key_from_pkcs8(Path::new("<generated>"), &pkcs8)?;
        Ok(EphemeralKey {
            algorithm,
            pkcs8,
            spki,
        })
    }
    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }
    /// The public key as DER SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> &[u8] {
        &self.spki
    }
    /// The private key as unencrypted PKCS#8 DER, for packaging only.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }
}

impl std::fmt::Debug for EphemeralKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EphemeralKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Checks an encoded SPKI round-trips; used by tests of other backends too.
#[allow(dead_code)]
pub(crate) fn spki_is_valid(spki: &[u8]) -> bool {
    spki::SubjectPublicKeyInfoRef::from_der(spki)
        .and_then(|s| s.to_der())
        .map(|d| d == spki)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pkcs8::DecodePublicKey;

    fn pass() -> SecretString {
        SecretString::from("correct horse".to_string())
    }

    #[test]
    fn generate_open_sign_verify_each_algorithm() {
        use p256::ecdsa::signature::Verifier;
        let dir = tempfile::tempdir().unwrap();
        for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Rsa2048] {
            let path = dir.path().join(format!("{alg}.p8"));
            let kr = KeyRef::Soft { path: path.clone() };
            let g = SoftSigner::generate(kr.clone(), &path, alg, &pass()).unwrap();
            let o = SoftSigner::open(kr.clone(), &path, &pass()).unwrap();
            assert_eq!(g.public_key_der(), o.public_key_der());
            assert!(spki_is_valid(o.public_key_der()));
            let sig = o.sign(b"hello").unwrap();
            match alg {
                KeyAlgorithm::EcdsaP256 => {
                    let vk =
                        p256::ecdsa::VerifyingKey::from_public_key_der(o.public_key_der()).unwrap();
                    let s = p256::ecdsa::Signature::from_der(&sig).unwrap();
                    vk.verify(b"hello", &s).unwrap();
                }
                _ => {
                    let pk = rsa::RsaPublicKey::from_public_key_der(o.public_key_der()).unwrap();
                    let vk = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(pk);
                    let s = rsa::pkcs1v15::Signature::try_from(sig.as_slice()).unwrap();
                    vk.verify(b"hello", &s).unwrap();
                }
            }
            // Refuses to overwrite, refuses a wrong passphrase.
            assert!(matches!(
                SoftSigner::generate(kr.clone(), &path, alg, &pass()),
                Err(Error::KeyExists { .. })
            ));
            let wrong = SecretString::from("wrong".to_string());
            assert!(matches!(
                SoftSigner::open(kr, &path, &wrong),
                Err(Error::KeyLocked { .. })
            ));
        }
    }
}

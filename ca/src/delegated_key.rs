//! Keys the CA delegates one job to, with their own secret: the OCSP
//! responder key and the audit checkpoint key. Both are ECDSA P-256 (cheap
//! per-request signatures; the one type the signed-note format defines) and
//! both are made on first use by the private role, never by the public one.

use kxca_hsm::{BackendOptions, KeyAlgorithm, KeyRef, SecretSource, Signer};

use crate::Error;

/// Opens `key_ref`; with `create`, a missing soft key or token key is made
/// (P-256). Without `create` a missing soft key is an error whose message
/// ends with `who_creates`.
pub(crate) fn open_or_create(
    key_ref: &KeyRef,
    text: &str,
    secret: &SecretSource,
    backend: &BackendOptions,
    create: bool,
    missing: impl FnOnce(String) -> Error,
    who_creates: &str,
) -> Result<Box<dyn Signer>, Error> {
    let make = || kxca_hsm::generate_with(key_ref, KeyAlgorithm::EcdsaP256, secret, backend);
    Ok(match key_ref {
        KeyRef::Soft { path } if !path.exists() => {
            if !create {
                return Err(missing(format!(
                    "the key {text} does not exist yet: {who_creates}"
                )));
            }
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
            make()?
        }
        KeyRef::Pkcs11 { .. } if create => match kxca_hsm::open_with(key_ref, secret, backend) {
            Err(kxca_hsm::Error::TokenKeyMissing { .. }) => make()?,
            other => other?,
        },
        _ => kxca_hsm::open_with(key_ref, secret, backend)?,
    })
}

//! The PKCS#11 backend: CA keys on an HSM or any token with a PKCS#11
//! module, named `pkcs11:token=<label>;object=<key label>[;id=<hex>]`.
//!
//! One concern per file: `module` (loading, re-initialisation), `pool`
//! (sessions and login), `keys` (lookup, public key), `template` and
//! `generate` (new key pairs), `sign` (mechanisms, encodings), `fault`
//! (which errors heal), `signer` (the [`crate::Signer`]), `list`.

mod destroy;
mod fault;
mod generate;
mod keys;
mod list;
mod module;
mod options;
mod pool;
mod sign;
mod signer;
mod template;
mod uri;

pub(crate) use destroy::destroy;
pub(crate) use generate::generate;
pub use list::{list_keys, spki_fingerprint, TokenKeyInfo};
pub use options::Pkcs11Options;
pub(crate) use signer::Pkcs11Signer;

//! The OCSP responder's CA side (RFC 6960, RFC 5019 lightweight profile):
//! what both roles share and what only the key holder does. The network
//! face (answer path, caches, HTTP) is the `kxca-responder` crate.
//!
//! - [`asn1`]: the RFC 6960 structures;
//! - [`response`]: signing responses with the delegated responder;
//! - [`issuer`]: the issuing CAs answered for, by CertID hashes;
//! - [`probe`]: a relying party's request and checks, to ask the public role;
//! - [`responder_key`]: opening the delegated responder key with its own secret;
//! - `responder_cert`: issuing that responder's certificate (CA key);
//! - [`store`]: its tables (migration component "ocsp");
//! - [`Maintainer`]: the private role that holds the CA keys and keeps the
//!   store's answers, responder certificates and CRLs fresh.

pub mod asn1;
mod config;
pub mod issuer;
mod maintainer;
pub mod probe;
pub(crate) mod responder_cert;
pub mod responder_key;
pub mod response;
pub mod store;

pub use asn1::HashAlg;
pub use config::{NoncePolicy, OcspConfig};
pub use maintainer::Maintainer;
pub use response::Status;

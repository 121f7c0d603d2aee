//! The network face of kxca (`kxca serve`, the public role): the HTTP
//! listener and the OCSP responder's answer path, filled from the store
//! with what `kxca daemon` signed.
//!
//! Keyless by construction: nothing here opens a CA key. The only key it
//! opens is the delegated OCSP responder key, through
//! `kxca_ca::ocsp::responder_key` with that key's own secret; signing and
//! CRLs are `kxca_ca::ocsp::Maintainer`'s, in the private role.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod http;
pub mod ocsp;
mod serve_config;

pub use http::serve;
pub use kxca_ca::Error;
pub use ocsp::{Engine, Publisher};
pub use serve_config::ServeConfig;

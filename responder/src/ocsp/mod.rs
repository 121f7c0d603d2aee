//! The OCSP responder's public half (RFC 6960, RFC 5019 lightweight profile):
//!
//! - [`request`]: parsing POST bodies and GET paths;
//! - [`engine`]: the answer path over the answers held in memory ([`Engine`]);
//! - `headers`: RFC 5019 caching headers and HTTP dates ([`Cached`], [`Published`]);
//! - `live`: the bounds on signing per request (budget, unknown-serial cache);
//! - `publication`: CRLs and CA certificates by URL path;
//! - `publisher`: the store reader that fills the engine ([`Publisher`]).
//!
//! Signing a response, the OCSP tables and the keyed maintainer are
//! `kxca_ca::ocsp`'s.

pub mod engine;
mod headers;
mod live;
mod publication;
mod publisher;
pub mod request;

pub use engine::{Answer, Engine, HealthCheck};
pub use headers::{http_date, Cached, Published};
pub use kxca_ca::ocsp::{asn1, response, HashAlg, NoncePolicy, OcspConfig, Status};
pub use live::LiveStats;
pub use publisher::Publisher;
pub use request::{ParsedRequest, RequestError};

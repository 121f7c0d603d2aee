//! The OCSP responder (RFC 6960, RFC 5019 lightweight profile).
//!
//! - [`asn1`]: the RFC 6960 structures;
//! - [`request`]: parsing POST bodies and GET paths;
//! - [`response`]: signing responses with the delegated responder;
//! - `responder_cert`: issuing that responder's certificate;
//! - `store`: its tables (migration component "ocsp");
//! - [`engine`]: answering from pre-signed responses ([`Publisher`], the
//!   keyless public role), and keeping them fresh ([`Maintainer`], the
//!   private role that holds the CA keys);
//! - `live`: the bounds on signing per request (budget, unknown-serial cache).

pub mod asn1;
mod config;
pub mod engine;
mod live;
pub mod request;
mod responder_cert;
pub mod response;
mod store;

pub use config::{NoncePolicy, OcspConfig};
pub use engine::{Answer, Cached, Engine, HealthCheck, Maintainer, Published, Publisher};
pub use live::LiveStats;
pub use request::{HashAlg, ParsedRequest, RequestError};
pub use response::Status;

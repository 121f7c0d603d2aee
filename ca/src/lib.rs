//! The kxca certificate authority.
//!
//! A [`Ca`] is opened from a home directory holding `kxca.toml`, the SQLite
//! store and the reviewed policy files. It issues office client certificates
//! packaged as PKCS#12, revokes them and signs CRLs. Keys are reached only
//! through [`kxca_hsm::Signer`]: the CA never holds a private key itself.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod audit_action;
pub mod audit_log;
mod authority;
pub mod backup;
mod ca;
pub mod ceremony;
mod clock;
mod config;
pub mod console_cert;
mod crl;
mod delegated_key;
pub mod doctor;
pub mod enrolment;
mod error;
mod fault;
mod holder;
mod home;
pub mod merkle;
pub mod ocsp;
mod password;
mod pkcs12;
mod profile;
mod revocation;
pub mod rules;
mod serial;
pub mod store;
mod x509;

pub use audit_action::AuditAction;
pub use authority::{Authority, AuthorityRole};
pub use ca::{Ca, InitOptions, IssueRequest, IssuedCertificate};
pub use clock::{rfc3339, Clock};
pub use config::Config;
pub use crl::{build as build_crl, CrlInput, CrlOutput, RevokedEntry};
pub use error::{Error, Refusal, RowRefusal};
pub use holder::Holder;
pub use home::Home;
pub use password::{generate_password, Password};
pub use pkcs12::{package as package_pkcs12, Pkcs12Profile};
pub use profile::{CodeName, Profile, Profiles};
pub use revocation::RevocationReason;
pub use serial::Serial;
pub use store::certificates::{CertificateRecord, CertificateState};
pub use store::Store;

use std::path::PathBuf;

/// What went wrong in the CA. Each variant names the file, field or serial
/// it concerns; none carries secret material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Policy { path: PathBuf, message: String },
    #[error("{intake} {intake_key} and {profile} {profile_key} disagree: {detail}; make them agree (a row intake accepts must be issuable, and the reverse)")]
    PolicyDisagreement {
        intake: PathBuf,
        intake_key: String,
        profile: PathBuf,
        profile_key: String,
        detail: String,
    },
    #[error("unknown certificate profile {name:?} (known: {known})")]
    UnknownProfile { name: String, known: String },
    #[error("field {field}: {message}")]
    InvalidField { field: String, message: String },
    #[error("{path} already holds a kxca home (kxca.toml exists); refusing to overwrite it")]
    AlreadyInitialized { path: PathBuf },
    #[error(
        "{path} is not a kxca home (no kxca.toml): run `kxca init` first or set --home / KXCA_HOME"
    )]
    NotInitialized { path: PathBuf },
    #[error("production = true in {path} but the {role} CA key is a soft key ({key_ref}); production keys must live in an HSM or YubiKey")]
    SoftKeyInProduction {
        path: PathBuf,
        role: String,
        key_ref: String,
    },
    #[error("database {}: {message}", database_name(path))]
    Database { path: PathBuf, message: String },
    #[error("no certificate with serial {serial} in the store")]
    UnknownSerial { serial: String },
    #[error("certificate {serial} is already revoked (reason {reason}, at {at})")]
    AlreadyRevoked {
        serial: String,
        reason: String,
        at: String,
    },
    #[error("certificate {serial} was never issued (state {state}); nothing to revoke")]
    NotIssued { serial: String, state: String },
    #[error("invalid serial number {serial:?}: {message}")]
    InvalidSerial { serial: String, message: String },
    #[error("unknown revocation reason {0:?} (one of: unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, certificateHold, privilegeWithdrawn, aACompromise)")]
    UnknownReason(String),
    #[error("key: {0}")]
    Key(#[from] kxca_hsm::Error),
    #[error("encoding {what}: {message}")]
    Encoding { what: String, message: String },
    #[error("PKCS#12 packaging failed: {0}")]
    Pkcs12(String),
    #[error("password: {0}")]
    Password(String),
    #[error("the system random number generator failed ({what}): {message}")]
    Random { what: String, message: String },
    /// A backup or restore refused: the file or directory and why.
    #[error("{path}: {message}")]
    Backup {
        /// The file or directory concerned.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    #[error("no active {role} CA in the store")]
    NoAuthority { role: String },
}

// `store::sql` errors get their path from the store; one that escaped
// without says so rather than naming a file that may not be the one.
fn database_name(path: &std::path::Path) -> String {
    if path.as_os_str().is_empty() {
        "(file not known here)".to_string()
    } else {
        path.display().to_string()
    }
}

impl Error {
    /// A [`crate::store::sql`] error given the path of the store it came from.
    pub(crate) fn in_database(self, store_path: &std::path::Path) -> Error {
        match self {
            Error::Database { path, message } if path.as_os_str().is_empty() => Error::Database {
                path: store_path.to_path_buf(),
                message,
            },
            other => other,
        }
    }
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub(crate) fn encoding(what: &str, e: impl std::fmt::Display) -> Self {
        Error::Encoding {
            what: what.to_string(),
            message: e.to_string(),
        }
    }
    pub(crate) fn field(field: &str, message: impl Into<String>) -> Self {
        Error::InvalidField {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

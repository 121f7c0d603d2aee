use std::path::PathBuf;

/// What went wrong in the CA. Each variant names the file, field or serial
/// it concerns; none carries secret material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory kxca reads or writes could not be.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// kxca.toml is malformed or a value is out of its bounds.
    #[error("{path}: {message}")]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// The key at fault and what is wrong with it.
        message: String,
    },
    /// A policy file (a certificate profile) is malformed.
    #[error("{path}: {message}")]
    Policy {
        /// The policy file.
        path: PathBuf,
        /// The key at fault and what is wrong with it.
        message: String,
    },
    /// The intake policy and a certificate profile state one domain rule
    /// differently, so intake could accept a row issuance refuses.
    #[error("{intake} {intake_key} and {profile} {profile_key} disagree: {detail}; make them agree (a row intake accepts must be issuable, and the reverse)")]
    PolicyDisagreement {
        /// policies/intake.toml (or the file given instead).
        intake: PathBuf,
        /// The key in the intake policy.
        intake_key: String,
        /// The profile file.
        profile: PathBuf,
        /// The key in the profile.
        profile_key: String,
        /// The two values that differ.
        detail: String,
    },
    /// An issuance named a profile that is not under policies/profiles.
    #[error("unknown certificate profile {name:?} (known: {known})")]
    UnknownProfile {
        /// The profile asked for.
        name: String,
        /// The profiles there are, comma-separated.
        known: String,
    },
    /// A value or a request a command cannot accept, named by its field.
    #[error("field {field}: {message}")]
    InvalidField {
        /// The field, as the command line or the form names it.
        field: String,
        /// The rule it breaks.
        message: String,
    },
    /// `kxca init` on a directory that already holds a CA.
    #[error("{path} already holds a kxca home (kxca.toml exists); refusing to overwrite it")]
    AlreadyInitialized {
        /// The home directory.
        path: PathBuf,
    },
    /// A command on a directory that holds no CA yet.
    #[error(
        "{path} is not a kxca home (no kxca.toml): run `kxca init` first or set --home / KXCA_HOME"
    )]
    NotInitialized {
        /// The directory given as the home.
        path: PathBuf,
    },
    /// A production CA configured with a key held in a file.
    #[error("production = true in {path} but the {role} CA key is a soft key ({key_ref}); production keys must live in an HSM or YubiKey")]
    SoftKeyInProduction {
        /// The configuration file.
        path: PathBuf,
        /// Which key: root, issuing, audit.
        role: String,
        /// The soft key's reference.
        key_ref: String,
    },
    /// SQLite refused or failed a statement, or the store file is unusable.
    #[error("database {}: {message}", database_name(path))]
    Database {
        /// The store file (empty until the store fills it in).
        path: PathBuf,
        /// What SQLite said.
        message: String,
    },
    /// No certificate in the store has this serial number.
    #[error("no certificate with serial {serial} in the store")]
    UnknownSerial {
        /// The serial, in hex.
        serial: String,
    },
    /// A revocation of a certificate that is revoked already.
    #[error("certificate {serial} is already revoked (reason {reason}, at {at})")]
    AlreadyRevoked {
        /// The serial, in hex.
        serial: String,
        /// The reason recorded by the first revocation.
        reason: String,
        /// When it was revoked (RFC 3339).
        at: String,
    },
    /// A revocation of a certificate whose issuance never completed.
    #[error("certificate {serial} was never issued (state {state}); nothing to revoke")]
    NotIssued {
        /// The serial, in hex.
        serial: String,
        /// Its stored state (pending or failed).
        state: String,
    },
    /// A serial number that is not hex or not of a certificate's length.
    #[error("invalid serial number {serial:?}: {message}")]
    InvalidSerial {
        /// The serial as given.
        serial: String,
        /// What is wrong with it.
        message: String,
    },
    /// A revocation reason that RFC 5280 does not name.
    #[error("unknown revocation reason {0:?} (one of: unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, certificateHold, privilegeWithdrawn, aACompromise)")]
    UnknownReason(String),
    /// A key could not be opened, made or used (kxca-hsm's error).
    #[error("key: {0}")]
    Key(#[from] kxca_hsm::Error),
    /// Something kxca builds or reads back (DER, PEM, a stored value)
    /// could not be encoded or decoded.
    #[error("encoding {what}: {message}")]
    Encoding {
        /// What was being encoded or decoded.
        what: String,
        /// What went wrong.
        message: String,
    },
    /// The PKCS#12 file of an issued certificate could not be built.
    #[error("PKCS#12 packaging failed: {0}")]
    Pkcs12(String),
    /// A PKCS#12 password given by an operator is not one the KX client takes.
    #[error("password: {0}")]
    Password(String),
    /// The operating system gave no random bytes.
    #[error("the system random number generator failed ({what}): {message}")]
    Random {
        /// What the bytes were for.
        what: String,
        /// What the system said.
        message: String,
    },
    /// A ceremony file is wrong, or what it asks cannot be done.
    #[error("ceremony {path}: {message}")]
    Ceremony {
        /// The ceremony file.
        path: PathBuf,
        /// What is wrong, naming the field.
        message: String,
    },
    /// A backup or restore refused: the file or directory and why.
    #[error("{path}: {message}")]
    Backup {
        /// The file or directory concerned.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The store holds no active CA of this role (a home not initialised
    /// completely).
    #[error("no active {role} CA in the store")]
    NoAuthority {
        /// root or issuing.
        role: String,
    },
    /// A request a rule of the domain refuses (an application row with
    /// errors, an account already revoked, a pickup being signed...).
    /// `kind` says which rule, for an interface that words refusals in its
    /// own language (the console's Japanese table); the text is the English
    /// line the CLI prints, as `InvalidField` words it when `field` is set.
    #[error("{}", refused_text(field.as_deref(), message))]
    Refused {
        /// Which rule refused.
        kind: Refusal,
        /// The field, as the command line names it, if one is at fault.
        field: Option<String>,
        /// What is wrong, in English.
        message: String,
    },
    /// An enrolment (a certificate pickup) cannot do what was asked.
    #[error("enrolment {id}: {message}")]
    Enrolment {
        /// The enrolment's id.
        id: i64,
        /// What is wrong, with the state it is in.
        message: String,
    },
}

fn refused_text(field: Option<&str>, message: &str) -> String {
    match field {
        Some(f) => format!("field {f}: {message}"),
        None => message.to_string(),
    }
}

/// Which rule refused a request ([`Error::Refused`]). Every refusal a
/// union admin can meet from the console has its own kind, so the console
/// words it in Japanese without reading the English text.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// No application with that id.
    UnknownApplication,
    /// The application has no such row.
    UnknownRow {
        /// The row asked for.
        row: u32,
    },
    /// A row with errors cannot be approved.
    RowHasErrors {
        /// The row.
        row: u32,
    },
    /// Rows chosen for approval that the account rules refuse; nothing was
    /// approved.
    RowsNotApproved {
        /// Each refused row and why.
        rows: Vec<(u32, RowRefusal)>,
    },
    /// A rejection without a reason for the applicant.
    ReasonMissing,
    /// A rejection naming no rows.
    NoRowsNamed,
    /// No account with that certificate id.
    UnknownAccount,
    /// The account is revoked: nothing more can be done with it.
    AccountRevoked,
    /// The account has no pickup to renew or announce.
    NoPickup,
    /// An office with no active account.
    NoOfficeAccount,
    /// The pickup's certificate is being signed right now.
    PickupBeingSigned,
    /// The pickup is over (picked up or cancelled); a reset starts a new one.
    PickupFinished,
    /// A code can only be minted for a waiting pickup.
    PickupNotWaiting,
}

/// Why the account rules refuse one application row at approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RowRefusal {
    /// The row does not make a certificate holder the profile accepts.
    InvalidHolder,
    /// The certificate id template cannot be filled from the row.
    CertificateId,
    /// An account with this certificate id exists.
    AccountExists,
    /// This contact of the office has an account.
    ContactHasAccount,
    /// The office has an account and may have only one.
    OfficeHasAccount,
    /// A 社労士 row before the office's own contact has an account.
    SharoushiNeedsOffice,
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
    /// A refusal of `kind`, worded for the CLI like `InvalidField` of `field`.
    pub fn refused(kind: Refusal, field: &str, message: impl Into<String>) -> Self {
        Error::Refused {
            kind,
            field: Some(field.to_string()),
            message: message.into(),
        }
    }
}

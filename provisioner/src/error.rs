use std::path::PathBuf;

/// What went wrong in mail intake or delivery. No variant carries a
/// password or message content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store or the CA failed.
    #[error(transparent)]
    Ca(#[from] kxca_ca::Error),
    /// The intake policy file cannot be used.
    #[error(transparent)]
    Policy(#[from] crate::intake::PolicyError),
    /// A `[mail]` setting cannot be used (e.g. an SMTP From address).
    #[error("[mail] in kxca.toml: {0}")]
    Config(String),
    /// A mail password could not be read.
    #[error("mail password: {0}")]
    Secret(#[from] kxca_hsm::Error),
    /// The IMAP server could not be reached or refused a command.
    #[error("IMAP {server}: {message}")]
    Imap {
        /// host:port.
        server: String,
        /// What went wrong.
        message: String,
    },
    /// The Maildir could not be read or a message not moved.
    #[error("maildir {path}: {message}")]
    Maildir {
        /// The Maildir or the message file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The SMTP server could not be reached or refused the mail.
    #[error("SMTP {server}: {message}")]
    Smtp {
        /// host:port.
        server: String,
        /// What went wrong.
        message: String,
    },
    /// A `ca_file` of `[mail.imap]` or `[mail.smtp]` is not usable PEM.
    #[error("TLS root CA file {path}: {message}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// No application with this id in the store.
    #[error("no application #{0}")]
    UnknownApplication(i64),
    /// The parsing worker could not be started: a fault of this host, not
    /// of the mail, so the pass fails and the mail is not counted.
    #[error("the parsing worker could not be started: {0}")]
    Worker(String),
}

/// Maps a rusqlite error inside a store transaction; the store names its file.
pub(crate) use kxca_ca::store::sql;

/// A JSON column read back. One that does not parse is a database error,
/// not an empty list: a reader must not be told "no findings" when they
/// could not be read.
pub(crate) fn json_column<T: serde::de::DeserializeOwned>(
    r: &rusqlite::Row<'_>,
    idx: usize,
) -> rusqlite::Result<T> {
    let text: String = r.get(idx)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

use std::path::PathBuf;

/// What went wrong in mail intake or delivery. No variant carries a
/// password or message content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Ca(#[from] kxca_ca::Error),
    #[error("[mail] in kxca.toml: {0}")]
    Config(String),
    #[error("mail password: {0}")]
    Secret(#[from] kxca_hsm::Error),
    #[error("IMAP {server}: {message}")]
    Imap { server: String, message: String },
    #[error("maildir {path}: {message}")]
    Maildir { path: PathBuf, message: String },
    #[error("SMTP {server}: {message}")]
    Smtp { server: String, message: String },
    #[error("TLS root CA file {path}: {message}")]
    CaFile { path: PathBuf, message: String },
    #[error("no application #{0}")]
    UnknownApplication(i64),
    /// The parsing worker could not be started: a fault of this host, not
    /// of the mail, so the pass fails and the mail is not counted.
    #[error("the parsing worker could not be started: {0}")]
    Worker(String),
}

/// Maps a rusqlite error inside a store transaction.
pub(crate) fn sql(e: rusqlite::Error) -> kxca_ca::Error {
    kxca_ca::Error::Database {
        path: PathBuf::from("kxca.db"),
        message: e.to_string(),
    }
}

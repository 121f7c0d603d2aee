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

use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;
pub use secrecy::SecretString;

use crate::Error;

/// Where a secret (a key passphrase or PIN, a mail password...) comes
/// from, as a configuration names it. Never from the command line, where
/// every user of the machine can read it in the process list. Messages say
/// "secret" only; the caller says whose secret it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The value of an environment variable.
    Env(String),
    /// The first line of a file (which should be readable by kxca only).
    File(PathBuf),
}

impl SecretSource {
    /// The source a configuration's `<name>_env` / `<name>_file` pair names:
    /// `None` when neither is set, an error naming both keys when both are.
    pub fn from_config(
        env: Option<&str>,
        file: Option<&Path>,
        keys: &str,
    ) -> Result<Option<SecretSource>, Error> {
        match (env, file) {
            (Some(_), Some(_)) => Err(Error::SecretConfig {
                keys: keys.to_string(),
                reason: "set only one of them".to_string(),
            }),
            (Some(name), None) if name.trim().is_empty() => Err(Error::SecretConfig {
                keys: keys.to_string(),
                reason: "the environment variable name is empty".to_string(),
            }),
            (Some(name), None) => Ok(Some(SecretSource::Env(name.to_string()))),
            (None, Some(path)) => Ok(Some(SecretSource::File(path.to_path_buf()))),
            (None, None) => Ok(None),
        }
    }

    /// A file source with its path made absolute against the current
    /// directory, so that a configuration written from a relative path given
    /// on the command line works from any other directory.
    pub fn absolute(self) -> Result<SecretSource, Error> {
        match self {
            SecretSource::File(path) if path.is_relative() => {
                let abs = std::path::absolute(&path)
                    .map_err(|source| Error::SecretFile { path, source })?;
                Ok(SecretSource::File(abs))
            }
            other => Ok(other),
        }
    }

    /// Checks, without reading the secret, that it can be read: the
    /// variable is set, the file can be opened. Run when a configuration
    /// loads, so that a mistake shows at start and not at first use.
    pub fn check(&self) -> Result<(), Error> {
        match self {
            SecretSource::Env(name) => match std::env::var_os(name) {
                Some(v) if !v.is_empty() => Ok(()),
                Some(_) => Err(Error::SecretEmpty {
                    origin: self.describe(),
                }),
                None => Err(Error::SecretEnvMissing { name: name.clone() }),
            },
            SecretSource::File(path) => {
                std::fs::File::open(path)
                    .map(drop)
                    .map_err(|source| Error::SecretFile {
                        path: path.clone(),
                        source,
                    })
            }
        }
    }

    /// Reads the secret. An unset variable, unreadable file or empty value
    /// is an error that names where it looked, never the value.
    pub fn read(&self) -> Result<SecretString, Error> {
        let value = match self {
            SecretSource::Env(name) => {
                std::env::var(name).map_err(|_| Error::SecretEnvMissing { name: name.clone() })?
            }
            SecretSource::File(path) => {
                let mut text =
                    std::fs::read_to_string(path).map_err(|source| Error::SecretFile {
                        path: path.clone(),
                        source,
                    })?;
                let first = text.lines().next().unwrap_or("").to_string();
                zeroize::Zeroize::zeroize(&mut text);
                first
            }
        };
        let secret = SecretString::from(value);
        if secret.expose_secret().is_empty() {
            return Err(Error::SecretEmpty {
                origin: self.describe(),
            });
        }
        Ok(secret)
    }

    /// Where the secret comes from, for messages.
    pub fn describe(&self) -> String {
        match self {
            SecretSource::Env(name) => format!("environment variable {name}"),
            SecretSource::File(path) => format!("file {}", path.display()),
        }
    }
}

/// Whether `secret` is `value`, in time that does not depend on where they
/// differ (a PIN checked against the factory default, say).
pub(crate) fn secret_is(secret: &SecretString, value: &str) -> bool {
    use subtle::ConstantTimeEq;
    secret
        .expose_secret()
        .as_bytes()
        .ct_eq(value.as_bytes())
        .into()
}

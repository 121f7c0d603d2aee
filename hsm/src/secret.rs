use std::path::PathBuf;

use secrecy::ExposeSecret;
pub use secrecy::SecretString;

use crate::Error;

/// Where a passphrase or PIN comes from. Never from the command line, where
/// every user of the machine can read it in the process list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The value of an environment variable.
    Env(String),
    /// The first line of a file (which should be readable by kxca only).
    File(PathBuf),
}

impl SecretSource {
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

//! The console key: 32 random bytes in `<home>/console/console.key` (mode
//! 0600, never in the database, never in a backup). CSRF tokens are derived
//! from it and the session, so a restart does not break open forms; TOTP
//! secrets are stored sealed with it (HMAC-SHA256 as a PRF keyed by it over a
//! random nonce, XORed with the 20-byte secret), so a copy of the database
//! alone gives no second factor.

use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{KeyInit, Mac};
use kxca_ca::{Error, Home};
use subtle::ConstantTimeEq;
use zeroize_free::Secret32;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

mod zeroize_free {
    /// Key bytes, never printed.
    pub struct Secret32(pub [u8; 32]);
    impl std::fmt::Debug for Secret32 {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Secret32(..)")
        }
    }
}

/// Random bytes from the system CSPRNG.
pub fn random(what: &str, buf: &mut [u8]) -> Result<(), Error> {
    use rand_core::TryRng;
    getrandom::SysRng
        .try_fill_bytes(buf)
        .map_err(|e| Error::Random {
            what: what.to_string(),
            message: e.to_string(),
        })
}

/// The console's own key.
#[derive(Debug)]
pub struct ConsoleKey {
    key: Secret32,
}

/// Where the key of `home` lives.
pub fn path(home: &Home) -> PathBuf {
    home.root().join("console").join("console.key")
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl ConsoleKey {
    /// Reads the home's console key, creating it (and its 0700 directory)
    /// the first time.
    pub fn load_or_create(home: &Home) -> Result<ConsoleKey, Error> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        let path = path(home);
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io(dir, e))?;
        }
        match std::fs::read(&path) {
            Ok(bytes) => {
                let mode = std::fs::metadata(&path)
                    .map_err(|e| io(&path, e))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    return Err(Error::Config {
                        path,
                        message: format!(
                            "mode {:o}: the console key must be readable by its owner only (chmod 600)",
                            mode & 0o777
                        ),
                    });
                }
                let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| Error::Config {
                    path: path.clone(),
                    message: format!("{} bytes: a console key is 32 bytes", bytes.len()),
                })?;
                Ok(ConsoleKey { key: Secret32(key) })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                random("console key", &mut key)?;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| io(&path, e))?;
                f.write_all(&key).map_err(|e| io(&path, e))?;
                f.sync_all().map_err(|e| io(&path, e))?;
                Ok(ConsoleKey { key: Secret32(key) })
            }
            Err(e) => Err(io(&path, e)),
        }
    }

    /// The home's console key when it exists (`kxca doctor`, `kxca admin
    /// list`: they must not make a new one).
    pub fn load(home: &Home) -> Result<Option<ConsoleKey>, Error> {
        if !path(home).exists() {
            return Ok(None);
        }
        ConsoleKey::load_or_create(home).map(Some)
    }

    /// A value that names this key without revealing it, stored beside each
    /// sealed TOTP secret: a secret sealed under a key this home no longer
    /// has (a restore without `console.key`) is then told apart from a
    /// wrong code, by `kxca doctor` and `kxca admin list`.
    pub fn check_value(&self) -> String {
        hex::encode(&self.prf("kxca-console key check v1", b"")[..8])
    }

    fn prf(&self, label: &str, data: &[u8]) -> [u8; 32] {
        // HMAC pads a short key with zeros to the block size: this is
        // HMAC-SHA256 under the 32-byte key, through the infallible constructor.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&self.key.0);
        let mut mac = <HmacSha256 as KeyInit>::new(&block.into());
        mac.update(label.as_bytes());
        mac.update(&[0]);
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// The CSRF token of a session (by its stored hash).
    pub fn csrf(&self, session_hash: &str) -> String {
        hex::encode(self.prf("kxca-console csrf v1", session_hash.as_bytes()))
    }

    /// Whether `token` is the CSRF token of the session, in constant time.
    pub fn csrf_ok(&self, session_hash: &str, token: &str) -> bool {
        let want = self.csrf(session_hash);
        want.len() == token.len() && bool::from(want.as_bytes().ct_eq(token.as_bytes()))
    }

    /// Seals a 20-byte TOTP secret: (nonce, sealed).
    pub fn seal_totp(&self, secret: &[u8; 20]) -> Result<([u8; 16], Vec<u8>), Error> {
        let mut nonce = [0u8; 16];
        random("TOTP seal nonce", &mut nonce)?;
        let pad = self.prf("kxca-console totp v1", &nonce);
        Ok((nonce, secret.iter().zip(pad).map(|(a, b)| a ^ b).collect()))
    }

    /// The TOTP secret sealed by [`ConsoleKey::seal_totp`].
    pub fn open_totp(&self, nonce: &[u8], sealed: &[u8]) -> Result<Vec<u8>, Error> {
        if sealed.len() > 32 {
            return Err(Error::InvalidField {
                field: "console_admins.totp_sealed".to_string(),
                message: format!("{} bytes: at most 32", sealed.len()),
            });
        }
        let pad = self.prf("kxca-console totp v1", nonce);
        Ok(sealed.iter().zip(pad).map(|(a, b)| a ^ b).collect())
    }
}

//! The PKCS#11 signer: a key on a token, reached through the session pool,
//! healing dead sessions and a finalised library on the way.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, SessionState};
use cryptoki::slot::Slot;

use crate::{Error, Health, KeyAlgorithm, KeyRef, Pkcs11Options, SecretString, Signer};

use super::fault::{cure, describe, Cure};
use super::keys::{self, FoundKey, Lookup};
use super::module::{Loaded, Module};
use super::pool::{discard, find_slot, open_session, Pool};
use super::sign::{self, Outcome};
use super::uri::TokenKey;

pub(crate) struct Pkcs11Signer {
    key_ref: KeyRef,
    key: TokenKey,
    module: Arc<Module>,
    pin: SecretString,
    pool: Pool,
    verify: bool,
    algorithm: KeyAlgorithm,
    spki: Vec<u8>,
    /// Slot and key handle, valid for one library generation.
    located: Mutex<Option<(u64, Slot, FoundKey)>>,
}

/// Why an attempt failed, and whether a new session or library cures it.
struct Failed {
    cure: Cure,
    generation: u64,
    error: Error,
}

impl Pkcs11Signer {
    pub fn open(
        key_ref: KeyRef,
        options: &Pkcs11Options,
        pin: SecretString,
    ) -> Result<Pkcs11Signer, Error> {
        let key = TokenKey::from_ref(&key_ref, options)?;
        let module = Module::load(&key.module_path)?;
        let mut signer = Pkcs11Signer {
            key_ref,
            key,
            module,
            pin,
            pool: Pool::new(
                options.max_sessions,
                Duration::from_secs(options.session_wait_secs),
            ),
            verify: options.verify_signatures,
            algorithm: KeyAlgorithm::EcdsaP256,
            spki: Vec::new(),
            located: Mutex::new(None),
        };
        let (algorithm, spki) = signer
            .with_key(|s, k| keys::public_key(s, k.handle))?
            .map_err(|reason| signer.error(reason))?;
        signer.algorithm = algorithm;
        signer.spki = spki;
        Ok(signer)
    }

    fn error(&self, reason: String) -> Error {
        Error::Pkcs11 {
            key: self.key.describe(),
            reason,
        }
    }

    /// Runs `op` on a pooled session with the key; on a curable failure
    /// heals (new session, or re-initialised library) and retries once.
    fn with_key<T>(
        &self,
        op: impl Fn(&Session, FoundKey) -> Result<T, CkError>,
    ) -> Result<T, Error> {
        match self.attempt(&op) {
            Ok(v) => Ok(v),
            Err(f) if f.cure == Cure::None => Err(f.error),
            Err(f) => {
                tracing::warn!(key = %self.key_ref, error = %f.error, cure = ?f.cure, "healing the PKCS#11 session and retrying once");
                if f.cure == Cure::Reinitialize {
                    self.module.reinitialize(f.generation)?;
                }
                self.prune_idle();
                let healed = match f.cure {
                    Cure::Reinitialize => "re-initialising the library",
                    _ => "reopening the session",
                };
                self.attempt(&op).map_err(|f| match f.error {
                    Error::Pkcs11 { key, reason } => Error::Pkcs11 {
                        key,
                        reason: format!("{reason} (still, after {healed})"),
                    },
                    other => other,
                })
            }
        }
    }

    fn attempt<T>(
        &self,
        op: &impl Fn(&Session, FoundKey) -> Result<T, CkError>,
    ) -> Result<T, Failed> {
        let loaded = self.module.read();
        let generation = loaded.generation;
        let failed = |cure, error| Failed {
            cure,
            generation,
            error,
        };
        let Some(mut lease) = self.pool.checkout() else {
            return Err(failed(
                Cure::None,
                self.error(format!(
                    "all {} sessions stayed busy for {:?} (raise [pkcs11] max_sessions or session_wait_secs)",
                    self.pool.max(),
                    self.pool.wait()
                )),
            ));
        };
        if lease
            .session
            .as_ref()
            .is_some_and(|s| s.generation != generation)
        {
            // Opened before a re-initialisation: its handle number may now
            // name another signer's new session, so it is forgotten, not
            // used or closed.
            lease.session = None;
        }
        let result = (|| -> Result<Result<T, Error>, CkError> {
            let slot = match self.cached(generation) {
                Some((slot, _)) => slot,
                None => match find_slot(&loaded.ctx, &self.key.token)? {
                    Some(slot) => slot,
                    // The token may come back after re-initialisation
                    // (re-plugged device, restored token directory).
                    None => {
                        return Err(CkError::Pkcs11(
                            RvError::TokenNotPresent,
                            cryptoki::context::Function::GetSlotList,
                        ))
                    }
                },
            };
            let pooled = match lease.session.take() {
                Some(s) => s,
                None => open_session(&loaded, slot, &self.pin, false)?,
            };
            let session = &lease.session.insert(pooled).session;
            let found = match self.cached(generation) {
                Some((_, found)) => found,
                None => match keys::find_private(session, &self.key)? {
                    Lookup::Found(found) => {
                        *self.located.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some((generation, slot, found));
                        found
                    }
                    Lookup::Missing => {
                        return Ok(Err(Error::TokenKeyMissing {
                            key: self.key.describe(),
                        }))
                    }
                    Lookup::Ambiguous(n) => {
                        return Ok(Err(self.error(format!(
                            "{n} private keys match; add id= to the key reference"
                        ))))
                    }
                },
            };
            op(session, found).map(Ok)
        })();
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(error)) => Err(failed(Cure::None, error)),
            Err(e) => {
                // A session that failed is never handed out again.
                if let Some(s) = lease.session.take() {
                    discard(s, &loaded);
                }
                *self.located.lock().unwrap_or_else(|p| p.into_inner()) = None;
                let error = match &e {
                    CkError::Pkcs11(RvError::TokenNotPresent, _) => {
                        self.error("token not present".into())
                    }
                    _ => self.error(describe(&e)),
                };
                Err(failed(cure(&e), error))
            }
        }
    }

    fn cached(&self, generation: u64) -> Option<(Slot, FoundKey)> {
        match *self.located.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((g, slot, found)) if g == generation => Some((slot, found)),
            _ => None,
        }
    }

    /// After a failure, idle sessions may be dead too: keep the ones the
    /// token still knows as logged in.
    fn prune_idle(&self) {
        let loaded = self.module.read();
        self.pool.retain_idle(&loaded, |s| still_usable(&loaded, s));
    }
}

fn still_usable(loaded: &Loaded, s: &super::pool::PooledSession) -> bool {
    if s.generation != loaded.generation {
        return false;
    }
    matches!(
        s.session.get_session_info().map(|i| i.session_state()),
        Ok(SessionState::RoUser | SessionState::RwUser)
    )
}

impl Signer for Pkcs11Signer {
    fn key_ref(&self) -> &KeyRef {
        &self.key_ref
    }
    fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }
    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let outcome = self.with_key(|s, k| {
            let _turn = k
                .always_authenticate
                .then(|| self.module.context_login_turn());
            sign::sign(s, k, self.algorithm, &self.pin, message)
        })?;
        let signature = match outcome {
            Outcome::Signed(sig) => sig,
            Outcome::Malformed(reason) => return Err(self.error(reason)),
        };
        if self.verify {
            crate::verify(self.algorithm, &self.spki, message, &signature).map_err(|_| {
                self.error("the token returned a signature that does not verify".into())
            })?;
        }
        Ok(signature)
    }
    fn health(&self) -> Health {
        // Proves a session, a login and the key lookup work, healing on
        // the way, before the token is asked for its state.
        let key = self.with_key(|s, _| s.get_session_info().map(|_| ()));
        let token_state = {
            let loaded = self.module.read();
            find_slot(&loaded.ctx, &self.key.token)
                .and_then(|slot| slot.map(|s| loaded.ctx.get_token_info(s)).transpose())
        };
        match (token_state, key) {
            (Ok(Some(info)), Ok(())) if !info.user_pin_locked() => Health {
                ok: true,
                detail: format!(
                    "{} {} ready on {} ({} {})",
                    self.key.describe(),
                    self.algorithm,
                    self.module.path().display(),
                    info.manufacturer_id().trim_end(),
                    info.model().trim_end()
                ),
            },
            (Ok(Some(_)), Ok(())) => Health {
                ok: false,
                detail: format!("{}: user PIN locked", self.key.describe()),
            },
            (_, Err(e)) => Health {
                ok: false,
                detail: e.to_string(),
            },
            (Ok(None), _) => Health {
                ok: false,
                detail: format!("{}: token not present", self.key.describe()),
            },
            (Err(e), _) => Health {
                ok: false,
                detail: format!("{}: {}", self.key.describe(), describe(&e)),
            },
        }
    }
}

impl Drop for Pkcs11Signer {
    fn drop(&mut self) {
        let loaded = self.module.read();
        self.pool.retain_idle(&loaded, |_| false);
    }
}

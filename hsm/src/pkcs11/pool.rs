//! A bounded pool of logged-in sessions on one token.
//!
//! A PKCS#11 session is not safe to use from two threads at once, and
//! tokens allow only so many sessions; OCSP answers and issuance share the
//! CA key through this pool. A signer that finds no free session waits up
//! to `session_wait_secs`, then fails with an error naming the limit.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;

use crate::SecretString;

use super::module::Loaded;

/// A session and the library generation it was opened in.
pub(crate) struct PooledSession {
    pub session: Session,
    pub generation: u64,
}

struct State {
    idle: Vec<PooledSession>,
    /// Sessions open or being opened, idle ones included.
    open: usize,
}

pub(crate) struct Pool {
    state: Mutex<State>,
    freed: Condvar,
    max: usize,
    wait: Duration,
}

/// A session checked out of the pool: returned on drop, or discarded when
/// `session` has been taken away (a failed session is never reused).
pub(crate) struct Lease<'a> {
    pool: &'a Pool,
    pub session: Option<PooledSession>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut st = self.pool.lock();
        match self.session.take() {
            Some(s) => st.idle.push(s),
            None => st.open -= 1,
        }
        self.pool.freed.notify_one();
    }
}

impl Pool {
    pub fn new(max: usize, wait: Duration) -> Pool {
        Pool {
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
            max: max.max(1),
            wait,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// An idle session, or a lease with no session yet that the caller
    /// fills by opening one; `None` when every session stayed busy.
    pub fn checkout(&self) -> Option<Lease<'_>> {
        let deadline = Instant::now() + self.wait;
        let mut st = self.lock();
        loop {
            if let Some(s) = st.idle.pop() {
                return Some(Lease {
                    pool: self,
                    session: Some(s),
                });
            }
            if st.open < self.max {
                st.open += 1;
                return Some(Lease {
                    pool: self,
                    session: None,
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            st = self
                .freed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// Keeps the idle sessions `keep` approves and ends the others.
    pub fn retain_idle(&self, loaded: &Loaded, keep: impl Fn(&PooledSession) -> bool) {
        let idle: Vec<PooledSession> = std::mem::take(&mut self.lock().idle);
        let (kept, dropped): (Vec<_>, Vec<_>) = idle.into_iter().partition(|s| keep(s));
        let n = dropped.len();
        for s in dropped {
            discard(s, loaded);
        }
        let mut st = self.lock();
        st.idle.extend(kept);
        st.open -= n;
        self.freed.notify_all();
    }
}

/// Ends a session that failed or is no longer wanted.
pub(crate) fn discard(s: PooledSession, loaded: &Loaded) {
    if s.generation == loaded.generation {
        let _ = s.session.close();
    }
}

/// Finds the slot holding the token labelled `label`.
pub(crate) fn find_slot(ctx: &Pkcs11, label: &str) -> Result<Option<Slot>, CkError> {
    for slot in ctx.get_slots_with_token()? {
        let info = match ctx.get_token_info(slot) {
            Ok(i) => i,
            // A token pulled between the two calls is just not this one.
            Err(CkError::Pkcs11(RvError::TokenNotPresent, _)) => continue,
            Err(e) => return Err(e),
        };
        if info.label().trim_end() == label {
            return Ok(Some(slot));
        }
    }
    Ok(None)
}

/// Opens a session on `slot` and logs the user in.
pub(crate) fn open_session(
    loaded: &Loaded,
    slot: Slot,
    pin: &SecretString,
    read_write: bool,
) -> Result<PooledSession, CkError> {
    // No close-on-drop: after a re-initialisation the handle number may
    // belong to someone else's new session; `discard` decides.
    let session = if read_write {
        loaded.ctx.open_rw_session_no_drop(slot)?
    } else {
        loaded.ctx.open_ro_session_no_drop(slot)?
    };
    let s = PooledSession {
        session,
        generation: loaded.generation,
    };
    match s.session.login(UserType::User, Some(pin)) {
        // The login state is per token and application: another session
        // of this process has logged in already.
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(s),
        Err(e) => {
            discard(s, loaded);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkout_waits_then_gives_up_when_every_session_is_busy() {
        let pool = Pool::new(2, Duration::from_millis(20));
        let a = pool.checkout().expect("first");
        let b = pool.checkout().expect("second");
        assert!(pool.checkout().is_none(), "a third exceeds max_sessions");
        drop(a);
        // A lease returned without a session frees its place.
        let c = pool.checkout().expect("freed");
        drop((b, c));
        assert_eq!(pool.lock().open, 0);
    }
}

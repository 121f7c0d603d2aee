//! The connection cap: at most `[serve] max_connections` sockets held, so a
//! flood of idle or trickling clients can never use up the process's file
//! descriptors and lock out the clients that ask and go.
//!
//! At the cap a new connection displaces an old one rather than waiting in
//! the kernel's backlog behind it: first the oldest that has not yet
//! completed a request (an idle or slowloris socket), then the oldest idle
//! keep-alive one. A connection in the middle of an answer is never cut;
//! when all are, the new one is closed at once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Has not completed a request yet (idle since accept, or trickling its head).
const FRESH: u8 = 0;
/// Between requests (keep-alive), or waiting for a request body.
pub(crate) const IDLE: u8 = 1;
/// Answering a request.
pub(crate) const BUSY: u8 = 2;

struct Slot {
    state: Arc<AtomicU8>,
    kill: oneshot::Sender<()>,
}

pub(crate) struct Conns {
    cap: usize,
    slots: Mutex<(u64, BTreeMap<u64, Slot>)>,
    pub evicted: AtomicU64,
    pub refused: AtomicU64,
    pub accepted: AtomicU64,
}

/// A connection's place; gives it back when dropped (the connection ended).
pub(crate) struct Admitted {
    conns: Arc<Conns>,
    id: u64,
    /// The connection's state, set by the request handler.
    pub state: Arc<AtomicU8>,
    /// Fires when the connection is displaced: drop it.
    pub kill: Option<oneshot::Receiver<()>>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Ok(mut g) = self.conns.slots.lock() {
            g.1.remove(&self.id);
        }
    }
}

impl Conns {
    pub fn new(cap: usize) -> Arc<Conns> {
        Arc::new(Conns {
            cap: cap.max(1),
            slots: Mutex::new((0, BTreeMap::new())),
            evicted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
        })
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Connections held now.
    pub fn open(&self) -> usize {
        self.slots.lock().map(|g| g.1.len()).unwrap_or(0)
    }

    /// A place for a new connection, displacing an old one at the cap;
    /// None when every connection is mid-answer (close the new one).
    pub fn admit(self: &Arc<Conns>) -> Option<Admitted> {
        let mut g = self.slots.lock().ok()?;
        let (next, slots) = &mut *g;
        if slots.len() >= self.cap {
            // Oldest first: a client that connected just now has had the
            // least time to send its request.
            let victim = [FRESH, IDLE].into_iter().find_map(|wanted| {
                slots
                    .iter()
                    .find(|(_, s)| s.state.load(Ordering::Relaxed) == wanted)
                    .map(|(id, _)| *id)
            });
            match victim.and_then(|id| slots.remove(&id)) {
                Some(slot) => {
                    // The task may have ended already: then there is nothing to cut.
                    let _ = slot.kill.send(());
                    self.evicted.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
            }
        }
        let id = *next;
        *next += 1;
        let (tx, rx) = oneshot::channel();
        let state = Arc::new(AtomicU8::new(FRESH));
        slots.insert(
            id,
            Slot {
                state: Arc::clone(&state),
                kill: tx,
            },
        );
        self.accepted.fetch_add(1, Ordering::Relaxed);
        Some(Admitted {
            conns: Arc::clone(self),
            id,
            state,
            kill: Some(rx),
        })
    }
}

/// Raises the soft limit on open files to the hard limit (a service
/// manager's default soft limit, often 1024, is far below what the
/// connection cap may need) and returns the soft limit now in force.
pub(crate) fn raise_nofile_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    // No hard limit: the kernel's own ceiling (fs.nr_open) still applies,
    // and its default is 2^20.
    let hard = lim.maximum.unwrap_or(1 << 20);
    let soft = lim.current.unwrap_or(u64::MAX);
    if soft >= hard {
        return Some(soft);
    }
    let raised = Rlimit {
        current: Some(hard),
        maximum: lim.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => Some(hard),
        Err(_) => Some(soft),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displaces_fresh_then_idle_never_busy() {
        let conns = Conns::new(3);
        let mut a = conns.admit().unwrap();
        let mut b = conns.admit().unwrap();
        let mut c = conns.admit().unwrap();
        a.state.store(BUSY, Ordering::Relaxed);
        b.state.store(IDLE, Ordering::Relaxed);
        // c is fresh: displaced first.
        let d = conns.admit().unwrap();
        assert!(c.kill.take().unwrap().try_recv().is_ok());
        assert_eq!(conns.open(), 3);
        d.state.store(BUSY, Ordering::Relaxed);
        // Then the idle one.
        let e = conns.admit().unwrap();
        assert!(b.kill.take().unwrap().try_recv().is_ok());
        e.state.store(BUSY, Ordering::Relaxed);
        // All busy: refused.
        assert!(conns.admit().is_none());
        assert!(a.kill.take().unwrap().try_recv().is_err());
        drop(a);
        assert_eq!(conns.open(), 2);
        assert!(conns.admit().is_some());
    }
}

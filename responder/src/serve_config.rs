//! `[serve]` in kxca.toml: the listener of `kxca serve`. This crate owns
//! the section; the kxca binary reads it with the rest of the file
//! (src/config.rs) and `kxca_ca::Config` keeps it opaque.

use serde::{Deserialize, Serialize};

/// `[serve]`: where and how the public role listens, and its bounds on
/// clients (timeouts, connections).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Address and port of the one HTTP listener (OCSP, CRL, CA certificates,
    /// /healthz, /metrics). `--listen` overrides it.
    pub listen: String,
    /// One line per request on stderr, written by a separate thread so a
    /// slow terminal or disk never holds up an answer.
    pub access_log: bool,
    /// Seconds to let in-flight requests finish after SIGTERM / Ctrl-C.
    pub shutdown_grace_seconds: u32,
    /// Threads answering requests (live signing runs on separate threads);
    /// 0 = half the CPU cores, at least one. One thread answers about 100,000
    /// pre-signed requests a second; more threads than that on a small
    /// machine only take turns with the kernel's network work and the
    /// clients, which shows in p99 (docs/PUBLISH.md, Benchmark).
    pub workers: usize,
    /// Seconds a client has to send a request's headers, and again its
    /// body: a connection that trickles bytes or stops half-way is closed
    /// instead of holding a socket forever.
    pub request_timeout_seconds: u32,
    /// Seconds a connection may sit without sending a complete request head,
    /// from its accept or from its last answer (keep-alive): an idle client
    /// gives its socket back quickly. 1..=300.
    pub idle_timeout_seconds: u32,
    /// Connections held open at once, 16..=1,000,000 (and at most the file
    /// descriptor limit less a reserve, lowered with a warning at start).
    /// At the cap a new connection displaces the oldest one that has not
    /// completed a request (then the oldest idle between requests or still
    /// sending a body); when every connection is being answered, the new
    /// one is closed at once.
    pub max_connections: usize,
}

impl ServeConfig {
    /// Checks the bounds documented on each field; the message names the key.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=3600).contains(&self.request_timeout_seconds) {
            return Err("serve.request_timeout_seconds must be between 1 and 3600".into());
        }
        if !(1..=300).contains(&self.idle_timeout_seconds) {
            return Err("serve.idle_timeout_seconds must be between 1 and 300".into());
        }
        if !(16..=1_000_000).contains(&self.max_connections) {
            return Err("serve.max_connections must be between 16 and 1000000".into());
        }
        Ok(())
    }

    /// `workers`, with 0 resolved for this machine.
    pub fn worker_threads(&self) -> usize {
        if self.workers > 0 {
            return self.workers;
        }
        std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: "127.0.0.1:8080".into(),
            access_log: true,
            shutdown_grace_seconds: 10,
            workers: 0,
            request_timeout_seconds: 10,
            idle_timeout_seconds: 5,
            max_connections: 1024,
        }
    }
}

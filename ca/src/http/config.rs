//! `[serve]` in kxca.toml: the listener of `kxca serve`.

use serde::{Deserialize, Serialize};

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
}

impl ServeConfig {
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
        }
    }
}

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
    /// Threads answering requests; 0 = one per CPU core. On a small machine
    /// that also runs other work (the KX server, a load generator) fewer
    /// threads than cores keep latency steadier: see docs/PUBLISH.md.
    pub workers: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: "127.0.0.1:8080".into(),
            access_log: true,
            shutdown_grace_seconds: 10,
            workers: 0,
        }
    }
}

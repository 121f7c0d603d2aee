use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// The one source of "now" in the CA, so tests can set the time.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    fixed: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock { fixed: None }
    }

    /// A clock stopped at `unix_seconds`, movable with [`Clock::set`].
    pub fn fixed(unix_seconds: i64) -> Self {
        Clock {
            fixed: Some(Arc::new(AtomicI64::new(unix_seconds))),
        }
    }

    /// Moves a fixed clock; no effect on the system clock.
    pub fn set(&self, unix_seconds: i64) {
        if let Some(f) = &self.fixed {
            f.store(unix_seconds, Ordering::SeqCst);
        }
    }

    /// Seconds since the Unix epoch.
    pub fn now(&self) -> i64 {
        match &self.fixed {
            Some(f) => f.load(Ordering::SeqCst),
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
        }
    }
}

/// RFC 3339 text for a Unix time, for people and JSON.
pub fn rfc3339(unix_seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix_seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix_seconds.to_string())
}

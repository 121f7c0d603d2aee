//! The request log: one line per request, handed to a writer thread over a
//! bounded channel. When the writer falls behind, lines are dropped and
//! counted rather than making requests wait.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

#[derive(Clone)]
pub(crate) struct AccessLog {
    tx: Option<SyncSender<String>>,
    pub dropped: Arc<AtomicU64>,
}

impl AccessLog {
    pub fn new(enabled: bool) -> AccessLog {
        let dropped = Arc::new(AtomicU64::new(0));
        if !enabled {
            return AccessLog { tx: None, dropped };
        }
        let (tx, rx) = sync_channel::<String>(16_384);
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let stderr = std::io::stderr();
                let mut batch = Vec::with_capacity(64 * 1024);
                while let Ok(line) = rx.recv() {
                    batch.extend_from_slice(line.as_bytes());
                    // Batch what is already queued, then write once.
                    while let Ok(more) = rx.try_recv() {
                        batch.extend_from_slice(more.as_bytes());
                        if batch.len() >= 64 * 1024 {
                            break;
                        }
                    }
                    // Locked only for the write: held across recv(), the
                    // lock would stall every other thread's log line (the
                    // maintainer's, the mail schedule's) until a request came.
                    let _ = stderr.lock().write_all(&batch);
                    batch.clear();
                }
            });
        AccessLog {
            tx: spawned.ok().map(|_| tx),
            dropped,
        }
    }

    pub fn log(&self, line: impl FnOnce() -> String) {
        if let Some(tx) = &self.tx {
            if let Err(TrySendError::Full(_)) = tx.try_send(line()) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

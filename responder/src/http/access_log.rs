//! The request log: one line per request, handed to a writer thread over a
//! bounded channel. When the writer falls behind, lines are dropped and
//! counted rather than making requests wait.
//!
//! An OCSP answer is sent as a small fixed-size record and formatted on the
//! writer thread: the request path then neither allocates nor formats, which
//! matters at tens of thousands of requests a second on two cores.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;

/// How often the writer thread drains the queue. With the queue's 16,384
/// lines this absorbs over 1.5 million requests a second before dropping.
const BATCH: std::time::Duration = std::time::Duration::from_millis(10);

/// Longest serial kept in a log line; RFC 5280 serials are at most 20
/// octets, so only a hostile request is cut (and marked with `…`).
const SERIAL_MAX: usize = 24;

/// One answered OCSP request.
pub(crate) struct OcspLine {
    pub method: &'static str,
    pub status: &'static str,
    pub source: &'static str,
    pub http: u16,
    pub latency_us: u64,
    /// Only for live-signed answers: certificates asked for and nonce echoed.
    pub signed: Option<(usize, bool)>,
    serial: [u8; SERIAL_MAX],
    serial_len: u8,
    serial_cut: bool,
}

impl OcspLine {
    pub fn new(method: &'static str, status: &'static str, source: &'static str) -> OcspLine {
        OcspLine {
            method,
            status,
            source,
            http: 200,
            latency_us: 0,
            signed: None,
            serial: [0; SERIAL_MAX],
            serial_len: 0,
            serial_cut: false,
        }
    }

    pub fn serial(mut self, serial: Option<&[u8]>) -> OcspLine {
        if let Some(s) = serial {
            let n = s.len().min(SERIAL_MAX);
            self.serial[..n].copy_from_slice(&s[..n]);
            self.serial_len = n as u8;
            self.serial_cut = s.len() > SERIAL_MAX;
        }
        self
    }
}

impl fmt::Display for OcspLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ocsp method={} status={} serial=",
            self.method, self.status
        )?;
        if self.serial_len == 0 {
            f.write_str("-")?;
        }
        for b in &self.serial[..usize::from(self.serial_len)] {
            write!(f, "{b:02x}")?;
        }
        if self.serial_cut {
            f.write_str("…")?;
        }
        if let Some((n, nonce)) = self.signed {
            write!(f, " certificates={n} source={} nonce={nonce}", self.source)?;
        } else {
            write!(f, " source={}", self.source)?;
        }
        writeln!(f, " http={} latency_us={}", self.http, self.latency_us)
    }
}

enum Line {
    Ocsp(OcspLine),
    Text(String),
    /// Write out everything queued before it, then answer.
    Flush(std::sync::mpsc::Sender<()>),
}

#[derive(Clone)]
pub(crate) struct AccessLog {
    tx: Option<SyncSender<Line>>,
    pub dropped: Arc<AtomicU64>,
}

impl AccessLog {
    pub fn new(enabled: bool) -> AccessLog {
        let dropped = Arc::new(AtomicU64::new(0));
        if !enabled {
            return AccessLog { tx: None, dropped };
        }
        let (tx, rx) = sync_channel::<Line>(16_384);
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                // Not locked for the thread's life: other threads (the
                // maintainer's, the mail schedule's tracing) write to stderr
                // between our flushes; each flush locks it only to write.
                let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr());
                let put = |line: Line, out: &mut std::io::BufWriter<_>| {
                    let _ = match line {
                        Line::Ocsp(l) => write!(out, "{l}"),
                        Line::Text(s) => out.write_all(s.as_bytes()),
                        Line::Flush(done) => {
                            let _ = out.flush();
                            let _ = done.send(());
                            Ok(())
                        }
                    };
                };
                // Drained on a clock rather than woken per line: a blocking
                // recv would cost every request a futex wake-up of this
                // thread (measured with perf at 64 connections: the largest
                // single cost of the request path). Lines reach stderr
                // within BATCH.
                loop {
                    let mut wrote = false;
                    loop {
                        match rx.try_recv() {
                            Ok(line) => {
                                put(line, &mut out);
                                wrote = true;
                            }
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Disconnected) => {
                                let _ = out.flush();
                                return;
                            }
                        }
                    }
                    if wrote {
                        let _ = out.flush();
                    }
                    std::thread::sleep(BATCH);
                }
            });
        AccessLog {
            tx: spawned.ok().map(|_| tx),
            dropped,
        }
    }

    /// Logs an OCSP answer (formatted on the writer thread).
    pub fn ocsp(&self, line: OcspLine) {
        self.send(|| Line::Ocsp(line));
    }

    /// Logs a line built by `line` (only called when logging is on).
    pub fn log(&self, line: impl FnOnce() -> String) {
        self.send(|| Line::Text(line()));
    }

    /// Waits (at most `limit`) until every line queued so far is on
    /// stderr: at shutdown, so the last requests are not lost with the
    /// process.
    pub fn flush(&self, limit: std::time::Duration) {
        if let Some(tx) = &self.tx {
            let (done, wait) = std::sync::mpsc::channel();
            if tx.send(Line::Flush(done)).is_ok() {
                let _ = wait.recv_timeout(limit);
            }
        }
    }

    fn send(&self, line: impl FnOnce() -> Line) {
        if let Some(tx) = &self.tx {
            if let Err(TrySendError::Full(_)) = tx.try_send(line()) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

//! The worker's side: one job read from stdin, one answer on stdout.

use std::io::{Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;

use super::{Answer, Job};

/// Entry point of `kxca __kxca-parse-worker`. Input: an 8-byte
/// little-endian length, that many bytes of JSON [`Job`], then the bytes to
/// parse. Output: a JSON [`Answer`]. The process exits without running
/// destructors once the answer is written, so a value whose drop would
/// overflow the stack (mail-parser's deeply nested messages) is never
/// dropped at all.
pub fn worker_main() -> ExitCode {
    // The parent reports the panic from the answer; a message on stderr
    // would only be noise.
    std::panic::set_hook(Box::new(|_| {}));
    let mut all = Vec::new();
    if std::io::stdin().lock().read_to_end(&mut all).is_err() || all.len() < 8 {
        return ExitCode::from(3);
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&all[..8]);
    let len = u64::from_le_bytes(len) as usize;
    let Some(header) = all.get(8..8usize.saturating_add(len)) else {
        return ExitCode::from(3);
    };
    let Ok(job) = serde_json::from_slice::<Job>(header) else {
        return ExitCode::from(3);
    };
    let input = &all[8 + len..];
    let answer = match job {
        Job::Form {
            file,
            policy,
            keep_copy,
        } => encode(catch_unwind(AssertUnwindSafe(|| {
            crate::intake::read_table_in_worker(&file, input, &policy, keep_copy)
        }))),
        Job::Mail { limits } => encode(catch_unwind(AssertUnwindSafe(|| {
            crate::mail::mime::read_and_leak(input, &limits)
        }))),
    };
    let Ok(answer) = answer else {
        return ExitCode::from(4);
    };
    let mut out = std::io::stdout().lock();
    if out.write_all(&answer).and_then(|_| out.flush()).is_err() {
        return ExitCode::from(5);
    }
    std::process::exit(0)
}

fn encode<T: serde::Serialize>(
    r: Result<T, Box<dyn std::any::Any + Send>>,
) -> serde_json::Result<Vec<u8>> {
    match r {
        Ok(v) => serde_json::to_vec(&Answer::Done(v)),
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_string());
            // The payload was made by the parser from hostile input; the
            // process ends right after, so it is leaked, never dropped.
            std::mem::forget(payload);
            serde_json::to_vec(&Answer::<T>::Panicked(message))
        }
    }
}

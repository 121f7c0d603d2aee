//! Bounds on live signing: a flood of requests that cannot be answered from
//! the pre-signed responses (random serials, nonces) must not turn the
//! responder into a signing oracle limited only by CPU.
//!
//! - a token bucket (`[ocsp] live_signatures_per_second`, `live_signature_burst`)
//!   that every live signature takes from; when it is empty the request gets
//!   the pre-signed answer without its nonce, or `tryLater`;
//! - a bounded cache of the answers signed for serials this CA never issued,
//!   so that asking again for the same unknown serial costs no signature.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::headers::Cached;
use super::request::HashAlg;
use super::OcspConfig;

/// (authority id, CertID hash, serial).
type Key = (i64, HashAlg, Box<[u8]>);
/// The answers, and their keys oldest first (dropped in that order).
type UnknownCache = (HashMap<Key, Arc<Cached>>, VecDeque<Key>);

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Live signing counters, as shown on /metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveStats {
    /// Responses signed for a request (nonce, several certificates, unknown serial).
    pub signatures: u64,
    /// Requests answered `tryLater` because the signing budget was spent.
    pub try_later: u64,
    /// Requests that would have been signed live but got the pre-signed (or
    /// cached unknown) answer without their nonce, because the budget was spent.
    pub fallback: u64,
    /// Requests for an unknown serial answered from the cache.
    pub unknown_cache_hits: u64,
    /// Unknown-serial answers held.
    pub unknown_cache_entries: usize,
}

pub(crate) struct Live {
    rate: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
    capacity: usize,
    unknown: Mutex<UnknownCache>,
    signatures: AtomicU64,
    try_later: AtomicU64,
    fallback: AtomicU64,
    unknown_hits: AtomicU64,
}

impl Live {
    pub fn new(config: &OcspConfig) -> Live {
        let burst = f64::from(config.live_signature_burst.max(1));
        Live {
            rate: f64::from(config.live_signatures_per_second.max(1)),
            burst,
            // Full at start: a restart under load must not refuse the first requests.
            bucket: Mutex::new(Bucket {
                tokens: burst,
                last: Instant::now(),
            }),
            capacity: config.unknown_cache_entries,
            unknown: Mutex::new((HashMap::new(), VecDeque::new())),
            signatures: AtomicU64::new(0),
            try_later: AtomicU64::new(0),
            fallback: AtomicU64::new(0),
            unknown_hits: AtomicU64::new(0),
        }
    }

    /// Takes one signature from the budget; false when it is spent.
    pub fn take(&self) -> bool {
        let Ok(mut b) = self.bucket.lock() else {
            return false;
        };
        let now = Instant::now();
        let refill = now.duration_since(b.last).as_secs_f64() * self.rate;
        b.tokens = (b.tokens + refill).min(self.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn signed(&self) {
        self.signatures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused(&self, fallback: bool) {
        let c = if fallback {
            &self.fallback
        } else {
            &self.try_later
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The cached answer for an unknown serial, still within its nextUpdate.
    pub fn unknown(&self, key: &Key, now: i64) -> Option<Arc<Cached>> {
        let g = self.unknown.lock().ok()?;
        let c = g.0.get(key).filter(|c| c.next_update > now).cloned();
        if c.is_some() {
            self.unknown_hits.fetch_add(1, Ordering::Relaxed);
        }
        c
    }

    /// Keeps an unknown-serial answer, dropping the oldest beyond the capacity.
    pub fn remember_unknown(&self, key: Key, c: Arc<Cached>) {
        if self.capacity == 0 {
            return;
        }
        let Ok(mut g) = self.unknown.lock() else {
            return;
        };
        let (map, order) = &mut *g;
        if map.insert(key.clone(), c).is_none() {
            order.push_back(key);
        }
        while map.len() > self.capacity {
            match order.pop_front() {
                Some(old) => {
                    map.remove(&old);
                }
                None => break,
            }
        }
    }

    pub fn stats(&self) -> LiveStats {
        LiveStats {
            signatures: self.signatures.load(Ordering::Relaxed),
            try_later: self.try_later.load(Ordering::Relaxed),
            fallback: self.fallback.load(Ordering::Relaxed),
            unknown_cache_hits: self.unknown_hits.load(Ordering::Relaxed),
            unknown_cache_entries: self.unknown.lock().map(|g| g.0.len()).unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_gives_the_burst_then_the_rate() {
        let config = OcspConfig {
            live_signatures_per_second: 10,
            live_signature_burst: 5,
            ..OcspConfig::default()
        };
        let live = Live::new(&config);
        let start = Instant::now();
        let mut taken = 0;
        while start.elapsed().as_millis() < 300 {
            if live.take() {
                taken += 1;
            }
        }
        // 5 at once, then 10 a second: about 8 in 0.3 s, never the thousands
        // a loop without the bucket would get.
        assert!((5..=9).contains(&taken), "{taken}");
    }

    #[test]
    fn unknown_cache_is_bounded() {
        let config = OcspConfig {
            unknown_cache_entries: 3,
            ..OcspConfig::default()
        };
        let live = Live::new(&config);
        let c = Arc::new(Cached::new(
            vec![0x30, 0],
            0,
            i64::MAX,
            super::super::Status::Unknown,
        ));
        for i in 0..10u8 {
            live.remember_unknown((1, HashAlg::Sha1, Box::from([i])), Arc::clone(&c));
        }
        assert_eq!(live.stats().unknown_cache_entries, 3);
        assert!(live
            .unknown(&(1, HashAlg::Sha1, Box::from([9])), 0)
            .is_some());
        assert!(live
            .unknown(&(1, HashAlg::Sha1, Box::from([0])), 0)
            .is_none());
    }
}

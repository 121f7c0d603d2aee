//! Prometheus text-format metrics, kept in atomics so that counting costs
//! no lock on the request path.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use super::conns::Conns;
use crate::ocsp::asn1::ResponseStatus;
use crate::ocsp::{Engine, Status};

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 10] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
];

/// OCSP outcomes counted separately; `as_str` is the `status` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Good,
    Revoked,
    Unknown,
    MalformedRequest,
    Unauthorized,
    InternalError,
    TryLater,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Good,
        Outcome::Revoked,
        Outcome::Unknown,
        Outcome::MalformedRequest,
        Outcome::Unauthorized,
        Outcome::InternalError,
        Outcome::TryLater,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Good => "good",
            Outcome::Revoked => "revoked",
            Outcome::Unknown => "unknown",
            Outcome::MalformedRequest => "malformedRequest",
            Outcome::Unauthorized => "unauthorized",
            Outcome::InternalError => "internalError",
            Outcome::TryLater => "tryLater",
        }
    }

    /// A successful answer, by the status of the certificate.
    pub fn of_status(s: &Status) -> Outcome {
        match s {
            Status::Good => Outcome::Good,
            Status::Revoked { .. } => Outcome::Revoked,
            Status::Unknown => Outcome::Unknown,
        }
    }

    /// An error answer; `successful` is no error and has no counter.
    pub fn of_error(s: ResponseStatus) -> Option<Outcome> {
        match s {
            ResponseStatus::Successful => None,
            ResponseStatus::MalformedRequest => Some(Outcome::MalformedRequest),
            ResponseStatus::Unauthorized => Some(Outcome::Unauthorized),
            ResponseStatus::InternalError => Some(Outcome::InternalError),
            ResponseStatus::TryLater => Some(Outcome::TryLater),
        }
    }
}

/// Non-OCSP requests counted separately; `as_str` is the `kind` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HttpKind {
    Crl,
    /// /ca/ and /audit/: the other published files.
    CaCertificate,
    /// /healthz and /metrics.
    Status,
    NotFound,
    /// Refused as too large (413).
    TooLarge,
    /// /pickup, the office contact's certificate pickup (any outcome).
    Pickup,
}

impl HttpKind {
    pub const ALL: [HttpKind; 6] = [
        HttpKind::Crl,
        HttpKind::CaCertificate,
        HttpKind::Status,
        HttpKind::NotFound,
        HttpKind::TooLarge,
        HttpKind::Pickup,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HttpKind::Crl => "crl",
            HttpKind::CaCertificate => "ca",
            HttpKind::Status => "status",
            HttpKind::NotFound => "not_found",
            HttpKind::TooLarge => "too_large",
            HttpKind::Pickup => "pickup",
        }
    }
}

#[derive(Default)]
pub(crate) struct Metrics {
    outcomes: [AtomicU64; Outcome::ALL.len()],
    cache_hits: AtomicU64,
    signed: AtomicU64,
    not_modified: AtomicU64,
    buckets: [AtomicU64; 10],
    latency_count: AtomicU64,
    latency_sum_ns: AtomicU64,
    other_requests: [AtomicU64; HttpKind::ALL.len()],
}

pub(crate) enum Source {
    Cache,
    Signed,
    NotModified,
    Error,
}

impl Metrics {
    pub fn ocsp(&self, outcome: Option<Outcome>, source: Source, nanos: u64) {
        if let Some(o) = outcome {
            self.outcomes[o as usize].fetch_add(1, Ordering::Relaxed);
        }
        let counter = match source {
            Source::Cache => Some(&self.cache_hits),
            Source::Signed => Some(&self.signed),
            Source::NotModified => Some(&self.not_modified),
            Source::Error => None,
        };
        if let Some(c) = counter {
            c.fetch_add(1, Ordering::Relaxed);
        }
        // One counter per request (the bucket it falls in), summed into
        // Prometheus' cumulative form only when rendered: fewer contended
        // atomics on the request path.
        let secs = nanos as f64 / 1e9;
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_ns.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Counts a non-OCSP request.
    pub fn other(&self, kind: HttpKind) {
        self.other_requests[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self, engine: &Engine, log_dropped: u64, conns: &Conns) -> String {
        let mut s = String::with_capacity(4096);
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        s.push_str("# HELP kxca_ocsp_requests_total OCSP requests by answer.\n# TYPE kxca_ocsp_requests_total counter\n");
        for o in Outcome::ALL {
            let _ = writeln!(
                s,
                "kxca_ocsp_requests_total{{status=\"{}\"}} {}",
                o.as_str(),
                g(&self.outcomes[o as usize])
            );
        }
        s.push_str("# HELP kxca_ocsp_responses_total Successful OCSP responses by source.\n# TYPE kxca_ocsp_responses_total counter\n");
        let _ = writeln!(
            s,
            "kxca_ocsp_responses_total{{source=\"presigned\"}} {}",
            g(&self.cache_hits)
        );
        let _ = writeln!(
            s,
            "kxca_ocsp_responses_total{{source=\"signed\"}} {}",
            g(&self.signed)
        );
        let _ = writeln!(
            s,
            "kxca_ocsp_responses_total{{source=\"not_modified\"}} {}",
            g(&self.not_modified)
        );
        s.push_str("# HELP kxca_ocsp_request_duration_seconds Time to answer an OCSP request.\n# TYPE kxca_ocsp_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += g(&self.buckets[i]);
            let _ = writeln!(
                s,
                "kxca_ocsp_request_duration_seconds_bucket{{le=\"{b}\"}} {cumulative}"
            );
        }
        let count = g(&self.latency_count);
        let _ = writeln!(
            s,
            "kxca_ocsp_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            s,
            "kxca_ocsp_request_duration_seconds_sum {}",
            g(&self.latency_sum_ns) as f64 / 1e9
        );
        let _ = writeln!(s, "kxca_ocsp_request_duration_seconds_count {count}");
        s.push_str("# HELP kxca_http_requests_total Other HTTP requests by kind.\n# TYPE kxca_http_requests_total counter\n");
        for k in HttpKind::ALL {
            let _ = writeln!(
                s,
                "kxca_http_requests_total{{kind=\"{}\"}} {}",
                k.as_str(),
                g(&self.other_requests[k as usize])
            );
        }
        s.push_str("# HELP kxca_ocsp_presigned_responses Pre-signed responses held in memory.\n# TYPE kxca_ocsp_presigned_responses gauge\n");
        let _ = writeln!(
            s,
            "kxca_ocsp_presigned_responses {}",
            engine.presigned_count()
        );
        s.push_str("# HELP kxca_ocsp_oldest_presigned_age_seconds Age of the oldest pre-signed response.\n# TYPE kxca_ocsp_oldest_presigned_age_seconds gauge\n");
        let _ = writeln!(
            s,
            "kxca_ocsp_oldest_presigned_age_seconds {}",
            engine.oldest_response_age()
        );
        s.push_str("# HELP kxca_crl_age_seconds Age of the published CRL (now - thisUpdate).\n# TYPE kxca_crl_age_seconds gauge\n");
        for (name, age) in engine.crl_ages() {
            let _ = writeln!(s, "kxca_crl_age_seconds{{authority=\"{name}\"}} {age}");
        }
        let live = engine.live_stats();
        for (name, help, kind, value) in [
            ("kxca_ocsp_live_signatures_total", "Responses signed for a request (nonce, several certificates, unknown serial).", "counter", live.signatures),
            ("kxca_ocsp_try_later_total", "Requests answered tryLater because the live signing limit was reached.", "counter", live.try_later),
            ("kxca_ocsp_live_fallback_total", "Requests answered with the pre-signed or cached answer, without their nonce, because the live signing limit was reached.", "counter", live.fallback),
            ("kxca_ocsp_unknown_cache_hits_total", "Requests for an unknown serial answered from the cache.", "counter", live.unknown_cache_hits),
            ("kxca_ocsp_unknown_cache_entries", "Answers for unknown serials held.", "gauge", live.unknown_cache_entries as u64),
            ("kxca_http_connections_open", "Connections held open.", "gauge", conns.open() as u64),
            ("kxca_http_connections_max", "The connection cap in force ([serve] max_connections, within the open file limit).", "gauge", conns.cap() as u64),
            ("kxca_http_connections_accepted_total", "Connections accepted.", "counter", g(&conns.accepted)),
            ("kxca_http_connections_displaced_total", "Connections closed at the cap to make room for a new one.", "counter", g(&conns.evicted)),
            ("kxca_http_connections_refused_total", "New connections closed at once at the cap, every other one being mid-answer.", "counter", g(&conns.refused)),
        ] {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
        // The /healthz details, which the public listener does not tell.
        s.push_str("# HELP kxca_health_check Each check behind /healthz: 1 ok, 0 failing.\n# TYPE kxca_health_check gauge\n");
        for c in engine.health() {
            let _ = writeln!(
                s,
                "kxca_health_check{{check=\"{}\"}} {}",
                c.name.replace(['"', '\\', '\n'], "_"),
                u8::from(c.ok)
            );
        }
        s.push_str("# HELP kxca_access_log_dropped_total Request log lines dropped because the writer fell behind.\n# TYPE kxca_access_log_dropped_total counter\n");
        let _ = writeln!(s, "kxca_access_log_dropped_total {log_dropped}");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Counters are indexed by discriminant: ALL must list every variant in
    // declaration order, and the label strings are what dashboards query.
    #[test]
    fn labels_are_pinned_and_indexed_in_order() {
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i);
        }
        for (i, k) in HttpKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
        }
        assert_eq!(
            Outcome::ALL.map(Outcome::as_str),
            [
                "good",
                "revoked",
                "unknown",
                "malformedRequest",
                "unauthorized",
                "internalError",
                "tryLater"
            ]
        );
        assert_eq!(
            HttpKind::ALL.map(HttpKind::as_str),
            ["crl", "ca", "status", "not_found", "too_large", "pickup"]
        );
        for s in [
            ResponseStatus::MalformedRequest,
            ResponseStatus::Unauthorized,
            ResponseStatus::InternalError,
            ResponseStatus::TryLater,
        ] {
            assert_eq!(Outcome::of_error(s).map(Outcome::as_str), Some(s.name()));
        }
        for s in [
            Status::Good,
            Status::Revoked { at: 0, reason: 1 },
            Status::Unknown,
        ] {
            assert_eq!(Outcome::of_status(&s).as_str(), s.name());
        }
    }
}

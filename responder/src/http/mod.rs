//! The HTTP face of the CA (`kxca serve`): OCSP over POST and RFC 5019 GET,
//! CRLs and CA certificates at the URLs the profiles name, `/healthz` and
//! `/metrics`, on one listener.
//!
//! Routing is one match on the raw path rather than a framework's router: the
//! GET form of OCSP carries base64 (with `/`) in the path, which must be
//! read undecoded, and the hot path stays a handful of comparisons. For the
//! same reason connections are served by hyper's HTTP/1 connection directly
//! (no router, no boxed bodies, no protocol sniffing): measured in
//! benches/ocsp.sh, see docs/PUBLISH.md.

mod access_log;
mod conns;
mod metrics;

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::Semaphore;

use crate::ServeConfig;

use access_log::{AccessLog, OcspLine};
use conns::{Conns, BUSY, IDLE};
use metrics::{HttpKind, Metrics, Outcome, Source};

use crate::ocsp::asn1::ResponseStatus;
use crate::ocsp::{request, Answer, Cached, Engine};
use crate::Error;

type Reply = Response<Full<Bytes>>;

struct App {
    engine: Engine,
    body_timeout: Duration,
    metrics: Metrics,
    log: AccessLog,
    /// Live signings in progress, `[ocsp] max_concurrent_signatures`.
    signing: Semaphore,
    /// Requests waiting for a signing slot, at most `[ocsp] max_queued_signatures`.
    queued: AtomicUsize,
    conns: Arc<Conns>,
}

/// Descriptors kept back from the connection cap for the listener, the
/// store, the logs and the responder key's token.
const FD_RESERVE: usize = 128;

/// Serves `engine` on `listener` until `shutdown` completes, then lets
/// in-flight requests finish (graceful shutdown).
pub async fn serve(
    engine: Engine,
    listener: tokio::net::TcpListener,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let request_timeout = Duration::from_secs(u64::from(config.request_timeout_seconds.max(1)));
    let idle_timeout = Duration::from_secs(u64::from(config.idle_timeout_seconds.max(1)));
    let mut cap = config.max_connections;
    match conns::raise_nofile_limit() {
        Some(limit) => {
            let room = usize::try_from(limit)
                .unwrap_or(usize::MAX)
                .saturating_sub(FD_RESERVE);
            if room < cap {
                cap = room.max(16);
                tracing::warn!(
                    max_connections = config.max_connections,
                    open_file_limit = limit,
                    cap,
                    "serve.max_connections is above the open file limit (ulimit -n / LimitNOFILE): capped lower"
                );
            }
        }
        None => {
            tracing::warn!("cannot read the open file limit; serve.max_connections applies as set")
        }
    }
    let signing_slots = engine.config().signing_slots();
    let app = Arc::new(App {
        engine,
        body_timeout: request_timeout,
        metrics: Metrics::default(),
        log: AccessLog::new(config.access_log),
        signing: Semaphore::new(signing_slots),
        queued: AtomicUsize::new(0),
        conns: Conns::new(cap),
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        // Runs from the accept, and again from each answer until the next
        // request head is complete: a client that connects and sends
        // nothing, trickles its head, or idles between requests gives its
        // socket back after this.
        .header_read_timeout(idle_timeout.min(request_timeout))
        // Responses are a few hundred bytes: one buffer, one write.
        .writev(false)
        .max_buf_size(64 * 1024);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: say so, back off,
                    // keep serving the connections already open.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(mut admitted) = app.conns.admit() else {
            // Every connection is mid-answer: closing this one at once
            // keeps the descriptor count bounded; the client may retry.
            drop(stream);
            continue;
        };
        // Answers are small and complete: Nagle would only hold them back.
        let _ = stream.set_nodelay(true);
        let kill = admitted.kill.take();
        let state = Arc::clone(&admitted.state);
        let app = Arc::clone(&app);
        let service = hyper::service::service_fn(move |req| {
            let app = Arc::clone(&app);
            let state = Arc::clone(&state);
            async move {
                state.store(BUSY, Ordering::Relaxed);
                let r = handle(&app, req, &state).await;
                state.store(IDLE, Ordering::Relaxed);
                Ok::<_, Infallible>(r)
            }
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _admitted = admitted;
            let displaced = async {
                match kill {
                    Some(k) => {
                        let _ = k.await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                // A client that goes away mid-request is not the server's error.
                _ = conn => {}
                // Dropping the connection closes its socket.
                () = displaced => {}
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    // The writer drains on a clock: the last requests' lines must not die
    // with the process.
    let _ = tokio::task::spawn_blocking(move || app.log.flush(Duration::from_secs(2))).await;
    Ok(())
}

/// One request waiting for a signing slot.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

const OCSP_RESPONSE: HeaderValue = HeaderValue::from_static("application/ocsp-response");

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

async fn handle(app: &App, req: Request<Incoming>, state: &AtomicU8) -> Reply {
    let start = Instant::now();
    let path = req.uri().path();
    let method = req.method().clone();
    let limit = app.engine.config().max_request_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        // Refused before a byte of the body is read: waiting for it would
        // hold the socket for the whole body timeout.
        app.metrics.other(HttpKind::TooLarge);
        let p = path.chars().take(80).collect::<String>();
        app.log.log(|| {
            format!("http method={method} path={p:?} http=413 reason=\"declared body over ocsp.max_request_bytes\"\n")
        });
        let mut r = reply(StatusCode::PAYLOAD_TOO_LARGE, "request too large\n");
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    // HEAD is GET without the body (hyper sends no body for HEAD, and the
    // same Content-Length).
    let get = method == Method::GET || method == Method::HEAD;
    let method_name = if method == Method::HEAD {
        "HEAD"
    } else {
        "GET"
    };
    if method == Method::POST && matches!(path, "/" | "/ocsp" | "/ocsp/") {
        let ok_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/ocsp-request"))
            });
        if !ok_type {
            return ocsp_error(
                app,
                start,
                "POST",
                ResponseStatus::MalformedRequest,
                "wrong content type",
            );
        }
        let body = Limited::new(req.into_body(), limit).collect();
        // A client trickling its body is no better than an idle one: it
        // may be displaced at the connection cap meanwhile.
        state.store(IDLE, Ordering::Relaxed);
        let body = tokio::time::timeout(app.body_timeout, body).await;
        state.store(BUSY, Ordering::Relaxed);
        let body = match body {
            Ok(Ok(b)) => b.to_bytes(),
            Err(_) => {
                return ocsp_error(
                    app,
                    start,
                    "POST",
                    ResponseStatus::MalformedRequest,
                    "body not received in time",
                )
            }
            Ok(Err(_)) => {
                return ocsp_error(
                    app,
                    start,
                    "POST",
                    ResponseStatus::MalformedRequest,
                    "body too large or truncated",
                )
            }
        };
        return ocsp(app, start, "POST", &body, None).await;
    }
    if get {
        if let Some(rest) = path.strip_prefix("/ocsp/") {
            return match request::decode_get_path(rest, limit) {
                Ok(der) => {
                    let inm = req.headers().get(header::IF_NONE_MATCH);
                    ocsp(app, start, method_name, &der, inm).await
                }
                Err(e) => ocsp_error(
                    app,
                    start,
                    method_name,
                    ResponseStatus::MalformedRequest,
                    &e.to_string(),
                ),
            };
        }
        if path.starts_with("/crl/") || path.starts_with("/ca/") || path.starts_with("/audit/") {
            app.metrics.other(if path.starts_with("/crl/") {
                HttpKind::Crl
            } else {
                HttpKind::CaCertificate
            });
            return published(app, method_name, path, req.headers(), start);
        }
        if path == "/healthz" {
            app.metrics.other(HttpKind::Status);
            return health(app);
        }
        if path == "/metrics" {
            app.metrics.other(HttpKind::Status);
            let text = app.metrics.render(
                &app.engine,
                app.log.dropped.load(Ordering::Relaxed),
                &app.conns,
            );
            let mut r = reply(StatusCode::OK, text);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            return r;
        }
    }
    app.metrics.other(HttpKind::NotFound);
    let status = if get || method == Method::POST {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::METHOD_NOT_ALLOWED
    };
    let p = path.chars().take(80).collect::<String>();
    app.log
        .log(|| format!("http method={method} path={p:?} http={}\n", status.as_u16()));
    reply(status, "not found\n")
}

/// `Cache-Control` for a pre-signed response. max-age counts down to
/// nextUpdate, so it changes once a second: each worker thread keeps the
/// last value it built instead of formatting one per request.
fn cache_control(max_age: i64) -> HeaderValue {
    thread_local! {
        static LAST: RefCell<Option<(i64, HeaderValue)>> = const { RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((age, v)) = &*last {
            if *age == max_age {
                return v.clone();
            }
        }
        let v = HeaderValue::from_str(&format!(
            "max-age={max_age}, public, no-transform, must-revalidate"
        ))
        .unwrap_or(HeaderValue::from_static("no-cache"));
        *last = Some((max_age, v.clone()));
        v
    })
}

fn ocsp_error(app: &App, start: Instant, method: &str, status: ResponseStatus, why: &str) -> Reply {
    let nanos = start.elapsed().as_nanos() as u64;
    app.metrics
        .ocsp(Outcome::of_error(status), Source::Error, nanos);
    app.log.log(|| {
        format!(
            "ocsp method={method} status={} reason={why:?} latency_us={}\n",
            status.name(),
            nanos / 1000
        )
    });
    let mut r = reply(StatusCode::OK, Bytes::from_static(status.error_body()));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, OCSP_RESPONSE);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn ocsp(
    app: &App,
    start: Instant,
    method: &'static str,
    der: &[u8],
    if_none_match: Option<&HeaderValue>,
) -> Reply {
    let config = app.engine.config();
    let parsed = match request::parse(
        der,
        config.max_request_bytes,
        config.max_certificates_per_request,
    ) {
        Ok(p) => p,
        Err(e) => {
            return ocsp_error(
                app,
                start,
                method,
                ResponseStatus::MalformedRequest,
                &e.to_string(),
            )
        }
    };
    let serial = parsed.queries.first().and_then(|q| q.serial.as_deref());
    if let Some(c) = app.engine.presigned_answer(&parsed) {
        return cached(app, start, method, serial, &c, if_none_match);
    }
    let serial = serial.map(<[u8]>::to_vec);
    let (n, nonce) = (parsed.queries.len(), parsed.nonce.is_some());
    // Signing takes a P-256 signature's worth of CPU: on the blocking pool,
    // a bounded number at a time, so that the runtime's threads keep
    // answering pre-signed requests meanwhile. The queue for a slot is
    // bounded too: past it the request is answered at once without signing.
    let max_queued = app.engine.config().max_queued_signatures;
    let answer = if app.signing.available_permits() == 0
        && app.queued.load(Ordering::Relaxed) >= max_queued
    {
        app.engine.refuse(&parsed)
    } else {
        app.queued.fetch_add(1, Ordering::Relaxed);
        // Counted out on drop: the client may go away while it waits.
        let waiting = Waiting(&app.queued);
        let permit = app.signing.acquire().await;
        drop(waiting);
        match permit {
            Ok(_permit) => {
                let engine = app.engine.clone();
                tokio::task::spawn_blocking(move || engine.answer(&parsed))
                    .await
                    .unwrap_or(Answer::Error(ResponseStatus::InternalError))
            }
            Err(_) => Answer::Error(ResponseStatus::InternalError),
        }
    };
    match answer {
        Answer::Error(s) => {
            let why = match s {
                ResponseStatus::TryLater => "live signing limit reached",
                ResponseStatus::Unauthorized => "issuer not served",
                _ => "internal error",
            };
            ocsp_error(app, start, method, s, why)
        }
        // Pre-signed in the meantime, an unknown serial answered before, or
        // (signing budget spent) the pre-signed answer without the nonce.
        Answer::Cached(c) => cached(app, start, method, serial.as_deref(), &c, if_none_match),
        Answer::Fresh { der, status } => {
            let nanos = start.elapsed().as_nanos() as u64;
            app.metrics
                .ocsp(Some(Outcome::of_status(&status)), Source::Signed, nanos);
            let mut line = OcspLine::new(method, status.name(), "signed").serial(serial.as_deref());
            line.signed = Some((n, nonce));
            line.latency_us = nanos / 1000;
            app.log.ocsp(line);
            let mut r = reply(StatusCode::OK, der);
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, OCSP_RESPONSE);
            // Signed for this request (nonce or several certificates): not for caches.
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
    }
}

fn cached(
    app: &App,
    start: Instant,
    method: &'static str,
    serial: Option<&[u8]>,
    c: &Cached,
    if_none_match: Option<&HeaderValue>,
) -> Reply {
    let now = app.engine.now();
    let not_modified = if_none_match.is_some_and(|v| v.as_bytes() == c.etag.as_bytes());
    let mut r = if not_modified {
        reply(StatusCode::NOT_MODIFIED, Bytes::new())
    } else {
        reply(StatusCode::OK, c.der.clone())
    };
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, OCSP_RESPONSE);
    // RFC 5019 6.2: max-age no later than nextUpdate.
    h.insert(
        header::CACHE_CONTROL,
        cache_control((c.next_update - now).max(0)),
    );
    let [etag, last_modified, expires] = &c.headers;
    h.insert(header::ETAG, etag.clone());
    h.insert(header::LAST_MODIFIED, last_modified.clone());
    h.insert(header::EXPIRES, expires.clone());
    let nanos = start.elapsed().as_nanos() as u64;
    let source = if not_modified {
        Source::NotModified
    } else {
        Source::Cache
    };
    app.metrics
        .ocsp(Some(Outcome::of_status(&c.status)), source, nanos);
    let mut line = OcspLine::new(
        method,
        c.status.name(),
        if not_modified {
            "not_modified"
        } else {
            "presigned"
        },
    )
    .serial(serial);
    line.http = r.status().as_u16();
    line.latency_us = nanos / 1000;
    app.log.ocsp(line);
    r
}

fn published(app: &App, method: &str, path: &str, headers: &HeaderMap, start: Instant) -> Reply {
    let Some(p) = app.engine.published(path) else {
        app.log
            .log(|| format!("http method={method} path={path:?} http=404\n"));
        return reply(StatusCode::NOT_FOUND, "not found\n");
    };
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == p.etag.as_bytes());
    let mut r = if not_modified {
        reply(StatusCode::NOT_MODIFIED, Bytes::new())
    } else {
        reply(StatusCode::OK, p.der.clone())
    };
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(p.content_type),
    );
    for (name, value) in [
        (header::ETAG, &p.etag),
        (header::LAST_MODIFIED, &p.last_modified),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    }
    if let Some(next) = p.next_update {
        let max_age = (next - app.engine.now()).clamp(0, 3600);
        if let Ok(v) = HeaderValue::from_str(&format!("max-age={max_age}, public")) {
            h.insert(header::CACHE_CONTROL, v);
        }
        if let Ok(v) = HeaderValue::from_str(&crate::ocsp::http_date(next)) {
            h.insert(header::EXPIRES, v);
        }
    }
    let code = r.status().as_u16();
    let us = start.elapsed().as_micros();
    app.log
        .log(|| format!("http method={method} path={path:?} http={code} latency_us={us}\n"));
    r
}

/// Healthy or not, and nothing else: the public listener tells no one
/// where the keys are or what backs them. The checks, by name, are on /metrics.
fn health(app: &App) -> Reply {
    let ok = app.engine.health().iter().all(|c| c.ok);
    let (code, body) = if ok {
        (StatusCode::OK, "{\"status\":\"ok\"}\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "{\"status\":\"fail\"}\n")
    };
    let mut r = reply(code, body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

//! The HTTP face of the CA (`kxca serve`): OCSP over POST and RFC 5019 GET,
//! CRLs and CA certificates at the URLs the profiles name, `/healthz` and
//! `/metrics`, on one listener.
//!
//! Routing is one match on the raw path rather than an axum `Router`: the
//! GET form of OCSP carries base64 (with `/`) in the path, which must be
//! read undecoded, and the hot path stays a handful of comparisons.

mod access_log;
mod config;
mod metrics;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

pub use config::ServeConfig;

use access_log::AccessLog;
use metrics::{Metrics, Source};

use crate::ocsp::asn1::ResponseStatus;
use crate::ocsp::{request, Answer, Engine};
use crate::Error;

#[derive(Clone)]
struct App {
    engine: Engine,
    metrics: Arc<Metrics>,
    log: AccessLog,
}

/// Serves `engine` on `listener` until `shutdown` completes, then lets
/// in-flight requests finish (graceful shutdown).
pub async fn serve(
    engine: Engine,
    listener: tokio::net::TcpListener,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let app = App {
        engine,
        metrics: Arc::new(Metrics::default()),
        log: AccessLog::new(config.access_log),
    };
    let router = axum::Router::new().fallback(handle).with_state(app);
    let addr = listener.local_addr().ok();
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::Io {
            path: format!("listener {addr:?}").into(),
            source: e,
        })
}

const OCSP_RESPONSE: HeaderValue = HeaderValue::from_static("application/ocsp-response");

async fn handle(State(app): State<App>, req: Request) -> Response {
    let start = Instant::now();
    let path = req.uri().path();
    let method = req.method().clone();
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
                &app,
                start,
                "POST",
                ResponseStatus::MalformedRequest,
                "wrong content type",
            );
        }
        let limit = app.engine.config().max_request_bytes;
        let body = match axum::body::to_bytes(req.into_body(), limit).await {
            Ok(b) => b,
            Err(_) => {
                return ocsp_error(
                    &app,
                    start,
                    "POST",
                    ResponseStatus::MalformedRequest,
                    "body too large or truncated",
                )
            }
        };
        return ocsp(&app, start, "POST", &body, None);
    }
    if method == Method::GET {
        if let Some(rest) = path.strip_prefix("/ocsp/") {
            let limit = app.engine.config().max_request_bytes;
            return match request::decode_get_path(rest, limit) {
                Ok(der) => {
                    let inm = req.headers().get(header::IF_NONE_MATCH).cloned();
                    ocsp(&app, start, "GET", &der, inm.as_ref())
                }
                Err(e) => ocsp_error(
                    &app,
                    start,
                    "GET",
                    ResponseStatus::MalformedRequest,
                    &e.to_string(),
                ),
            };
        }
        if path.starts_with("/crl/") || path.starts_with("/ca/") {
            app.metrics
                .other(if path.starts_with("/crl/") { 0 } else { 1 });
            return published(&app, path, req.headers(), start);
        }
        if path == "/healthz" {
            app.metrics.other(2);
            return health(&app);
        }
        if path == "/metrics" {
            app.metrics.other(2);
            let text = app
                .metrics
                .render(&app.engine, app.log.dropped.load(Ordering::Relaxed));
            return ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response();
        }
    }
    app.metrics.other(3);
    let status = if method == Method::GET || method == Method::POST {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::METHOD_NOT_ALLOWED
    };
    let p = path.chars().take(80).collect::<String>();
    app.log
        .log(|| format!("http method={method} path={p:?} http={}\n", status.as_u16()));
    (status, "not found\n").into_response()
}

fn ocsp_error(
    app: &App,
    start: Instant,
    method: &str,
    status: ResponseStatus,
    why: &str,
) -> Response {
    let nanos = start.elapsed().as_nanos() as u64;
    app.metrics.ocsp(status.name(), Source::Error, nanos);
    app.log.log(|| {
        format!(
            "ocsp method={method} status={} reason={why:?} latency_us={}\n",
            status.name(),
            nanos / 1000
        )
    });
    let mut r = Response::new(Body::from(Bytes::from_static(status.error_body())));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, OCSP_RESPONSE);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn ocsp(
    app: &App,
    start: Instant,
    method: &str,
    der: &[u8],
    if_none_match: Option<&HeaderValue>,
) -> Response {
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
    let answer = app.engine.answer(&parsed);
    let serial = || {
        parsed
            .queries
            .first()
            .and_then(|q| q.serial.as_deref())
            .map(hex::encode)
            .unwrap_or_else(|| "-".into())
    };
    let n = parsed.queries.len();
    match answer {
        Answer::Error(s) => ocsp_error(app, start, method, s, "issuer not served"),
        Answer::Cached(c) => {
            let now = app.engine.now();
            let not_modified = if_none_match.is_some_and(|v| v.as_bytes() == c.etag.as_bytes());
            let mut r = if not_modified {
                let mut r = Response::new(Body::empty());
                *r.status_mut() = StatusCode::NOT_MODIFIED;
                r
            } else {
                Response::new(Body::from(c.der.clone()))
            };
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, OCSP_RESPONSE);
            // RFC 5019 6.2: max-age no later than nextUpdate.
            let max_age = (c.next_update - now).max(0);
            if let Ok(v) = HeaderValue::from_str(&format!(
                "max-age={max_age}, public, no-transform, must-revalidate"
            )) {
                h.insert(header::CACHE_CONTROL, v);
            }
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
            app.metrics.ocsp(c.status.name(), source, nanos);
            app.log.log(|| {
                format!(
                    "ocsp method={method} status={} serial={} source={} http={} latency_us={}\n",
                    c.status.name(),
                    serial(),
                    if not_modified {
                        "not_modified"
                    } else {
                        "presigned"
                    },
                    r.status().as_u16(),
                    nanos / 1000
                )
            });
            r
        }
        Answer::Fresh { der, status } => {
            let nanos = start.elapsed().as_nanos() as u64;
            app.metrics.ocsp(status.name(), Source::Signed, nanos);
            app.log.log(|| {
                format!(
                    "ocsp method={method} status={} serial={} certificates={n} source=signed nonce={} latency_us={}\n",
                    status.name(),
                    serial(),
                    parsed.nonce.is_some(),
                    nanos / 1000
                )
            });
            let mut r = Response::new(Body::from(der));
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, OCSP_RESPONSE);
            // Signed for this request (nonce or several certificates): not for caches.
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
    }
}

fn published(app: &App, path: &str, headers: &HeaderMap, start: Instant) -> Response {
    let Some(p) = app.engine.published(path) else {
        app.log
            .log(|| format!("http method=GET path={path:?} http=404\n"));
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == p.etag.as_bytes());
    let mut r = if not_modified {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        Response::new(Body::from(p.der.clone()))
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
        if let Ok(v) = HeaderValue::from_str(&crate::ocsp::engine::http_date(next)) {
            h.insert(header::EXPIRES, v);
        }
    }
    let code = r.status().as_u16();
    let us = start.elapsed().as_micros();
    app.log
        .log(|| format!("http method=GET path={path:?} http={code} latency_us={us}\n"));
    r
}

fn health(app: &App) -> Response {
    let checks = app.engine.health();
    let ok = checks.iter().all(|c| c.ok);
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "fail" },
        "presigned_responses": app.engine.presigned_count(),
        "oldest_presigned_age_seconds": app.engine.oldest_response_age(),
        "checks": checks,
    });
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

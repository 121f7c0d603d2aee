//! The admin listener: routes, sessions, CSRF, roles, security headers.
//! Store work runs on blocking threads; every change goes through
//! kxca-provisioner's functions (one transaction each, with their audit
//! events).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use askama::Template;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use kxca_ca::{AuditAction, Ca, Error, Home};
use kxca_provisioner::accounts::{self, Setup};
use kxca_provisioner::applications;
use kxca_provisioner::intake::{Field, IntakePolicy};
use kxca_provisioner::MailConfig;

use crate::admins::{self, Admin, LoginRefused};
use crate::key::ConsoleKey;
use crate::tls::{Peer, TlsListener, TlsSetup};
use crate::views::*;
use crate::ConsoleConfig;

const COOKIE: &str = "__Host-kxca-console";
/// The login form's own cookie: its CSRF token is bound to it, so another
/// site cannot log a browser in under its own account.
const LOGIN_COOKIE: &str = "__Host-kxca-login";
const CSS: &str = include_str!("../../templates/console.css");

/// What the console serves from.
pub struct Console {
    config: ConsoleConfig,
    key: ConsoleKey,
    ca: Mutex<Ca>,
    intake: IntakePolicy,
    mail: Option<MailConfig>,
    profile: String,
    /// Where live OCSP answers and the served CRL are asked for.
    public: Option<crate::public::PublicRole>,
    /// The last audit verification and when it ran (see `audit_state`).
    audit: Mutex<Option<(std::time::Instant, AuditState)>>,
    /// `[console.tls]`, loaded and checked at open.
    tls: Option<TlsSetup>,
}

impl Console {
    /// Opens the home's store (its own connection) and console key.
    /// `intake`: the intake policy in force (the binary loads it with the
    /// shipped profiles, as `kxca applications approve` does).
    pub fn open(
        home: &Home,
        config: ConsoleConfig,
        intake: IntakePolicy,
        mail: Option<MailConfig>,
    ) -> Result<Console, Error> {
        let public = config
            .public_url
            .as_deref()
            .map(crate::public::PublicRole::parse)
            .transpose()
            .map_err(|message| Error::InvalidField {
                field: "console.public_url".to_string(),
                message,
            })?;
        let key = ConsoleKey::load_or_create(home)?;
        let mut ca = Ca::open(home.clone(), kxca_ca::Clock::system())?;
        kxca_provisioner::migrate(ca.store_mut())?;
        ca.store_mut()
            .migrate(admins::COMPONENT, admins::migrations())?;
        // A key created anew (a restore without it) cannot open the TOTP
        // secrets sealed under the old one: those admins' codes would all
        // be "wrong" with nothing to say why. The console still starts (an
        // officer's reset-totp is the way back), but says so loudly.
        let stranded: Vec<String> = ca
            .store()
            .read(|s| admins::list(s, Some(&key)))?
            .into_iter()
            .filter(|a| a.factor == "totp" && a.totp_key_matches == Some(false))
            .map(|a| a.name)
            .collect();
        if !stranded.is_empty() {
            tracing::warn!(
                admins = %stranded.join(", "),
                "console key {} is not the one these admins' TOTP secrets were sealed with: their logins fail until `kxca admin reset-totp NAME` (docs/BACKUP.md, the console key)",
                crate::key::path(home).display()
            );
        }
        // Before the daemon says it is ready: a missing, expired or
        // mismatched certificate stops the start, naming the file.
        let tls = match &config.tls {
            Some(t) => Some(crate::tls::load(home, t, &ca, ca.clock().now())?),
            None => None,
        };
        Ok(Console {
            tls,
            config,
            key,
            ca: Mutex::new(ca),
            intake,
            mail,
            profile: "office-client".to_string(),
            public,
            audit: Mutex::new(None),
        })
    }
}

type Shared = Arc<Console>;

/// The console's listener: plain HTTP (loopback only) or TLS.
pub enum ConsoleListener {
    /// Plain HTTP on loopback.
    Plain(tokio::net::TcpListener),
    /// HTTPS, with optional client certificates.
    Tls(TlsListener),
}

impl ConsoleListener {
    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        match self {
            ConsoleListener::Plain(_) => "http",
            ConsoleListener::Tls(_) => "https",
        }
    }
}

/// Binds the listener (refusing a non-loopback address without TLS) and
/// returns it with the service to run on it.
pub async fn bind(console: Console) -> Result<(ConsoleListener, SocketAddr, Router), Error> {
    console
        .config
        .check()
        .map_err(|message| Error::InvalidField {
            field: "console.listen".to_string(),
            message,
        })?;
    let listener = tokio::net::TcpListener::bind(console.config.listen)
        .await
        .map_err(|source| Error::Io {
            path: format!("console listener {}", console.config.listen).into(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Io {
        path: "console listener".into(),
        source,
    })?;
    let listener = match &console.tls {
        Some(setup) => ConsoleListener::Tls(TlsListener::new(listener, setup).map_err(
            |source| Error::Io {
                path: "console listener".into(),
                source,
            },
        )?),
        None => ConsoleListener::Plain(listener),
    };
    Ok((listener, addr, router(Arc::new(console))))
}

mod account_pages;
mod ceremonies;
mod dashboards;
mod inbox;
mod live;
mod login;
mod password;

use account_pages::*;
use ceremonies::*;
use dashboards::*;
use inbox::*;
use login::*;
use password::*;

fn router(state: Shared) -> Router {
    Router::new()
        .route("/static/console.css", get(css))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/password", get(password_page).post(password_change))
        .route("/", get(inbox))
        .route("/applications/{id}", get(application))
        .route("/applications/{id}/file", get(download))
        .route("/applications/{id}/approve", post(approve))
        .route("/applications/{id}/reject", post(reject))
        .route("/status", get(status_page))
        .route("/outbox", get(outbox_page))
        .route("/outbox/{id}/retry", post(outbox_retry))
        .route("/audit", get(audit_page))
        .route("/ceremonies", get(ceremonies_page))
        .route("/accounts", get(accounts_search))
        .route("/accounts/{cid}", get(account_page))
        .route("/accounts/{cid}/{action}", post(account_action))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(middleware::from_fn(peer))
        .with_state(state)
}

/// The client certificate of the request's TLS connection (its SHA-256 as
/// rustls verified it against the issuing CAs); `None` over plain HTTP.
#[derive(Clone, Default)]
pub(crate) struct ClientCert(pub(crate) Option<Arc<str>>);

impl ClientCert {
    fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// Puts the TLS connection's peer in the request: its client certificate
/// (`ClientCert`) and its address as `ConnectInfo<SocketAddr>`, as a plain
/// listener gives it.
async fn peer(mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map(|c| c.0.clone());
    match peer {
        Some(p) => {
            req.extensions_mut().insert(ConnectInfo(p.addr));
            req.extensions_mut().insert(ClientCert(p.client_cert));
        }
        None => {
            req.extensions_mut().insert(ClientCert(None));
        }
    }
    next.run(req).await
}

/// The host part of a Host header (no port, no IPv6 brackets), lower case.
fn host_name(host: &str) -> String {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host),
    };
    name.to_ascii_lowercase()
}

/// Headers on every answer, and the Host check: a page is only served to a
/// loopback name or, over TLS, to a name of the console's certificate, so a
/// DNS-rebinding page elsewhere cannot read it.
async fn guard(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let loopback = ["127.0.0.1:", "localhost:", "[::1]:"]
        .iter()
        .any(|p| host.starts_with(p));
    let named = state.tls.as_ref().is_some_and(|t| {
        let name = host_name(host);
        !name.is_empty()
            && (t.names.contains(&name)
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| t.ips.contains(&ip)))
    });
    let mut resp = if loopback || named {
        next.run(req).await
    } else {
        (StatusCode::MISDIRECTED_REQUEST, "unknown host").into_response()
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

fn html<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

fn message(
    status: StatusCode,
    who: Option<Who>,
    title: &str,
    lines: Vec<String>,
    back: &str,
) -> Response {
    html(
        status,
        &Message {
            who,
            title: title.to_string(),
            lines,
            back: back.to_string(),
        },
    )
}

fn failure(e: Error) -> Response {
    // The page says where to look; the log has the detail (no secret is
    // in a store error).
    tracing::error!(error = %e, "console request failed");
    message(
        StatusCode::INTERNAL_SERVER_ERROR,
        None,
        "処理できませんでした",
        vec!["内部エラーが発生しました。時間をおいてもう一度お試しください。続く場合はシステム担当者に連絡してください(kxca daemon のログに詳細があります)。".to_string()],
        "/",
    )
}

async fn not_found() -> Response {
    message(
        StatusCode::NOT_FOUND,
        None,
        "ページが見つかりません",
        vec!["指定されたページはありません。".to_string()],
        "/",
    )
}

/// Runs store work off the async threads, with the console's CA.
async fn with_ca<T: Send + 'static>(
    state: &Shared,
    f: impl FnOnce(&Console, &mut Ca) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        let mut ca = state.ca.lock().unwrap_or_else(|p| p.into_inner());
        f(&state, &mut ca)
    })
    .await
    .map_err(|e| Error::InvalidField {
        field: "console".to_string(),
        message: format!("a console task failed: {e}"),
    })?
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn cookie_session(headers: &HeaderMap) -> Option<String> {
    cookie(headers, COOKIE)
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A logged-in request.
struct Authed {
    admin: Admin,
    session: String,
    csrf: String,
}

impl Authed {
    fn who(&self) -> Who {
        Who {
            name: self.admin.name.clone(),
            role: self.admin.role.label_ja(),
            csrf: self.csrf.clone(),
            officer: self.admin.role == crate::Role::Officer,
        }
    }

    fn actor(&self) -> String {
        format!("console:{}", self.admin.name)
    }
}

/// The session's admin, or the answer to give instead (to the login page).
/// `cert`: the connection's client certificate, which an admin whose
/// factor is a certificate must present on every request.
async fn authed(
    state: &Shared,
    headers: &HeaderMap,
    cert: &ClientCert,
) -> Result<Authed, Response> {
    let Some(session) = cookie_session(headers) else {
        return Err(Redirect::to("/login").into_response());
    };
    let s = session.clone();
    let cert = cert.clone();
    let admin = with_ca(state, move |c, ca| {
        admins::session(ca.store_mut(), &c.config, &s, cert.get(), now())
    })
    .await
    .map_err(failure)?;
    match admin {
        Some(admin) => {
            let csrf = state.key.csrf(&admins::session_hash(&session));
            Ok(Authed {
                admin,
                session,
                csrf,
            })
        }
        None => Err(Redirect::to("/login").into_response()),
    }
}

/// A handler that takes `Authed` is only reached with a live session.
impl FromRequestParts<Shared> for Authed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Response> {
        let cert = parts
            .extensions
            .get::<ClientCert>()
            .cloned()
            .unwrap_or_default();
        authed(state, &parts.headers, &cert).await
    }
}

/// A form post from a live session carrying that session's CSRF token.
/// Whether the admin's role may change things is asked separately
/// (`Authed::read_only`): logout and searches are posts every role makes.
struct Posted {
    a: Authed,
    form: Vec<(String, String)>,
}

impl FromRequest<Shared> for Posted {
    type Rejection = Response;

    async fn from_request(req: Request, state: &Shared) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let a = Authed::from_request_parts(&mut parts, state).await?;
        let body = String::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        let form = form(&body);
        let token = one(&form, "csrf").unwrap_or("");
        if !state.key.csrf_ok(&admins::session_hash(&a.session), token) {
            tracing::warn!(admin = %a.admin.name, "console form refused: CSRF token missing or wrong");
            return Err(message(
                StatusCode::FORBIDDEN,
                Some(a.who()),
                "操作を受け付けられませんでした",
                vec!["画面の有効期限が切れたか、正しくない送信です。ページを開き直してからもう一度操作してください。".to_string()],
                "/",
            ));
        }
        Ok(Posted { a, form })
    }
}

impl Authed {
    /// The refusal page when the admin's role may only read.
    fn read_only(&self) -> Option<Response> {
        if self.admin.role.may_act() {
            return None;
        }
        tracing::warn!(admin = %self.admin.name, "console action refused: role {}", self.admin.role.as_str());
        Some(message(
            StatusCode::FORBIDDEN,
            Some(self.who()),
            "権限がありません",
            vec![format!(
                "{}の権限では、この操作はできません。",
                self.admin.role.label_ja()
            )],
            "/",
        ))
    }
}

fn form(body: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

fn one<'f>(form: &'f [(String, String)], name: &str) -> Option<&'f str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn jst(t: i64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(t) else {
        return t.to_string();
    };
    let Ok(offset) = time::UtcOffset::from_hms(9, 0, 0) else {
        return t.to_string();
    };
    let t = t.to_offset(offset);
    format!(
        "{}年{}月{}日 {:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// A provisioner or CA function refused: its Japanese words from the one
/// table (crate::refusals). An error not in it is not shown as is (its
/// English text may name files): a generic line, the detail in the log.
fn refused(a: &Authed, e: &Error, back: &str) -> Response {
    let mut lines = vec!["次の理由で処理されませんでした。内容を確認してください。".to_string()];
    match crate::refusals::ja(e) {
        Some(ja) => {
            tracing::info!(admin = %a.admin.name, refusal = %e, "console action refused");
            lines.extend(ja);
        }
        None => {
            tracing::error!(admin = %a.admin.name, error = %e, "console action failed");
            lines = vec!["予期しない理由で処理できませんでした。時間をおいてもう一度お試しください。続く場合はシステム担当者に連絡してください(kxca daemon のログに詳細があります)。".to_string()];
        }
    }
    message(
        StatusCode::CONFLICT,
        Some(a.who()),
        "実行できませんでした",
        lines,
        back,
    )
}

/// Rows per page of the paged lists.
const PAGE: usize = 50;

/// The page a query string asks for (`before` / `after` ids).
fn page_request(f: &[(String, String)]) -> kxca_ca::store::paging::PageRequest {
    kxca_ca::store::paging::PageRequest {
        cursor: kxca_ca::store::paging::Cursor::from_query(one(f, "before"), one(f, "after")),
        size: PAGE,
    }
}

/// The 前へ/次へ links of `page` on `path`, keeping the list's filters.
fn pager<T>(path: &str, keep: &[(&str, &str)], page: &kxca_ca::store::paging::Page<T>) -> Pager {
    let link = |k: &str, id: i64| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (name, value) in keep.iter().filter(|(_, v)| !v.is_empty()) {
            q.append_pair(name, value);
        }
        q.append_pair(k, &id.to_string());
        format!("{path}?{}", q.finish())
    };
    Pager {
        newer: page.newer.map(|id| link("after", id)),
        older: page.older.map(|id| link("before", id)),
    }
}

/// Whether the audit record verifies: `kxca audit verify`'s own function
/// (`audit_log::verify_published`), run at most once per
/// `[console] audit_verify_seconds` (the result is cached: a verification
/// reads every event). The lock is held while it runs, so requests
/// arriving meanwhile wait for that one run instead of starting their own.
async fn audit_state(state: &Shared) -> AuditState {
    match verify_audit(state).await {
        Ok(s) => s,
        // The page still opens: a record that cannot be checked is 異常.
        Err(e) => {
            tracing::error!(error = %e, "audit record could not be verified");
            AuditState {
                ok: false,
                tree_size: 0,
                root: "-".to_string(),
                latest_checkpoint: "-".to_string(),
                checked_at: jst(now()),
                reasons: vec![
                    "検証を実行できませんでした(kxca daemon のログに詳細があります)。".to_string(),
                ],
                findings: 1,
            }
        }
    }
}

async fn verify_audit(state: &Shared) -> Result<AuditState, Error> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        let mut cached = state.audit.lock().unwrap_or_else(|p| p.into_inner());
        let ttl = std::time::Duration::from_secs(state.config.audit_verify_seconds);
        if let Some((at, s)) = cached.as_ref() {
            if at.elapsed() < ttl {
                return Ok(s.clone());
            }
        }
        // Its own connection: the console's other requests go on while
        // every event is read.
        let (home, config) = {
            let ca = state.ca.lock().unwrap_or_else(|p| p.into_inner());
            (ca.home().clone(), ca.config().clone())
        };
        let store = kxca_ca::Store::open(&home.database(), false)?;
        let report = kxca_ca::audit_log::verify_published(&store, &home, &config, &[])?;
        if !report.ok {
            tracing::error!(
                findings = report.findings.len(),
                "audit record failed verification (see `kxca audit verify`)"
            );
        }
        let s = AuditState {
            ok: report.ok,
            tree_size: report.tree_size,
            root: report.root.clone(),
            latest_checkpoint: match (report.latest_checkpoint, report.latest_checkpoint_at) {
                (Some(size), Some(at)) => format!(
                    "{}({size}件まで署名済み、未署名 {}件)",
                    jst(at),
                    report.unsigned_events
                ),
                (Some(size), None) => format!("{size}件まで署名済み"),
                _ => "まだ署名されていません".to_string(),
            },
            checked_at: jst(now()),
            reasons: report
                .findings
                .iter()
                .take(5)
                .map(|f| f.message.clone())
                .collect(),
            findings: report.findings.len(),
        };
        *cached = Some((std::time::Instant::now(), s.clone()));
        Ok(s)
    })
    .await
    .map_err(|e| Error::InvalidField {
        field: "console".to_string(),
        message: format!("a console task failed: {e}"),
    })?
}

/// Serves the console on `listener` until `stop` completes; requests in
/// progress finish first.
pub async fn serve(
    listener: ConsoleListener,
    app: Router,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match listener {
        // The peer address of each connection reaches the handlers (the login
        // limit per client address); no header is ever taken for it.
        ConsoleListener::Plain(listener) => {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(stop)
            .await
        }
        // `peer` turns the TLS peer into `ConnectInfo<SocketAddr>` and the
        // client certificate.
        ConsoleListener::Tls(listener) => {
            axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
                .with_graceful_shutdown(stop)
                .await
        }
    }
}

fn pickup_line(e: &kxca_ca::enrolment::Enrolment) -> PickupLine {
    use kxca_ca::enrolment::EnrolmentState as S;
    PickupLine {
        state: match e.state {
            S::Waiting => "受け取り待ち",
            S::Locked => "ロック中(コードの誤りが続いたため)",
            S::Expired => "期限切れ",
            S::Used => "受け取り処理中",
            S::Cancelled => "取り消し",
            S::Issued => "受け取り済み",
        },
        tries: e.tries,
        code_expires: e
            .code_expires_at
            .map(jst)
            .unwrap_or_else(|| "-".to_string()),
        opened: jst(e.opened_at),
    }
}

fn mail_line(m: &kxca_provisioner::outbox::OutboxMail) -> MailLine {
    use kxca_provisioner::outbox::{OutboxKind as K, OutboxState as S};
    MailLine {
        id: m.id,
        created: jst(m.created_at),
        kind: match m.kind {
            K::IntakeReply => "受付の返信",
            K::IntakeRejected => "受付できない旨の返信",
            K::CertificateReady => "メール1(受け取りの案内)",
            K::InitialPasswords => "メール2(初期パスワード)",
            K::ApplicationRejected => "却下の通知",
            K::AccountRevoked => "失効の通知",
            K::ExpiryReminder => "有効期限の案内",
        },
        to: m.to.clone(),
        subject: m.subject.clone(),
        state: match m.state {
            S::Queued => "送信待ち",
            S::Sending => "送信中",
            S::Sent => "送信済み",
            S::Failed => "送信失敗",
        },
        attempts: m.attempts,
        error: m.last_error.clone().unwrap_or_default(),
    }
}

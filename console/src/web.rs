//! The admin listener: routes, sessions, CSRF, roles, security headers.
//! Store work runs on blocking threads; every change goes through
//! kxca-provisioner's functions (one transaction each, with their audit
//! events).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use askama::Template;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
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
use crate::views::*;
use crate::ConsoleConfig;

const COOKIE: &str = "__Host-kxca-console";
/// The login form's own cookie: its CSRF token is bound to it, so another
/// site cannot log a browser in under its own account.
const LOGIN_COOKIE: &str = "__Host-kxca-login";
const CSS: &str = include_str!("../templates/console.css");

/// What the console serves from.
pub struct Console {
    config: ConsoleConfig,
    key: ConsoleKey,
    ca: Mutex<Ca>,
    intake: IntakePolicy,
    mail: Option<MailConfig>,
    profile: String,
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
        let key = ConsoleKey::load_or_create(home)?;
        let mut ca = Ca::open(home.clone(), kxca_ca::Clock::system())?;
        kxca_provisioner::migrate(ca.store_mut())?;
        ca.store_mut()
            .migrate(admins::COMPONENT, admins::migrations())?;
        Ok(Console {
            config,
            key,
            ca: Mutex::new(ca),
            intake,
            mail,
            profile: "office-client".to_string(),
        })
    }
}

type Shared = Arc<Console>;

/// Binds the listener (refusing a non-loopback address) and returns it
/// with the service to run on it.
pub async fn bind(
    console: Console,
) -> Result<(tokio::net::TcpListener, SocketAddr, Router), Error> {
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
    Ok((listener, addr, router(Arc::new(console))))
}

fn router(state: Shared) -> Router {
    Router::new()
        .route("/static/console.css", get(css))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/", get(inbox))
        .route("/applications/{id}", get(application))
        .route("/applications/{id}/file", get(download))
        .route("/applications/{id}/approve", post(approve))
        .route("/applications/{id}/reject", post(reject))
        .route("/status", get(status_page))
        .route("/outbox", get(outbox_page))
        .route("/outbox/{id}/retry", post(outbox_retry))
        .route("/audit", get(audit_page))
        .route("/accounts", get(accounts_search))
        .route("/accounts/{cid}", get(account_page))
        .route("/accounts/{cid}/{action}", post(account_action))
        .fallback(not_found)
        .layer(middleware::from_fn(guard))
        .with_state(state)
}

/// Headers on every answer, and the Host check: a page is only served to
/// a loopback name, so a DNS-rebinding page elsewhere cannot read it.
async fn guard(req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let loopback = ["127.0.0.1:", "localhost:", "[::1]:"]
        .iter()
        .any(|p| host.starts_with(p));
    let mut resp = if loopback {
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
        }
    }

    fn actor(&self) -> String {
        format!("console:{}", self.admin.name)
    }
}

/// The session's admin, or the answer to give instead (to the login page).
async fn authed(state: &Shared, headers: &HeaderMap) -> Result<Authed, Response> {
    let Some(session) = cookie_session(headers) else {
        return Err(Redirect::to("/login").into_response());
    };
    let s = session.clone();
    let admin = with_ca(state, move |c, ca| {
        admins::session(ca.store_mut(), &c.config, &s, now())
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

/// A form post: a live session, its CSRF token, and (when `act`) a role
/// that may change things.
async fn posted(
    state: &Shared,
    headers: &HeaderMap,
    form: &[(String, String)],
    act: bool,
) -> Result<Authed, Response> {
    let a = authed(state, headers).await?;
    let token = one(form, "csrf").unwrap_or("");
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
    if act && !a.admin.role.may_act() {
        tracing::warn!(admin = %a.admin.name, "console action refused: role {}", a.admin.role.as_str());
        return Err(message(
            StatusCode::FORBIDDEN,
            Some(a.who()),
            "権限がありません",
            vec![format!(
                "{}の権限では、この操作はできません。",
                a.admin.role.label_ja()
            )],
            "/",
        ));
    }
    Ok(a)
}

async fn login_page(headers: HeaderMap, State(state): State<Shared>) -> Response {
    if authed(&state, &headers).await.is_ok() {
        return Redirect::to("/").into_response();
    }
    login_form(&state, StatusCode::OK, None)
}

fn login_binding(pre: &str) -> String {
    format!("login:{}", admins::session_hash(pre))
}

/// The login page with a new login cookie and the CSRF token bound to it.
fn login_form(state: &Shared, status: StatusCode, error: Option<&'static str>) -> Response {
    let mut raw = [0u8; 32];
    if let Err(e) = crate::key::random("login cookie", &mut raw) {
        return failure(e);
    }
    let pre = hex::encode(raw);
    let csrf = state.key.csrf(&login_binding(&pre));
    let mut resp = html(status, &Login { error, csrf });
    let cookie = format!("{LOGIN_COOKIE}={pre}; Path=/; Secure; HttpOnly; SameSite=Strict");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn login(headers: HeaderMap, State(state): State<Shared>, body: String) -> Response {
    let f = form(&body);
    let bound = cookie(&headers, LOGIN_COOKIE).is_some_and(|pre| {
        state
            .key
            .csrf_ok(&login_binding(&pre), one(&f, "csrf").unwrap_or(""))
    });
    if !bound {
        tracing::warn!("console login refused: login form token missing or wrong");
        return login_form(
            &state,
            StatusCode::FORBIDDEN,
            Some("画面の有効期限が切れたか、正しくない送信です。もう一度ログインしてください。"),
        );
    }
    let name = one(&f, "name").unwrap_or("").trim().to_string();
    let password = one(&f, "password").unwrap_or("").to_string();
    let code = one(&f, "code").unwrap_or("").to_string();
    let out = with_ca(&state, move |c, ca| {
        admins::login(
            ca.store_mut(),
            &c.key,
            &c.config,
            &name,
            &password,
            &code,
            now(),
        )
    })
    .await;
    match out {
        Err(e) => failure(e),
        Ok(Err(why)) => login_form(
            &state,
            StatusCode::UNAUTHORIZED,
            Some(match why {
                    LoginRefused::Wrong => "管理者名、パスワードまたは確認コードが正しくありません。",
                LoginRefused::Locked => "ログインの失敗が続いたため、このアカウントは一時的にロックされています。しばらくしてからお試しいただくか、セキュリティ責任者に連絡してください。",
            }),
        ),
        Ok(Ok((admin, session))) => {
            tracing::info!(admin = %admin.name, "console login");
            let cookie = format!("{COOKIE}={session}; Path=/; Secure; HttpOnly; SameSite=Strict");
            let mut resp = Redirect::to("/").into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
    }
}

async fn logout(headers: HeaderMap, State(state): State<Shared>, body: String) -> Response {
    let f = form(&body);
    let a = match posted(&state, &headers, &f, false).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let admin = a.admin.clone();
    let session = a.session.clone();
    if let Err(e) = with_ca(&state, move |_, ca| {
        admins::logout(ca.store_mut(), &admin, &session, now())
    })
    .await
    {
        return failure(e);
    }
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "__Host-kxca-console=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    resp
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

async fn inbox(headers: HeaderMap, State(state): State<Shared>) -> Response {
    let a = match authed(&state, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let apps = with_ca(&state, |_, ca| {
        ca.store().read(|s| applications::list(s, 1000))
    })
    .await;
    let apps = match apps {
        Ok(apps) => apps,
        Err(e) => return failure(e),
    };
    let apps = apps
        .into_iter()
        .rev()
        .map(|a| AppLine {
            id: a.id,
            sender: a.sender.unwrap_or_else(|| "(不明)".to_string()),
            received: jst(a.received_at),
            file_name: a.file_name,
            valid: a.rows_valid,
            review: a.rows_review,
            invalid: a.rows_invalid,
            status: match a.status {
                applications::ApplicationStatus::PendingReview => "確認待ち",
                applications::ApplicationStatus::Rejected => "不備のため返送済み",
            },
        })
        .collect();
    html(StatusCode::OK, &Inbox { who: a.who(), apps })
}

/// The key of a column's value in a row's stored fields.
fn field_key(f: Field) -> &'static str {
    match f {
        Field::No => "no",
        Field::Centre => "centre",
        Field::ContractUnit => "contract_unit",
        Field::UnionCode => "union_code",
        Field::BranchCode => "branch_code",
        Field::OfficeCode => "office_code",
        Field::ContactCode => "contact_code",
        Field::Email1 => "email1",
        Field::UnionName => "union_name",
        Field::BranchName => "branch_name",
        Field::OfficeName => "office_name",
        Field::ContactName => "contact_name",
        Field::PasswordCa => "password_ca_present",
        Field::PasswordKx => "password_kx_present",
        Field::Email2 => "email2",
    }
}

fn row_view(
    policy: &IntakePolicy,
    r: &applications::ApplicationRowRecord,
    decision: Option<&accounts::Decision>,
) -> RowView {
    use kxca_provisioner::forms::RowVerdict;
    let findings: Vec<&serde_json::Value> = r
        .findings
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let text = |v: &serde_json::Value, k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let mut placed = vec![false; findings.len()];
    let cells = Field::ALL
        .iter()
        .map(|f| {
            let title = policy.columns.title(*f);
            let mut class = "";
            let mut messages = Vec::new();
            let mut shown: Option<String> = None;
            for (i, fd) in findings.iter().enumerate() {
                if text(fd, "column") == title {
                    placed[i] = true;
                    messages.push(text(fd, "message_ja"));
                    if text(fd, "severity") == "error" {
                        class = "invalid";
                    } else if class.is_empty() {
                        class = "review";
                    }
                    shown.get_or_insert_with(|| text(fd, "value"));
                }
            }
            let value = match *f {
                Field::No => r.no.clone().unwrap_or_default(),
                Field::PasswordCa | Field::PasswordKx => {
                    match r.fields.get(field_key(*f)).and_then(|v| v.as_bool()) {
                        Some(true) => "入力あり".to_string(),
                        Some(false) => "なし".to_string(),
                        None => String::new(),
                    }
                }
                _ => r
                    .fields
                    .get(field_key(*f))
                    .and_then(|v| v.as_str())
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .or(shown)
                    .unwrap_or_default(),
            };
            Cell {
                value,
                class,
                messages,
            }
        })
        .collect();
    let messages = findings
        .iter()
        .zip(&placed)
        .filter(|(_, p)| !**p)
        .map(|(f, _)| text(f, "message_ja"))
        .collect();
    let (status, status_class) = match r.status {
        RowVerdict::Valid => ("有効", "valid"),
        RowVerdict::Review => ("要確認", "review"),
        RowVerdict::Invalid => ("不備あり", "invalid"),
    };
    let decision_text = decision.map(|d| match d.decision.as_str() {
        "approved" => format!(
            "承認済み({}、{})",
            d.certificate_id.as_deref().unwrap_or("-"),
            d.actor
        ),
        _ => format!(
            "却下済み(理由: {}、{})",
            d.reason.as_deref().unwrap_or("-"),
            d.actor
        ),
    });
    RowView {
        row: r.row,
        status,
        status_class,
        cells,
        messages,
        may_approve: decision.is_none() && r.status != RowVerdict::Invalid,
        decision: decision_text,
    }
}

async fn application(
    headers: HeaderMap,
    State(state): State<Shared>,
    Path(id): Path<i64>,
) -> Response {
    let a = match authed(&state, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let got = with_ca(&state, move |_, ca| {
        ca.store().read(|s| {
            let app = applications::get(s, id)?;
            let decisions = match app {
                Some(_) => accounts::decisions(s, id)?,
                None => Vec::new(),
            };
            Ok((app, decisions))
        })
    })
    .await;
    let (app, decisions) = match got {
        Ok((Some(app), d)) => (app, d),
        Ok((None, _)) => return not_found().await,
        Err(e) => return failure(e),
    };
    let rows: Vec<RowView> = app
        .rows
        .iter()
        .map(|r| row_view(&state.intake, r, decisions.iter().find(|d| d.row == r.row)))
        .collect();
    let open_valid = rows
        .iter()
        .filter(|r| r.decision.is_none() && r.status_class == "valid")
        .count();
    html(
        StatusCode::OK,
        &ApplicationPage {
            may_act: a.admin.role.may_act(),
            who: a.who(),
            id,
            sender: app.sender.unwrap_or_else(|| "(不明)".to_string()),
            received: jst(app.received_at),
            file_name: app.file_name,
            columns: state
                .intake
                .columns
                .titles()
                .iter()
                .map(|t| t.to_string())
                .collect(),
            rows,
            open_valid,
        },
    )
}

async fn download(
    headers: HeaderMap,
    State(state): State<Shared>,
    Path(id): Path<i64>,
) -> Response {
    let a = match authed(&state, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let actor = a.actor();
    let got = with_ca(&state, move |_, ca| {
        let file = ca.store().read(|s| applications::file(s, id))?;
        if file.is_some() {
            ca.store_mut().write(|tx| {
                tx.audit(
                    now(),
                    &actor,
                    AuditAction::AdminDownload,
                    None,
                    serde_json::json!({"application": id}),
                )
            })?;
        }
        Ok(file)
    })
    .await;
    match got {
        Ok(Some((name, bytes))) => {
            // RFC 5987: the Japanese file name as UTF-8, an ASCII fallback.
            let encoded: String = form_urlencoded::byte_serialize(name.as_bytes())
                .collect::<String>()
                .replace('+', "%20");
            let disposition = format!(
                "attachment; filename=\"application-{id}.xlsx\"; filename*=UTF-8''{encoded}"
            );
            let mut resp = Response::new(Body::from(bytes));
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                ),
            );
            if let Ok(v) = HeaderValue::from_str(&disposition) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            resp
        }
        Ok(None) => not_found().await,
        Err(e) => failure(e),
    }
}

fn refused(a: &Authed, e: &Error, back: &str) -> Response {
    message(
        StatusCode::CONFLICT,
        Some(a.who()),
        "実行できませんでした",
        vec![
            "次の理由で処理されませんでした。内容を確認してください。".to_string(),
            e.to_string(),
        ],
        back,
    )
}

async fn approve(
    headers: HeaderMap,
    State(state): State<Shared>,
    Path(id): Path<i64>,
    method: Method,
    body: String,
) -> Response {
    debug_assert_eq!(method, Method::POST);
    let f = form(&body);
    let a = match posted(&state, &headers, &f, true).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let back = format!("/applications/{id}");
    let selected = one(&f, "scope") == Some("selected");
    let rows: Option<Vec<u32>> = if selected {
        let rows: Result<Vec<u32>, _> = f
            .iter()
            .filter(|(k, _)| k == "rows")
            .map(|(_, v)| v.parse::<u32>())
            .collect();
        match rows {
            Ok(r) if !r.is_empty() => Some(r),
            _ => {
                return message(
                    StatusCode::BAD_REQUEST,
                    Some(a.who()),
                    "行が選ばれていません",
                    vec![
                        "承認する行にチェックを入れてから「選択した行を承認」を押してください。"
                            .to_string(),
                    ],
                    &back,
                )
            }
        }
    } else {
        None
    };
    if one(&f, "confirm") != Some("yes") {
        let what = match &rows {
            Some(r) => vec![format!(
                "申込 {id} の {} 行目を承認し、アカウントを作成します。",
                r.iter().map(u32::to_string).collect::<Vec<_>>().join("、")
            )],
            None => vec![format!(
                "申込 {id} の有効な行をすべて承認し、アカウントを作成します。"
            )],
        };
        let mut what = what;
        what.push("各連絡先へ証明書受け取りの案内メール(メール1・メール2)を送ります。".to_string());
        let mut fields = vec![(
            "scope".to_string(),
            if selected { "selected" } else { "valid" }.to_string(),
        )];
        for r in rows.iter().flatten() {
            fields.push(("rows".to_string(), r.to_string()));
        }
        return html(
            StatusCode::OK,
            &Confirm {
                who: a.who(),
                title: "承認の確認".to_string(),
                what,
                action: format!("/applications/{id}/approve"),
                fields,
                back,
            },
        );
    }
    let actor = a.actor();
    let out = with_ca(&state, move |c, ca| {
        let setup = Setup::load(ca, c.mail.as_ref())?;
        let profile = ca.profiles().get(&c.profile)?.clone();
        let now = ca.clock().now();
        let ctx = accounts::Context {
            profile: &profile,
            intake: &c.intake,
            delivery: setup.delivery(),
        };
        accounts::approve(ca.store_mut(), id, rows.as_deref(), &ctx, &actor, now)
    })
    .await;
    match out {
        Ok(out) => {
            let mut lines = vec![format!(
                "{}行を承認し、メール{}通を送信待ちにしました。",
                out.approved.len(),
                out.mails_queued
            )];
            for r in &out.approved {
                lines.push(format!(
                    "{}行目: 承認(証明書ID {})",
                    r.row,
                    r.certificate_id.as_deref().unwrap_or("-")
                ));
            }
            for r in &out.refused {
                lines.push(format!(
                    "{}行目: 承認できませんでした({})",
                    r.row,
                    r.reason.as_deref().unwrap_or("-")
                ));
            }
            if !out.already_decided.is_empty() {
                lines.push(format!(
                    "すでに処理済みの行: {}",
                    out.already_decided
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join("、")
                ));
            }
            message(StatusCode::OK, Some(a.who()), "承認しました", lines, &back)
        }
        Err(e) => refused(&a, &e, &back),
    }
}

async fn reject(
    headers: HeaderMap,
    State(state): State<Shared>,
    Path(id): Path<i64>,
    body: String,
) -> Response {
    let f = form(&body);
    let a = match posted(&state, &headers, &f, true).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let back = format!("/applications/{id}");
    let row = one(&f, "row").and_then(|r| r.parse::<u32>().ok());
    let reason = one(&f, "reason").unwrap_or("").trim().to_string();
    let Some(row) = row.filter(|_| !reason.is_empty()) else {
        return message(
            StatusCode::BAD_REQUEST,
            Some(a.who()),
            "却下の理由が入力されていません",
            vec!["却下する行の理由欄に、申込者へ伝える理由を入力してください。".to_string()],
            &back,
        );
    };
    if one(&f, "confirm") != Some("yes") {
        return html(
            StatusCode::OK,
            &Confirm {
                who: a.who(),
                title: "却下の確認".to_string(),
                what: vec![
                    format!("申込 {id} の {row} 行目を却下します。"),
                    format!("理由: {reason}"),
                    "申込者へ理由をメールで伝えます。".to_string(),
                ],
                action: format!("/applications/{id}/reject"),
                fields: vec![
                    ("row".to_string(), row.to_string()),
                    ("reason".to_string(), reason),
                ],
                back,
            },
        );
    }
    let actor = a.actor();
    let out = with_ca(&state, move |c, ca| {
        let setup = Setup::load(ca, c.mail.as_ref())?;
        let now = ca.clock().now();
        accounts::reject(ca.store_mut(), id, &[row], &reason, &setup, &actor, now)
    })
    .await;
    match out {
        Ok(out) => message(
            StatusCode::OK,
            Some(a.who()),
            "却下しました",
            vec![format!(
                "{}行を却下し、メール{}通を送信待ちにしました。",
                out.refused.len(),
                out.mails_queued
            )],
            &back,
        ),
        Err(e) => refused(&a, &e, &back),
    }
}

/// Serves the console on `listener` until `stop` completes; requests in
/// progress finish first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
}

/// The revocation reasons an admin chooses from: (RFC 5280 name, words).
const REASONS: &[(&str, &str)] = &[
    ("cessationOfOperation", "利用終了(退職・担当者の交代など)"),
    ("affiliationChanged", "所属の変更"),
    ("keyCompromise", "鍵の漏えい・端末の紛失"),
    ("superseded", "別の証明書への切り替え"),
    ("unspecified", "その他"),
];

fn state_ja(state: accounts::register::AccountState) -> &'static str {
    match state {
        accounts::register::AccountState::Active => "有効",
        accounts::register::AccountState::Revoked => "失効済み",
    }
}

fn cert_state_ja(state: &str) -> String {
    match state {
        "issued" => "有効".to_string(),
        "revoked" => "失効".to_string(),
        "pending" => "発行処理中".to_string(),
        "failed" => "発行失敗".to_string(),
        other => other.to_string(),
    }
}

async fn accounts_search(
    headers: HeaderMap,
    State(state): State<Shared>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let a = match authed(&state, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let q = query
        .as_deref()
        .map(form)
        .and_then(|f| one(&f, "q").map(|q| q.trim().to_string()))
        .unwrap_or_default();
    let searched = query.is_some();
    let text = q.clone();
    let found = if searched {
        with_ca(&state, move |_, ca| {
            ca.store().read(|s| {
                accounts::register::search(
                    s,
                    Some(&text).filter(|t| !t.is_empty()).map(|t| t.as_str()),
                    200,
                )
            })
        })
        .await
    } else {
        Ok(Vec::new())
    };
    let found = match found {
        Ok(f) => f,
        Err(e) => return failure(e),
    };
    html(
        StatusCode::OK,
        &Accounts {
            who: a.who(),
            q,
            searched,
            accounts: found
                .into_iter()
                .map(|x| AccountLine {
                    state: state_ja(x.state),
                    serial: x.current_serial.unwrap_or_else(|| "-".to_string()),
                    certificate_id: x.certificate_id,
                    office_code: x.office_code,
                    office_name: x.office_name,
                    contact_name: x.contact_name,
                })
                .collect(),
        },
    )
}

async fn account_page(
    headers: HeaderMap,
    State(state): State<Shared>,
    Path(cid): Path<String>,
) -> Response {
    let a = match authed(&state, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let got = with_ca(&state, move |_, ca| {
        ca.store()
            .read(|s| accounts::register::by_certificate_id(s, &cid))
    })
    .await;
    let acc = match got {
        Ok(Some(acc)) => acc,
        Ok(None) => return not_found().await,
        Err(e) => return failure(e),
    };
    let current = acc.current_serial.clone();
    let (pickups, mails) = match with_ca(&state, {
        let cid = acc.certificate_id.clone();
        let to = [acc.email1.clone(), acc.email2.clone()];
        move |_, ca| {
            let now = ca.clock().now();
            ca.store().read(|s| {
                let filter = kxca_ca::enrolment::Filter {
                    state: None,
                    certificate_id: Some(cid),
                    limit: Some(50),
                };
                let pickups = kxca_ca::enrolment::list(s, &filter, now)?;
                let mails = kxca_provisioner::outbox::list(s, 2000)?
                    .into_iter()
                    .filter(|m| to.iter().any(|t| !t.is_empty() && *t == m.to))
                    .collect::<Vec<_>>();
                Ok((pickups, mails))
            })
        }
    })
    .await
    {
        Ok(x) => x,
        Err(e) => return failure(e),
    };
    html(
        StatusCode::OK,
        &AccountPage {
            may_act: a.admin.role.may_act(),
            who: a.who(),
            active: acc.state == accounts::register::AccountState::Active,
            state: state_ja(acc.state),
            office: format!(
                "{}-{}-{} {}",
                acc.union_code, acc.branch_code, acc.office_code, acc.office_name
            ),
            contact: format!(
                "{} {}{}",
                acc.contact_code,
                acc.contact_name,
                if acc.sharoushi { "(社労士)" } else { "" }
            ),
            email1: acc.email1,
            email2: if acc.email2.is_empty() {
                "-".to_string()
            } else {
                acc.email2
            },
            approved: format!(
                "{}(申込 {} の {} 行目)",
                jst(acc.created_at),
                acc.application_id,
                acc.application_row
            ),
            revoked: acc.revoked_at.map(|t| {
                format!(
                    "{}(理由: {})",
                    jst(t),
                    acc.revoke_reason.as_deref().unwrap_or("-")
                )
            }),
            certificates: acc
                .certificates
                .iter()
                .map(|c| CertLine {
                    current: current.as_deref() == Some(c.serial.as_str()),
                    serial: c.serial.clone(),
                    state: match &c.revocation_reason {
                        Some(r) => format!("{}({r})", cert_state_ja(&c.state)),
                        None => cert_state_ja(&c.state),
                    },
                    not_before: jst(c.not_before),
                    not_after: jst(c.not_after),
                })
                .collect(),
            certificate_id: acc.certificate_id,
            pickups: pickups.iter().map(pickup_line).collect(),
            mails: mails.iter().map(mail_line).collect(),
            reasons: REASONS.to_vec(),
        },
    )
}

async fn account_action(
    headers: HeaderMap,
    State(state): State<Shared>,
    Path((cid, action)): Path<(String, String)>,
    body: String,
) -> Response {
    let f = form(&body);
    let a = match posted(&state, &headers, &f, true).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let back = format!("/accounts/{cid}");
    let reason = one(&f, "reason").unwrap_or("").to_string();
    let (title, what) = match action.as_str() {
        "reset" => (
            "再発行の確認",
            vec![
                format!("{cid} の新しい受け取りを開始します。"),
                "新しい証明書が受け取られた時点で、現在の証明書は失効します。".to_string(),
                "担当者へメール1・メール2を送ります。".to_string(),
            ],
        ),
        "resend" => (
            "メール1再送の確認",
            vec![
                format!("{cid} の担当者へ、証明書受け取りの案内(メール1)をもう一度送ります。"),
                "パスワード(メール2)は送りません。新しいコードが必要なときは受け取り期限の延長を使ってください。".to_string(),
            ],
        ),
        "renew" => (
            "受け取り期限延長の確認",
            vec![
                format!("{cid} の受け取りを延長します(ロック・期限切れを解除します)。"),
                "担当者へ新しい受け取りコードをメールで送ります。".to_string(),
            ],
        ),
        "revoke" => {
            let Some((_, label)) = REASONS.iter().find(|(v, _)| *v == reason) else {
                return message(
                    StatusCode::BAD_REQUEST,
                    Some(a.who()),
                    "失効の理由を選んでください",
                    vec!["一覧から失効の理由を選んでください。".to_string()],
                    &back,
                );
            };
            (
                "失効の確認",
                vec![
                    format!("{cid} の証明書を失効します。理由: {label}"),
                    "失効した証明書ではKXサーバにログインできなくなります。".to_string(),
                ],
            )
        }
        _ => return not_found().await,
    };
    if one(&f, "confirm") != Some("yes") {
        let mut fields = Vec::new();
        if action == "revoke" {
            fields.push(("reason".to_string(), reason));
        }
        return html(
            StatusCode::OK,
            &Confirm {
                who: a.who(),
                title: title.to_string(),
                what,
                action: format!("/accounts/{cid}/{action}"),
                fields,
                back,
            },
        );
    }
    let actor = a.actor();
    let id = cid.clone();
    let act = action.clone();
    let out = with_ca(&state, move |c, ca| {
        let setup = Setup::load(ca, c.mail.as_ref())?;
        let now = ca.clock().now();
        match act.as_str() {
            "reset" => {
                accounts::lifecycle::reset(ca.store_mut(), &id, &setup.delivery(), &actor, now)
                    .map(|o| vec![o])
            }
            "resend" => accounts::lifecycle::resend_mail1(
                ca.store_mut(),
                &id,
                &setup.delivery(),
                &actor,
                now,
            )
            .map(|o| vec![o]),
            "renew" => accounts::lifecycle::renew_pickup(
                ca.store_mut(),
                &id,
                &setup.delivery(),
                &actor,
                now,
            )
            .map(|o| vec![o]),
            _ => {
                let reason: kxca_ca::RevocationReason =
                    reason.parse().map_err(|_| Error::InvalidField {
                        field: "reason".to_string(),
                        message: format!("{reason:?}: not a revocation reason"),
                    })?;
                accounts::lifecycle::revoke(
                    ca.store_mut(),
                    &accounts::lifecycle::RevokeTarget::Contact(id),
                    reason,
                    &setup,
                    &actor,
                    now,
                )
            }
        }
    })
    .await;
    match out {
        Ok(out) => {
            let mails: usize = out.iter().map(|o| o.mails_queued).sum();
            let done = match action.as_str() {
                "reset" => "再発行の受け取りを開始しました",
                "renew" => "受け取り期限を延長しました",
                "resend" => "メール1を再送します",
                _ => "失効しました",
            };
            let mut lines = vec![format!(
                "{cid}: {done}。メール{mails}通を送信待ちにしました。"
            )];
            if action == "revoke" {
                lines.push("失効は数秒のうちにCRLとOCSPに反映されます。".to_string());
            }
            message(StatusCode::OK, Some(a.who()), done, lines, &back)
        }
        Err(e) => refused(&a, &e, &back),
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

async fn outbox_page(headers: HeaderMap, State(state): State<Shared>) -> Response {
    let a = match authed(&state, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    match with_ca(&state, |_, ca| {
        ca.store().read(|s| kxca_provisioner::outbox::list(s, 200))
    })
    .await
    {
        Ok(mails) => html(
            StatusCode::OK,
            &Outbox {
                who: a.who(),
                mails: mails.iter().map(mail_line).collect(),
            },
        ),
        Err(e) => failure(e),
    }
}

async fn audit_page(
    headers: HeaderMap,
    State(state): State<Shared>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let a = match authed(&state, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let f = query.as_deref().map(form).unwrap_or_default();
    let action = one(&f, "action").unwrap_or("").trim().to_string();
    let actor = one(&f, "actor").unwrap_or("").trim().to_string();
    let events = match with_ca(&state, |_, ca| {
        ca.store().read(|s| kxca_ca::store::audit::list(s, 1000))
    })
    .await
    {
        Ok(e) => e,
        Err(e) => return failure(e),
    };
    // Oldest first from the store: the admins read the newest first.
    let events = events
        .into_iter()
        .rev()
        .filter(|e| e.action.starts_with(&action) && (actor.is_empty() || e.actor == actor))
        .take(300)
        .map(|e| AuditLine {
            id: e.id,
            at: jst(e.at),
            actor: e.actor,
            action: e.action,
            serial: e.serial.unwrap_or_default(),
            detail: e.detail.to_string(),
        })
        .collect();
    html(
        StatusCode::OK,
        &Audit {
            who: a.who(),
            action,
            actor,
            events,
        },
    )
}

async fn status_page(headers: HeaderMap, State(state): State<Shared>) -> Response {
    use kxca_ca::enrolment::{EnrolmentState, Filter};
    let a = match authed(&state, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let got = with_ca(&state, |_, ca| {
        let now = ca.clock().now();
        ca.store().read(|s| {
            let expiring = accounts::register::expiring(s, now + 30 * 86_400)?;
            let mut pickups = Vec::new();
            for st in [EnrolmentState::Locked, EnrolmentState::Waiting] {
                let filter = Filter {
                    state: Some(st),
                    certificate_id: None,
                    limit: Some(200),
                };
                pickups.extend(kxca_ca::enrolment::list(s, &filter, now)?);
            }
            let mails = kxca_provisioner::outbox::list(s, 5000)?;
            let issuing = kxca_ca::store::authorities::active(s, kxca_ca::AuthorityRole::Issuing)?;
            let crl = kxca_ca::store::crls::latest(s, issuing.id)?;
            Ok((now, expiring, pickups, mails, issuing.name, crl))
        })
    })
    .await;
    let (now, expiring, pickups, mails, issuing, crl) = match got {
        Ok(x) => x,
        Err(e) => return failure(e),
    };
    use kxca_provisioner::outbox::OutboxState as S;
    let queued = mails.iter().filter(|m| m.state == S::Queued).count();
    let failed: Vec<MailLine> = mails
        .iter()
        .filter(|m| m.state == S::Failed)
        .take(50)
        .map(mail_line)
        .collect();
    let crl = match crl {
        Some(c) if c.next_update > now => format!(
            "正常: 番号 {}、発行 {}、次回更新 {}",
            c.number,
            jst(c.this_update),
            jst(c.next_update)
        ),
        Some(c) => format!(
            "異常: 次回更新 {} を過ぎています(kxca daemon を確認してください)",
            jst(c.next_update)
        ),
        None => "異常: CRLがまだ発行されていません".to_string(),
    };
    html(
        StatusCode::OK,
        &Status {
            may_act: a.admin.role.may_act(),
            who: a.who(),
            expiring: expiring
                .into_iter()
                .map(|(acc, end)| ExpiringLine {
                    certificate_id: acc.certificate_id,
                    office: format!("{} {}", acc.office_code, acc.office_name),
                    contact: acc.contact_name,
                    serial: acc.current_serial.unwrap_or_default(),
                    not_after: jst(end),
                })
                .collect(),
            pickups: pickups
                .iter()
                .map(|e| (e.certificate_id.clone(), pickup_line(e)))
                .collect(),
            queued,
            failed,
            issuing,
            crl,
        },
    )
}

async fn outbox_retry(
    headers: HeaderMap,
    State(state): State<Shared>,
    Path(id): Path<i64>,
    body: String,
) -> Response {
    let f = form(&body);
    let a = match posted(&state, &headers, &f, true).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let actor = a.actor();
    match with_ca(&state, move |_, ca| {
        let now = ca.clock().now();
        kxca_provisioner::outbox::retry(ca.store_mut(), id, &actor, now)
    })
    .await
    {
        Ok(true) => message(
            StatusCode::OK,
            Some(a.who()),
            "再送信を予約しました",
            vec![format!(
                "メール {id} を送信待ちに戻しました。kxca daemon が次の送信処理で送ります。"
            )],
            "/status",
        ),
        Ok(false) => message(
            StatusCode::CONFLICT,
            Some(a.who()),
            "再送信できません",
            vec![format!(
                "メール {id} は送信失敗の状態ではありません(送信済み・送信待ちなど)。"
            )],
            "/status",
        ),
        Err(e) => failure(e),
    }
}

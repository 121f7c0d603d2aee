//! Login and logout: the login form's own cookie and CSRF token, password
//! plus second factor (admins.rs decides), the session cookie.

use axum::Extension;

use super::*;

pub(super) async fn login_page(
    headers: HeaderMap,
    Extension(cert): Extension<ClientCert>,
    State(state): State<Shared>,
) -> Response {
    if authed(&state, &headers, &cert).await.is_ok() {
        return Redirect::to("/").into_response();
    }
    login_form(&state, StatusCode::OK, None)
}

pub(super) fn login_binding(pre: &str) -> String {
    format!("login:{}", admins::session_hash(pre))
}

/// The login page with a new login cookie and the CSRF token bound to it.
pub(super) fn login_form(
    state: &Shared,
    status: StatusCode,
    error: Option<&'static str>,
) -> Response {
    let mut raw = [0u8; 32];
    if let Err(e) = crate::key::random("login cookie", &mut raw) {
        return failure(e);
    }
    let pre = hex::encode(raw);
    let csrf = state.key.csrf(&login_binding(&pre));
    let mut resp = html(
        status,
        &Login {
            error,
            csrf,
            tls: state.tls.is_some(),
        },
    );
    let cookie = format!("{LOGIN_COOKIE}={pre}; Path=/; Secure; HttpOnly; SameSite=Strict");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

pub(super) async fn login(
    headers: HeaderMap,
    Extension(cert): Extension<ClientCert>,
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: String,
) -> Response {
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
            cert.get(),
            peer.ip(),
            now(),
        )
    })
    .await;
    match out {
        Err(e) => failure(e),
        Ok(Err(LoginRefused::TooMany)) => {
            // Nothing was checked: the page says the same for every name.
            let mut resp = login_form(
                &state,
                StatusCode::TOO_MANY_REQUESTS,
                Some("この端末からのログインの失敗が続いたため、しばらくログインを受け付けません。時間をおいてからお試しください。"),
            );
            if let Ok(v) = HeaderValue::from_str(&(state.config.ip_window_minutes * 60).to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
        Ok(Err(why)) => login_form(
            &state,
            StatusCode::UNAUTHORIZED,
            Some(match why {
                LoginRefused::Wrong if state.tls.is_some() => "管理者名、パスワード、確認コードまたはクライアント証明書が正しくありません。",
                LoginRefused::Wrong => "管理者名、パスワードまたは確認コードが正しくありません。",
                LoginRefused::Locked | LoginRefused::TooMany => "ログインの失敗が続いたため、このアカウントは一時的にロックされています。しばらくしてからお試しいただくか、セキュリティ責任者に連絡してください。",
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

pub(super) async fn logout(State(state): State<Shared>, Posted { a, .. }: Posted) -> Response {
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

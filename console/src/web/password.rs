//! The logged-in admin's own password change: current password, the new
//! one twice, the rule of admins.rs; their other sessions ended.

use super::*;
use crate::admins::ChangeRefused;

fn page(a: &Authed, status: StatusCode, error: Option<String>, done: Option<String>) -> Response {
    html(
        status,
        &PasswordPage {
            who: a.who(),
            min: admins::MIN_PASSWORD_CHARS,
            error,
            done,
        },
    )
}

pub(super) async fn password_page(a: Authed) -> Response {
    page(&a, StatusCode::OK, None, None)
}

pub(super) async fn password_change(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Posted { a, form }: Posted,
) -> Response {
    // Every role may change its own password: an auditor's too.
    let current = one(&form, "current").unwrap_or("").to_string();
    let new = one(&form, "new").unwrap_or("").to_string();
    let confirm = one(&form, "confirm").unwrap_or("").to_string();
    let admin = a.admin.clone();
    let session = a.session.clone();
    let out = with_ca(&state, move |c, ca| {
        admins::change_password(
            ca.store_mut(),
            &c.config,
            &admin,
            &session,
            &current,
            &new,
            &confirm,
            peer.ip(),
            now(),
        )
    })
    .await;
    match out {
        Err(e) => failure(e),
        Ok(Err(why)) => {
            tracing::warn!(admin = %a.admin.name, "console password change refused: {why:?}");
            let status = match why {
                ChangeRefused::WrongCurrent | ChangeRefused::Locked => StatusCode::FORBIDDEN,
                _ => StatusCode::BAD_REQUEST,
            };
            page(&a, status, Some(why.ja()), None)
        }
        Ok(Ok(ended)) => {
            tracing::info!(admin = %a.admin.name, ended, "console password changed");
            let done = if ended == 0 {
                "パスワードを変更しました。".to_string()
            } else {
                format!("パスワードを変更しました。ほかの場所でのログイン{ended}件を終了しました。")
            };
            page(&a, StatusCode::OK, None, Some(done))
        }
    }
}

//! What the public role says, in the admins' words: live OCSP answers on
//! the account page, CRL and OCSP health on the status page.

use kxca_ca::ocsp::probe::ProbeFailure;
use kxca_ca::ocsp::Status;

use super::jst;
use crate::public::Failure;

/// The page's words for an RFC 5280 reason code.
pub(super) fn reason_ja(code: u8) -> String {
    match code {
        0 => "その他".to_string(),
        1 => "鍵の漏えい・端末の紛失".to_string(),
        2 => "認証局の危殆化".to_string(),
        3 => "所属の変更".to_string(),
        4 => "別の証明書への切り替え".to_string(),
        5 => "利用終了(退職・担当者の交代など)".to_string(),
        6 => "一時停止".to_string(),
        9 => "権限の取り消し".to_string(),
        c => format!("理由コード {c}"),
    }
}

/// The page's words for a reason as the register names it
/// (`keyCompromise`, `superseded`, …).
pub(super) fn reason_name_ja(name: &str) -> String {
    match name.parse::<kxca_ca::RevocationReason>() {
        Ok(r) => reason_ja(r.code()),
        Err(_) => name.to_string(),
    }
}

/// (text, CSS class) of a verified status.
pub(super) fn status_ja(status: &Status) -> (String, &'static str) {
    match status {
        Status::Good => ("有効".to_string(), "good"),
        Status::Revoked { at, reason } => (
            format!("失効(理由: {}、{})", reason_ja(*reason), jst(*at)),
            "revoked",
        ),
        Status::Unknown => (
            "不明(公開側はこの証明書を知りません)".to_string(),
            "unknown",
        ),
    }
}

/// Why there is no verified answer, for an admin; the detail goes to the log.
pub(super) fn failure_ja(f: &Failure) -> String {
    match f {
        Failure::Unreachable(_) => "公開側に問い合わせできません(kxca serve が応答しません)".to_string(),
        Failure::Status(s) => format!("公開側がエラーを返しました(HTTP {s})"),
        Failure::TooLarge => "公開側の応答が大きすぎます".to_string(),
        Failure::Invalid(p) => match p {
            ProbeFailure::Malformed(_) => "公開側の応答の形式が正しくありません".to_string(),
            ProbeFailure::NotSuccessful(s) => {
                format!("公開側が応答できないと答えました(OCSP 応答ステータス {s})")
            }
            ProbeFailure::Signature(_) => {
                "公開側の応答の署名を検証できません(認証局の署名ではありません)".to_string()
            }
            ProbeFailure::Mismatch(_) => "公開側の応答が問い合わせた内容と一致しません".to_string(),
            ProbeFailure::Stale(t) => format!(
                "公開側の応答が古くなっています(次回更新 {} を過ぎています。kxca daemon を確認してください)",
                jst(*t)
            ),
            ProbeFailure::FromTheFuture(t) => format!(
                "公開側の応答の日時 {} が未来です(サーバの時刻を確認してください)",
                jst(*t)
            ),
        },
    }
}

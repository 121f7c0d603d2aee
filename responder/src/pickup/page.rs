//! The pickup page an office contact sees, in Japanese. Every answer is
//! the form again with one message saying what happened and what to do;
//! nothing typed into a secret field is ever written back.

use std::fmt::Write;

/// What the page tells the contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Notice {
    /// The plain form.
    None,
    Missing(&'static str),
    BadCertificateId,
    BadFormat,
    PasswordRule,
    PasswordMismatch,
    WrongCode {
        tries_left: u32,
    },
    Locked,
    Expired,
    Used,
    InProgress,
    NoCode,
    Unknown,
    Cancelled,
    TryLater,
    Failed,
    Busy,
}

impl Notice {
    /// The message, in Japanese, and whether it is an error (red) or a note.
    fn text(self) -> Option<String> {
        Some(match self {
            Notice::None => return None,
            Notice::Missing(label) => format!("「{label}」を入力してください。"),
            Notice::BadCertificateId => "証明書IDは半角の英数字です。メール1に記載の証明書ID（TIで始まる番号）をそのまま入力してください。".into(),
            Notice::BadFormat => "ファイル形式は「標準」か「旧形式」のどちらかを選んでください。".into(),
            Notice::PasswordRule => "証明書ファイルのパスワードは、半角の英字と数字で8文字以上16文字以内にしてください（記号・空白・全角文字は使えません）。".into(),
            Notice::PasswordMismatch => "確認のために入力したパスワードが一致しません。同じパスワードを2回入力してください。".into(),
            Notice::WrongCode { tries_left } => format!(
                "受け取り用パスワードが正しくありません。メール2の「認証局へ初回ログイン用のパスワード」を確かめて、もう一度入力してください。あと{tries_left}回間違えると、この受け取りはロックされます。"
            ),
            Notice::Locked => "受け取り用パスワードを続けて間違えたため、この受け取りはロックされました。健康保険組合の担当窓口にお電話ください。確認のうえ、新しい受け取り用パスワードをお送りします。".into(),
            Notice::Expired => "受け取り用パスワードの有効期限が過ぎています。健康保険組合の担当窓口にご連絡ください。新しい受け取り用パスワードをお送りします。".into(),
            Notice::Used => "この証明書はすでに受け取られています。受け取り用パスワードは1回しか使えません。証明書ファイルをなくしたとき、パソコンを替えたときは、健康保険組合に再発行を依頼してください。".into(),
            Notice::InProgress => "この証明書はいま発行の処理中です。1分ほど待ってから、もう一度お試しください。".into(),
            Notice::NoCode => "まだ受け取りの準備ができていません。メール2（受け取り用パスワードのお知らせ）が届いてからお試しください。".into(),
            Notice::Unknown => "この証明書IDの受け取りは見つかりません。メール1に記載の証明書IDを確かめてください。新しいメールが届いている場合は、新しいほうの内容でお試しください。".into(),
            Notice::Cancelled => "この受け取りは取り消されました。新しいメールが届いている場合は、その内容でお試しください。わからないときは健康保険組合にご連絡ください。".into(),
            Notice::TryLater => "ただいま証明書を発行できません。数分後にもう一度お試しください。受け取り用パスワードはそのまま使えます。".into(),
            Notice::Failed => "証明書を発行できませんでした。お手数ですが健康保険組合の担当窓口にご連絡ください。受け取り用パスワードはそのまま使えます。".into(),
            Notice::Busy => "ただいま混み合っています。少し待ってから、もう一度お試しください。受け取り用パスワードはそのまま使えます。".into(),
        })
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The pickup page: the form (with the certificate id and format the
/// contact chose, never the code or passwords) and `notice` above it.
pub(crate) fn render(notice: Notice, certificate_id: &str, legacy: bool) -> String {
    let mut html = String::with_capacity(6 * 1024);
    html.push_str(
        r#"<!DOCTYPE html>
<html lang="ja">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>証明書の受け取り</title>
<style>
body{font-family:"Yu Gothic UI","Meiryo",sans-serif;max-width:42em;margin:2em auto;padding:0 1em;line-height:1.7;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:2em}
label{display:block;margin-top:1em;font-weight:bold}
input[type=text],input[type=password]{width:100%;max-width:24em;font-size:1.1em;padding:.3em}
.hint{font-size:.9em;color:#555;margin:.2em 0}
.error{border:2px solid #b00;background:#fee;padding:.8em;margin:1em 0}
button{margin-top:1.5em;font-size:1.1em;padding:.5em 1.5em}
fieldset{border:none;padding:0;margin-top:1em}
</style>
</head>
<body>
<h1>クライアント証明書の受け取り</h1>
<p>健康保険組合からのメール1とメール2をお手元にご用意ください。受け取りは1回限りです。</p>
"#,
    );
    if let Some(text) = notice.text() {
        let _ = writeln!(
            html,
            "<p class=\"error\" role=\"alert\">{}</p>",
            escape(&text)
        );
    }
    let (modern_checked, legacy_checked) = if legacy {
        ("", " checked")
    } else {
        (" checked", "")
    };
    let _ = write!(
        html,
        r#"<form method="post" action="/pickup" autocomplete="off">
<label for="certificate_id">証明書ID</label>
<p class="hint">メール1に記載の証明書ID（TIで始まる番号）</p>
<input type="text" id="certificate_id" name="certificate_id" value="{id}" required maxlength="64" inputmode="latin" spellcheck="false">
<label for="code">受け取り用パスワード</label>
<p class="hint">メール2の「認証局へ初回ログイン用のパスワード」（ハイフンは入れても入れなくてもかまいません）</p>
<input type="password" id="code" name="code" required maxlength="64" autocomplete="off">
<label for="password">証明書ファイルのパスワード（新しく決めてください）</label>
<p class="hint">半角の英字と数字で8〜16文字。証明書をWindowsに取り込むときに使います。忘れないよう控えてください。</p>
<input type="password" id="password" name="password" required minlength="8" maxlength="16" pattern="[A-Za-z0-9]{{8,16}}" autocomplete="new-password">
<label for="password_confirm">証明書ファイルのパスワード（確認のためもう一度）</label>
<input type="password" id="password_confirm" name="password_confirm" required minlength="8" maxlength="16" pattern="[A-Za-z0-9]{{8,16}}" autocomplete="new-password">
<fieldset>
<legend><strong>ファイル形式</strong></legend>
<label style="font-weight:normal"><input type="radio" name="format" value="modern"{modern_checked}> 標準（Windows 10 バージョン1709以降、Windows 11）</label>
<label style="font-weight:normal"><input type="radio" name="format" value="legacy"{legacy_checked}> 旧形式（Windows 10 バージョン1607以前、Windows Server 2016 で取り込めない場合のみ）</label>
</fieldset>
<button type="submit">証明書を受け取る</button>
</form>
<h2>Windows 10 / 11 への取り込み方</h2>
<ol>
<li>ダウンロードした「証明書ID.p12」ファイルをダブルクリックします。</li>
<li>「証明書のインポート ウィザード」で保存場所に「現在のユーザー」を選び、「次へ」を押します。</li>
<li>パスワードの欄に、この画面で決めた証明書ファイルのパスワードを入力します。「このキーをエクスポート可能にする」にはチェックを入れないでください。</li>
<li>「証明書の種類に基づいて、自動的に証明書ストアを選択する」のまま「次へ」「完了」を押します。</li>
<li>KXクライアントを起動し、証明書IDの証明書を選んでログインします。</li>
</ol>
<p>証明書ファイルとパスワードは他の人に渡さないでください。ファイルをなくしたとき、パソコンを替えたときは、健康保険組合に再発行を依頼してください。</p>
</body>
</html>
"#,
        id = escape(certificate_id),
    );
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_escapes_what_it_echoes_and_says_what_to_do() {
        let html = render(Notice::WrongCode { tries_left: 2 }, "TI1\"><script>", true);
        assert!(html.contains("TI1&quot;&gt;&lt;script&gt;"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("あと2回"));
        assert!(html.contains("value=\"legacy\" checked"));
        assert!(render(Notice::None, "", false).contains("value=\"modern\" checked"));
    }
}

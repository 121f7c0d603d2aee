//! Every Japanese text a clerk reads about a form, in one table.

use super::error::FormError;
use super::report::{FormReport, RowStatus, Severity};

/// (code, severity, template). Placeholders: {row} {column} {value}
/// {expected} {other}.
pub const FINDINGS: &[(&str, Severity, &str)] = &[
    ("missing_value", Severity::Error, "{row}行目 {column}が入力されていません"),
    ("code_padded", Severity::Warning, "{row}行目 {column}「{value}」は数値として保存されていたため、先頭に0を補い「{expected}」として扱いました"),
    ("code_fraction", Severity::Error, "{row}行目 {column}「{value}」に小数が入力されています。半角数字のコードを入力してください"),
    ("code_date", Severity::Error, "{row}行目 {column}「{value}」が日付として保存されています。セルの書式を「文字列」にしてコードを入力し直してください"),
    ("code_e_notation", Severity::Error, "{row}行目 {column}「{value}」が指数表記（E）になっています。セルの書式を「文字列」にしてコードを入力し直してください"),
    ("code_formula_error", Severity::Error, "{row}行目 {column}がエラー値「{value}」になっています。コードを直接入力してください"),
    ("code_not_digits", Severity::Error, "{row}行目 {column}「{value}」に数字以外の文字が含まれています"),
    ("code_width", Severity::Error, "{row}行目 {column}「{value}」の桁数が正しくありません（{expected}桁）"),
    ("centre_unknown", Severity::Error, "{row}行目 担当センターコード「{value}」は使用できません（{expected}）"),
    ("union_code_mismatch", Severity::Error, "{row}行目 組合コード「{value}」が当組合の組合コード「{expected}」と一致しません"),
    ("union_name_mismatch", Severity::Error, "{row}行目 組合名「{value}」が組合コードの組合名「{expected}」と一致しません"),
    ("branch_unknown", Severity::Error, "{row}行目 支部コード「{value}」は登録されていません"),
    ("branch_name_mismatch", Severity::Error, "{row}行目 支部名「{value}」が支部コードの支部名「{expected}」と一致しません"),
    ("contract_unit_mismatch", Severity::Error, "{row}行目 契約単位コード「{value}」が組合コード＋支部コード「{expected}」と一致しません"),
    ("office_code_required", Severity::Error, "{row}行目 事業所コードが入力されていません"),
    ("office_not_registered", Severity::Error, "{row}行目 事業所コード「{value}」は事業所台帳に登録されていません"),
    ("name_too_long", Severity::Error, "{row}行目 {column}「{value}」が{expected}文字を超えています"),
    ("name_not_jis_x0208", Severity::Warning, "{row}行目 {column}「{value}」の「{expected}」はJIS第1・第2水準以外の文字のため、正しく表示されない場合があります"),
    ("email_invalid", Severity::Error, "{row}行目 {column}「{value}」はメールアドレスとして正しくありません"),
    ("email_non_ascii", Severity::Error, "{row}行目 {column}「{value}」に半角英数字・記号以外の文字が含まれています"),
    ("email_consecutive_dots", Severity::Error, "{row}行目 {column}「{value}」にドットが2つ以上続けて含まれています（..）"),
    ("email_dot_at_edge", Severity::Error, "{row}行目 {column}「{value}」の@の前がドット（.）で始まるか終わっています"),
    ("email_legacy_carrier", Severity::Warning, "{row}行目 {column}「{value}」は携帯電話会社のアドレスです。組合からのメールや添付ファイルが受信できない場合があります"),
    ("email2_same_as_email1", Severity::Warning, "{row}行目 メールアドレス2がメールアドレス1と同じです"),
    ("password_ignored", Severity::Warning, "{row}行目 {column}は入力不要です。入力された内容は使用しません（パスワードは組合が発行します）"),
    ("password_not_allowed", Severity::Error, "{row}行目 {column}は入力しないでください（パスワードは組合が発行します）"),
    ("sharoushi_without_office_contact", Severity::Error, "{row}行目 社労士の方だけの申請はできません。同じ事業所の事業所担当者も一緒に申請してください"),
    ("multiple_accounts_per_office", Severity::Review, "{row}行目 事業所コード「{value}」の事業所のアカウントが複数になります（原則1事業所1アカウント）。組合で確認します"),
    ("duplicate_in_form", Severity::Error, "{row}行目 {other}行目と同じ担当者（組合・支部・事業所・担当者用コード）の申請が重複しています"),
    ("duplicate_existing_account", Severity::Error, "{row}行目 この担当者（事業所コード「{value}」・担当者用コード「{expected}」）はすでに登録されています"),
];

/// The severity and template of a finding code. Unknown codes are a
/// programming error caught by the unit test over every code used.
pub fn lookup(code: &str) -> Option<(Severity, &'static str)> {
    FINDINGS
        .iter()
        .find(|(c, _, _)| *c == code)
        .map(|(_, s, t)| (*s, *t))
}

/// Fills a template.
pub fn render(
    template: &str,
    row: u32,
    column: &str,
    value: &str,
    expected: &str,
    other: &str,
) -> String {
    template
        .replace("{row}", &row.to_string())
        .replace("{column}", column)
        .replace("{value}", value)
        .replace("{expected}", expected)
        .replace("{other}", other)
}

pub fn form_error_ja(e: &FormError) -> String {
    match e {
        FormError::NotAForm { file, missing_titles } => format!(
            "「{file}」は利用申込書ではありません（見出しの列が見つかりません：{}）。組合の申込書の様式をお使いください",
            missing_titles.join("、")
        ),
        FormError::UnknownFormat { file } => format!(
            "「{file}」はExcel（.xlsx、.xls）またはOpenDocument（.ods）のファイルではありません"
        ),
        FormError::Corrupt { file, .. } => format!(
            "「{file}」は壊れているため読み込めませんでした。Excelで開けることを確認して、保存し直してお送りください"
        ),
        FormError::TooLarge { file, .. } => format!(
            "「{file}」はファイルが大きすぎるため受け付けできません"
        ),
        FormError::TooManyRows { file, limit, .. } => format!(
            "「{file}」の申込行が多すぎます（上限{limit}行）。ファイルを分けてお送りください"
        ),
        FormError::NoRows { file, .. } => format!(
            "「{file}」に申込内容が入力されていません"
        ),
        FormError::Io { file, .. } => format!("「{file}」を読み込めませんでした"),
        FormError::Unreadable { file, .. } => format!(
            "「{file}」を読み取れませんでした。お手数ですが、Excelで開いて .xlsx 形式で保存し直し、もう一度お送りください"
        ),
    }
}

pub fn report_text(r: &FormReport) -> String {
    let mut out = String::new();
    out.push_str(&format!("ファイル：{}（シート：{}）\n", r.file, r.sheet));
    for row in &r.rows {
        let status = match row.status {
            RowStatus::Valid => "受付可",
            RowStatus::Invalid => "不備あり",
            RowStatus::Review => "組合で確認",
        };
        let no = row
            .no
            .as_deref()
            .map(|n| format!("（No.{n}）"))
            .unwrap_or_default();
        out.push_str(&format!("{}行目{}：{}\n", row.row, no, status));
        for f in &row.findings {
            let mark = match f.severity {
                Severity::Error => "不備",
                Severity::Warning => "注意",
                Severity::Review => "確認",
            };
            out.push_str(&format!("  [{mark}] {}\n", f.message_ja));
        }
    }
    out.push_str(&format!(
        "合計{}行：受付可 {}行、不備あり {}行、組合で確認 {}行\n",
        r.rows.len(),
        r.count(RowStatus::Valid),
        r.count(RowStatus::Invalid),
        r.count(RowStatus::Review)
    ));
    out
}

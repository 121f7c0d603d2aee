//! Every Japanese text a clerk reads about a form, in one table.

use kxca_ca::rules;

use super::error::FormError;
use super::report::{FormReport, RowStatus, Severity};

/// Declares the finding codes: one line per code gives its variant, its
/// stable English code (in reports, JSON and INTAKE.md), its severity and its
/// Japanese template, so none can exist without the others.
/// Placeholders: {row} {column} {value} {expected} {other}.
macro_rules! finding_codes {
    ($($variant:ident = $code:literal, $severity:ident, $template:literal;)*) => {
        /// What an intake check found about a cell or row.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum FindingCode {
            $(#[doc = concat!("`", $code, "`: ", $template)] $variant,)*
        }

        impl FindingCode {
            /// Every code, in table order.
            pub const ALL: &'static [FindingCode] = &[$(FindingCode::$variant,)*];

            /// The stable English code.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(FindingCode::$variant => $code,)*
                }
            }

            /// Whether the finding makes the row invalid, needs a review, or only warns.
            pub fn severity(self) -> Severity {
                match self {
                    $(FindingCode::$variant => Severity::$severity,)*
                }
            }

            /// The Japanese message template for the office clerk.
            pub fn template(self) -> &'static str {
                match self {
                    $(FindingCode::$variant => $template,)*
                }
            }
        }
    };
}

#[rustfmt::skip]
finding_codes! {
    MissingValue = "missing_value", Error, "{row}行目 {column}が入力されていません";
    CodePadded = "code_padded", Warning, "{row}行目 {column}「{value}」は数値として保存されていたため、先頭に0を補い「{expected}」として扱いました";
    CodeFraction = "code_fraction", Error, "{row}行目 {column}「{value}」に小数が入力されています。半角数字のコードを入力してください";
    CodeDate = "code_date", Error, "{row}行目 {column}「{value}」が日付として保存されています。セルの書式を「文字列」にしてコードを入力し直してください";
    CodeENotation = "code_e_notation", Error, "{row}行目 {column}「{value}」が指数表記（E）になっています。セルの書式を「文字列」にしてコードを入力し直してください";
    CodeFormulaError = "code_formula_error", Error, "{row}行目 {column}がエラー値「{value}」になっています。コードを直接入力してください";
    CodeNotDigits = "code_not_digits", Error, "{row}行目 {column}「{value}」に数字以外の文字が含まれています";
    CodeWidth = "code_width", Error, "{row}行目 {column}「{value}」の桁数が正しくありません（{expected}桁）";
    CentreUnknown = "centre_unknown", Error, "{row}行目 担当センターコード「{value}」は使用できません（{expected}）";
    UnionCodeMismatch = "union_code_mismatch", Error, "{row}行目 組合コード「{value}」が当組合の組合コード「{expected}」と一致しません";
    UnionNameMismatch = "union_name_mismatch", Error, "{row}行目 組合名「{value}」が組合コードの組合名「{expected}」と一致しません";
    BranchUnknown = "branch_unknown", Error, "{row}行目 支部コード「{value}」は登録されていません";
    BranchNameMismatch = "branch_name_mismatch", Error, "{row}行目 支部名「{value}」が支部コードの支部名「{expected}」と一致しません";
    ContractUnitMismatch = "contract_unit_mismatch", Error, "{row}行目 契約単位コード「{value}」が組合コード＋支部コード「{expected}」と一致しません";
    OfficeCodeRequired = "office_code_required", Error, "{row}行目 事業所コードが入力されていません";
    OfficeNotRegistered = "office_not_registered", Error, "{row}行目 事業所コード「{value}」は事業所台帳に登録されていません";
    NameTooLong = "name_too_long", Error, "{row}行目 {column}「{value}」が{expected}文字を超えています";
    NameControlCharacters = "name_control_characters", Error, "{row}行目 {column}「{value}」に制御文字（改行・タブ以外の見えない文字）が含まれています";
    NameNotJisX0208 = "name_not_jis_x0208", Warning, "{row}行目 {column}「{value}」の「{expected}」はJIS第1・第2水準以外の文字のため、正しく表示されない場合があります";
    EmailInvalid = "email_invalid", Error, "{row}行目 {column}「{value}」はメールアドレスとして正しくありません";
    EmailNonAscii = "email_non_ascii", Error, "{row}行目 {column}「{value}」に半角英数字・記号以外の文字が含まれています";
    EmailConsecutiveDots = "email_consecutive_dots", Error, "{row}行目 {column}「{value}」にドットが2つ以上続けて含まれています（..）";
    EmailDotAtEdge = "email_dot_at_edge", Error, "{row}行目 {column}「{value}」の@の前がドット（.）で始まるか終わっています";
    EmailLegacyCarrier = "email_legacy_carrier", Warning, "{row}行目 {column}「{value}」は携帯電話会社のアドレスです。組合からのメールや添付ファイルが受信できない場合があります";
    Email2SameAsEmail1 = "email2_same_as_email1", Warning, "{row}行目 メールアドレス2がメールアドレス1と同じです";
    PasswordIgnored = "password_ignored", Warning, "{row}行目 {column}は入力不要です。入力された内容は使用しません（パスワードは組合が発行します）";
    PasswordNotAllowed = "password_not_allowed", Error, "{row}行目 {column}は入力しないでください（パスワードは組合が発行します）";
    SharoushiWithoutOfficeContact = "sharoushi_without_office_contact", Error, "{row}行目 社労士の方だけの申請はできません。同じ事業所の事業所担当者も一緒に申請してください";
    MultipleAccountsPerOffice = "multiple_accounts_per_office", Review, "{row}行目 事業所コード「{value}」の事業所のアカウントが複数になります（原則1事業所1アカウント）。組合で確認します";
    DuplicateInForm = "duplicate_in_form", Error, "{row}行目 {other}行目と同じ担当者（組合・支部・事業所・担当者用コード）の申請が重複しています";
    DuplicateExistingAccount = "duplicate_existing_account", Error, "{row}行目 この担当者（事業所コード「{value}」・担当者用コード「{expected}」）はすでに登録されています";
}

impl FindingCode {
    /// The code with this English name, if there is one.
    pub fn parse(s: &str) -> Option<FindingCode> {
        FindingCode::ALL.iter().copied().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for FindingCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for FindingCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

// The shared rules (kxca_ca::rules) name their problems by the same codes;
// the unit test below keeps the two spellings equal.
impl From<rules::EmailProblem> for FindingCode {
    fn from(p: rules::EmailProblem) -> FindingCode {
        match p {
            rules::EmailProblem::NonAscii => FindingCode::EmailNonAscii,
            rules::EmailProblem::Invalid => FindingCode::EmailInvalid,
            rules::EmailProblem::ConsecutiveDots => FindingCode::EmailConsecutiveDots,
            rules::EmailProblem::DotAtEdge => FindingCode::EmailDotAtEdge,
        }
    }
}

impl From<rules::NameProblem> for FindingCode {
    fn from(p: rules::NameProblem) -> FindingCode {
        match p {
            rules::NameProblem::TooLong => FindingCode::NameTooLong,
            rules::NameProblem::ControlCharacters => FindingCode::NameControlCharacters,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_distinct_name_and_a_template() {
        let mut names = std::collections::HashSet::new();
        for c in FindingCode::ALL {
            assert!(names.insert(c.as_str()), "code {c} declared twice");
            assert!(c.template().starts_with("{row}行目 "), "template of {c}");
            assert_eq!(FindingCode::parse(c.as_str()), Some(*c));
        }
    }

    // INTAKE.md is what a union admin reads: its table of codes must be
    // this table, row for row.
    #[test]
    fn intake_md_lists_exactly_these_codes() {
        let doc = include_str!("../../INTAKE.md");
        let (_, section) = doc
            .split_once("\n## Finding codes\n")
            .expect("INTAKE.md has a Finding codes section");
        let section = section.split("\n## ").next().unwrap_or_default();
        let rows: Vec<&str> = section.lines().filter(|l| l.starts_with("| `")).collect();
        let want: Vec<String> = FindingCode::ALL
            .iter()
            .map(|c| {
                format!(
                    "| `{}` | {} | {} |",
                    c.as_str(),
                    c.severity().as_str(),
                    c.template()
                )
            })
            .collect();
        assert_eq!(rows, want);
    }

    #[test]
    fn shared_rule_problems_map_to_their_own_code() {
        for p in rules::EmailProblem::ALL {
            assert_eq!(FindingCode::from(p).as_str(), p.code(), "{p:?}");
        }
        for p in [
            rules::NameProblem::TooLong,
            rules::NameProblem::ControlCharacters,
        ] {
            assert_eq!(FindingCode::from(p).as_str(), p.code(), "{p:?}");
        }
    }
}

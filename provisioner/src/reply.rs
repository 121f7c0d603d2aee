//! The Japanese reply to an applicant. All wording lives in the table of
//! phrases below; the logic only chooses and fills them.

use crate::forms::{CheckedRow, RowVerdict};

/// What happened to one spreadsheet attached to the mail.
#[derive(Debug, Clone)]
pub enum FileOutcome {
    /// A new application.
    Accepted {
        /// The file's name.
        file: String,
        /// Its application.
        application_id: i64,
        /// Its rows, checked.
        rows: Vec<CheckedRow>,
    },
    /// The same file was received before.
    Duplicate {
        /// The file's name.
        file: String,
        /// The application recorded the first time.
        application_id: i64,
    },
    /// A spreadsheet that is not the application form.
    NotAForm {
        /// The file's name.
        file: String,
        /// Why, for the applicant.
        message_ja: String,
    },
}

/// Everything the reply reports.
#[derive(Debug, Clone, Default)]
pub struct ReplyFacts {
    /// The received mail's subject, for the answer's "Re:".
    pub original_subject: String,
    /// What became of each attached spreadsheet.
    pub files: Vec<FileOutcome>,
    /// Attachments that are not spreadsheets, by name.
    pub ignored: Vec<String>,
    /// The same mail (Message-ID) was received before.
    pub duplicate_mail: bool,
}

mod phrase {
    pub const SUBJECT: &str = "【KX】利用申込書の受付結果";
    pub const GREETING: &str = "KX（Kenpo eXpress）利用申込書をお送りいただき、ありがとうございます。\n受付結果を以下のとおりお知らせします。";
    pub const DUPLICATE_MAIL: &str =
        "このメールは既に受け付けております。新たな受付は行っておりません。";
    pub const NO_FORM: &str = "このメールには利用申込書（Excel ファイル）が添付されていませんでした。\nお手数ですが、利用申込書を添付して再度お送りください。";
    pub const FILE: &str = "■ ファイル";
    pub const RECEIVED: &str = "受付番号";
    pub const DETECTED_ONLY: &str =
        "申請書を受け付けました。内容を確認のうえ、あらためてご連絡します。";
    pub const ACCEPTED_ROWS: &str =
        "次の行を受け付けました（組合で審査のうえ、電子証明書を発行します）：";
    pub const REVIEW_ROWS: &str = "次の行は組合で確認が必要です（確認後にご連絡します）：";
    pub const INVALID_ROWS: &str =
        "次の行に誤りがあります。修正のうえ、該当行を記載した申込書を再度お送りください：";
    pub const ROW: &str = "行目";
    pub const DUPLICATE_FILE: &str =
        "このファイルは既に受け付けております（新たな受付は行っておりません）。";
    pub const NOT_A_FORM: &str = "このファイルは利用申込書ではないため、受け付けておりません。";
    pub const IGNORED: &str = "次の添付ファイルは利用申込書ではないため、処理しておりません：";
    pub const UNREADABLE: &str = "お送りいただいたメール（または添付ファイル）を読み取ることができなかったため、受け付けておりません。\nお手数ですが、利用申込書をExcelで開いて .xlsx 形式で保存し直し、そのファイルを添付して再度お送りください。";
    pub const CLOSING: &str = "このメールは送信専用アドレスから自動でお送りしています。\nご不明な点は全国設計事務所健康保険組合までお問い合わせください。";
}

/// Subject and body of the reply to a mail that could not be read at all
/// (its structure, or a reader that was stopped or died twice).
pub fn compose_unreadable() -> (String, String) {
    let body = format!(
        "{}\n\n{}\n\n{}\n",
        phrase::GREETING,
        phrase::UNREADABLE,
        phrase::CLOSING
    );
    (phrase::SUBJECT.to_string(), body)
}

/// Subject and body of the reply.
pub fn compose(facts: &ReplyFacts) -> (String, String) {
    let mut b = String::new();
    b.push_str(phrase::GREETING);
    b.push_str("\n\n");
    if facts.duplicate_mail {
        b.push_str(phrase::DUPLICATE_MAIL);
        b.push_str("\n\n");
    } else if facts.files.is_empty() {
        b.push_str(phrase::NO_FORM);
        b.push_str("\n\n");
    }
    for f in &facts.files {
        match f {
            FileOutcome::Accepted {
                file,
                application_id,
                rows,
            } => {
                b.push_str(&format!(
                    "{} {file}（{} {application_id}）\n",
                    phrase::FILE,
                    phrase::RECEIVED
                ));
                if rows.is_empty() {
                    b.push_str(phrase::DETECTED_ONLY);
                    b.push('\n');
                }
                section(
                    &mut b,
                    rows,
                    RowVerdict::Valid,
                    phrase::ACCEPTED_ROWS,
                    false,
                );
                section(&mut b, rows, RowVerdict::Review, phrase::REVIEW_ROWS, true);
                section(
                    &mut b,
                    rows,
                    RowVerdict::Invalid,
                    phrase::INVALID_ROWS,
                    true,
                );
                b.push('\n');
            }
            FileOutcome::Duplicate {
                file,
                application_id,
            } => {
                b.push_str(&format!(
                    "{} {file}（{} {application_id}）\n{}\n\n",
                    phrase::FILE,
                    phrase::RECEIVED,
                    phrase::DUPLICATE_FILE
                ));
            }
            FileOutcome::NotAForm { file, message_ja } => {
                b.push_str(&format!(
                    "{} {file}\n{}\n{message_ja}\n\n",
                    phrase::FILE,
                    phrase::NOT_A_FORM
                ));
            }
        }
    }
    if !facts.ignored.is_empty() {
        b.push_str(phrase::IGNORED);
        b.push('\n');
        for name in &facts.ignored {
            b.push_str(&format!("・{name}\n"));
        }
        b.push('\n');
    }
    b.push_str(phrase::CLOSING);
    b.push('\n');
    let subject = if facts.original_subject.trim().is_empty() {
        phrase::SUBJECT.to_string()
    } else {
        format!("Re: {} {}", facts.original_subject.trim(), phrase::SUBJECT)
    };
    (subject, b)
}

fn section(b: &mut String, rows: &[CheckedRow], status: RowVerdict, title: &str, details: bool) {
    let chosen: Vec<&CheckedRow> = rows.iter().filter(|r| r.status == status).collect();
    if chosen.is_empty() {
        return;
    }
    b.push_str(title);
    b.push('\n');
    for r in chosen {
        let no =
            r.no.as_deref()
                .map(|n| format!("（No.{n}）"))
                .unwrap_or_default();
        b.push_str(&format!("・{}{}{no}\n", r.row, phrase::ROW));
        if details {
            for m in &r.messages_ja {
                b.push_str(&format!("　　{m}\n"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_form_is_polite() {
        let (subject, body) = compose(&ReplyFacts {
            original_subject: "申込".into(),
            ..Default::default()
        });
        assert!(subject.contains("受付結果"));
        assert!(body.contains("添付されていませんでした"));
    }

    #[test]
    fn invalid_rows_say_what_to_fix() {
        let row = CheckedRow {
            row: 3,
            no: Some("1".into()),
            status: RowVerdict::Invalid,
            messages_ja: vec!["3行目 契約単位コードが一致しません".into()],
            findings: serde_json::json!([]),
            fields: serde_json::json!({}),
        };
        let (_, body) = compose(&ReplyFacts {
            files: vec![FileOutcome::Accepted {
                file: "申請書.xlsx".into(),
                application_id: 7,
                rows: vec![row],
            }],
            ignored: vec!["photo.jpg".into()],
            ..Default::default()
        });
        assert!(body.contains("3行目（No.1）"));
        assert!(body.contains("契約単位コードが一致しません"));
        assert!(body.contains("photo.jpg"));
        assert!(body.contains("受付番号 7"));
    }
}

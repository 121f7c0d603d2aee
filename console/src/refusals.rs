//! Every refusal a union admin can meet, in Japanese: ONE table from the
//! domain's refusal kinds (kxca_ca::Refusal, RowRefusal and the CA's own
//! refusal variants) to the words the console shows. Nothing here reads
//! the English text of an error; an error not in the table gets a
//! Japanese generic line, and its detail goes to the daemon's log only.

use kxca_ca::{Error, Refusal, RowRefusal};

/// The Japanese lines for a refusal, or `None` when `e` is not one an admin
/// is expected to meet (the caller shows the generic line and logs `e`).
pub fn ja(e: &Error) -> Option<Vec<String>> {
    let line = match e {
        Error::Refused { kind, .. } => match kind {
            Refusal::UnknownApplication => "指定された申込は見つかりません。申込受付の一覧から開き直してください。".to_string(),
            Refusal::UnknownRow { row } => format!("この申込に {row} 行目はありません。"),
            Refusal::RowHasErrors { row } => format!(
                "{row} 行目には不備があるため承認できません。申込者に修正した申込書を送ってもらうか、行ごとに却下してください。"
            ),
            Refusal::RowsNotApproved { rows } => {
                let mut lines = vec![
                    "選択した行に承認できない行があるため、どの行も承認していません。該当する行のチェックを外してから、もう一度承認してください。".to_string(),
                ];
                lines.extend(rows.iter().map(|(row, why)| format!("{row} 行目: {}", row_ja(*why))));
                return Some(lines);
            }
            Refusal::ReasonMissing => "却下の理由が入力されていません。申込者へ伝える理由を入力してください。".to_string(),
            Refusal::NoRowsNamed => "却下する行が選ばれていません。".to_string(),
            Refusal::UnknownAccount => "指定されたアカウントは見つかりません。アカウント検索から開き直してください。".to_string(),
            Refusal::AccountRevoked => "このアカウントは失効済みのため、この操作はできません。必要な場合は新しい申込書で申し込んでもらい、その行を承認してください。".to_string(),
            Refusal::NoPickup => "このアカウントには受け取り中の証明書がありません。新しい証明書が必要な場合は「再発行」を使ってください。".to_string(),
            Refusal::NoOfficeAccount => "この事業所には有効なアカウントがありません。".to_string(),
            Refusal::PickupBeingSigned => "この証明書は今まさに受け取り(発行)の処理中のため、受け取り期限を延長できません。少し待ってからページを開き直してください。".to_string(),
            Refusal::PickupFinished => "この受け取りはすでに完了(または取り消し)しているため、延長できません。新しい証明書が必要な場合は「再発行」を使ってください。".to_string(),
            Refusal::PickupNotWaiting => "この受け取りは受け取り待ちの状態ではないため、新しいコードを発行できません。".to_string(),
            _ => return None,
        },
        Error::AlreadyRevoked { serial, .. } => {
            format!("証明書(シリアル番号 {serial})はすでに失効しています。")
        }
        Error::NotIssued { serial, .. } => {
            format!("証明書(シリアル番号 {serial})は発行が完了していないため、失効できません。")
        }
        _ => return None,
    };
    Some(vec![line])
}

/// Why an application row was not approved, in Japanese.
pub fn row_ja(why: RowRefusal) -> &'static str {
    match why {
        RowRefusal::InvalidHolder => "証明書の記載事項として使えない値があります(申込書の内容を確認してください)。",
        RowRefusal::CertificateId => "この行からは証明書IDを作れません(コード欄を確認してください)。",
        RowRefusal::AccountExists => "この担当者のアカウントはすでにあります。新しい証明書が必要な場合は、アカウント画面の「再発行」を使ってください。",
        RowRefusal::ContactHasAccount => "この事業所のこの担当者には、すでにアカウントがあります。",
        RowRefusal::OfficeHasAccount => "この事業所にはすでにアカウントがあります(1事業所1アカウントの決まりです。複数を認める事業所は設定で指定します)。",
        RowRefusal::SharoushiNeedsOffice => "社労士の行は、先に事業所の担当者のアカウントが必要です。事業所の担当者の行を先に(または同時に)承認してください。",
        _ => "アカウントの決まりにより承認できません。",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_japanese_and_no_english() {
        let kinds = [
            Refusal::UnknownApplication,
            Refusal::UnknownRow { row: 3 },
            Refusal::RowHasErrors { row: 3 },
            Refusal::RowsNotApproved {
                rows: vec![(2, RowRefusal::OfficeHasAccount)],
            },
            Refusal::ReasonMissing,
            Refusal::NoRowsNamed,
            Refusal::UnknownAccount,
            Refusal::AccountRevoked,
            Refusal::NoPickup,
            Refusal::NoOfficeAccount,
            Refusal::PickupBeingSigned,
            Refusal::PickupFinished,
            Refusal::PickupNotWaiting,
        ];
        for kind in kinds {
            let e = Error::refused(kind.clone(), "x", "an English line");
            let lines = ja(&e).unwrap_or_else(|| panic!("{kind:?} has no Japanese"));
            for l in &lines {
                assert!(!l.contains("English"), "{kind:?}: {l}");
                assert!(l.chars().any(|c| c > '\u{3000}'), "{kind:?}: {l}");
            }
        }
        // Not a refusal an admin meets: no table entry, the generic line.
        assert!(ja(&Error::InvalidField {
            field: "x".to_string(),
            message: "y".to_string(),
        })
        .is_none());
    }
}

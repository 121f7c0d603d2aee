//! Rules that depend on accounts registered before the form.

use kxca_provisioner::intake::{
    check_bytes, ExistingAccounts, ExistingContact, FindingCode, IntakePolicy, RowStatus,
};

struct Accounts(Vec<(&'static str, ExistingContact)>);

impl ExistingAccounts for Accounts {
    fn contacts(&self, union: &str, branch: &str, office: &str) -> Vec<ExistingContact> {
        assert_eq!((union, branch), ("26276", "00"));
        self.0
            .iter()
            .filter(|(o, _)| *o == office)
            .map(|(_, c)| c.clone())
            .collect()
    }
}

fn contact(code: &str, sharoushi: bool) -> ExistingContact {
    ExistingContact {
        contact_code: code.to_string(),
        sharoushi,
    }
}

/// A form of rows (office, contact, contact name).
fn form(rows: &[(&str, &str, &str)]) -> Vec<u8> {
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    let policy = IntakePolicy::shipped();
    let titles = policy.columns.titles();
    for (c, t) in titles.iter().enumerate() {
        ws.write_string(0, c as u16, *t).unwrap();
    }
    for (i, (office, contact, name)) in rows.iter().enumerate() {
        let email = format!("c{contact}@example.jp");
        let row = [
            "1",
            "JC",
            "2627600",
            "26276",
            "00",
            office,
            contact,
            &email,
            "全国設計事務所健康保険組合",
            "本部",
            "山田設計",
            name,
        ];
        for (c, v) in row.iter().enumerate() {
            ws.write_string(1 + i as u32, c as u16, *v).unwrap();
        }
    }
    wb.save_to_buffer().unwrap()
}

#[test]
fn duplicate_of_an_existing_account() {
    let accounts = Accounts(vec![("12345", contact("001", false))]);
    let r = check_bytes(
        "f.xlsx",
        &form(&[("12345", "001", "山田 太郎")]),
        &IntakePolicy::shipped(),
        &accounts,
    )
    .unwrap();
    assert_eq!(r.rows[0].status, RowStatus::Invalid);
    assert!(r.rows[0]
        .findings
        .iter()
        .any(|f| f.code == FindingCode::DuplicateExistingAccount));
}

#[test]
fn sharoushi_with_an_existing_office_contact_goes_to_review() {
    let policy = IntakePolicy::shipped();
    let f = form(&[("12345", "002", "社労士 佐藤")]);
    let with = Accounts(vec![("12345", contact("001", false))]);
    let r = check_bytes("f.xlsx", &f, &policy, &with).unwrap();
    assert_eq!(
        r.rows[0].status,
        RowStatus::Review,
        "{:?}",
        r.rows[0].findings
    );
    assert!(r.rows[0].fields.sharoushi);

    // An existing 社労士 is not the office's own contact.
    let only_sharoushi = Accounts(vec![("12345", contact("950", true))]);
    let r = check_bytes("f.xlsx", &f, &policy, &only_sharoushi).unwrap();
    assert_eq!(r.rows[0].status, RowStatus::Invalid);
    assert!(r.rows[0]
        .findings
        .iter()
        .any(|f| f.code == FindingCode::SharoushiWithoutOfficeContact));
}

#[test]
fn second_account_for_an_office_goes_to_review() {
    let accounts = Accounts(vec![("12345", contact("001", false))]);
    let r = check_bytes(
        "f.xlsx",
        &form(&[("12345", "002", "鈴木 一郎")]),
        &IntakePolicy::shipped(),
        &accounts,
    )
    .unwrap();
    assert_eq!(r.rows[0].status, RowStatus::Review);
    let text = r.to_text_ja();
    assert!(
        text.contains("2行目") && text.contains("組合で確認"),
        "{text}"
    );
}

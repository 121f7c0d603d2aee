//! Property tests: the normaliser and the form reader never panic on
//! anything, and normalising twice changes nothing.

use kxca_provisioner::intake::normalize::{self, Cell};
use kxca_provisioner::intake::{check_bytes, IntakePolicy, NoExistingAccounts};
use proptest::prelude::*;

fn form() -> Vec<u8> {
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    let policy = IntakePolicy::shipped();
    let titles = policy.columns.titles();
    for (c, t) in titles.iter().enumerate() {
        ws.write_string(0, c as u16, *t).unwrap();
    }
    let row = [
        "1",
        "JC",
        "2627600",
        "26276",
        "00",
        "12345",
        "001",
        "a@example.jp",
        "全国設計事務所健康保険組合",
        "本部",
        "山田設計",
        "山田 太郎",
        "",
        "",
        "",
    ];
    for r in 1..4u32 {
        for (c, v) in row.iter().enumerate() {
            ws.write_string(r, c as u16, *v).unwrap();
        }
    }
    wb.save_to_buffer().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn normaliser_is_total_and_idempotent(s in "\\PC{0,40}", f in any::<f64>(), i in any::<i64>(), w in 0usize..12) {
        let once = normalize::code_text(&s);
        prop_assert_eq!(normalize::code_text(&once), once.clone());
        let name = normalize::name_text(&s);
        prop_assert_eq!(normalize::name_text(&name), name.clone());
        let _ = normalize::title_key(&s);
        let _ = normalize::first_outside_jis_x0208(&s);
        for cell in [Cell::Text(s.clone()), Cell::Float(f), Cell::Int(i)] {
            if let Ok(Some(code)) = normalize::digit_code(&cell, Some(w), (1, 10)) {
                prop_assert_eq!(code.value.len(), w);
                prop_assert!(code.value.bytes().all(|b| b.is_ascii_digit()));
            }
            let _ = normalize::digit_code(&cell, None, (1, 10));
            let _ = normalize::letter_code(&cell);
        }
    }

    #[test]
    fn reader_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048), zip in any::<bool>()) {
        let policy = IntakePolicy::shipped();
        let mut b = bytes;
        if zip {
            b.splice(0..0, *b"PK\x03\x04");
        }
        let _ = check_bytes("x.xlsx", &b, &policy, &NoExistingAccounts);
    }

    #[test]
    fn reader_survives_mutated_forms(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let policy = IntakePolicy::shipped();
        let mut b = form();
        for (at, v) in edits {
            let i = at.index(b.len());
            b[i] = v;
        }
        let _ = check_bytes("x.xlsx", &b, &policy, &NoExistingAccounts);
    }
}

#[test]
fn unmutated_form_is_valid() {
    let r = check_bytes(
        "x.xlsx",
        &form(),
        &IntakePolicy::shipped(),
        &NoExistingAccounts,
    )
    .unwrap();
    assert_eq!(r.rows.len(), 3);
}

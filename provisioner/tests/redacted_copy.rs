//! The copy of a form intake keeps: the password columns are the ones the
//! policy's titles name (not fixed in code), every typed password is gone,
//! everything else of the sheet is there.

use std::io::Read;
use std::path::Path;

use kxca_provisioner::intake::{check_bytes_keeping, IntakePolicy, NoExistingAccounts};

const SHIPPED: &str = include_str!("../../policies/intake.toml");

/// Every entry of a zip, decompressed and concatenated.
fn unzip(bytes: &[u8]) -> String {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut all = String::new();
    for i in 0..z.len() {
        let mut e = z.by_index(i).unwrap();
        let mut t = String::new();
        let _ = e.read_to_string(&mut t);
        all.push_str(&t);
    }
    all
}

fn form(titles: &[&str], rows: &[[&str; 15]]) -> Vec<u8> {
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    ws.set_name("申込書").unwrap();
    ws.write_string(0, 0, "【利用申込書】").unwrap();
    for (c, t) in titles.iter().enumerate() {
        ws.write_string(2, c as u16, *t).unwrap();
    }
    for (r, row) in rows.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            if !v.is_empty() {
                ws.write_string(3 + r as u32, c as u16, *v).unwrap();
            }
        }
    }
    wb.save_to_buffer().unwrap()
}

const ROW: [&str; 15] = [
    "1",
    "JC",
    "2627600",
    "26276",
    "00",
    "12345",
    "001",
    "taro@example.co.jp",
    "全国設計事務所健康保険組合",
    "本部",
    "山田設計株式会社",
    "山田 太郎",
    "Secret-CA-1",
    "Secret-KX-2",
    "",
];

#[test]
fn the_policy_names_the_blanked_columns() {
    // The union renamed both password titles; the policy follows.
    let text = SHIPPED
        .replace(
            "password_ca = { title = \"認証局へ初回ログイン用のパスワード\" }",
            "password_ca = { title = \"CA初期パスワード\" }",
        )
        .replace(
            "password_kx = { title = \"KXサーバへ初回ログイン時のパスワード\" }",
            "password_kx = { title = \"KX初期パスワード\" }",
        );
    assert_ne!(text, SHIPPED, "the shipped titles changed");
    let policy = IntakePolicy::parse(&text, Path::new("intake.toml")).unwrap();
    let mut titles: Vec<&str> = policy.columns.titles().to_vec();
    titles[12] = "CA初期パスワード";
    titles[13] = "KX初期パスワード";
    let mut second = ROW;
    second[0] = "2";
    second[6] = "002";
    second[12] = "";
    second[13] = "Secret-KX-3";
    let bytes = form(&titles, &[ROW, second]);
    assert!(unzip(&bytes).contains("Secret-CA-1"), "the form holds them");

    let (report, copy) =
        check_bytes_keeping("form.xlsx", &bytes, &policy, &NoExistingAccounts, true).unwrap();
    assert_eq!(report.rows.len(), 2);
    let copy = copy.expect("a copy when asked for");
    assert_eq!(copy.original_format, "xlsx");
    assert_eq!(copy.blanked_cells, 3);
    let kept = unzip(&copy.bytes);
    for secret in ["Secret-CA-1", "Secret-KX-2", "Secret-KX-3"] {
        assert!(!kept.contains(secret), "{secret} kept");
    }
    for shown in [
        "CA初期パスワード",
        "KX初期パスワード",
        "taro@example.co.jp",
        "山田設計株式会社",
        "【利用申込書】",
    ] {
        assert!(kept.contains(shown), "{shown} missing from the copy");
    }

    // The copy is itself a form the checker reads the same way.
    let (again, _) = check_bytes_keeping(
        "copy.xlsx",
        &copy.bytes,
        &policy,
        &NoExistingAccounts,
        false,
    )
    .unwrap();
    assert_eq!(again.rows.len(), 2);
    assert_eq!(again.sheet, "申込書");
}

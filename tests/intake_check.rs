//! `kxca intake check` on generated spreadsheets: every rule, each way it
//! fails, the JSON shape and the exit status.

use kxca_test_support::common;
use kxca_test_support::intake as support_intake;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support_intake::*;

struct Checked {
    code: i32,
    json: Value,
    stderr: String,
}

fn kxca() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kxca"));
    c.env_remove("KXCA_HOME").env_remove("KXCA_LOG");
    c
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn check_path(path: &Path, extra: &[&str]) -> Checked {
    let out = kxca()
        .args(["intake", "check", "--json"])
        .arg(path)
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout}"));
    Checked {
        code: out.status.code().unwrap(),
        json,
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

fn check_with(bytes: &[u8], extra: &[&str]) -> Checked {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "KX利用申込兼電子証明書発行申請書（事業所用）.xlsx",
        bytes,
    );
    check_path(&p, extra)
}

fn check(bytes: &[u8]) -> Checked {
    check_with(bytes, &[])
}

/// A shipped policy with `from` replaced by `to`, written next to the form.
fn policy_with(dir: &Path, edits: &[(&str, &str)]) -> PathBuf {
    let mut text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/intake.toml"))
            .unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "policy has no {from:?}");
        text = text.replacen(from, to, 1);
    }
    write(dir, "intake.toml", text.as_bytes())
}

impl Checked {
    fn rows(&self) -> &Vec<Value> {
        self.json["rows"].as_array().expect("rows")
    }
    fn row(&self, i: usize) -> &Value {
        &self.rows()[i]
    }
    fn status(&self, i: usize) -> &str {
        self.row(i)["status"].as_str().unwrap()
    }
    fn codes(&self, i: usize) -> Vec<String> {
        self.row(i)["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["code"].as_str().unwrap().to_string())
            .collect()
    }
    fn finding(&self, i: usize, code: &str) -> &Value {
        self.row(i)["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["code"] == code)
            .unwrap_or_else(|| panic!("row {i} has no {code}: {}", self.row(i)))
    }
}

/// Checks a form of one office row altered by `f`: returns the row's codes and status.
fn one(f: impl FnOnce(&mut Vec<V>)) -> Checked {
    let mut r = row(1, "12345", "001");
    f(&mut r);
    check(&standard(&[r]))
}

fn assert_error(c: &Checked, code: &str, column: &str) {
    assert_eq!(c.code, 1, "{}", c.json);
    assert_eq!(c.status(0), "invalid", "{}", c.json);
    let f = c.finding(0, code);
    assert_eq!(f["severity"], "error");
    assert_eq!(f["column"], column);
    assert!(
        f["message_ja"].as_str().unwrap().starts_with("5行目 "),
        "{f}"
    );
}

#[test]
fn valid_form_json_shape_and_exit_0() {
    let c = check(&standard(&[
        own_row(1, "001"),
        own_row(2, "901"),
        row(3, "12345", "001"),
    ]));
    assert_eq!(c.code, 0, "{}", c.json);
    assert_eq!(
        c.json["file"],
        "KX利用申込兼電子証明書発行申請書（事業所用）.xlsx"
    );
    assert_eq!(c.json["sheet"], "申込書");
    let keys: Vec<&str> = c
        .json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["file", "rows", "sheet"]);
    assert_eq!(c.rows().len(), 3);
    for (i, r) in c.rows().iter().enumerate() {
        assert_eq!(r["row"], 5 + i as u64);
        assert_eq!(r["no"], (i + 1).to_string());
        assert_eq!(r["status"], "valid");
        assert_eq!(r["findings"], serde_json::json!([]));
        let mut k: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        k.sort();
        assert_eq!(k, ["findings", "no", "row", "status"]);
    }
}

#[test]
fn japanese_text_report_without_json() {
    let mut r = row(1, "12345", "001");
    set(&mut r, "契約単位コード", s("2627601"));
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "form.xlsx", &standard(&[r]));
    let out = kxca().args(["intake", "check"]).arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(
            "5行目 契約単位コード「2627601」が組合コード＋支部コード「2627600」と一致しません"
        ),
        "{text}"
    );
    assert!(text.contains("不備あり"), "{text}");
}

#[test]
fn code_rules() {
    let c = one(|r| set(r, "契約単位コード", s("2627601")));
    assert_error(&c, "contract_unit_mismatch", "契約単位コード");
    assert_eq!(c.finding(0, "contract_unit_mismatch")["value"], "2627601");

    let c = one(|r| {
        set(r, "組合コード", s("26277"));
        set(r, "契約単位コード", s("2627700"));
    });
    assert_error(&c, "union_code_mismatch", "組合コード");

    let c = one(|r| set(r, "組合名", s("全国建築事務所健康保険組合")));
    assert_error(&c, "union_name_mismatch", "組合名");

    let c = one(|r| {
        set(r, "支部コード", s("01"));
        set(r, "契約単位コード", s("2627601"));
    });
    assert_error(&c, "branch_unknown", "支部コード");

    let c = one(|r| set(r, "支部名", s("東京支部")));
    assert_error(&c, "branch_name_mismatch", "支部名");

    let c = one(|r| set(r, "担当センターコード", s("KC")));
    assert_error(&c, "centre_unknown", "担当センターコード");

    let c = one(|r| set(r, "担当者用コード", s("01")));
    assert_error(&c, "code_width", "担当者用コード");

    let c = one(|r| set(r, "担当者用コード", s("0A1")));
    assert_error(&c, "code_not_digits", "担当者用コード");

    let c = one(|r| set(r, "事業所コード", s("12-45")));
    assert_error(&c, "code_not_digits", "事業所コード");

    let c = one(|r| set(r, "事業所コード", s("12345678901")));
    assert_error(&c, "code_width", "事業所コード");

    let c = one(|r| set(r, "事業所コード", V::Blank));
    assert_error(&c, "office_code_required", "事業所コード");

    for title in [
        "担当センターコード",
        "契約単位コード",
        "組合コード",
        "支部コード",
        "担当者用コード",
    ] {
        let c = one(|r| set(r, title, V::Blank));
        assert_error(&c, "missing_value", title);
    }
}

#[test]
fn excel_number_quirks_in_code_columns() {
    // Integers are padded with a warning; the row stays valid.
    let c = one(|r| {
        set(r, "担当者用コード", V::N(1.0));
        set(r, "支部コード", V::N(0.0));
        set(r, "組合コード", V::N(26276.0));
        set(r, "契約単位コード", V::N(2627600.0));
        set(r, "事業所コード", V::N(12345.0));
    });
    assert_eq!(c.code, 0, "{}", c.json);
    assert_eq!(c.codes(0), ["code_padded", "code_padded"]);
    let f = c.finding(0, "code_padded");
    assert_eq!(f["severity"], "warning");
    assert_eq!(f["column"], "支部コード");
    assert_eq!(f["value"], "0");
    assert!(f["message_ja"].as_str().unwrap().contains("「00」"), "{f}");

    assert_error(
        &one(|r| set(r, "担当者用コード", V::N(1.5))),
        "code_fraction",
        "担当者用コード",
    );
    assert_error(
        &one(|r| set(r, "事業所コード", V::Date(2024, 4, 1))),
        "code_date",
        "事業所コード",
    );
    assert_error(
        &one(|r| set(r, "事業所コード", s("1.2345E+04"))),
        "code_e_notation",
        "事業所コード",
    );
    assert_error(
        &one(|r| set(r, "事業所コード", V::N(1.2345e17))),
        "code_e_notation",
        "事業所コード",
    );
    let c = one(|r| set(r, "組合コード", V::Err("#DIV/0!")));
    assert_error(&c, "code_formula_error", "組合コード");
    assert_eq!(c.finding(0, "code_formula_error")["value"], "#DIV/0!");
}

#[test]
fn full_width_and_invisible_characters_are_normalised() {
    let c = one(|r| {
        set(r, "担当センターコード", s("ＪＣ"));
        set(r, "契約単位コード", s("２６２７６００"));
        set(r, "組合コード", s("\u{FEFF}26276\u{200B}"));
        set(r, "支部コード", s("\u{3000}00\u{00A0}"));
        set(r, "事業所コード", s(" １２３４５ "));
        set(r, "担当者用コード", s("００１"));
        set(
            r,
            "メールアドレス1",
            s("ｔａｒｏ＠ｅｘａｍｐｌｅ．ｃｏ．ｊｐ"),
        );
        set(r, "組合名", s("全国設計事務所健康保険組合\u{3000}"));
        set(r, "担当者名", s("  山田　　太郎 "));
    });
    assert_eq!(c.code, 0, "{}", c.json);
    assert_eq!(c.status(0), "valid");
}

#[test]
fn header_found_anywhere_with_extra_columns_reordered_and_merged_titles() {
    let mut order: Vec<&str> = TITLES.to_vec();
    order.reverse();
    order.insert(3, "備考");
    let mut sh = form_sheet("Sheet1", 9, 3, &order, &[row(1, "12345", "001")]);
    // A blank row inside the table and a second row after it.
    let extra = form_sheet("x", 11, 3, &order, &[row(2, "12346", "001")]);
    sh.cells
        .extend(extra.cells.into_iter().filter(|(r, _, _)| *r == 12));
    // Titles merged over two rows (value in the top-left cell only).
    let merged_col = sh
        .cells
        .iter()
        .position(|(r, _, v)| *r == 9 && matches!(v, V::S(t) if t == "担当者名"))
        .unwrap();
    let (_, c, _) = sh.cells.remove(merged_col);
    sh.merges.push((8, c, 9, c, "担当者名".into()));
    let notes = {
        let mut n = Sheet::new("記入例");
        n.put(0, 0, s("背景色が白の列に入力してください。"));
        n
    };
    let c = check(&xlsx(&[notes, sh]));
    assert_eq!(c.code, 0, "{}", c.json);
    assert_eq!(c.json["sheet"], "Sheet1");
    let rows: Vec<u64> = c
        .rows()
        .iter()
        .map(|r| r["row"].as_u64().unwrap())
        .collect();
    assert_eq!(rows, [11, 13]);
}

#[test]
fn title_rows_without_titles_split_over_two_header_rows() {
    // Password titles sit one row below the others (a two-row header).
    let mut sh = form_sheet("申込書", 3, 0, &TITLES, &[row(1, "12345", "001")]);
    for (r, c, v) in sh.cells.iter_mut() {
        if *r >= 4 {
            *r += 1;
        }
        if *r == 3 && (*c == 12 || *c == 13) {
            *r = 4;
        }
        let _ = v;
    }
    sh.put(3, 12, s("初回パスワード"));
    let c = check(&xlsx(&[sh]));
    assert_eq!(c.code, 0, "{}", c.json);
    assert_eq!(c.row(0)["row"], 6);
}

#[test]
fn not_a_form_exit_2_with_missing_titles() {
    let mut order: Vec<&str> = TITLES.to_vec();
    order.retain(|t| *t != "担当者用コード" && *t != "支部名");
    let c = check(&xlsx(&[form_sheet("申込書", 3, 0, &order, &[])]));
    assert_eq!(c.code, 2, "{}", c.json);
    assert_eq!(c.json["error"], "not_a_form");
    assert_eq!(
        c.json["missing_titles"],
        serde_json::json!(["担当者用コード", "支部名"])
    );
    assert!(c.json["message_ja"]
        .as_str()
        .unwrap()
        .contains("利用申込書ではありません"));
    assert!(c.stderr.contains("not an application form"), "{}", c.stderr);

    let mut sh = Sheet::new("Sheet1");
    sh.put(0, 0, s("見積書"));
    let c = check(&xlsx(&[sh]));
    assert_eq!(c.code, 2);
    assert_eq!(c.json["missing_titles"].as_array().unwrap().len(), 15);

    // A header and nothing below it.
    let c = check(&standard(&[]));
    assert_eq!(c.code, 2);
    assert_eq!(c.json["error"], "no_rows");
}

#[test]
fn names() {
    assert_error(
        &one(|r| set(r, "担当者名", V::Blank)),
        "missing_value",
        "担当者名",
    );
    assert_error(
        &one(|r| set(r, "事業所名", V::Blank)),
        "missing_value",
        "事業所名",
    );
    let long = "あ".repeat(26);
    assert_error(
        &one(|r| set(r, "事業所名", s(&long))),
        "name_too_long",
        "事業所名",
    );
    let ok = "あ".repeat(25);
    assert_eq!(one(|r| set(r, "事業所名", s(&ok))).code, 0);

    let c = one(|r| set(r, "担当者名", s("髙橋 一郎")));
    assert_eq!(c.code, 0, "{}", c.json);
    let f = c.finding(0, "name_not_jis_x0208");
    assert_eq!(f["severity"], "warning");
    assert_eq!(f["value"], "髙橋 一郎");
    let c = one(|r| set(r, "事業所名", s("㈱山田設計")));
    assert_eq!(c.finding(0, "name_not_jis_x0208")["column"], "事業所名");
    let c = one(|r| set(r, "担当者名", s("ﾔﾏﾀﾞ ﾀﾛｳ")));
    assert!(c.codes(0).contains(&"name_not_jis_x0208".to_string()));
}

#[test]
fn email_rules() {
    assert_error(
        &one(|r| set(r, "メールアドレス1", V::Blank)),
        "missing_value",
        "メールアドレス1",
    );
    assert_error(
        &one(|r| set(r, "メールアドレス1", s("taro..yamada@example.jp"))),
        "email_consecutive_dots",
        "メールアドレス1",
    );
    assert_error(
        &one(|r| set(r, "メールアドレス1", s(".taro@example.jp"))),
        "email_dot_at_edge",
        "メールアドレス1",
    );
    assert_error(
        &one(|r| set(r, "メールアドレス1", s("taro.@example.jp"))),
        "email_dot_at_edge",
        "メールアドレス1",
    );
    assert_error(
        &one(|r| set(r, "メールアドレス1", s("山田@example.jp"))),
        "email_non_ascii",
        "メールアドレス1",
    );
    assert_error(
        &one(|r| set(r, "メールアドレス1", s("taro.example.jp"))),
        "email_invalid",
        "メールアドレス1",
    );
    assert_error(
        &one(|r| set(r, "メールアドレス2", s("taro@@example.jp"))),
        "email_invalid",
        "メールアドレス2",
    );

    let c = one(|r| set(r, "メールアドレス1", s("taro@docomo.ne.jp")));
    assert_eq!(c.code, 0, "{}", c.json);
    assert_eq!(c.finding(0, "email_legacy_carrier")["severity"], "warning");

    let c = one(|r| {
        set(r, "メールアドレス1", s("taro@example.jp"));
        set(r, "メールアドレス2", s("Taro@Example.jp"));
    });
    assert_eq!(c.code, 0);
    assert_eq!(
        c.finding(0, "email2_same_as_email1")["column"],
        "メールアドレス2"
    );
}

#[test]
fn passwords_are_ignored_and_never_echoed() {
    let secret_ca = "Zq9secretCA77";
    let secret_kx = "Wv3secretKX55";
    let mut r = row(1, "12345", "001");
    set(&mut r, "認証局へ初回ログイン用のパスワード", s(secret_ca));
    set(&mut r, "KXサーバへ初回ログイン時のパスワード", s(secret_kx));
    let form = standard(&[r]);
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "f.xlsx", &form);
    for args in [vec!["--json"], vec![], vec!["-vv", "--json"]] {
        let out = kxca()
            .args(["intake", "check"])
            .arg(&p)
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !all.contains(secret_ca) && !all.contains(secret_kx),
            "{all}"
        );
    }
    // A policy that rejects typed passwords.
    let pol = policy_with(
        dir.path(),
        &[("handling = \"ignore\"", "handling = \"reject\"")],
    );
    let c = check_path(&p, &["--policy", pol.to_str().unwrap()]);
    assert_eq!(c.code, 1);
    let f = c.finding(0, "password_not_allowed");
    assert_eq!(f["value"], "");
    assert!(!c.json.to_string().contains(secret_ca));
}

#[test]
fn duplicates_one_account_per_office_and_sharoushi() {
    // The same contact twice.
    let c = check(&standard(&[row(1, "12345", "001"), row(2, "12345", "001")]));
    assert_eq!(c.code, 1);
    assert_eq!(c.status(0), "valid");
    assert_eq!(c.status(1), "invalid");
    assert!(c.finding(1, "duplicate_in_form")["message_ja"]
        .as_str()
        .unwrap()
        .contains("5行目と同じ"));

    // Two contacts for one office: review.
    let c = check(&standard(&[row(1, "12345", "001"), row(2, "12345", "002")]));
    assert_eq!(c.code, 1);
    assert_eq!(c.status(0), "review");
    assert_eq!(
        c.finding(1, "multiple_accounts_per_office")["severity"],
        "review"
    );

    // ... unless the office is on the exception list.
    let dir = tempfile::tempdir().unwrap();
    let pol = policy_with(
        dir.path(),
        &[(
            "multiple_accounts = []",
            "multiple_accounts = [\"26276-00-12345\"]",
        )],
    );
    let p = write(
        dir.path(),
        "f.xlsx",
        &standard(&[row(1, "12345", "001"), row(2, "12345", "002")]),
    );
    let c = check_path(&p, &["--policy", pol.to_str().unwrap()]);
    assert_eq!(c.code, 0, "{}", c.json);

    // A 社労士 alone (by name, by contact-code range) is invalid.
    let mut sr = row(1, "12345", "002");
    set(&mut sr, "担当者名", s("社会保険労務士 佐藤花子"));
    let c = check(&standard(&[sr.clone()]));
    assert_eq!(c.code, 1);
    assert_eq!(
        c.finding(0, "sharoushi_without_office_contact")["severity"],
        "error"
    );
    let c = check(&standard(&[row(1, "12345", "950")]));
    assert_eq!(c.status(0), "invalid");
    assert!(c
        .codes(0)
        .contains(&"sharoushi_without_office_contact".to_string()));
    let mut sr2 = row(1, "12345", "003");
    set(&mut sr2, "事業所名", s("佐藤社労士事務所"));
    assert_eq!(check(&standard(&[sr2])).status(0), "invalid");

    // With the office's own contact in the same form: valid on the
    // exception list, review otherwise; a contact of another office does not count.
    let c = check(&standard(&[row(1, "12345", "001"), sr.clone()]));
    assert_eq!(
        (c.status(0), c.status(1)),
        ("review", "review"),
        "{}",
        c.json
    );
    let c = check(&standard(&[row(1, "99999", "001"), sr.clone()]));
    assert_eq!(c.status(1), "invalid");
    let p = write(
        dir.path(),
        "g.xlsx",
        &standard(&[row(1, "12345", "001"), sr]),
    );
    let c = check_path(&p, &["--policy", pol.to_str().unwrap()]);
    assert_eq!(c.code, 0, "{}", c.json);

    // The union's own 901 row is not a 社労士 row, and two own rows are fine.
    let c = check(&standard(&[own_row(1, "001"), own_row(2, "901")]));
    assert_eq!(c.code, 0, "{}", c.json);
}

#[test]
fn too_many_rows_corrupt_and_unknown_files_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<Vec<V>> = (0..30)
        .map(|i| row(i + 1, &format!("{}", 10000 + i), "001"))
        .collect();
    let p = write(dir.path(), "big.xlsx", &standard(&rows));
    let pol = policy_with(dir.path(), &[("max_rows = 10_000", "max_rows = 20")]);
    let c = check_path(&p, &["--policy", pol.to_str().unwrap()]);
    assert_eq!(c.code, 2);
    assert_eq!(c.json["error"], "too_many_rows");
    assert!(c.json["message_ja"].as_str().unwrap().contains("上限20行"));

    let mut truncated = standard(&[row(1, "12345", "001")]);
    truncated.truncate(truncated.len() / 2);
    let c = check(&truncated);
    assert_eq!(c.code, 2);
    assert_eq!(c.json["error"], "corrupt");

    let c = check(b"PK\x03\x04 not really a zip at all");
    assert_eq!((c.code, c.json["error"].as_str()), (2, Some("corrupt")));
    let c = check("No.,担当センターコード\n".as_bytes());
    assert_eq!(
        (c.code, c.json["error"].as_str()),
        (2, Some("unknown_format"))
    );
    let mut ole = vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
    ole.extend([0u8; 600]);
    let c = check(&ole);
    assert_eq!((c.code, c.json["error"].as_str()), (2, Some("corrupt")));

    let big = vec![b'x'; 100];
    let pol = policy_with(
        dir.path(),
        &[("max_file_bytes = 10_485_760", "max_file_bytes = 50")],
    );
    let p = write(dir.path(), "x.xlsx", &big);
    let c = check_path(&p, &["--policy", pol.to_str().unwrap()]);
    assert_eq!((c.code, c.json["error"].as_str()), (2, Some("too_large")));
}

#[test]
fn zip_bomb_disguised_as_xlsx_is_rejected() {
    use std::io::Write;
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        z.start_file("xl/workbook.xml", opts).unwrap();
        z.write_all(b"<workbook/>").unwrap();
        z.start_file("xl/worksheets/sheet1.xml", opts).unwrap();
        let zeros = vec![b' '; 1 << 20];
        for _ in 0..200 {
            z.write_all(&zeros).unwrap();
        }
        z.finish().unwrap();
    }
    let bytes = buf.into_inner();
    assert!(
        bytes.len() < 1 << 20,
        "the bomb should be small: {}",
        bytes.len()
    );
    let c = check(&bytes);
    assert_eq!(c.code, 2, "{}", c.json);
    assert_eq!(c.json["error"], "too_large");
}

#[test]
fn office_register_from_csv() {
    let ca = common::TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let csv = write(
        dir.path(),
        "offices.csv",
        "組合コード,支部コード,事業所コード,事業所名\n26276,00,12345,山田設計株式会社\n".as_bytes(),
    );
    let out = ca.kxca(&["offices", "import", csv.to_str().unwrap()]);
    common::assert_ok(&out, "offices import");
    let out = ca.kxca(&["offices", "list", "--json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["office_code"], "12345");

    // A bad CSV names line and column and changes nothing.
    let bad = write(
        dir.path(),
        "bad.csv",
        "組合コード,支部コード,事業所コード,事業所名\n26276,00,55555,A\n26276,00,x1,B\n".as_bytes(),
    );
    let out = ca.kxca(&["offices", "import", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 3") && err.contains("事業所コード"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let out = ca.kxca(&["offices", "list", "--json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);

    // The home's policy turns the register on.
    let pol = ca.path("policies/intake.toml");
    let text = std::fs::read_to_string(&pol)
        .unwrap()
        .replace("use_register = false", "use_register = true");
    std::fs::write(&pol, text).unwrap();
    let form = write(
        dir.path(),
        "f.xlsx",
        &standard(&[row(1, "12345", "001"), row(2, "54321", "001")]),
    );
    let out = ca.kxca(&["intake", "check", "--json", form.to_str().unwrap()]);
    let c: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{c}");
    assert_eq!(c["rows"][0]["status"], "valid");
    assert_eq!(c["rows"][1]["findings"][0]["code"], "office_not_registered");
}

/// .xls and .ods made once by LibreOffice (provisioner/tests/fixtures/make.sh).
#[test]
fn xls_and_ods_fixtures() {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/provisioner/tests/fixtures"
    ));
    for ext in ["xls", "ods"] {
        let p = dir.join(format!("form.{ext}"));
        let c = check_path(&p, &[]);
        assert_eq!(c.code, 1, "{ext}: {}", c.json);
        assert_eq!(c.json["sheet"], "申込書", "{ext}");
        let rows = c.rows();
        assert_eq!(rows.len(), 4, "{ext}: {}", c.json);
        // Row 1: contact typed as the number 1 → padded, valid.
        assert_eq!(rows[0]["status"], "valid", "{ext}: {}", c.json);
        assert_eq!(c.codes(0), ["code_padded"], "{ext}");
        // Row 2: full-width codes → valid.
        assert_eq!(rows[1]["status"], "valid", "{ext}: {}", c.json);
        // Row 3: contract unit mismatch.
        assert!(
            c.codes(2).contains(&"contract_unit_mismatch".to_string()),
            "{ext}"
        );
        // Row 4: a date in the office code.
        assert!(
            c.codes(3).contains(&"code_date".to_string()),
            "{ext}: {}",
            c.json
        );
    }
}

#[test]
fn huge_sheets_stop_at_the_shipped_row_limit() {
    // Just over the limit (counted after the header) and far over it
    // (reading stops early); both rejected with the limit named.
    for n in [10_001u32, 12_000] {
        let rows: Vec<Vec<V>> = (0..n)
            .map(|i| row(i + 1, &format!("{}", 100_000 + i), "001"))
            .collect();
        let c = check(&standard(&rows));
        assert_eq!(c.code, 2, "{n} rows");
        assert_eq!(c.json["error"], "too_many_rows");
        assert!(
            c.json["message_ja"]
                .as_str()
                .unwrap()
                .contains("上限10000行"),
            "{}",
            c.json
        );
    }
}

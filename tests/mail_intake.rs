//! Mail intake through the real `kxca` binary: signup mails dropped into a
//! Maildir (as an MTA delivers them), `kxca intake fetch`, then the store
//! as `kxca applications` and `kxca outbox` show it. The mails are parsed
//! back by mail-parser as an independent reader of what was built.

use kxca_test_support::common;
use kxca_test_support::intake as support_intake;

use common::TestCa;

/// A real form: row 1 valid, row 2 with a contract unit that does not
/// match union + branch code.
fn form() -> Vec<u8> {
    let mut bad = support_intake::row(2, "12346", "001");
    support_intake::set(&mut bad, "契約単位コード", support_intake::s("2627601"));
    support_intake::standard(&[support_intake::row(1, "12345", "001"), bad])
}

/// A spreadsheet that is not the application form.
fn not_a_form() -> Vec<u8> {
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    ws.write_string(0, 0, "請求書").unwrap();
    wb.save_to_buffer().unwrap()
}

/// ISO-2022-JP subject and body; the form's name in RFC 2231 continuations
/// split inside a character, as Thunderbird writes them.
fn signup_mail(message_id: &str, form: &[u8]) -> Vec<u8> {
    let (body, _, _) = encoding_rs::ISO_2022_JP.encode("利用申込書を送付します。\r\n");
    let mut m = Vec::new();
    m.extend_from_slice(
        format!(
            "From: =?ISO-2022-JP?B?GyRCOzY2SDBcGyhC?= <office1@example.jp>\r\n\
To: signup@union.example\r\n\
Subject: =?ISO-2022-JP?B?GyRCTXhNUT9cOf4bKEI=?=\r\n\
Message-ID: <{message_id}>\r\n\
Date: Thu, 26 Nov 2026 10:00:00 +0900\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n\
--XX\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        )
        .as_bytes(),
    );
    m.extend_from_slice(&body);
    // KX利用申込兼電子証明書発行申請書（事業所用）.xlsx, UTF-8, split inside 利 (E5 88 A9).
    let name = "KX利用申込兼電子証明書発行申請書（事業所用）.xlsx";
    let pct: String = name.bytes().map(|b| format!("%{b:02X}")).collect();
    let (a, b) = pct.split_at(3 * 3 + 2 * 3 + 3); // "KX" + first byte of 利
    m.extend_from_slice(
        format!(
            "\r\n--XX\r\nContent-Type: application/vnd.openxmlformats-officedocument.spreadsheetml.sheet\r\n\
Content-Disposition: attachment;\r\n filename*0*=UTF-8''{a};\r\n filename*1*={b}\r\n\
Content-Transfer-Encoding: base64\r\n\r\n{}\r\n\
--XX\r\nContent-Type: image/jpeg; name=\"photo.jpg\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--XX--\r\n",
            common::mime_base64(form),
            common::mime_base64(b"\xFF\xD8\xFF\xE0 not a form")
        )
        .as_bytes(),
    );
    m
}

fn no_form_mail(message_id: &str) -> Vec<u8> {
    format!(
        "From: office2@example.jp\r\nTo: signup@union.example\r\nSubject: question\r\n\
Message-ID: <{message_id}>\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nhello\r\n"
    )
    .into_bytes()
}

fn deliver(maildir: &std::path::Path, name: &str, bytes: &[u8]) {
    std::fs::write(maildir.join("new").join(name), bytes).unwrap();
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "kxca failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn maildir_intake_records_applications_and_queues_japanese_replies() {
    let ca = TestCa::new();
    let maildir = ca.dir.path().join("Maildir");
    for d in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(d)).unwrap();
    }
    let config = ca.path("kxca.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("\n[mail]\nmaildir = {:?}\n", maildir));
    std::fs::write(&config, text).unwrap();

    let form = form();
    deliver(
        &maildir,
        "1000.a.host",
        &signup_mail("m1@example.jp", &form),
    );
    deliver(&maildir, "1001.b.host", &no_form_mail("m2@example.jp"));
    // The same mail again, and the same file in a new mail.
    deliver(
        &maildir,
        "1002.c.host",
        &signup_mail("m1@example.jp", &form),
    );
    deliver(
        &maildir,
        "1003.d.host",
        &signup_mail("m3@example.jp", &form),
    );
    deliver(
        &maildir,
        "1004.e.host",
        &signup_mail("m4@example.jp", &not_a_form()),
    );

    let fetched = json(&ca.kxca(&["intake", "fetch", "--json"]));
    assert_eq!(fetched["fetch"]["processed"], 4, "{fetched}");
    assert_eq!(fetched["fetch"]["applications"], 1, "{fetched}");
    assert_eq!(fetched["fetch"]["duplicate_mails"], 1, "{fetched}");
    assert_eq!(fetched["fetch"]["duplicate_files"], 1, "{fetched}");
    assert_eq!(std::fs::read_dir(maildir.join("new")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(maildir.join("cur")).unwrap().count(), 5);

    let apps = json(&ca.kxca(&["applications", "list", "--json"]));
    let apps = apps.as_array().unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(
        apps[0]["file_name"],
        "KX利用申込兼電子証明書発行申請書（事業所用）.xlsx"
    );
    assert_eq!(apps[0]["sender"], "office1@example.jp");
    assert_eq!(apps[0]["message_id"], "m1@example.jp");
    let expected_hash = {
        use sha2_check::hash;
        hash(&form)
    };
    assert_eq!(apps[0]["sha256"], expected_hash);
    assert_eq!(apps[0]["rows_valid"], 1, "{apps:?}");
    assert_eq!(apps[0]["rows_invalid"], 1, "{apps:?}");
    assert_eq!(apps[0]["status"], "pending_review");

    let outbox = json(&ca.kxca(&["outbox", "list", "--json"]));
    let outbox = outbox.as_array().unwrap();
    // Replies to m1, m2, m3 and m4; none to the duplicate mail.
    assert_eq!(outbox.len(), 4, "{outbox:?}");
    assert!(outbox.iter().all(|m| m["state"] == "queued"));

    // A second pass finds nothing new.
    let again = json(&ca.kxca(&["intake", "fetch", "--json"]));
    assert_eq!(again["fetch"]["processed"], 0);
    assert_eq!(
        json(&ca.kxca(&["outbox", "list", "--json"]))
            .as_array()
            .unwrap()
            .len(),
        4
    );

    // The reply bodies, read from the store.
    let db = rusqlite::Connection::open(ca.path("kxca.db")).unwrap();
    let body = |to: &str| -> String {
        db.query_row(
            "SELECT body FROM outbox WHERE to_addr = ?1 ORDER BY id LIMIT 1",
            [to],
            |r| r.get(0),
        )
        .unwrap()
    };
    let first = body("office1@example.jp");
    assert!(
        first.contains("KX利用申込兼電子証明書発行申請書（事業所用）.xlsx"),
        "{first}"
    );
    assert!(first.contains("受付番号 1"), "{first}");
    assert!(first.contains("photo.jpg"), "{first}");
    assert!(
        first.contains("・2行目") || first.contains("行目（No.1）"),
        "{first}"
    );
    assert!(first.contains("2627601"), "{first}");
    let m4: String = db
        .query_row(
            "SELECT body FROM outbox WHERE in_reply_to = 'm4@example.jp'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(m4.contains("利用申込書ではない"), "{m4}");
    assert!(body("office2@example.jp").contains("添付されていませんでした"));
    let dup: String = db
        .query_row(
            "SELECT body FROM outbox WHERE in_reply_to = 'm3@example.jp'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(dup.contains("既に受け付けております"), "{dup}");
    let in_reply_to: String = db
        .query_row(
            "SELECT in_reply_to FROM outbox ORDER BY id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(in_reply_to, "m1@example.jp");
}

#[test]
fn mime_bomb_is_rejected_and_recorded() {
    let ca = TestCa::new();
    let maildir = ca.dir.path().join("Maildir");
    for d in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(d)).unwrap();
    }
    let config = ca.path("kxca.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("\n[mail]\nmaildir = {:?}\n", maildir));
    std::fs::write(&config, text).unwrap();
    let mut m = String::from("From: a@example.jp\r\nMessage-ID: <bomb@x>\r\n");
    for i in 0..500 {
        m.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
        ));
    }
    deliver(&maildir, "2000.a.host", m.as_bytes());
    let fetched = json(&ca.kxca(&["intake", "fetch", "--json"]));
    assert_eq!(fetched["fetch"]["rejected"], 1, "{fetched}");
    // Answered in Japanese (issue 10), and moved out of new/.
    let outbox = json(&ca.kxca(&["outbox", "list", "--json"]));
    let outbox = outbox.as_array().unwrap();
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    assert_eq!(outbox[0]["kind"], "intake-rejected", "{outbox:?}");
    assert_eq!(outbox[0]["to"], "a@example.jp", "{outbox:?}");
    assert!(maildir.join(".kxca-rejected/cur/2000.a.host:2,S").exists());
    assert_eq!(std::fs::read_dir(maildir.join("new")).unwrap().count(), 0);
}

/// SHA-256 through the openssl CLI: an implementation independent of kxca's.
mod sha2_check {
    pub fn hash(bytes: &[u8]) -> String {
        use std::io::Write;
        let mut child = std::process::Command::new("openssl")
            .args(["dgst", "-sha256", "-r"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("openssl");
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    }
}

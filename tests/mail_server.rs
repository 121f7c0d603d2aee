//! Mail intake against a real Postfix + Dovecot (tests/services/mail.sh):
//! signup mails delivered over SMTP, `kxca intake fetch` over IMAPS and
//! IMAP+STARTTLS, replies submitted to Postfix with STARTTLS + AUTH and
//! read back from the applicant's mailbox by Python's imaplib and email.

use kxca_test_support::common;
use kxca_test_support::intake as support_intake;
use kxca_test_support::mailstack as support_mailstack;

use common::TestCa;
use support_intake::{row, s, set, standard, APPLICANT, SIGNUP};

const NAME: &str = "KX利用申込兼電子証明書発行申請書（事業所用）.xlsx";

fn form(office: &str) -> Vec<u8> {
    let mut bad = row(2, office, "002");
    set(&mut bad, "契約単位コード", s("2627601"));
    standard(&[row(1, office, "001"), bad])
}

fn head(id: &str, content_type: &str) -> String {
    format!(
        "From: =?ISO-2022-JP?B?GyRCOzY2SDBcGyhC?= <{APPLICANT}>\r\nTo: {SIGNUP}\r\n\
Subject: =?ISO-2022-JP?B?GyRCTXhNUT9cOf4bKEI=?=\r\nMessage-ID: <{id}>\r\n\
Date: Thu, 26 Nov 2026 10:00:00 +0900\r\nMIME-Version: 1.0\r\nContent-Type: {content_type}\r\n\r\n"
    )
}

fn iso_text() -> String {
    let (body, _, _) = encoding_rs::ISO_2022_JP.encode("利用申込書を送付します。\r\n");
    format!(
        "Content-Type: text/plain; charset=ISO-2022-JP\r\nContent-Transfer-Encoding: 7bit\r\n\r\n{}\r\n",
        std::str::from_utf8(&body).unwrap()
    )
}

/// The form's name as Thunderbird writes it: RFC 2231 continuations split
/// inside 利.
fn rfc2231_part(form: &[u8]) -> String {
    let pct: String = NAME.bytes().map(|b| format!("%{b:02X}")).collect();
    let (a, b) = pct.split_at(3 * 3);
    format!(
        "Content-Type: application/vnd.openxmlformats-officedocument.spreadsheetml.sheet\r\n\
Content-Disposition: attachment;\r\n filename*0*=UTF-8''{a};\r\n filename*1*={b}\r\n\
Content-Transfer-Encoding: base64\r\n\r\n{}\r\n",
        common::mime_base64(form)
    )
}

/// The name as Outlook writes it: RFC 2047 encoded words, split inside 利.
fn rfc2047_part(form: &[u8]) -> String {
    use base64::Engine;
    let e = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let bytes = NAME.as_bytes();
    let name = format!(
        "=?UTF-8?B?{}?=\r\n =?UTF-8?B?{}?=",
        e(&bytes[..4]),
        e(&bytes[4..])
    );
    format!(
        "Content-Type: application/vnd.ms-excel; name=\"{name}\"\r\n\
Content-Disposition: attachment; filename=\"{name}\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\n{}\r\n",
        common::mime_base64(form)
    )
}

fn multipart(id: &str, parts: &[String]) -> Vec<u8> {
    let mut m = head(id, "multipart/mixed; boundary=\"XX\"");
    for p in parts {
        m.push_str("--XX\r\n");
        m.push_str(p);
    }
    m.push_str("--XX--\r\n");
    m.into_bytes()
}

fn photo() -> String {
    format!(
        "Content-Type: image/jpeg; name=\"photo.jpg\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
        common::mime_base64(b"\xFF\xD8\xFF\xE0 not a form")
    )
}

fn forwarded(id: &str, inner_id: &str, form: &[u8]) -> Vec<u8> {
    let inner = String::from_utf8(multipart(inner_id, &[iso_text(), rfc2231_part(form)])).unwrap();
    multipart(
        id,
        &[
            iso_text(),
            format!("Content-Type: message/rfc822\r\n\r\n{inner}\r\n"),
        ],
    )
}

fn no_form(id: &str) -> Vec<u8> {
    let (body, _, _) = encoding_rs::ISO_2022_JP.encode("申込書はどこから入手できますか。\r\n");
    let mut m = head(id, "text/plain; charset=ISO-2022-JP").into_bytes();
    m.extend_from_slice(&body);
    m
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "kxca failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn configure(ca: &TestCa, stack: &support_mailstack::MailStack, tls: &str) {
    let config = ca.path("kxca.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    if let Some(i) = text.find("\n[mail]") {
        text.truncate(i);
    }
    text.push_str(&stack.config(&ca.home, tls));
    std::fs::write(&config, text).unwrap();
}

fn outbox(ca: &TestCa) -> Vec<serde_json::Value> {
    json(&ca.kxca(&["outbox", "list", "--json"]))
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn signup_mails_over_imap_get_japanese_replies_over_smtp() {
    let Some(stack) = support_mailstack::shared() else {
        return;
    };
    let ca = TestCa::new();
    let before = stack.count(APPLICANT, "INBOX");

    // First batch, read over IMAP + STARTTLS, replies queued only.
    let (f1, f2, f3, f4, f5) = (
        form("10001"),
        form("10002"),
        form("10003"),
        form("10004"),
        form("10005"),
    );
    let processed_before = stack.count(SIGNUP, "kxca-processed");
    let first: Vec<Vec<u8>> = vec![
        multipart("m1@office.test", &[iso_text(), rfc2231_part(&f1), photo()]),
        multipart("m2@office.test", &[iso_text(), rfc2047_part(&f2)]),
        forwarded("m3@office.test", "inner3@office.test", &f3),
    ];
    for m in &first {
        stack.send(APPLICANT, SIGNUP, m);
    }
    assert_eq!(stack.wait_for(SIGNUP, "INBOX", 3), 3);
    configure(&ca, &stack, "starttls");
    let fetched = json(&ca.kxca(&["intake", "fetch", "--json", "--no-send"]));
    assert_eq!(fetched["fetch"]["processed"], 3, "{fetched}");
    assert_eq!(fetched["fetch"]["applications"], 3, "{fetched}");

    // Second batch over IMAPS: two forms in one mail, no form, the same
    // mail again, the same file in a new mail.
    let second: Vec<Vec<u8>> = vec![
        multipart(
            "m4@office.test",
            &[iso_text(), rfc2231_part(&f4), rfc2047_part(&f5)],
        ),
        no_form("m5@office.test"),
        first[0].clone(),
        multipart("m6@office.test", &[iso_text(), rfc2231_part(&f1)]),
    ];
    for m in &second {
        stack.send(APPLICANT, SIGNUP, m);
    }
    assert_eq!(stack.wait_for(SIGNUP, "INBOX", 4), 4);
    configure(&ca, &stack, "implicit");
    let fetched = json(&ca.kxca(&["intake", "fetch", "--json"]));
    assert_eq!(fetched["fetch"]["processed"], 3, "{fetched}");
    assert_eq!(fetched["fetch"]["applications"], 2, "{fetched}");
    assert_eq!(fetched["fetch"]["duplicate_mails"], 1, "{fetched}");
    assert_eq!(fetched["fetch"]["duplicate_files"], 1, "{fetched}");
    assert_eq!(fetched["send"]["sent"], 6, "{fetched}");

    // Every message moved out of the inbox, once.
    assert_eq!(stack.count(SIGNUP, "INBOX"), 0);
    assert_eq!(stack.count(SIGNUP, "kxca-processed"), processed_before + 7);

    let apps = json(&ca.kxca(&["applications", "list", "--json"]));
    let apps = apps.as_array().unwrap();
    assert_eq!(apps.len(), 5, "{apps:?}");
    for a in apps {
        assert_eq!(a["file_name"], NAME, "{a}");
        assert_eq!(a["sender"], APPLICANT);
        assert_eq!(a["rows_invalid"], 1, "{a}");
    }
    let mut ids: Vec<&str> = apps
        .iter()
        .map(|a| a["message_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    // The forwarded form is recorded under the mail that brought it or the
    // forwarded message's own ID.
    assert!(
        ids == [
            "inner3@office.test",
            "m1@office.test",
            "m2@office.test",
            "m4@office.test",
            "m4@office.test"
        ] || ids
            == [
                "m1@office.test",
                "m2@office.test",
                "m3@office.test",
                "m4@office.test",
                "m4@office.test"
            ],
        "{ids:?}"
    );

    // Replies, read back from the applicant's mailbox by another client.
    assert_eq!(stack.wait_for(APPLICANT, "INBOX", before + 6), before + 6);
    let replies: Vec<serde_json::Value> = stack
        .read(APPLICANT, "INBOX")
        .into_iter()
        .filter(|m| m["in_reply_to"].as_str().unwrap().contains("@office.test"))
        .filter(|m| {
            ["m1@", "m2@", "m3@", "m4@", "m5@", "m6@"]
                .iter()
                .any(|p| m["in_reply_to"].as_str().unwrap().contains(p))
        })
        .collect();
    let mut to: Vec<String> = replies
        .iter()
        .map(|m| m["in_reply_to"].as_str().unwrap().to_string())
        .collect();
    to.sort();
    assert_eq!(
        to,
        [
            "<m1@office.test>",
            "<m2@office.test>",
            "<m3@office.test>",
            "<m4@office.test>",
            "<m5@office.test>",
            "<m6@office.test>"
        ],
        "each reply exactly once"
    );
    let reply = |id: &str| -> &serde_json::Value {
        replies
            .iter()
            .find(|m| m["in_reply_to"] == format!("<{id}>"))
            .unwrap()
    };
    let r1 = reply("m1@office.test");
    assert!(r1["from"].as_str().unwrap().contains(SIGNUP), "{r1}");
    assert!(!r1["date"].as_str().unwrap().is_empty());
    let body = r1["body"].as_str().unwrap();
    assert!(body.contains(NAME), "{body}");
    assert!(body.contains("photo.jpg"), "{body}");
    assert!(body.contains("2627601"), "{body}");
    assert!(reply("m5@office.test")["body"]
        .as_str()
        .unwrap()
        .contains("添付されていませんでした"));
    assert!(reply("m6@office.test")["body"]
        .as_str()
        .unwrap()
        .contains("既に受け付けております"));
    assert!(outbox(&ca).iter().all(|m| m["state"] == "sent"));

    // Nothing new on another pass, nothing sent twice.
    let again = json(&ca.kxca(&["intake", "fetch", "--json"]));
    assert_eq!(again["fetch"]["processed"], 0, "{again}");
    assert_eq!(again["send"]["sent"], 0, "{again}");
}

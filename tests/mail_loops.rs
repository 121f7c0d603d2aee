//! No mail loops, against the real Postfix + Dovecot of tests/services/mail.sh:
//! an out-of-office answer, a `Precedence: bulk` mail and a real bounce
//! (Postfix's own DSN for one of kxca's replies) get no answer; the bounce
//! marks the outbox mail's recipient as failing; kxca's mail, read back over
//! IMAP by Python, carries Auto-Submitted; a sender who mails 50 times in a
//! minute gets at most the policy's number of answers.
//!
//! One test function: every scenario reads the same signup INBOX.

use kxca_test_support::common;
use kxca_test_support::intake as support_intake;
use kxca_test_support::mailstack as support_mailstack;

use common::TestCa;
use support_intake::{row, standard, APPLICANT, SIGNUP};

const OTHER: &str = "other@office.test";
/// No such mailbox: Dovecot's LMTP refuses it and Postfix bounces kxca's
/// reply back to signup@kx.test as a multipart/report from MAILER-DAEMON.
const NOBODY: &str = "nobody@office.test";

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "kxca failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn configure(ca: &TestCa, stack: &support_mailstack::MailStack) {
    let config = ca.path("kxca.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&stack.config(&ca.home, "implicit"));
    std::fs::write(&config, text).unwrap();
}

fn plain(from: &str, id: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {SIGNUP}\r\nSubject: test {id}\r\nMessage-ID: <{id}>\r\n\
Date: Mon, 07 Dec 2026 10:00:00 +0900\r\nMIME-Version: 1.0\r\n{extra_headers}\
Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

fn with_form(from: &str, id: &str) -> Vec<u8> {
    let form = standard(&[row(1, "23456", "001")]);
    format!(
        "From: {from}\r\nTo: {SIGNUP}\r\nSubject: form {id}\r\nMessage-ID: <{id}>\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n\
--XX\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nform\r\n\
--XX\r\nContent-Type: application/vnd.openxmlformats-officedocument.spreadsheetml.sheet\r\n\
Content-Disposition: attachment; filename=\"form.xlsx\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--XX--\r\n",
        common::mime_base64(&form)
    )
    .into_bytes()
}

/// Replies kxca sent to `user`, as Python read them over IMAP.
fn replies_to(stack: &support_mailstack::MailStack, user: &str) -> Vec<serde_json::Value> {
    stack
        .read(user, "INBOX")
        .into_iter()
        .filter(|m| m["from"].as_str().unwrap_or("").contains(SIGNUP))
        .collect()
}

fn reply_states(ca: &TestCa) -> Vec<(String, Option<String>)> {
    let db = rusqlite::Connection::open(ca.path("kxca.db")).unwrap();
    let mut stmt = db
        .prepare("SELECT message_id, reply FROM intake_mails ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn automatic_mail_is_recorded_never_answered_and_answers_are_bounded() {
    let Some(stack) = support_mailstack::shared() else {
        return;
    };
    let ca = TestCa::new();
    configure(&ca, &stack);
    let applicant_before = replies_to(&stack, APPLICANT).len();
    let other_before = replies_to(&stack, OTHER).len();
    let inbox_before = stack.count(SIGNUP, "INBOX");

    // A person, an out-of-office answer to one of kxca's replies, a list
    // mail, and a form from an address that does not exist.
    stack.send(
        APPLICANT,
        SIGNUP,
        &plain(APPLICANT, "person1@office.test", "", "質問です"),
    );
    stack.send(
        APPLICANT,
        SIGNUP,
        &plain(
            APPLICANT,
            "oof1@office.test",
            "Auto-Submitted: auto-replied\r\nIn-Reply-To: <1.abc@kx.test>\r\n",
            "ただいま不在にしております。",
        ),
    );
    stack.send(
        OTHER,
        SIGNUP,
        &plain(
            OTHER,
            "bulk1@office.test",
            "Precedence: bulk\r\n",
            "お知らせ",
        ),
    );
    stack.send(
        NOBODY,
        SIGNUP,
        &with_form(NOBODY, "form-nobody@office.test"),
    );
    assert_eq!(
        stack.wait_for(SIGNUP, "INBOX", inbox_before + 4),
        inbox_before + 4
    );

    let first = json(&ca.kxca(&["intake", "fetch", "--json"]));
    assert_eq!(first["fetch"]["processed"], 4, "{first}");
    assert_eq!(first["fetch"]["not_answered"], 2, "{first}");
    // The person's answer and the one to the address that bounces.
    assert_eq!(first["send"]["sent"], 2, "{first}");

    // Postfix bounces the reply to nobody@office.test back to the signup
    // mailbox: a multipart/report from MAILER-DAEMON with Return-Path <>.
    assert_eq!(stack.wait_for(SIGNUP, "INBOX", 1), 1, "no bounce arrived");
    let second = json(&ca.kxca(&["intake", "fetch", "--json"]));
    assert_eq!(second["fetch"]["processed"], 1, "{second}");
    assert_eq!(second["fetch"]["not_answered"], 1, "{second}");
    assert_eq!(second["fetch"]["applications"], 0, "{second}");
    assert_eq!(second["send"]["sent"], 0, "{second}");

    let states = reply_states(&ca);
    let state = |id: &str| {
        states
            .iter()
            .find(|(m, _)| m == id)
            .and_then(|(_, r)| r.clone())
            .unwrap_or_else(|| panic!("{id} not recorded: {states:?}"))
    };
    assert_eq!(state("person1@office.test"), "queued");
    assert_eq!(state("oof1@office.test"), "auto_submitted");
    assert_eq!(state("bulk1@office.test"), "bulk");
    assert_eq!(state("form-nobody@office.test"), "queued");
    assert_eq!(states.len(), 5, "{states:?}");
    assert_eq!(
        states[4].1.as_deref(),
        Some("delivery_report"),
        "{states:?}"
    );

    // The bounced reply's recipient is marked failing, for the admins.
    let outbox = json(&ca.kxca(&["outbox", "list", "--json"]));
    let to_nobody: Vec<&serde_json::Value> = outbox
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["to"] == NOBODY)
        .collect();
    assert_eq!(to_nobody.len(), 1, "{outbox}");
    let failures = to_nobody[0]["delivery_failures"]
        .as_array()
        .unwrap_or_else(|| {
            panic!("the bounce did not mark the reply: {outbox}");
        });
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["recipient"], NOBODY);
    assert_eq!(failures[0]["action"], "failed");
    assert!(
        failures[0]["status"].as_str().unwrap().starts_with("5."),
        "{failures:?}"
    );
    let table = ca.kxca(&["outbox", "list"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("BOUNCED"), "{table}");
    assert!(table.contains(&format!("{NOBODY} failed 5.")), "{table}");

    // What reached the applicant: one answer, marked auto-replied.
    assert_eq!(
        stack.wait_for(APPLICANT, "INBOX", applicant_before + 1),
        applicant_before + 1
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    let got = replies_to(&stack, APPLICANT);
    assert_eq!(got.len(), applicant_before + 1, "{got:?}");
    let answer = got
        .iter()
        .find(|m| m["in_reply_to"] == "<person1@office.test>")
        .expect("the person's answer");
    assert_eq!(answer["auto_submitted"], "auto-replied", "{answer}");
    assert!(!got.iter().any(|m| m["in_reply_to"] == "<oof1@office.test>"));
    assert_eq!(replies_to(&stack, OTHER).len(), other_before);

    // 50 mails in a minute from one sender: at most the policy's number
    // of answers (set low here so the bound is the policy's, not a default).
    let policy = ca.path("policies/intake.toml");
    let text = std::fs::read_to_string(&policy).unwrap();
    assert!(text.contains("max_per_sender_per_hour = "), "{text}");
    let limit = 3;
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("max_per_sender_per_hour") {
                format!("max_per_sender_per_hour = {limit}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&policy, text).unwrap();
    let started = std::time::Instant::now();
    for i in 0..50 {
        stack.send(
            OTHER,
            SIGNUP,
            &plain(
                OTHER,
                &format!("flood{i}@office.test"),
                "",
                "申込書について",
            ),
        );
    }
    assert!(
        started.elapsed().as_secs() < 60,
        "the 50 mails took over a minute"
    );
    assert_eq!(stack.wait_for(SIGNUP, "INBOX", 50), 50);
    let flood = json(&ca.kxca(&["intake", "fetch", "--json"]));
    assert_eq!(flood["fetch"]["processed"], 50, "{flood}");
    assert_eq!(flood["fetch"]["not_answered"], 50 - limit, "{flood}");
    assert_eq!(flood["send"]["sent"], limit, "{flood}");
    let limited = reply_states(&ca)
        .iter()
        .filter(|(m, r)| m.starts_with("flood") && r.as_deref() == Some("rate_limited"))
        .count();
    assert_eq!(limited, 50 - limit);
    assert_eq!(
        stack.wait_for(OTHER, "INBOX", other_before + limit),
        other_before + limit
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    let got = replies_to(&stack, OTHER);
    assert_eq!(got.len(), other_before + limit, "answers beyond the policy");
    assert!(got.iter().all(|m| m["auto_submitted"] == "auto-replied"));
}

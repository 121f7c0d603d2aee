//! Provisioning when things break, against a real Postfix + Dovecot (each
//! test its own instance of tests/services/mail.sh): the SMTP server
//! stopped in the middle of sending a batch's mails, and `kill -9` of a
//! process approving 100 rows. In both, every row is approved once with
//! one pickup, and every mail reaches its mailbox exactly once.

use kxca_test_support::common;
use kxca_test_support::intake as support_intake;
use kxca_test_support::mailstack as support_mailstack;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::TestCa;
use support_intake::{contact_row, signup_mail, standard, APPLICANT, SIGNUP, V};
use support_mailstack::MailStack;

const OTHER: &str = "other@office.test";

/// `n` valid rows, one office each; mail 1 to the applicant, mail 2 to other.
fn form(n: u32) -> Vec<u8> {
    let rows: Vec<Vec<V>> = (1..=n)
        .map(|i| contact_row(i, &format!("{}", 30000 + i), "001", Some(OTHER)))
        .collect();
    standard(&rows)
}

fn json(out: std::process::Output, what: &str) -> serde_json::Value {
    common::assert_ok(&out, what);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn ca_with(stack: &MailStack) -> TestCa {
    let ca = TestCa::new();
    let config = ca.path("kxca.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&stack.config(&ca.home, "implicit"));
    std::fs::write(&config, text).unwrap();
    ca
}

/// One application of `n` rows recorded by an intake pass; its id.
fn intake(ca: &TestCa, stack: &MailStack, n: u32) -> String {
    stack.send(
        APPLICANT,
        SIGNUP,
        &signup_mail("batch@office.test", &form(n)),
    );
    stack.wait_for(SIGNUP, "INBOX", 1);
    let fetch = json(ca.kxca(&["intake", "fetch", "--json"]), "fetch");
    assert_eq!(fetch["fetch"]["applications"], 1, "{fetch}");
    let apps = json(ca.kxca(&["applications", "list", "--json"]), "list");
    assert_eq!(apps[0]["rows_valid"], n, "{apps}");
    apps[0]["id"].as_i64().unwrap().to_string()
}

/// The mails of a mailbox, by Message-ID, asserting none came twice;
/// returns the certificate ids their bodies name.
fn once_each(stack: &MailStack, user: &str, subject: &str) -> Vec<String> {
    let mails = stack.read(user, "INBOX");
    let mut ids = BTreeSet::new();
    let mut certs = Vec::new();
    for m in mails
        .iter()
        .filter(|m| m["subject"].as_str().unwrap().contains(subject))
    {
        assert!(
            ids.insert(m["message_id"].as_str().unwrap().to_string()),
            "a mail came twice"
        );
        let body = m["body"].as_str().unwrap();
        let cert = body
            .split(|c: char| !c.is_ascii_alphanumeric())
            .find(|w| w.starts_with("TI") && w.len() == 22)
            .unwrap_or_else(|| panic!("no certificate id: {body}"))
            .to_string();
        certs.push(cert);
    }
    certs.sort();
    certs
}

fn table_count(ca: &TestCa, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(ca.path("kxca.db")).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn smtp_stopped_while_a_batch_is_sent_loses_and_repeats_nothing() {
    let Some(stack) = support_mailstack::private("prov-smtp", 27420) else {
        return;
    };
    let ca = ca_with(&stack);
    const N: u32 = 12;
    let app = intake(&ca, &stack, N);
    let approved = json(
        ca.kxca(&["applications", "approve", &app, "--json"]),
        "approve",
    );
    assert_eq!(approved["approved"].as_array().unwrap().len(), N as usize);

    // Send in the background and stop SMTP once a few mails are through.
    let send = ca
        .cmd()
        .args(["outbox", "send", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while stack.on_disk(OTHER, "") + stack.on_disk(APPLICANT, "") < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    stack.script("stop-smtp");
    let out = send.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        first["sent"].as_u64().unwrap() < 2 * N as u64 + 1,
        "SMTP was stopped too late to test anything: {first}"
    );
    let left = table_count(&ca, "SELECT COUNT(*) FROM outbox WHERE state <> 'sent'");
    assert!(left > 0);

    // Back: retried (backoff_seconds = 1) until everything is out.
    stack.script("start-smtp");
    let deadline = Instant::now() + Duration::from_secs(120);
    while table_count(&ca, "SELECT COUNT(*) FROM outbox WHERE state <> 'sent'") > 0 {
        assert!(Instant::now() < deadline, "the outbox did not drain");
        std::thread::sleep(Duration::from_millis(500));
        common::assert_ok(&ca.kxca(&["outbox", "send"]), "outbox send");
    }
    assert_eq!(
        table_count(&ca, "SELECT COUNT(*) FROM outbox WHERE state = 'failed'"),
        0
    );
    // The applicant: the intake reply and N mail 1; other: N mail 2.
    assert_eq!(
        stack.wait_for(APPLICANT, "INBOX", N as usize + 1),
        N as usize + 1
    );
    assert_eq!(stack.wait_for(OTHER, "INBOX", N as usize), N as usize);
    std::thread::sleep(Duration::from_secs(1));
    let ready = once_each(&stack, APPLICANT, "受け取り");
    let secrets = once_each(&stack, OTHER, "パスワード");
    assert_eq!(ready.len(), N as usize);
    assert_eq!(ready, secrets);
    assert_eq!(ready.iter().collect::<BTreeSet<_>>().len(), N as usize);
}

#[test]
fn kill_9_while_approving_100_rows_then_again_approves_each_once() {
    let Some(stack) = support_mailstack::private("prov-kill", 27430) else {
        return;
    };
    let ca = ca_with(&stack);
    const N: u32 = 100;
    let app = intake(&ca, &stack, N);

    // Killed at several moments; whatever it had done commits whole or not.
    for delay_ms in [5u64, 40, 120, 300] {
        let mut child = ca
            .cmd()
            .args(["applications", "approve", &app])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let accounts = table_count(&ca, "SELECT COUNT(*) FROM accounts");
        assert!(
            accounts == 0 || accounts == N as i64,
            "{accounts} accounts after kill -9"
        );
    }
    let again = json(
        ca.kxca(&["applications", "approve", &app, "--json"]),
        "approve",
    );
    let approved_now = again["approved"].as_array().unwrap().len();
    let before = again["already_decided"].as_array().unwrap().len();
    assert_eq!(approved_now + before, N as usize, "{again}");
    assert_eq!(table_count(&ca, "SELECT COUNT(*) FROM accounts"), N as i64);
    assert_eq!(
        table_count(&ca, "SELECT COUNT(*) FROM application_decisions"),
        N as i64
    );
    assert_eq!(
        table_count(&ca, "SELECT COUNT(*) FROM enrolments"),
        N as i64
    );
    assert_eq!(
        table_count(
            &ca,
            "SELECT COUNT(*) FROM outbox WHERE kind IN ('certificate-ready', 'initial-passwords')"
        ),
        2 * N as i64
    );
    let sent = json(ca.kxca(&["outbox", "send", "--json"]), "send");
    assert_eq!(sent["sent"], 2 * N as u64, "{sent}");
    assert_eq!(stack.wait_for(OTHER, "INBOX", N as usize), N as usize);
    assert_eq!(
        stack.wait_for(APPLICANT, "INBOX", N as usize + 1),
        N as usize + 1
    );
    let ready = once_each(&stack, APPLICANT, "受け取り");
    let secrets = once_each(&stack, OTHER, "パスワード");
    assert_eq!(ready.len(), N as usize);
    assert_eq!(ready, secrets);
}

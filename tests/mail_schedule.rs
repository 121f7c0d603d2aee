//! `kxca serve` runs the mail intake on its `[mail] interval_seconds`
//! schedule: signup mails become applications and get their replies with
//! no `kxca intake fetch` by hand, and a mail server that cannot be
//! reached is logged while the OCSP side keeps answering.

use kxca_test_support::common;
use kxca_test_support::intake as support_intake;
use kxca_test_support::mailstack as support_mailstack;
use kxca_test_support::ocsp as support_ocsp;

use common::TestCa;
use support_intake::{row, s, set, standard, APPLICANT, SIGNUP};
use support_ocsp::{eventually, Server};

/// A signup mail carrying one form for `office`, whose second row has a
/// contract unit that does not match its union and branch.
fn signup_mail(id: &str, office: &str) -> Vec<u8> {
    let mut bad = row(2, office, "002");
    set(&mut bad, "契約単位コード", s("2627601"));
    support_intake::signup_mail(id, &standard(&[row(1, office, "001"), bad]))
}

fn set_mail_config(ca: &TestCa, section: &str) {
    let config = ca.path("kxca.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    if let Some(i) = text.find("\n[mail]") {
        text.truncate(i);
    }
    text.push_str(section);
    std::fs::write(&config, text).unwrap();
}

fn applications(ca: &TestCa) -> Vec<serde_json::Value> {
    let out = ca.kxca(&["applications", "list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
}

#[test]
fn daemon_fetches_and_replies_on_its_schedule() {
    let Some(stack) = support_mailstack::private("schedule", 26400) else {
        return;
    };
    let ca = TestCa::new();
    set_mail_config(&ca, &stack.config(&ca.home, "implicit"));
    stack.send(
        APPLICANT,
        SIGNUP,
        &signup_mail("sched1@office.test", "3456789"),
    );
    assert_eq!(stack.wait_for(SIGNUP, "INBOX", 1), 1);

    // serve logs at info by default: a pass that did something shows.
    let mut server = Server::start(&ca);
    assert_eq!(
        stack.wait_for(APPLICANT, "INBOX", 1),
        1,
        "no reply from the schedule; serve log:\n{}",
        server.log_text()
    );
    // A mail that arrives while the server runs is picked up by a later pass.
    stack.send(
        APPLICANT,
        SIGNUP,
        &signup_mail("sched2@office.test", "4567890"),
    );
    assert_eq!(
        stack.wait_for(APPLICANT, "INBOX", 2),
        2,
        "no second reply; serve log:\n{}",
        server.log_text()
    );

    let replies = stack.read(APPLICANT, "INBOX");
    let mut to: Vec<&str> = replies
        .iter()
        .map(|m| m["in_reply_to"].as_str().unwrap())
        .collect();
    to.sort();
    assert_eq!(to, ["<sched1@office.test>", "<sched2@office.test>"]);
    for reply in &replies {
        let body = reply["body"].as_str().unwrap();
        assert!(
            body.contains("2627601"),
            "the invalid row is not explained: {body}"
        );
    }
    assert_eq!(applications(&ca).len(), 2);
    assert_eq!(stack.count(SIGNUP, "INBOX"), 0);
    assert_eq!(stack.count(SIGNUP, "kxca-processed"), 2);

    // The mail runs in the daemon; the public role answers and reads no mail.
    let (code, _, _) = support_ocsp::get(&server.url("/healthz"), &[], ca.dir.path());
    assert_eq!(code, 200);
    assert!(server.stop(), "serve or daemon did not stop cleanly");
    let serve_log = server.serve_log_text();
    assert!(
        !serve_log.contains("mail"),
        "serve touched mail: {serve_log}"
    );
    let log = server.log_text();
    assert!(
        log.contains("mail pass: fetched: 1 processed, 1 application(s)"),
        "{log}"
    );
    assert!(log.contains("mail schedule stopped"), "{log}");

    // Nothing was left for a pass by hand, and nothing is sent twice.
    let again = ca.kxca(&["intake", "fetch", "--json"]);
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["fetch"]["processed"], 0, "{again}");
    assert_eq!(again["send"]["sent"], 0, "{again}");
    assert_eq!(stack.count(APPLICANT, "INBOX"), 2);
}

/// An IMAP server that refuses connections: each pass logs the failure
/// and the server keeps serving; SIGTERM still stops it cleanly.
#[test]
fn unreachable_mail_server_does_not_stop_the_daemon() {
    if !common::require_tool("curl", &["--version"]) {
        return;
    }
    let ca = TestCa::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    std::fs::write(ca.path("imap-password"), "unused\n").unwrap();
    set_mail_config(
        &ca,
        &format!(
            "\n[mail]\ninterval_seconds = 1\n\n[mail.imap]\nhost = \"127.0.0.1\"\nport = {port}\n\
             tls = \"implicit\"\nuser = \"signup@kx.test\"\npassword_file = {:?}\n",
            ca.path("imap-password")
        ),
    );
    let mut server = Server::start(&ca);
    eventually("two failed mail passes in the log", || {
        server.log_text().matches("mail pass failed").count() >= 2
    });
    let (code, _, _) = support_ocsp::get(&server.url("/healthz"), &[], ca.dir.path());
    assert_eq!(code, 200);
    assert!(server.stop(), "serve or daemon did not stop cleanly");
    assert!(!server.serve_log_text().contains("mail"));
    let log = server.log_text();
    assert!(
        log.contains(&port.to_string()),
        "the error does not name the server: {log}"
    );
    assert!(!log.contains("unused"), "a secret reached the log");
    assert!(applications(&ca).is_empty());
}

/// A missing IMAP password stops `kxca daemon` at start, named as the mail
/// password with its variable, not as a "key secret" at the first pass.
#[test]
fn missing_mail_password_stops_the_daemon_at_start() {
    let ca = TestCa::new();
    set_mail_config(
        &ca,
        "\n[mail]\ninterval_seconds = 60\n\n[mail.imap]\nhost = \"127.0.0.1\"\nport = 1\n\
         tls = \"implicit\"\nuser = \"signup@kx.test\"\n\
         password_env = \"KXCA_TEST_IMAP_PASSWORD_NOT_SET\"\n",
    );
    let mut child = ca
        .cmd()
        .arg("daemon")
        .env_remove("KXCA_TEST_IMAP_PASSWORD_NOT_SET")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("kxca daemon kept running without its IMAP password");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("mail password"), "{stderr}");
    assert!(
        stderr.contains("KXCA_TEST_IMAP_PASSWORD_NOT_SET"),
        "{stderr}"
    );
    assert!(!stderr.contains("key secret"), "{stderr}");
}

//! Mail intake when things break, against a real Postfix + Dovecot
//! (each test runs its own instance of tests/services/mail.sh so it can stop
//! servers): the IMAP server stopped in the middle of a fetch, kxca killed
//! in the middle of a fetch, the store and the mailbox disagreeing after a
//! refused MOVE, the SMTP server down while replies are queued. In every
//! case each mail becomes exactly one application and gets exactly one
//! reply once the servers are back.

use kxca_test_support::common;
use kxca_test_support::intake as support_intake;
use kxca_test_support::mailstack as support_mailstack;

use std::collections::BTreeSet;
use std::process::{Command, Output};

use common::TestCa;
use support_intake::{row, signup_mail, standard, APPLICANT, SIGNUP};
use support_mailstack::{bounded, MailStack};

const PROCESSED: &str = "kxca-processed";
/// Enough mails that a fetch is still running when the test reacts to the
/// first one being processed.
const MAILS: usize = 30;

/// A signup mail with one form for its own office.
fn signup(id: &str, office: &str) -> Vec<u8> {
    signup_mail(id, &standard(&[row(1, office, "001")]))
}

fn no_form(id: &str) -> Vec<u8> {
    format!(
        "From: {APPLICANT}\r\nTo: {SIGNUP}\r\nSubject: =?UTF-8?B?{}?=\r\nMessage-ID: <{id}>\r\n\
Date: Fri, 27 Nov 2026 10:00:00 +0900\r\nMIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
        common::mime_base64("質問".as_bytes()),
        common::mime_base64("申込書はどこから入手できますか。\r\n".as_bytes()),
    )
    .into_bytes()
}

/// Delivers `MAILS` signup mails, each with its own form; returns their
/// Message-IDs.
fn deliver(stack: &MailStack, tag: &str) -> BTreeSet<String> {
    let ids: BTreeSet<String> = (0..MAILS)
        .map(|i| {
            let id = format!("{tag}{i}@office.test");
            stack.send(APPLICANT, SIGNUP, &signup(&id, &format!("3{i:04}")));
            format!("<{id}>")
        })
        .collect();
    assert_eq!(stack.wait_for(SIGNUP, "INBOX", MAILS), MAILS);
    ids
}

fn kxca(ca: &TestCa, args: &[&str]) -> Output {
    bounded::output(ca.cmd().args(args), &format!("kxca {}", args.join(" ")))
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "kxca failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn list(ca: &TestCa, what: &str) -> Vec<serde_json::Value> {
    json(&kxca(ca, &[what, "list", "--json"]))
        .as_array()
        .unwrap()
        .clone()
}

fn configure(ca: &TestCa, stack: &MailStack) {
    let config = ca.path("kxca.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&stack.config(&ca.home, "starttls"));
    std::fs::write(&config, text).unwrap();
    // One applicant sends all the mails here: lift the per-sender answer
    // limit (tests/mail_loops.rs proves it) so every mail is answered.
    let policy = ca.path("policies/intake.toml");
    let text = std::fs::read_to_string(&policy).unwrap();
    let lifted = text.replace(
        "max_per_sender_per_hour = 10",
        "max_per_sender_per_hour = 1000",
    );
    assert_ne!(lifted, text, "the shipped policy's answer limit changed");
    std::fs::write(&policy, lifted).unwrap();
}

/// Starts `kxca intake fetch` and returns once the first message has been
/// recorded and moved: the fetch is then in the middle of the mailbox.
fn fetch_until_first_processed(ca: &TestCa, stack: &MailStack) -> bounded::Running {
    let mut fetch = bounded::spawn(
        ca.cmd().args(["intake", "fetch", "--json"]),
        "kxca intake fetch",
    );
    bounded::until("the first message in the processed folder", || {
        if let Some(status) = fetch.child.try_wait().unwrap() {
            panic!("fetch ended ({status}) before the test could interrupt it");
        }
        stack.on_disk(SIGNUP, PROCESSED) >= 1
    });
    fetch
}

fn signal(pid: u32, sig: &str) {
    let out = bounded::output(Command::new("kill").args([sig, &pid.to_string()]), "kill");
    assert!(out.status.success(), "kill {sig} {pid}");
}

/// The end state every fault must lead to, once the servers are back and
/// fetch has run again: each mail one application, moved once, answered once.
fn assert_all_once(ca: &TestCa, stack: &MailStack, ids: &BTreeSet<String>) {
    let apps = list(ca, "applications");
    assert_eq!(apps.len(), MAILS, "applications: {apps:?}");
    assert_eq!(stack.count(SIGNUP, "INBOX"), 0);
    assert_eq!(stack.count(SIGNUP, PROCESSED), MAILS);
    let outbox = list(ca, "outbox");
    assert_eq!(outbox.len(), MAILS, "outbox: {outbox:?}");
    assert!(
        outbox.iter().all(|m| m["state"] == "sent"),
        "outbox: {outbox:?}"
    );
    assert_eq!(stack.wait_for(APPLICANT, "INBOX", MAILS), MAILS);
    let replies: Vec<String> = stack
        .read(APPLICANT, "INBOX")
        .iter()
        .map(|m| m["in_reply_to"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(replies.len(), MAILS, "one reply per mail: {replies:?}");
    let answered: BTreeSet<String> = replies.into_iter().collect();
    assert_eq!(&answered, ids, "every mail answered exactly once");
    let again = json(&kxca(ca, &["intake", "fetch", "--json"]));
    assert_eq!(again["fetch"]["processed"], 0, "{again}");
    assert_eq!(again["send"]["sent"], 0, "{again}");
}

#[test]
fn imap_server_stopped_mid_fetch_loses_nothing() {
    let Some(stack) = support_mailstack::private("imap-stop", 26320) else {
        return;
    };
    let ca = TestCa::new();
    configure(&ca, &stack);
    let ids = deliver(&stack, "stop");

    // Frozen while Dovecot goes away, so the stop lands mid-fetch for sure.
    let fetch = fetch_until_first_processed(&ca, &stack);
    signal(fetch.child.id(), "-STOP");
    stack.script("stop-imap");
    signal(fetch.child.id(), "-CONT");
    let out = fetch.wait();
    assert!(
        !out.status.success(),
        "fetch survived the IMAP server stopping: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("fetch with the IMAP server stopped: {err}");
    let server = format!("IMAP localhost:{}", stack.get("MAIL_IMAP_PORT"));
    assert!(err.contains(&server), "error does not name {server}: {err}");
    let recorded = list(&ca, "applications").len();
    assert!(
        (1..MAILS).contains(&recorded),
        "{recorded} applications: the stop was not mid-fetch"
    );

    stack.script("start-imap");
    let fetched = json(&kxca(&ca, &["intake", "fetch", "--json"]));
    let f = &fetched["fetch"];
    assert_eq!(
        f["processed"].as_u64().unwrap() as usize + recorded,
        MAILS,
        "{fetched}"
    );
    assert_eq!(f["duplicate_mails"], 0, "{fetched}");
    assert_eq!(f["duplicate_files"], 0, "{fetched}");
    assert_all_once(&ca, &stack, &ids);
}

#[test]
fn killed_mid_fetch_or_before_the_move_processes_each_mail_once() {
    let Some(stack) = support_mailstack::private("kill", 26340) else {
        return;
    };
    let ca = TestCa::new();
    configure(&ca, &stack);
    let ids = deliver(&stack, "kill");

    let mut fetch = fetch_until_first_processed(&ca, &stack);
    fetch.child.kill().unwrap();
    let out = fetch.wait();
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(9), "{:?}", out.status);
    }
    let killed_at = list(&ca, "applications").len();
    assert!((1..MAILS).contains(&killed_at), "{killed_at} applications");

    // The window a kill hits only by luck, made certain: the server refuses
    // the MOVE, so the first message left is recorded in the store but still
    // in INBOX under the same UID.
    let folder = stack.folder_dir(SIGNUP, PROCESSED);
    let chmod = |mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        for d in ["", "cur", "new", "tmp"] {
            let p = folder.join(d);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
                .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
        }
    };
    chmod(0o555);
    let refused = kxca(&ca, &["intake", "fetch", "--json"]);
    chmod(0o700);
    assert!(!refused.status.success(), "MOVE into a read-only folder");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("UID MOVE"), "{err}");
    let recorded = list(&ca, "applications").len();
    let inbox = stack.count(SIGNUP, "INBOX");
    assert_eq!(
        recorded + inbox,
        MAILS + 1,
        "exactly one message recorded but not moved ({recorded} recorded, {inbox} in INBOX)"
    );

    let fetched = json(&kxca(&ca, &["intake", "fetch", "--json"]));
    let f = &fetched["fetch"];
    assert_eq!(f["already_processed"], 1, "{fetched}");
    assert_eq!(
        f["processed"].as_u64().unwrap() as usize,
        inbox - 1,
        "{fetched}"
    );
    assert_eq!(f["duplicate_mails"], 0, "{fetched}");
    assert_all_once(&ca, &stack, &ids);

    // The second line of defence: the same mail under a new UID (a copy, a
    // mailbox rebuilt with a new UIDVALIDITY) is known by its Message-ID and
    // creates no application and no reply.
    stack.copy_first(SIGNUP, PROCESSED, "INBOX");
    let fetched = json(&kxca(&ca, &["intake", "fetch", "--json"]));
    assert_eq!(fetched["fetch"]["duplicate_mails"], 1, "{fetched}");
    assert_eq!(fetched["fetch"]["applications"], 0, "{fetched}");
    assert_eq!(fetched["send"]["sent"], 0, "{fetched}");
    assert_eq!(list(&ca, "applications").len(), MAILS);
    assert_eq!(list(&ca, "outbox").len(), MAILS);
    assert_eq!(stack.count(SIGNUP, "INBOX"), 0);
}

#[test]
fn smtp_down_while_replies_are_queued_sends_each_once_later() {
    let Some(stack) = support_mailstack::private("faults", 26300) else {
        return;
    };
    let ca = TestCa::new();
    configure(&ca, &stack);
    stack.send(APPLICANT, SIGNUP, &signup("f1@office.test", "20001"));
    stack.send(APPLICANT, SIGNUP, &no_form("f2@office.test"));
    assert_eq!(stack.wait_for(SIGNUP, "INBOX", 2), 2);

    stack.script("stop-imap");
    let out = kxca(&ca, &["intake", "fetch", "--json"]);
    assert!(!out.status.success(), "fetch with IMAP down succeeded");
    let err = String::from_utf8_lossy(&out.stderr);
    let server = format!("IMAP localhost:{}", stack.get("MAIL_IMAP_PORT"));
    assert!(err.contains(&server), "{err}");
    assert_eq!(list(&ca, "applications").len(), 0);
    stack.script("start-imap");

    stack.script("stop-smtp");
    let fetched = json(&kxca(&ca, &["intake", "fetch", "--json"]));
    assert_eq!(fetched["fetch"]["processed"], 2, "{fetched}");
    assert_eq!(fetched["fetch"]["applications"], 1, "{fetched}");
    assert_eq!(fetched["send"]["sent"], 0, "{fetched}");
    // The first refused connection ends the pass: the second reply is not
    // even tried against a server that is down.
    assert_eq!(fetched["send"]["retrying"], 1, "{fetched}");
    let queued = list(&ca, "outbox");
    assert_eq!(queued.len(), 2);
    let mut attempts: Vec<u64> = queued
        .iter()
        .map(|m| {
            assert_eq!(m["state"], "queued", "{queued:?}");
            m["attempts"].as_u64().unwrap()
        })
        .collect();
    attempts.sort();
    assert_eq!(attempts, [0, 1], "{queued:?}");
    let smtp = format!("localhost:{}", stack.get("MAIL_SMTP_PORT"));
    assert!(
        queued
            .iter()
            .any(|m| m["last_error"].as_str().is_some_and(|e| e.contains(&smtp))),
        "no error naming {smtp}: {queued:?}"
    );
    assert_eq!(stack.count(SIGNUP, "INBOX"), 0);
    assert_eq!(stack.count(SIGNUP, PROCESSED), 2);

    stack.script("start-smtp");
    // backoff_seconds = 1: the retried reply is due a second after the
    // failure; poll with a bound rather than sleep a guess.
    let mut sent = 0;
    bounded::until("both replies sent", || {
        let out = json(&kxca(&ca, &["outbox", "send", "--json"]));
        sent += out["sent"].as_u64().unwrap();
        sent >= 2
    });
    assert_eq!(sent, 2);
    let again = json(&kxca(&ca, &["outbox", "send", "--json"]));
    assert_eq!(again["sent"], 0);
    assert_eq!(stack.wait_for(APPLICANT, "INBOX", 2), 2);
    let mut to: Vec<String> = stack
        .read(APPLICANT, "INBOX")
        .iter()
        .map(|m| m["in_reply_to"].as_str().unwrap().to_string())
        .collect();
    to.sort();
    assert_eq!(to, ["<f1@office.test>", "<f2@office.test>"]);
    let fetched = json(&kxca(&ca, &["intake", "fetch", "--json"]));
    assert_eq!(fetched["fetch"]["processed"], 0, "{fetched}");
}

/// A server that accepts the connection and then says nothing (a hung
/// process, a half-open connection): the kernel completes the handshake on
/// a listener nobody accepts from. Each step must give up after
/// `timeout_seconds` with an error naming the server, not hang.
#[test]
fn silent_servers_time_out_with_a_clear_error() {
    let imap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let smtp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (imap_port, smtp_port) = (
        imap.local_addr().unwrap().port(),
        smtp.local_addr().unwrap().port(),
    );
    let ca = TestCa::new();
    let pw = ca.path("mail-password");
    std::fs::write(&pw, "unused\n").unwrap();
    let maildir = ca.path("Maildir");
    for d in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(d)).unwrap();
    }
    let base = std::fs::read_to_string(ca.path("kxca.toml")).unwrap();
    let smtp_section = format!(
        "\n[mail.smtp]\nhost = \"localhost\"\nport = {smtp_port}\ntls = \"starttls\"\n\
         user = \"signup@kx.test\"\npassword_file = {pw:?}\nfrom = \"signup@kx.test\"\n\
         timeout_seconds = 2\nbackoff_seconds = 1\n"
    );

    std::fs::write(
        ca.path("kxca.toml"),
        format!(
            "{base}\n[mail]\n\n[mail.imap]\nhost = \"localhost\"\nport = {imap_port}\n\
             tls = \"starttls\"\nuser = \"signup@kx.test\"\npassword_file = {pw:?}\n\
             timeout_seconds = 2\n{smtp_section}"
        ),
    )
    .unwrap();
    let out = kxca(&ca, &["intake", "fetch", "--json"]);
    assert!(!out.status.success(), "fetch from a silent IMAP server");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("IMAP localhost:{imap_port}")) && err.contains("within 2 s"),
        "{err}"
    );

    // The same for SMTP, with the mail read from a Maildir.
    std::fs::write(
        maildir.join("new").join("1.kx.test"),
        signup("silent@office.test", "20001"),
    )
    .unwrap();
    std::fs::write(
        ca.path("kxca.toml"),
        format!("{base}\n[mail]\nmaildir = {maildir:?}\n{smtp_section}"),
    )
    .unwrap();
    let fetched = json(&kxca(&ca, &["intake", "fetch", "--json"]));
    assert_eq!(fetched["fetch"]["applications"], 1, "{fetched}");
    assert_eq!(fetched["send"]["retrying"], 1, "{fetched}");
    let queued = list(&ca, "outbox");
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0]["state"], "queued", "{queued:?}");
    let error = queued[0]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains(&format!("localhost:{smtp_port}")), "{error}");
    drop((imap, smtp));
}

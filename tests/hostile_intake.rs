//! Untrusted input is contained (issue 10): hostile spreadsheets and mail,
//! built by tests/support_hostile, refused with one line by
//! `kxca intake check`, and received by a running kxca while its OCSP
//! responder keeps answering; the normal forms formatted to the sheet's
//! last row are still read.

use kxca_test_support::common;
use kxca_test_support::hostile as support_hostile;
use kxca_test_support::mailstack as support_mailstack;
use kxca_test_support::ocsp as support_ocsp;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{p, TestCa};
use support_hostile as hostile;
use support_ocsp::Server;

/// Address space for the `kxca` under test: far below what the hostile
/// files claim, far above what reading a form needs.
const ULIMIT_V_KB: u64 = 3 * 1024 * 1024;

/// `kxca intake check FILE` with a bounded address space; returns the
/// output and how long it took.
fn check(file: &Path, extra: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -v {ULIMIT_V_KB}; exec \"$0\" intake check \"$@\""
        ))
        .arg(env!("CARGO_BIN_EXE_kxca"))
        .arg(file)
        .args(extra)
        .env_remove("KXCA_HOME")
        .env_remove("KXCA_LOG")
        .output()
        .unwrap();
    (out, started.elapsed())
}

fn lines(b: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(b)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn hostile_files_are_refused_with_one_line_in_bounded_time_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<(String, Vec<u8>)> = hostile::hostile_spreadsheets()
        .into_iter()
        .map(|(n, b)| (n.to_string(), b))
        .collect();
    files.extend([
        ("nested.eml".to_string(), hostile::mime_nested("n@x.test")),
        (
            "many-parts.eml".to_string(),
            hostile::mime_many_parts("p@x.test"),
        ),
    ]);
    let mut report = Vec::new();
    for (name, bytes) in &files {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let (out, took) = check(&path, &[]);
        let err = lines(&out.stderr);
        let stdout = lines(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{name}: {}\nstderr: {err:?}\nstdout: {stdout:?}",
            out.status
        );
        assert_eq!(err.len(), 1, "{name}: not one line on stderr: {err:?}");
        assert!(err[0].contains(name.as_str()), "{name}: {err:?}");
        assert_eq!(
            stdout.len(),
            1,
            "{name}: not one line on stdout: {stdout:?}"
        );
        assert!(stdout[0].contains(name.as_str()), "{name}: {stdout:?}");
        assert!(took < Duration::from_secs(40), "{name}: took {took:?}");
        report.push(format!(
            "{name} ({} bytes, {} ms): {}",
            bytes.len(),
            took.as_millis(),
            err[0]
        ));
    }
    eprintln!("{}", report.join("\n"));
    // The reasons are the pre-checks', precise, not the sandbox's backstop.
    let reason = |n: &str| {
        report
            .iter()
            .find(|l| l.starts_with(n))
            .cloned()
            .unwrap_or_default()
    };
    for (file, words) in [
        ("huge-dimensions.xls", "DIMENSIONS"),
        (
            "sparse-corners.xls",
            "area spanned by the cells with values",
        ),
        ("beyond-the-sheet.xls", "outside an .xls sheet"),
        ("broken-fat.xls", "compound file"),
        ("looping-chain.xls", "loops"),
        ("truncated.xls", "compound file"),
        ("repeat-bomb.ods", "area spanned by the cells with values"),
        (
            "sparse-repeats.ods",
            "area spanned by the cells with values",
        ),
        ("zip-bomb.xlsx", "uncompressed size"),
        ("lying-sizes.xlsx", "uncompressed size"),
        ("shared-strings.xlsx", "shared strings"),
    ] {
        assert!(reason(file).contains(words), "{file}: {}", reason(file));
    }
}

#[test]
fn forms_formatted_to_the_last_row_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut xls = hostile::xls_form();
    // A sheet formatted to the last .xls row: DIMENSIONS A1:O65536.
    let dims = xls
        .windows(4)
        .position(|w| w == [0x00, 0x02, 0x0E, 0x00])
        .unwrap();
    xls[dims + 8..dims + 12].copy_from_slice(&65536u32.to_le_bytes());
    xls[dims + 14..dims + 16].copy_from_slice(&15u16.to_le_bytes());
    for (name, bytes, rows) in [
        ("last-row.xlsx", hostile::xlsx_formatted_to_last_row(), 2),
        ("last-row.ods", hostile::ods_formatted_to_last_row(), 2),
        ("last-row.xls", xls, 4),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let (out, took) = check(&path, &["--json"]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{name}: {e}: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert!(
            matches!(out.status.code(), Some(0) | Some(1)),
            "{name}: {}: {json}",
            out.status
        );
        assert_eq!(
            json["rows"].as_array().map(|r| r.len()),
            Some(rows),
            "{name}: {json}"
        );
        eprintln!("{name}: {} rows in {} ms", rows, took.as_millis());
    }
}

// ---- by mail, to a running kxca

/// Starts the process that runs the mail schedule, `kxca daemon`, with
/// the `kxca serve` that answers OCSP beside it (issue 11's two roles):
/// the one place to change if the roles move again. A stop that is not
/// clean (either process died meanwhile) fails the test.
fn start_mail_process(ca: &TestCa) -> Server {
    Server::start(ca)
}

/// A policy whose worker answers are capped at 8 MB: a mail carrying an
/// 8 MB file then overruns its reader on every attempt, the deterministic
/// stand-in for a parser that dies. Every test mail comes from one
/// applicant, so the per-sender answer limit is lifted.
fn install_policy(ca: &TestCa) {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/intake.toml"))
            .unwrap();
    assert!(text.contains("max_per_sender_per_hour = 10"));
    let mut text = text.replacen(
        "max_per_sender_per_hour = 10",
        "max_per_sender_per_hour = 1000",
        1,
    );
    text.push_str("\n[sandbox]\nanswer_bytes = 8000000\n");
    std::fs::create_dir_all(ca.path("policies")).unwrap();
    std::fs::write(ca.path("policies/intake.toml"), text).unwrap();
}

fn reader_killer() -> Vec<u8> {
    let noise: Vec<u8> = (0..8_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    hostile::mail_with("killer@office.test", "scan.pdf", &noise)
}

fn good_mail() -> Vec<u8> {
    hostile::mail_with("good@office.test", "form.xlsx", &hostile::xlsx_form())
}

fn db(ca: &TestCa) -> rusqlite::Connection {
    rusqlite::Connection::open(ca.path("kxca.db")).unwrap()
}

fn count(ca: &TestCa, sql: &str) -> i64 {
    db(ca).query_row(sql, [], |r| r.get(0)).unwrap()
}

fn files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn hostile_mail_to_a_running_kxca_is_rejected_and_moved_while_ocsp_answers() {
    if !support_ocsp::tools_present() {
        return;
    }
    let ca = TestCa::new();
    let cert = ca.issue("3456789", "001", &[]);
    install_policy(&ca);
    let maildir = ca.dir.path().join("Maildir");
    for d in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(d)).unwrap();
    }
    let config = ca.path("kxca.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[mail]\nmaildir = {maildir:?}\ninterval_seconds = 1\n"
    ));
    std::fs::write(&config, text).unwrap();

    let hostile_mails = hostile::hostile_mails();
    let mut n = 0;
    let mut deliver = |name: &str, bytes: &[u8]| {
        n += 1;
        std::fs::write(
            maildir.join("new").join(format!("{n:04}.{name}.host")),
            bytes,
        )
        .unwrap();
    };
    for (name, bytes) in &hostile_mails {
        deliver(name, bytes);
    }
    deliver("killer", &reader_killer());
    deliver("good", &good_mail());
    let total = hostile_mails.len() + 2;

    let mut server = start_mail_process(&ca);
    let started = Instant::now();
    let mut polls = 0;
    let mut slowest = Duration::ZERO;
    let ocsp = |server: &Server| {
        let t = Instant::now();
        let (ok, out) = support_ocsp::openssl_ocsp(&ca, server, &["-cert", p(&cert.cert)]);
        assert!(
            ok && out.contains(": good"),
            "OCSP stopped answering: {out}\nserve log:\n{}",
            server.log_text()
        );
        t.elapsed()
    };
    // Every mail leaves new/ (the killer after its second attempt).
    loop {
        slowest = slowest.max(ocsp(&server));
        polls += 1;
        if files(&maildir.join("new")) == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "mail left in new/: {:?}\nserve log:\n{}",
            std::fs::read_dir(maildir.join("new"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect::<Vec<_>>(),
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    slowest = slowest.max(ocsp(&server));
    eprintln!(
        "{total} mails handled in {} ms; {polls} OCSP polls, slowest {} ms",
        started.elapsed().as_millis(),
        slowest.as_millis()
    );
    assert!(server.stop(), "serve did not stop cleanly");

    // The good mail became an application; nothing hostile did.
    assert_eq!(count(&ca, "SELECT count(*) FROM applications"), 1);
    assert_eq!(
        count(
            &ca,
            "SELECT count(*) FROM applications a JOIN intake_mails m ON a.mail_id = m.id \
             WHERE m.message_id = 'good@office.test'"
        ),
        1
    );
    // Unreadable mail (MIME bombs, the 40 MB one, the reader killer) is
    // rejected, moved to the rejected folder and answered in Japanese.
    let rejected = maildir.join(".kxca-rejected/cur");
    assert_eq!(files(&rejected), 4, "{:?}", std::fs::read_dir(&rejected));
    assert_eq!(
        count(
            &ca,
            "SELECT count(*) FROM intake_mails WHERE outcome = 'rejected'"
        ),
        4
    );
    assert_eq!(
        count(
            &ca,
            "SELECT attempts FROM intake_attempts WHERE source_key LIKE '%.killer.host'"
        ),
        2
    );
    let answers: String = db(&ca)
        .query_row(
            "SELECT group_concat(body, '|') FROM outbox WHERE kind = 'intake-rejected'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        answers.matches("読み取ることができなかった").count(),
        4,
        "{answers}"
    );
    assert!(answers.contains(".xlsx"), "{answers}");
    // The hostile spreadsheets are refused as files, each named, with no
    // application: the mails are processed and answered.
    assert_eq!(files(&maildir.join("cur")), total - 4);
    let replies: String = db(&ca)
        .query_row(
            "SELECT group_concat(body, '|') FROM outbox WHERE kind = 'intake-reply'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    for (name, _) in hostile::hostile_spreadsheets() {
        assert!(replies.contains(name), "no answer names {name}: {replies}");
    }

    // A restart reads none of them again.
    let before = count(&ca, "SELECT count(*) FROM intake_mails");
    let attempts = count(&ca, "SELECT sum(attempts) FROM intake_attempts");
    let mut server = start_mail_process(&ca);
    std::thread::sleep(Duration::from_secs(3));
    ocsp(&server);
    assert!(
        server.stop(),
        "serve did not stop cleanly after the restart"
    );
    assert_eq!(count(&ca, "SELECT count(*) FROM intake_mails"), before);
    assert_eq!(
        count(&ca, "SELECT sum(attempts) FROM intake_attempts"),
        attempts
    );
    assert_eq!(files(&rejected), 4);
}

/// What the pre-checks let through is still contained: a legal .xls
/// DIMENSIONS of A1:IV65536 makes calamine reserve ~670 MB up front, past
/// a 256 MiB worker; the worker dies and the check ends with one line.
#[test]
fn a_reader_out_of_memory_is_one_line_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut xls = hostile::xls_form();
    let dims = xls
        .windows(4)
        .position(|w| w == [0x00, 0x02, 0x0E, 0x00])
        .unwrap();
    xls[dims + 8..dims + 12].copy_from_slice(&65536u32.to_le_bytes());
    xls[dims + 14..dims + 16].copy_from_slice(&256u16.to_le_bytes());
    let file = dir.path().join("whole-sheet.xls");
    std::fs::write(&file, &xls).unwrap();
    let mut policy =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/intake.toml"))
            .unwrap();
    policy.push_str("\n[sandbox]\nmemory_bytes = 268435456\n");
    let policy_file = dir.path().join("intake.toml");
    std::fs::write(&policy_file, policy).unwrap();
    let (out, took) = check(&file, &["--policy", p(&policy_file)]);
    let err = lines(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}: {err:?}", out.status);
    assert_eq!(err.len(), 1, "{err:?}");
    assert!(
        err[0].contains("whole-sheet.xls") && err[0].contains("ran out of memory"),
        "{err:?}"
    );
    assert_eq!(lines(&out.stdout).len(), 1);
    assert!(took < Duration::from_secs(40), "took {took:?}");
    // With the default limit the same file is an ordinary form.
    let (out, _) = check(&file, &[]);
    assert!(matches!(out.status.code(), Some(0) | Some(1)), "{out:?}");
}

const APPLICANT: &str = "applicant@office.test";
const SIGNUP: &str = "signup@kx.test";

/// Puts a mail straight into Dovecot's INBOX for `user`: for the mails
/// Postfix itself refuses (over its 10 MB message_size_limit, or nested
/// past its mime_nesting_limit), which kxca must still survive over IMAP.
/// The mailbox must exist (a mail delivered before); the file is given to
/// the mailbox's owner, the user Dovecot runs as.
fn drop_into_inbox(stack: &support_mailstack::MailStack, user: &str, n: usize, raw: &[u8]) {
    use std::os::unix::fs::MetadataExt;
    let (local, domain) = user.split_once('@').unwrap();
    let inbox = Path::new(stack.get("MAIL_DIR"))
        .join("maildirs")
        .join(domain)
        .join(local)
        .join("Maildir");
    let owner = std::fs::metadata(inbox.join("new")).unwrap();
    let tmp = inbox.join("tmp").join(format!("{n}.hostile.kxca"));
    std::fs::write(&tmp, raw).unwrap();
    std::os::unix::fs::chown(&tmp, Some(owner.uid()), Some(owner.gid())).unwrap();
    std::fs::rename(&tmp, inbox.join("new").join(format!("{n}.hostile.kxca"))).unwrap();
}

#[test]
fn hostile_mail_over_imap_is_rejected_and_moved_while_ocsp_answers() {
    if !support_ocsp::tools_present() {
        return;
    }
    let Some(stack) = support_mailstack::private("hostile", 27110) else {
        return;
    };
    let ca = TestCa::new();
    let cert = ca.issue("3456789", "001", &[]);
    install_policy(&ca);
    let config = ca.path("kxca.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&stack.config(&ca.home, "implicit"));
    std::fs::write(&config, text).unwrap();

    let (direct, by_smtp): (Vec<_>, Vec<_>) = hostile::hostile_mails()
        .into_iter()
        .partition(|(name, raw)| raw.len() > 9_000_000 || name == "nested");
    stack.send(APPLICANT, SIGNUP, &good_mail());
    for (_, raw) in &by_smtp {
        stack.send(APPLICANT, SIGNUP, raw);
    }
    let mut total = 1 + by_smtp.len();
    assert_eq!(stack.wait_for(SIGNUP, "INBOX", total), total);
    for (_, raw) in direct
        .iter()
        .map(|(n, r)| (n, r.clone()))
        .chain([(&"killer".to_string(), reader_killer())])
    {
        total += 1;
        drop_into_inbox(&stack, SIGNUP, total, &raw);
    }
    assert_eq!(stack.wait_for(SIGNUP, "INBOX", total), total);

    let mut server = start_mail_process(&ca);
    let started = Instant::now();
    let ocsp = |server: &Server| {
        let (ok, out) = support_ocsp::openssl_ocsp(&ca, server, &["-cert", p(&cert.cert)]);
        assert!(
            ok && out.contains(": good"),
            "OCSP stopped answering: {out}\nserve log:\n{}",
            server.log_text()
        );
    };
    loop {
        ocsp(&server);
        if stack.count(SIGNUP, "INBOX") == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "mail left in INBOX; serve log:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    ocsp(&server);
    // Every answer is sent: 4 "could not be read", one per other mail.
    assert_eq!(
        stack.wait_for(APPLICANT, "INBOX", total),
        total,
        "serve log:\n{}",
        server.log_text()
    );
    assert!(server.stop(), "serve did not stop cleanly");

    assert_eq!(stack.count(SIGNUP, "kxca-rejected"), 4);
    assert_eq!(stack.count(SIGNUP, "kxca-processed"), total - 4);
    assert_eq!(count(&ca, "SELECT count(*) FROM applications"), 1);
    assert_eq!(
        count(
            &ca,
            "SELECT count(*) FROM intake_mails WHERE outcome = 'rejected'"
        ),
        4
    );
    let replies = stack.read(APPLICANT, "INBOX");
    let unreadable = replies
        .iter()
        .filter(|m| {
            m["body"]
                .as_str()
                .is_some_and(|b| b.contains("読み取ることができなかった"))
        })
        .count();
    assert_eq!(unreadable, 4, "{replies:?}");

    // A restart reads none of them again.
    let before = count(&ca, "SELECT count(*) FROM intake_mails");
    let mut server = start_mail_process(&ca);
    std::thread::sleep(Duration::from_secs(3));
    ocsp(&server);
    assert!(
        server.stop(),
        "serve did not stop cleanly after the restart"
    );
    assert_eq!(count(&ca, "SELECT count(*) FROM intake_mails"), before);
    assert_eq!(stack.count(SIGNUP, "kxca-rejected"), 4);
    assert_eq!(stack.count(APPLICANT, "INBOX"), total);
}

/// A worker limit out of range is refused when the policy is read, with
/// the file and the key named.
#[test]
fn sandbox_limits_out_of_range_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let form = dir.path().join("form.xlsx");
    std::fs::write(&form, hostile::xlsx_form()).unwrap();
    for (line, key) in [
        ("cpu_seconds = 0", "cpu_seconds"),
        ("memory_bytes = 1024", "memory_bytes"),
        ("open_files = 100000", "open_files"),
        ("stack_bytes = 1", "stack_bytes"),
    ] {
        let mut policy =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/intake.toml"))
                .unwrap();
        policy.push_str(&format!("\n[sandbox]\n{line}\n"));
        let policy_file = dir.path().join("bad-policy.toml");
        std::fs::write(&policy_file, policy).unwrap();
        let (out, _) = check(&form, &["--policy", p(&policy_file)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{line}: {err}");
        assert!(
            err.contains("bad-policy.toml") && err.contains(key),
            "{line}: {err}"
        );
    }
}

//! Provisioning end to end through the `kxca` binary, against a real
//! Postfix + Dovecot (each test its own instance of tests/services/mail.sh)
//! and `kxca serve` + `openssl ocsp`: a signup mail with a form → intake →
//! approval → mail 1 and mail 2 read back over IMAP by Python's email
//! package → reset → revocation → OCSP says revoked. The secrets mailed
//! are then looked for in the store, its WAL and everything kxca printed.

use kxca_test_support::common;
use kxca_test_support::intake as support_intake;
use kxca_test_support::mailstack as support_mailstack;
use kxca_test_support::ocsp as support_ocsp;

use std::process::Output;

use common::TestCa;
use support_intake::{contact_row, standard, APPLICANT, SIGNUP};
use support_mailstack::MailStack;

const OTHER: &str = "other@office.test";

/// A signup mail from the applicant with `form` attached.
fn signup(id: &str, form: &[u8]) -> Vec<u8> {
    support_intake::signup_mail(id, form)
}

/// Every kxca output of a test, to look for secrets in afterwards.
#[derive(Default)]
struct Transcript(String);

impl Transcript {
    fn ok(&mut self, out: Output, what: &str) -> Output {
        self.0.push_str(&String::from_utf8_lossy(&out.stdout));
        self.0.push_str(&String::from_utf8_lossy(&out.stderr));
        common::assert_ok(&out, what);
        out
    }

    fn json(&mut self, out: Output, what: &str) -> serde_json::Value {
        let out = self.ok(out, what);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{what}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

/// A CA whose [mail] is `stack` (IMAP as signup@kx.test, SMTP submission).
fn ca_with_mail(stack: &MailStack) -> TestCa {
    let ca = TestCa::new();
    let config = ca.path("kxca.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&stack.config(&ca.home, "implicit"));
    std::fs::write(&config, text).unwrap();
    ca
}

/// The value after `label` + full-width colon on a line of its own.
fn labelled(body: &str, label: &str) -> Option<String> {
    body.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{label}：")))
        .map(|v| v.trim().to_string())
}

const PICKUP_LABEL: &str = "認証局へ初回ログイン用のパスワード";
const KX_LABEL: &str = "KXサーバへ初回ログイン時のパスワード";

/// The mails of a mailbox whose subject contains `needle`.
fn with_subject(mails: &[serde_json::Value], needle: &str) -> Vec<serde_json::Value> {
    mails
        .iter()
        .filter(|m| m["subject"].as_str().unwrap().contains(needle))
        .cloned()
        .collect()
}

/// Checks mail 2 and returns (pickup code, KX password).
fn secrets_of(mail: &serde_json::Value, certificate_id: &str) -> (String, String) {
    let body = mail["body"].as_str().unwrap();
    assert!(body.contains(certificate_id), "{body}");
    assert_eq!(mail["auto_submitted"], "auto-generated");
    assert!(!mail["date"].as_str().unwrap().is_empty());
    assert!(!mail["message_id"].as_str().unwrap().is_empty());
    let code = labelled(body, PICKUP_LABEL).unwrap_or_else(|| panic!("no pickup code: {body}"));
    let kx = labelled(body, KX_LABEL).unwrap_or_else(|| panic!("no KX password: {body}"));
    // 20 characters of an unambiguous alphabet in groups: at least 80 bits.
    let raw: String = code.chars().filter(|c| *c != '-').collect();
    assert!(
        raw.len() >= 17 && raw.chars().all(|c| c.is_ascii_alphanumeric()),
        "{code}"
    );
    assert!(
        (8..=16).contains(&kx.len()) && kx.chars().all(|c| c.is_ascii_alphanumeric()),
        "{kx}"
    );
    (code, kx)
}

/// The stored Argon2id hash of the account's KX password verifies `kx`.
fn kx_hash_verifies(t: &mut Transcript, ca: &TestCa, certificate_id: &str, kx: &str) -> bool {
    use argon2::{Argon2, PasswordHash, PasswordVerifier};
    let export = t.json(
        ca.kxca(&["accounts", "export", "--format", "kx-json"]),
        "accounts export",
    );
    let rec = export
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["certificate_id"] == certificate_id)
        .unwrap()
        .clone();
    let phc = rec["kx_password_phc"].as_str().unwrap();
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    Argon2::default()
        .verify_password(kx.as_bytes(), &PasswordHash::new(phc).unwrap())
        .is_ok()
}

/// The pickup code's stored hash (the pickup engineer's table) verifies `code`.
fn code_verifies(ca: &TestCa, certificate_id: &str, code: &str) -> bool {
    let conn = rusqlite::Connection::open(ca.path("kxca.db")).unwrap();
    let hashes: Vec<Option<String>> = conn
        .prepare("SELECT code_hash FROM enrolments WHERE certificate_id = ?1")
        .unwrap()
        .query_map([certificate_id], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    hashes
        .iter()
        .flatten()
        .any(|h| kxca_ca::enrolment::verify_code(code, h))
}

/// No byte string of `secret` in the files of the store or in `text`.
fn assert_nowhere(ca: &TestCa, t: &Transcript, secrets: &[String]) {
    let mut files = vec![ca.path("kxca.db")];
    for suffix in ["-wal", "-shm", "-journal"] {
        let p = ca.path(&format!("kxca.db{suffix}"));
        if p.exists() {
            files.push(p);
        }
    }
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for secret in secrets {
            let plain: String = secret.chars().filter(|c| *c != '-').collect();
            for needle in [secret.as_str(), plain.as_str()] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "a mailed secret is in {}",
                    f.display()
                );
            }
        }
    }
    for secret in secrets {
        assert!(
            !t.0.contains(secret.as_str()),
            "a mailed secret is in kxca's output"
        );
    }
}

/// POSTs the pickup form with curl (the body from a file, so no secret is on
/// a command line); returns (HTTP status, headers, body).
fn pickup_answer(
    ca: &TestCa,
    server: &support_ocsp::Server,
    id: &str,
    code: &str,
    password: &str,
    format: &str,
) -> (u16, String, Vec<u8>) {
    let dir = ca.dir.path();
    let req = dir.join("pickup-form");
    let out = dir.join("pickup-answer");
    let hdr = dir.join("pickup-headers");
    std::fs::write(
        &req,
        format!("certificate_id={id}&code={code}&password={password}&password_confirm={password}&format={format}"),
    )
    .unwrap();
    let o = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            common::p(&out),
            "-D",
            common::p(&hdr),
            "-w",
            "%{http_code}",
            "-H",
            "Content-Type: application/x-www-form-urlencoded",
            "--data-binary",
            &format!("@{}", common::p(&req)),
            &server.url("/pickup"),
        ])
        .output()
        .unwrap();
    std::fs::remove_file(&req).unwrap();
    (
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .unwrap_or(0),
        std::fs::read_to_string(&hdr)
            .unwrap_or_default()
            .to_lowercase(),
        std::fs::read(&out).unwrap_or_default(),
    )
}

/// Picks up a PKCS#12, opens it with openssl with the chosen password and
/// verifies its certificate against the chain for client authentication;
/// returns the certificate's PEM file.
fn pickup_p12(
    ca: &TestCa,
    server: &support_ocsp::Server,
    id: &str,
    code: &str,
    password: &str,
    format: &str,
) -> std::path::PathBuf {
    let (status, headers, body) = pickup_answer(ca, server, id, code, password, format);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(
        headers.contains("content-type: application/x-pkcs12"),
        "{headers}"
    );
    let p12 = ca.dir.path().join(format!("{id}-{format}.p12"));
    std::fs::write(&p12, &body).unwrap();
    let cert = ca.dir.path().join(format!("{id}-{format}.pem"));
    let passin = format!("pass:{password}");
    let mut args = vec![
        "pkcs12",
        "-in",
        common::p(&p12),
        "-passin",
        &passin,
        "-clcerts",
        "-nokeys",
        "-out",
        common::p(&cert),
    ];
    if format == "legacy" {
        args.push("-legacy");
    }
    let (ok, text) = common::run("openssl", &args);
    assert!(ok, "openssl pkcs12: {text}");
    let (ok, text) = common::run(
        "openssl",
        &["x509", "-in", common::p(&cert), "-out", common::p(&cert)],
    );
    assert!(ok, "{text}");
    let (ok, text) = common::run(
        "openssl",
        &[
            "verify",
            "-purpose",
            "sslclient",
            "-CAfile",
            common::p(&ca.path("ca/root.pem")),
            "-untrusted",
            common::p(&ca.path("ca/issuing-1.pem")),
            common::p(&cert),
        ],
    );
    assert!(ok && text.contains(": OK"), "{text}");
    cert
}

fn serial_of(cert: &std::path::Path) -> String {
    let (ok, t) = common::run(
        "openssl",
        &["x509", "-in", common::p(cert), "-noout", "-serial"],
    );
    assert!(ok, "{t}");
    t.trim().trim_start_matches("serial=").to_lowercase()
}

/// `openssl ocsp` says `expect` about `cert` within about ten seconds.
fn ocsp_eventually(
    ca: &TestCa,
    server: &support_ocsp::Server,
    cert: &std::path::Path,
    expect: &str,
) -> bool {
    for _ in 0..50 {
        let (ok, out) =
            support_ocsp::openssl_ocsp(ca, server, &["-no_nonce", "-cert", common::p(cert)]);
        if ok && out.contains("Response verify OK") && out.contains(expect) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    false
}

#[test]
fn signup_to_approval_mails_reset_and_revocation() {
    if !common::require_tool("openssl", &["version"])
        || !common::require_tool("curl", &["--version"])
    {
        return;
    }
    let Some(stack) = support_mailstack::private("prov-flow", 27410) else {
        return;
    };
    let ca = ca_with_mail(&stack);
    let mut t = Transcript::default();

    // Row 2: メールアドレス2 given; row 3: none, so mail 2 goes to メールアドレス1.
    let form = standard(&[
        contact_row(1, "12345", "001", Some(OTHER)),
        contact_row(2, "12346", "001", None),
    ]);
    stack.send(APPLICANT, SIGNUP, &signup("flow-1@office.test", &form));
    stack.wait_for(SIGNUP, "INBOX", 1);
    let fetch = t.json(ca.kxca(&["intake", "fetch", "--json"]), "intake fetch");
    assert_eq!(fetch["fetch"]["applications"], 1, "{fetch}");
    let apps = t.json(
        ca.kxca(&["applications", "list", "--json"]),
        "applications list",
    );
    let app_id = apps[0]["id"].as_i64().unwrap().to_string();
    assert_eq!(apps[0]["rows_valid"], 2, "{apps}");

    let approved = t.json(
        ca.kxca(&["applications", "approve", &app_id, "--json"]),
        "approve",
    );
    assert_eq!(
        approved["approved"].as_array().unwrap().len(),
        2,
        "{approved}"
    );
    assert_eq!(approved["mails_queued"], 4);
    let id1 = approved["approved"][0]["certificate_id"]
        .as_str()
        .unwrap()
        .to_string();
    let id2 = approved["approved"][1]["certificate_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(id1, "TI26276000000012345001");
    // A second approval approves nothing twice.
    let again = t.json(
        ca.kxca(&["applications", "approve", &app_id, "--json"]),
        "approve again",
    );
    assert_eq!(again["approved"].as_array().unwrap().len(), 0, "{again}");
    assert_eq!(again["already_decided"].as_array().unwrap().len(), 2);

    let sent = t.json(ca.kxca(&["outbox", "send", "--json"]), "outbox send");
    assert_eq!(sent["sent"], 4, "{sent}");
    // The applicant: the intake reply, mail 1 twice, row 3's mail 2.
    assert_eq!(stack.wait_for(APPLICANT, "INBOX", 4), 4);
    assert_eq!(stack.wait_for(OTHER, "INBOX", 1), 1);
    let applicant = stack.read(APPLICANT, "INBOX");
    let ready = with_subject(&applicant, "受け取り");
    assert_eq!(ready.len(), 2, "{applicant:?}");
    for (m, id) in ready.iter().zip([&id1, &id2]) {
        let body = m["body"].as_str().unwrap();
        assert!(body.contains(id.as_str()), "{body}");
        assert!(body.contains("http://127.0.0.1:8080/pickup"), "{body}");
        assert!(body.contains("Windows"), "{body}");
        assert_eq!(m["auto_submitted"], "auto-generated");
        // Mail 1 names the passwords but holds none.
        assert!(labelled(body, PICKUP_LABEL).is_none(), "{body}");
        assert!(labelled(body, KX_LABEL).is_none(), "{body}");
    }
    let other = stack.read(OTHER, "INBOX");
    let (code1, kx1) = secrets_of(&other[0], &id1);
    let second = with_subject(&applicant, "パスワード");
    assert_eq!(second.len(), 1, "{applicant:?}");
    let (code2, kx2) = secrets_of(&second[0], &id2);
    assert!(kx_hash_verifies(&mut t, &ca, &id1, &kx1));
    assert!(kx_hash_verifies(&mut t, &ca, &id2, &kx2));
    assert!(code_verifies(&ca, &id1, &code1));
    assert!(code_verifies(&ca, &id2, &code2));

    // Listing and searching.
    let found = t.json(
        ca.kxca(&["accounts", "list", "12346", "--json"]),
        "accounts list",
    );
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found[0]["certificate_id"], id2.as_str());
    let by_name = t.json(
        ca.kxca(&["accounts", "list", "山田", "--json"]),
        "accounts list by name",
    );
    assert_eq!(by_name.as_array().unwrap().len(), 2);

    // The contact picks up over HTTP from the public role with the mailed
    // code (modern PKCS#12), and the certificate works.
    let server = support_ocsp::Server::start(&ca);
    let cert1 = pickup_p12(&ca, &server, &id1, &code1, "Pickup1234", "modern");
    let serial1 = serial_of(&cert1);
    assert!(ocsp_eventually(&ca, &server, &cert1, ": good"));
    let shown = t.json(ca.kxca(&["accounts", "show", &id1, "--json"]), "show");
    assert_eq!(
        shown["current_serial"].as_str().unwrap().to_lowercase(),
        serial1,
        "{shown}"
    );

    // Reset: a new pickup superseding it, mail 1 and mail 2 again; the old
    // code stops working.
    let reset = t.json(ca.kxca(&["accounts", "reset", &id1, "--json"]), "reset");
    assert_eq!(
        reset["serials"][0].as_str().unwrap().to_lowercase(),
        serial1,
        "{reset}"
    );
    // The daemon beside `kxca serve` runs the mail pass too: which of the
    // two sends a mail does not matter, the mailbox counts.
    t.ok(ca.kxca(&["outbox", "send"]), "outbox send");
    assert_eq!(stack.wait_for(OTHER, "INBOX", 2), 2);
    let other = stack.read(OTHER, "INBOX");
    let (code1b, kx1b) = secrets_of(&other[1], &id1);
    assert_ne!(code1, code1b);
    assert!(code_verifies(&ca, &id1, &code1b));
    assert!(kx_hash_verifies(&mut t, &ca, &id1, &kx1b));
    assert!(!kx_hash_verifies(&mut t, &ca, &id1, &kx1));
    // At pickup (legacy PKCS#12 this time) the old one is revoked, superseded.
    let cert1b = pickup_p12(&ca, &server, &id1, &code1b, "Legacy5678", "legacy");
    let serial1b = serial_of(&cert1b);
    assert_ne!(serial1, serial1b);
    assert!(ocsp_eventually(&ca, &server, &cert1, "Reason: superseded"));
    assert!(ocsp_eventually(&ca, &server, &cert1b, ": good"));

    // Revocation of the contact: through the CA, OCSP says revoked.
    let revoked = t.json(
        ca.kxca(&[
            "accounts",
            "revoke",
            &id1,
            "--reason",
            "keyCompromise",
            "--json",
        ]),
        "revoke",
    );
    assert_eq!(
        revoked[0]["serials"][0].as_str().unwrap().to_lowercase(),
        serial1b,
        "{revoked}"
    );
    assert!(ocsp_eventually(
        &ca,
        &server,
        &cert1b,
        "Reason: keyCompromise"
    ));
    // Revoked: no more reset.
    let out = ca.kxca(&["accounts", "reset", &id1]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("revoked"));

    // Account 2's pickup renewed (as after a lock or expiry): a new mail 2
    // only, with a new code; the old one stops working.
    let renewed = t.json(
        ca.kxca(&["accounts", "renew-pickup", &id2, "--json"]),
        "renew-pickup",
    );
    assert_eq!(renewed["mails_queued"], 1, "{renewed}");
    t.ok(ca.kxca(&["outbox", "send"]), "outbox send");
    // Intake reply, mail 1 x 3, mail 2 x 2, the revocation notice of id1.
    assert_eq!(stack.wait_for(APPLICANT, "INBOX", 7), 7);
    let applicant = stack.read(APPLICANT, "INBOX");
    let second = with_subject(&applicant, "パスワード");
    assert_eq!(second.len(), 2, "{applicant:?}");
    let (code2b, kx2b) = secrets_of(&second[1], &id2);
    assert!(
        !code_verifies(&ca, &id2, &code2),
        "the renewed pickup's old code still works"
    );
    assert!(code_verifies(&ca, &id2, &code2b));
    assert!(kx_hash_verifies(&mut t, &ca, &id2, &kx2b));

    // The whole office of account 2 (never picked up): told by mail.
    let office = t.json(
        ca.kxca(&[
            "accounts",
            "revoke",
            "--office",
            "12346",
            "--reason",
            "cessationOfOperation",
            "--json",
        ]),
        "revoke --office",
    );
    assert_eq!(office[0]["certificate_id"], id2.as_str(), "{office}");
    // Its code, never used, no longer picks anything up.
    let refused = pickup_answer(&ca, &server, &id2, &code2b, "Pickup1234", "modern");
    assert!((400..500).contains(&refused.0), "{}", refused.0);
    assert!(
        !code_verifies(&ca, &id2, &code2b),
        "a revoked account's code still works"
    );
    t.ok(ca.kxca(&["outbox", "send"]), "outbox send");
    assert_eq!(stack.wait_for(APPLICANT, "INBOX", 8), 8);
    let applicant = stack.read(APPLICANT, "INBOX");
    let notices = with_subject(&applicant, "失効");
    assert_eq!(notices.len(), 2, "{applicant:?}");
    assert!(notices
        .iter()
        .any(|m| m["body"].as_str().unwrap().contains(&id1)));
    assert!(notices
        .iter()
        .any(|m| m["body"].as_str().unwrap().contains("KX のご利用を終了")));

    // The KX feed: both accounts, revoked, with hashes only.
    let csv = t.ok(
        ca.kxca(&["accounts", "export", "--format", "kx"]),
        "export csv",
    );
    let csv = String::from_utf8(csv.stdout).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("certificate_id,centre,union_code"),
        "{csv}"
    );
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(
        lines.iter().skip(1).all(|l| l.contains(",revoked,")),
        "{csv}"
    );

    // Approvals and revocations are in the audit trail, by the actor.
    let audit = t.json(ca.kxca(&["audit", "--json", "--limit", "500"]), "audit");
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "account.approve",
        "account.reset",
        "account.revoke",
        "account.secrets_minted",
        "certificate.revoke",
    ] {
        assert!(actions.contains(&a), "{a} not audited: {actions:?}");
    }

    let logs = server.log_text()
        + &server
            .daemon
            .as_ref()
            .map(|d| d.log_text())
            .unwrap_or_default();
    t.0.push_str(&logs);
    drop(server);
    assert_nowhere(
        &ca,
        &t,
        &[code1, kx1, code2, kx2, code1b, kx1b, code2b, kx2b],
    );
}

#[test]
fn rows_for_offices_with_accounts_and_lone_sharoushi_rows_are_not_approved() {
    let ca = TestCa::new();
    let maildir = ca.dir.path().join("Maildir");
    for d in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(d)).unwrap();
    }
    let config = ca.path("kxca.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("\n[mail]\nmaildir = {:?}\n", maildir));
    std::fs::write(&config, text).unwrap();
    let mut t = Transcript::default();
    let deliver = |name: &str, form: &[u8]| {
        std::fs::write(
            maildir.join("new").join(name),
            signup(&format!("{name}@office.test"), form),
        )
        .unwrap();
    };

    deliver("a1", &standard(&[contact_row(1, "20001", "001", None)]));
    t.json(ca.kxca(&["intake", "fetch", "--json"]), "fetch 1");
    let a = t.json(
        ca.kxca(&["applications", "approve", "1", "--json"]),
        "approve 1",
    );
    assert_eq!(a["approved"].as_array().unwrap().len(), 1, "{a}");

    // A second form: the same contact again, another contact of the same
    // office, a 社労士 (contact code 900) of an office with no account.
    deliver(
        "a2",
        &standard(&[
            contact_row(1, "20001", "001", None),
            contact_row(2, "20001", "002", None),
            contact_row(3, "20002", "900", None),
        ]),
    );
    t.json(ca.kxca(&["intake", "fetch", "--json"]), "fetch 2");
    let app = t.json(ca.kxca(&["applications", "show", "2", "--json"]), "show 2");
    let codes: Vec<Vec<String>> = app["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["findings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["code"].as_str().unwrap().to_string())
                .collect()
        })
        .collect();
    // The intake checked the rows against the register, and reported them.
    assert!(
        codes[0].iter().any(|c| c == "duplicate_existing_account"),
        "{codes:?}"
    );
    assert!(
        codes[1].iter().any(|c| c == "multiple_accounts_per_office"),
        "{codes:?}"
    );
    assert!(
        codes[2]
            .iter()
            .any(|c| c == "sharoushi_without_office_contact"),
        "{codes:?}"
    );

    // Named, each is refused with a reason, and nothing is approved.
    let rows: Vec<String> = app["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["row"].to_string())
        .collect();
    for r in &rows {
        let out = ca.kxca(&["applications", "approve", "2", "--rows", r]);
        assert!(!out.status.success(), "row {r} approved");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("row {r}")), "{err}");
    }
    let all = t.json(
        ca.kxca(&["applications", "approve", "2", "--json"]),
        "approve 2",
    );
    assert_eq!(all["approved"].as_array().unwrap().len(), 0, "{all}");
    let list = t.json(ca.kxca(&["accounts", "list", "--json"]), "list");
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Rejection: the applicant is told, in Japanese, answering their mail.
    let rejected = t.json(
        ca.kxca(&[
            "applications",
            "reject",
            "2",
            "--rows",
            &rows.join(","),
            "--reason",
            "既に登録済みの事業所です",
            "--json",
        ]),
        "reject",
    );
    assert_eq!(
        rejected["refused"].as_array().unwrap().len(),
        3,
        "{rejected}"
    );
    assert_eq!(rejected["mails_queued"], 1);
    let conn = rusqlite::Connection::open(ca.path("kxca.db")).unwrap();
    let (subject, body, in_reply_to): (String, String, String) = conn
        .query_row(
            "SELECT subject, body, in_reply_to FROM outbox WHERE kind = 'application-rejected'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert!(subject.contains("お受けできませんでした"), "{subject}");
    assert!(
        body.contains("既に登録済みの事業所です") && body.contains(&rows.join("、")),
        "{body}"
    );
    assert_eq!(in_reply_to, "a2@office.test");
    let shown = t.ok(ca.kxca(&["applications", "show", "2"]), "show");
    let shown = String::from_utf8_lossy(&shown.stdout).to_string();
    assert_eq!(shown.matches("[rejected by test").count(), 3, "{shown}");
    // Decided rows stay decided.
    let out = ca.kxca(&["applications", "approve", "2", "--rows", &rows[0], "--json"]);
    assert!(
        !out.status.success(),
        "a rejected row with errors was approved"
    );
}

/// Reminders through the library (the daemon's pass calls the same
/// function): each threshold once, the nearest one only, and once when two
/// stores race.
#[test]
fn expiry_reminders_are_queued_once_per_threshold() {
    let ca = TestCa::new();
    let maildir = ca.dir.path().join("Maildir");
    for d in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(d)).unwrap();
    }
    let config = ca.path("kxca.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("\n[mail]\nmaildir = {:?}\n", maildir));
    std::fs::write(&config, text).unwrap();
    std::fs::write(
        maildir.join("new").join("r1"),
        signup(
            "r1@office.test",
            &standard(&[contact_row(1, "12345", "001", None)]),
        ),
    )
    .unwrap();
    common::assert_ok(&ca.kxca(&["intake", "fetch"]), "fetch");
    common::assert_ok(&ca.kxca(&["applications", "approve", "1"]), "approve");
    let issued = common::Issued::from_output(&ca.kxca(&common::issue_args("12345", "001")));
    let shown: serde_json::Value =
        serde_json::from_slice(&ca.kxca(&["show", &issued.serial, "--json"]).stdout).unwrap();
    let not_after = shown["not_after"].as_i64().unwrap();

    let home = kxca_ca::Home::new(&ca.home);
    let ca_handle = kxca_ca::Ca::open(home.clone(), kxca_ca::Clock::system()).unwrap();
    let setup = kxca_provisioner::accounts::Setup::load(&ca_handle, None).unwrap();
    drop(ca_handle);
    let run = |days_left: f64| {
        let mut store = kxca_ca::Store::open(&home.database(), false).unwrap();
        kxca_provisioner::accounts::reminders::queue_due(
            &mut store,
            &setup,
            "test",
            not_after - (days_left * 86400.0) as i64,
        )
        .unwrap()
    };
    assert_eq!(run(40.0).queued, 0);
    assert_eq!(run(29.5).queued, 1);
    assert_eq!(run(29.0).queued, 0);
    assert_eq!(run(20.0).already_queued, 1);
    // First seen at 3 days: only the 5-day reminder, not 30 and 15 too.
    assert_eq!(run(3.0).queued, 1);
    // Two daemons at the 1-day mark: one reminder.
    let queued: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2).map(|_| scope.spawn(|| run(0.5).queued)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(queued, 1);
    let conn = rusqlite::Connection::open(ca.path("kxca.db")).unwrap();
    let keys: Vec<String> = conn
        .prepare("SELECT idempotency_key FROM outbox WHERE kind = 'expiry-reminder' ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let serial = issued.serial.to_lowercase();
    assert_eq!(
        keys.iter().map(|k| k.to_lowercase()).collect::<Vec<_>>(),
        [30, 5, 1]
            .iter()
            .map(|d| format!("expiry-reminder:{serial}:{d}"))
            .collect::<Vec<_>>()
    );
    let body: String = conn
        .query_row(
            "SELECT body FROM outbox WHERE kind = 'expiry-reminder' ORDER BY id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        body.contains("有効期限") && body.contains(&issued.certificate_id),
        "{body}"
    );
}

/// Rows valid when their forms were read can break the register's rules by
/// the time an admin approves them (another application approved first):
/// approval checks again, in its transaction, with the rows approved
/// before it in the same call.
#[test]
fn approval_checks_the_register_again() {
    let ca = TestCa::new();
    let maildir = ca.dir.path().join("Maildir");
    for d in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(d)).unwrap();
    }
    let config = ca.path("kxca.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("\n[mail]\nmaildir = {:?}\n", maildir));
    std::fs::write(&config, text).unwrap();
    // Office 40004 may have a 社労士 account beside its own contact.
    let policy = ca.path("policies/intake.toml");
    let text = std::fs::read_to_string(&policy).unwrap().replace(
        "multiple_accounts = []",
        "multiple_accounts = [\"26276-00-40004\"]",
    );
    std::fs::write(&policy, text).unwrap();
    let mut t = Transcript::default();
    let forms = [
        standard(&[contact_row(1, "40001", "001", None)]),
        standard(&[
            contact_row(1, "40001", "001", None),
            contact_row(2, "40002", "001", None),
        ]),
        standard(&[
            contact_row(1, "40004", "900", None),
            contact_row(2, "40004", "001", None),
        ]),
        standard(&[contact_row(1, "40005", "001", None)]),
        standard(&[contact_row(1, "40005", "002", None)]),
    ];
    for (i, form) in forms.iter().enumerate() {
        std::fs::write(
            maildir.join("new").join(format!("m{i}")),
            signup(&format!("m{i}@office.test"), form),
        )
        .unwrap();
    }
    t.json(ca.kxca(&["intake", "fetch", "--json"]), "fetch");
    let apps = t.json(ca.kxca(&["applications", "list", "--json"]), "list");
    let apps = apps.as_array().unwrap();
    assert_eq!(apps.len(), 5);
    assert!(apps.iter().all(|a| a["rows_invalid"] == 0), "{apps:?}");
    let id = |n: usize| apps[n]["id"].to_string();
    let rows_of = |n: usize| -> Vec<String> {
        let app = t_json(&ca, &["applications", "show", &id(n), "--json"]);
        app["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["row"].to_string())
            .collect()
    };

    // The same contact in two applications: the second is refused.
    let a = t.json(
        ca.kxca(&["applications", "approve", &id(0), "--json"]),
        "approve 1",
    );
    assert_eq!(a["approved"].as_array().unwrap().len(), 1, "{a}");
    let rows = rows_of(1);
    let out = ca.kxca(&["applications", "approve", &id(1), "--rows", &rows[0]]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already exists"), "{err}");
    let a = t.json(
        ca.kxca(&["applications", "approve", &id(1), "--json"]),
        "approve 2",
    );
    assert_eq!(a["approved"].as_array().unwrap().len(), 1, "{a}");
    assert_eq!(a["approved"][0]["row"].to_string(), rows[1]);
    assert_eq!(a["refused"][0]["row"].to_string(), rows[0]);

    // A 社労士 row alone is refused; with its office's contact in the same
    // approval, both are approved (the office contact first).
    let rows = rows_of(2);
    let out = ca.kxca(&["applications", "approve", &id(2), "--rows", &rows[0]]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("社労士"), "{err}");
    let a = t.json(
        ca.kxca(&["applications", "approve", &id(2), "--json"]),
        "approve 3",
    );
    assert_eq!(a["approved"].as_array().unwrap().len(), 2, "{a}");

    // One account per office: a second contact of 40005 is refused.
    t.json(
        ca.kxca(&["applications", "approve", &id(3), "--json"]),
        "approve 4",
    );
    let a = t.json(
        ca.kxca(&["applications", "approve", &id(4), "--json"]),
        "approve 5",
    );
    assert_eq!(a["approved"].as_array().unwrap().len(), 0, "{a}");
    let reason = a["refused"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("already has an account"), "{reason}");

    let list = t.json(ca.kxca(&["accounts", "list", "--json"]), "list");
    assert_eq!(list.as_array().unwrap().len(), 5);
    let sharoushi: Vec<bool> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["sharoushi"].as_bool().unwrap())
        .collect();
    assert_eq!(sharoushi.iter().filter(|s| **s).count(), 1);
}

fn t_json(ca: &TestCa, args: &[&str]) -> serde_json::Value {
    let out = ca.kxca(args);
    common::assert_ok(&out, &args.join(" "));
    serde_json::from_slice(&out.stdout).unwrap()
}

//! The certificate pickup (issue 12), end to end over HTTP: the test plays
//! the approval step through the library (`enrolment::open` + `mint_code`
//! on the home's store), then picks up from `kxca serve` (public role, no
//! CA key) while `kxca daemon` (private role) signs. Every artefact is
//! checked with openssl (pkcs12, verify -purpose sslclient, ocsp) and
//! pkilint; the store, its WAL and both logs are searched for the codes
//! and passwords.

use kxca_test_support::common;
use kxca_test_support::ocsp as support_ocsp;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{p, run, TestCa};
use kxca_ca::enrolment::{self, EnrolmentState, NewEnrolment, PickupPolicy};
use kxca_ca::{Clock, Holder, Serial, Store};
use kxca_hsm::KeyAlgorithm;
use support_ocsp::{eventually, get, openssl_ocsp, Daemon, Server};

fn tools_present() -> bool {
    support_ocsp::tools_present()
}

fn holder(contact: &str) -> Holder {
    Holder {
        centre: "JC".into(),
        union_code: "26276".into(),
        branch_code: "00".into(),
        contract_unit: "2627600".into(),
        office_code: "1234".into(),
        contact_code: contact.into(),
        office_name: "設計事務所テスト".into(),
        contact_name: "山田 太郎".into(),
        email: "taro@example.co.jp".into(),
    }
}

fn certificate_id(contact: &str) -> String {
    format!("TI26276000000001234{contact}")
}

/// The approval step as the accounts side will do it: an enrolment and its
/// code in one transaction. `minted_at` lets a test mint in the past.
fn enrol(
    ca: &TestCa,
    contact: &str,
    supersedes: Option<&str>,
    key: Option<KeyAlgorithm>,
    minted_at: Option<i64>,
) -> String {
    let policy = PickupPolicy::load(&ca.path("policies")).unwrap();
    let mut store = Store::open(&ca.path("kxca.db"), false).unwrap();
    let now = Clock::system().now();
    let h = holder(contact);
    let id = certificate_id(contact);
    let code = store
        .write(|tx| {
            let e = enrolment::open(
                tx,
                &NewEnrolment {
                    certificate_id: &id,
                    holder: &h,
                    profile: "office-client",
                    supersedes: supersedes.map(|s| s.parse::<Serial>().unwrap()),
                    key_algorithm: key,
                },
                "test-admin",
                now,
            )?;
            enrolment::mint_code(tx, e, &policy, minted_at.unwrap_or(now))
        })
        .unwrap();
    code.to_string()
}

fn state(ca: &TestCa, contact: &str) -> enrolment::Enrolment {
    let store = Store::open(&ca.path("kxca.db"), false).unwrap();
    store
        .read(|c| enrolment::by_certificate_id(c, &certificate_id(contact), Clock::system().now()))
        .unwrap()
        .unwrap()
}

/// What a POST /pickup answered.
struct Answer {
    code: u16,
    headers: String,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn n() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// `curl` POSTs the form (the body from a file, so no secret is on a
/// command line other processes can read).
fn pickup(
    dir: &Path,
    server: &Server,
    id: &str,
    code: &str,
    password: &str,
    confirm: &str,
    format: &str,
) -> Answer {
    let k = n();
    let req = dir.join(format!("form-{k}"));
    let out = dir.join(format!("answer-{k}"));
    let hdr = dir.join(format!("headers-{k}"));
    let mut body =
        format!("certificate_id={id}&code={code}&password={password}&password_confirm={confirm}");
    if !format.is_empty() {
        body.push_str(&format!("&format={format}"));
    }
    std::fs::write(&req, body).unwrap();
    let o = Command::new("curl")
        .args([
            "-s",
            "-o",
            p(&out),
            "-D",
            p(&hdr),
            "-w",
            "%{http_code}",
            "-H",
            "Content-Type: application/x-www-form-urlencoded",
            "--data-binary",
            &format!("@{}", p(&req)),
            &server.url("/pickup"),
        ])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&req);
    Answer {
        code: String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .unwrap_or(0),
        headers: std::fs::read_to_string(&hdr)
            .unwrap_or_default()
            .to_lowercase(),
        body: std::fs::read(&out).unwrap_or_default(),
    }
}

/// Opens a picked-up PKCS#12 with openssl and checks what is in it:
/// writes the leaf certificate and returns its path.
fn open_p12(dir: &Path, a: &Answer, id: &str, password: &str, legacy: bool) -> PathBuf {
    assert_eq!(a.code, 200, "{}", a.text());
    assert!(
        a.headers.contains("content-type: application/x-pkcs12"),
        "{}",
        a.headers
    );
    assert!(
        a.headers.contains(&format!(
            "content-disposition: attachment; filename=\"{}.p12\"",
            id.to_lowercase()
        )),
        "{}",
        a.headers
    );
    assert!(
        a.headers.contains("cache-control: no-store"),
        "{}",
        a.headers
    );
    let k = n();
    let p12 = dir.join(format!("{id}-{k}.p12"));
    std::fs::write(&p12, &a.body).unwrap();
    let passin = format!("pass:{password}");
    let (ok, info) = run(
        "openssl",
        &[
            "pkcs12",
            "-info",
            "-noout",
            "-in",
            p(&p12),
            "-passin",
            &passin,
        ],
    );
    assert!(ok, "openssl pkcs12 -info: {info}");
    if legacy {
        assert!(
            info.contains("pbeWithSHA1And3-KeyTripleDES-CBC") && info.contains("MAC: sha1"),
            "{info}"
        );
    } else {
        assert!(
            info.contains("PBES2, PBKDF2, AES-256-CBC") && info.contains("MAC: sha256"),
            "{info}"
        );
    }
    // A wrong password does not open it.
    let (bad, _) = run(
        "openssl",
        &[
            "pkcs12",
            "-info",
            "-noout",
            "-in",
            p(&p12),
            "-passin",
            "pass:wrong123x",
        ],
    );
    assert!(!bad);
    let (ok, dump) = run(
        "openssl",
        &["pkcs12", "-in", p(&p12), "-passin", &passin, "-nodes"],
    );
    assert!(ok, "{dump}");
    assert_eq!(dump.matches("BEGIN CERTIFICATE").count(), 3, "{dump}");
    assert!(dump.contains(&format!("friendlyName: {id}")), "{dump}");
    let cert = dir.join(format!("{id}-{k}.pem"));
    let key = dir.join(format!("{id}-{k}.key"));
    for (what, out) in [("-clcerts", &cert), ("-nocerts", &key)] {
        let (ok, t) = run(
            "openssl",
            &[
                "pkcs12",
                "-in",
                p(&p12),
                "-passin",
                &passin,
                what,
                "-nodes",
                "-out",
                p(out),
            ],
        );
        assert!(ok, "{t}");
    }
    // Without the bag attributes openssl prints before it (pkilint reads
    // plain PEM only).
    let (ok, t) = run("openssl", &["x509", "-in", p(&cert), "-out", p(&cert)]);
    assert!(ok, "{t}");
    // The key in the file is the certificate's.
    let (_, cert_pub) = run("openssl", &["x509", "-in", p(&cert), "-noout", "-pubkey"]);
    let (_, key_pub) = run("openssl", &["pkey", "-in", p(&key), "-pubout"]);
    assert_eq!(cert_pub, key_pub);
    let _ = std::fs::remove_file(&key);
    cert
}

fn verify_client(ca: &TestCa, cert: &Path) {
    let (ok, t) = run(
        "openssl",
        &[
            "verify",
            "-x509_strict",
            "-purpose",
            "sslclient",
            "-CAfile",
            p(&ca.path("ca/root.pem")),
            "-untrusted",
            p(&ca.path("ca/issuing-1.pem")),
            p(cert),
        ],
    );
    assert!(ok && t.contains(": OK"), "{t}");
}

fn serial_of(cert: &Path) -> String {
    let (ok, t) = run("openssl", &["x509", "-in", p(cert), "-noout", "-serial"]);
    assert!(ok, "{t}");
    t.trim().trim_start_matches("serial=").to_lowercase()
}

fn ocsp_says(ca: &TestCa, server: &Server, cert: &Path, expect: &str) -> bool {
    let (ok, out) = openssl_ocsp(ca, server, &["-no_nonce", "-cert", p(cert)]);
    ok && out.contains("Response verify OK") && out.contains(expect)
}

/// Asserts none of `secrets` is in the store, its WAL, or `logs`.
fn assert_no_secrets(ca: &TestCa, secrets: &[String], logs: &[String]) {
    let mut files = Vec::new();
    for f in ["kxca.db", "kxca.db-wal"] {
        if let Ok(b) = std::fs::read(ca.path(f)) {
            files.push((f.to_string(), b));
        }
    }
    for (i, l) in logs.iter().enumerate() {
        files.push((format!("log {i}"), l.as_bytes().to_vec()));
    }
    assert!(files.iter().any(|(f, _)| f == "kxca.db"));
    for s in secrets {
        let plain: String = s.chars().filter(|c| *c != '-').collect();
        for needle in [s.as_str(), plain.as_str()] {
            for (f, bytes) in &files {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "a secret is in {f}"
                );
            }
        }
    }
}

#[test]
fn pickup_both_formats_then_a_reset_supersedes_the_old_certificate() {
    if !tools_present() {
        return;
    }
    let ca = TestCa::new();
    let dir = ca.dir.path();
    let server = Server::start(&ca);

    // The form: Japanese, not cached, not framed, no script.
    let (code, headers, body) = get(&server.url("/pickup"), &[], dir);
    assert_eq!(code, 200);
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains("クライアント証明書の受け取り") && page.contains("Windows 10 / 11"));
    assert!(
        headers.contains("content-type: text/html; charset=utf-8"),
        "{headers}"
    );
    assert!(headers.contains("cache-control: no-store"), "{headers}");
    assert!(headers.contains("frame-ancestors 'none'"), "{headers}");
    assert!(headers.contains("x-frame-options: deny"), "{headers}");

    // First pickup: P-256, modern PKCS#12.
    let id = certificate_id("001");
    let code1 = enrol(&ca, "001", None, Some(KeyAlgorithm::EcdsaP256), None);
    assert_eq!(code1.len(), 24, "XXXX-XXXX-XXXX-XXXX-XXXX");
    let pw1 = "Pickup1Modern";
    let a = pickup(dir, &server, &id, &code1, pw1, pw1, "");
    let cert1 = open_p12(dir, &a, &id, pw1, false);
    verify_client(&ca, &cert1);
    let (_, text) = run("openssl", &["x509", "-in", p(&cert1), "-noout", "-text"]);
    assert!(
        text.contains("prime256v1") || text.contains("P-256"),
        "{text}"
    );
    assert!(text.contains(&format!("CN = {id}")), "{text}");
    let serial1 = serial_of(&cert1);
    eventually("OCSP good for the picked-up certificate", || {
        ocsp_says(&ca, &server, &cert1, ": good")
    });
    let e = state(&ca, "001");
    assert_eq!(e.state, EnrolmentState::Issued);
    assert_eq!(
        e.serial.as_deref().map(str::to_lowercase),
        Some(serial1.clone())
    );

    // The code is single-use: a replay is refused and issues nothing.
    let replay = pickup(dir, &server, &id, &code1, pw1, pw1, "");
    assert_eq!(replay.code, 409, "{}", replay.text());
    assert!(
        replay.text().contains("すでに受け取られています"),
        "{}",
        replay.text()
    );

    // A reset: a new enrolment superseding the first certificate, the
    // profile's default key (RSA-2048), legacy PKCS#12 for old Windows.
    let code2 = enrol(&ca, "001", Some(&serial1), None, None);
    let pw2 = "Legacy2Pickup";
    let a = pickup(
        dir,
        &server,
        &id.to_lowercase(),
        &code2.to_lowercase(),
        pw2,
        pw2,
        "legacy",
    );
    let cert2 = open_p12(dir, &a, &id, pw2, true);
    verify_client(&ca, &cert2);
    let (_, text) = run("openssl", &["x509", "-in", p(&cert2), "-noout", "-text"]);
    assert!(
        text.contains("Public-Key: (2048 bit)") && text.contains("rsaEncryption"),
        "{text}"
    );
    let serial2 = serial_of(&cert2);
    assert_ne!(serial1, serial2);
    // The old one is revoked (superseded) in the transaction that issued
    // the new one; the daemon signs the answers within seconds.
    eventually("OCSP revoked (superseded) for the old serial", || {
        let (ok, out) = openssl_ocsp(&ca, &server, &["-no_nonce", "-cert", p(&cert1)]);
        ok && out.contains(": revoked") && out.contains("Reason: superseded")
    });
    eventually("OCSP good for the new serial", || {
        ocsp_says(&ca, &server, &cert2, ": good")
    });
    let conn = rusqlite::Connection::open_with_flags(
        ca.path("kxca.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let (revoked_at, issued_at): (i64, i64) = conn
        .query_row(
            "SELECT r.revoked_at, n.issued_at FROM revocations r
             JOIN certificates o ON o.id = r.certificate
             JOIN certificates n ON lower(n.serial) = lower(?2)
             WHERE lower(o.serial) = lower(?1) AND r.reason = 4",
            [&serial1, &serial2],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        revoked_at, issued_at,
        "one transaction: revoked when the new one was issued"
    );

    // pkilint on both picked-up certificates (and the CRL the daemon signed).
    eventually("a CRL listing the superseded serial", || {
        let (ok, t) = run(
            "openssl",
            &[
                "crl",
                "-in",
                p(&ca.path("crl/issuing-1.pem")),
                "-noout",
                "-text",
            ],
        );
        ok && t.to_lowercase().contains(&serial1.to_lowercase())
    });
    common::pkilint_certificates_and_crl(
        &[cert1.clone(), cert2.clone()],
        &ca.path("crl/issuing-1.pem"),
    );

    // GET, two pickups, one replay.
    let (_, _, metrics) = get(&server.url("/metrics"), &[], dir);
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains("kxca_http_requests_total{kind=\"pickup\"} 4"),
        "{metrics}"
    );
    let mut server = server;
    assert!(server.stop());
    let logs = vec![server.log_text()];
    assert!(
        logs[0].contains("pickup method=POST outcome=issued http=200"),
        "{}",
        logs[0]
    );
    let conn_store = Store::open(&ca.path("kxca.db"), false).unwrap();
    conn_store.truncate_wal("test").unwrap();
    drop(conn_store);
    assert_no_secrets(
        &ca,
        &[code1, code2, pw1.to_string(), pw2.to_string()],
        &logs,
    );
}

#[test]
fn wrong_codes_lock_expired_codes_issue_nothing_and_racing_pickups_make_one_certificate() {
    if !tools_present() {
        return;
    }
    let ca = TestCa::new();
    let dir = ca.dir.path();
    let server = Server::start(&ca);
    let pw = "Abcd1234";

    // The form is checked before a code is tried: no try is spent.
    let id = certificate_id("002");
    let code = enrol(&ca, "002", None, Some(KeyAlgorithm::EcdsaP256), None);
    let a = pickup(dir, &server, &id, &code, pw, "Abcd1235", "");
    assert_eq!(a.code, 400);
    assert!(a.text().contains("一致しません"), "{}", a.text());
    let a = pickup(dir, &server, &id, &code, "short", "short", "");
    assert_eq!(a.code, 400);
    assert!(a.text().contains("8文字以上16文字以内"), "{}", a.text());
    assert_eq!(state(&ca, "002").tries, 0);

    // Wrong codes count down, then lock; the right code no longer works.
    for left in (1..5).rev() {
        let a = pickup(dir, &server, &id, "AAAA-AAAA-AAAA-AAAA-AAAA", pw, pw, "");
        assert_eq!(a.code, 403, "{}", a.text());
        assert!(a.text().contains(&format!("あと{left}回")), "{}", a.text());
    }
    let a = pickup(dir, &server, &id, "AAAA-AAAA-AAAA-AAAA-AAAA", pw, pw, "");
    assert_eq!(a.code, 423, "{}", a.text());
    assert!(a.text().contains("ロックされました") && a.text().contains("お電話ください"));
    let a = pickup(dir, &server, &id, &code, pw, pw, "");
    assert_eq!(a.code, 423, "{}", a.text());
    let e = state(&ca, "002");
    assert_eq!((e.state, e.tries), (EnrolmentState::Locked, 5));
    // What the admins see.
    let out = ca.kxca(&["pickups", "--state", "locked", "--json"]);
    common::assert_ok(&out, "kxca pickups");
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["certificate_id"], id.as_str());
    assert_eq!(listed[0]["state"], "locked");
    assert_eq!(listed[0]["tries"], 5);
    assert!(listed[0].get("code_hash").is_none());
    let out = ca.kxca(&["pickups"]);
    common::assert_ok(&out, "kxca pickups");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&id) && text.contains("locked"), "{text}");

    // An admin renews; the new code works, the old one stays dead.
    let mut store = Store::open(&ca.path("kxca.db"), false).unwrap();
    let policy = PickupPolicy::load(&ca.path("policies")).unwrap();
    let now = Clock::system().now();
    let renewed = store
        .write(|tx| {
            enrolment::renew(tx, e.id, "test-admin", now)?;
            enrolment::mint_code(tx, e.id, &policy, now)
        })
        .unwrap()
        .to_string();
    drop(store);
    let a = pickup(dir, &server, &id, &code, pw, pw, "");
    assert_eq!(a.code, 403, "{}", a.text());
    let a = pickup(dir, &server, &id, &renewed, pw, pw, "");
    let cert = open_p12(dir, &a, &id, pw, false);
    verify_client(&ca, &cert);

    // Expired: minted longer ago than the policy's lifetime.
    let id3 = certificate_id("003");
    let old = enrol(
        &ca,
        "003",
        None,
        Some(KeyAlgorithm::EcdsaP256),
        Some(Clock::system().now() - policy.code_lifetime_seconds - 60),
    );
    let a = pickup(dir, &server, &id3, &old, pw, pw, "");
    assert_eq!(a.code, 410, "{}", a.text());
    assert!(a.text().contains("有効期限が過ぎています"), "{}", a.text());
    assert_eq!(state(&ca, "003").state, EnrolmentState::Expired);

    // Unknown certificate id.
    let a = pickup(dir, &server, "TI999", &old, pw, pw, "");
    assert_eq!(a.code, 404, "{}", a.text());

    // Four pickups racing on one code: one certificate.
    let id4 = certificate_id("004");
    let code4 = enrol(&ca, "004", None, Some(KeyAlgorithm::EcdsaP256), None);
    let answers: Vec<Answer> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| pickup(dir, &server, &id4, &code4, pw, pw, "")))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let codes: Vec<u16> = answers.iter().map(|a| a.code).collect();
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 1, "{codes:?}");
    assert!(codes.iter().all(|c| *c == 200 || *c == 409), "{codes:?}");
    let conn = rusqlite::Connection::open_with_flags(
        ca.path("kxca.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let issued: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM certificates WHERE certificate_id = ?1",
            [&id4],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(issued, 1);

    let mut server = server;
    assert!(server.stop());
    let logs = vec![server.log_text()];
    let s = Store::open(&ca.path("kxca.db"), false).unwrap();
    s.truncate_wal("test").unwrap();
    drop(s);
    assert_no_secrets(&ca, &[code, renewed, old, code4, pw.to_string()], &logs);
}

/// Hides each path from the command (a directory under an empty tmpfs, a
/// file under /dev/null) in its own mount namespace, as tests/roles.rs does.
const HIDE: &str = r#"set -e
bin=$1; shift; n=$1; shift; i=0
while [ "$i" -lt "$n" ]; do
  if [ -d "$1" ]; then mount -t tmpfs -o mode=000,size=1m tmpfs "$1"; else mount --bind /dev/null "$1"; fi
  shift; i=$((i+1))
done
exec "$bin" "$@""#;

#[test]
fn with_the_daemon_down_the_keyless_public_role_answers_503_and_the_code_still_works() {
    if !tools_present() || !common::require_tool("unshare", &["--version"]) {
        return;
    }
    let ca = TestCa::new();
    let dir = ca.dir.path();
    // Wait 2 s instead of 20 for the daemon (the policy file is read at start).
    let policy_path = ca.path("policies/pickup.toml");
    let text = std::fs::read_to_string(&policy_path).unwrap();
    std::fs::write(
        &policy_path,
        text.replace("wait_seconds = 20", "wait_seconds = 2"),
    )
    .unwrap();
    // The public role alone, with the CA keys and their secret hidden.
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--", "sh", "-c", HIDE, "sh"])
        .arg(kxca_test_support::kxca_bin())
        .arg("2")
        .arg(ca.path("keys"))
        .arg(&ca.pass_file)
        .env("KXCA_HOME", &ca.home)
        .env("KXCA_ACTOR", "test")
        .env_remove("KXCA_KEY_PASSPHRASE")
        .env_remove("KXCA_LOG");
    let mut server = Server::start_cmd(&ca, cmd);
    let id = certificate_id("005");
    let code = enrol(&ca, "005", None, Some(KeyAlgorithm::EcdsaP256), None);
    let pw = "Zx9876543";
    let a = pickup(dir, &server, &id, &code, pw, pw, "");
    assert_eq!(a.code, 503, "{}", a.text());
    assert!(a.headers.contains("retry-after:"), "{}", a.headers);
    assert!(a.text().contains("数分後にもう一度") && a.text().contains("そのまま使えます"));
    // The code is given back; the request is abandoned, never to be signed.
    assert_eq!(state(&ca, "005").state, EnrolmentState::Waiting);

    // The daemon starts; it does not sign the abandoned request, and the
    // same code now works.
    let daemon = Daemon::start(&ca);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let a = pickup(dir, &server, &id, &code, pw, pw, "legacy");
    let cert = open_p12(dir, &a, &id, pw, true);
    verify_client(&ca, &cert);
    eventually("OCSP good", || ocsp_says(&ca, &server, &cert, ": good"));
    let conn = rusqlite::Connection::open_with_flags(
        ca.path("kxca.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let states: Vec<String> = conn
        .prepare("SELECT state FROM pickup_requests ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(states, ["abandoned", "signed"]);
    let n: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM certificates WHERE certificate_id = ?1",
            [&id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1);
    assert!(server.stop());
    let mut daemon = daemon;
    assert!(daemon.stop());
    let logs = vec![server.log_text(), daemon.log_text()];
    assert!(
        logs[0].contains("outcome=daemon_timeout http=503"),
        "{}",
        logs[0]
    );
    assert_no_secrets(&ca, &[code, pw.to_string()], &logs);
}

#[test]
fn a_request_the_public_role_left_behind_is_abandoned_by_the_daemon_not_signed() {
    if !tools_present() {
        return;
    }
    let ca = TestCa::new();
    let id = certificate_id("006");
    let code = enrol(&ca, "006", None, Some(KeyAlgorithm::EcdsaP256), None);
    // A public role that claimed the code and died before the daemon ran:
    // its request is older than the policy's wait when the daemon sees it.
    let policy = PickupPolicy::load(&ca.path("policies")).unwrap();
    let mut store = Store::open(&ca.path("kxca.db"), false).unwrap();
    let then = Clock::system().now() - i64::from(policy.wait_seconds) - 5;
    let key = kxca_hsm::EphemeralKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let candidate = store
        .read(|c| enrolment::pickup::check(c, &id, then))
        .unwrap()
        .unwrap();
    assert!(candidate.verify(&code));
    let claim = store
        .write(|tx| {
            enrolment::pickup::claim(
                tx,
                &candidate,
                true,
                key.public_key_der(),
                KeyAlgorithm::EcdsaP256,
                &policy,
                "test",
                then,
            )
        })
        .unwrap();
    assert!(
        matches!(claim, enrolment::pickup::Claim::Claimed(_)),
        "{claim:?}"
    );
    drop(key);
    assert_eq!(state(&ca, "006").state, EnrolmentState::Used);
    let mut daemon = Daemon::start(&ca);
    eventually("the daemon gives the code back", || {
        state(&ca, "006").state == EnrolmentState::Waiting
    });
    assert!(daemon.stop());
    let conn = rusqlite::Connection::open_with_flags(
        ca.path("kxca.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let (state_, n): (String, i64) = conn
        .query_row(
            "SELECT r.state, (SELECT COUNT(*) FROM certificates WHERE certificate_id = ?1)
             FROM pickup_requests r",
            [&id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((state_.as_str(), n), ("abandoned", 0));
    assert!(
        daemon.log_text().contains("too old to sign"),
        "{}",
        daemon.log_text()
    );
}

#[test]
fn the_daemon_signs_only_through_the_issuance_gate() {
    if !tools_present() {
        return;
    }
    let ca = TestCa::new();
    let dir = ca.dir.path();
    let server = Server::start(&ca);
    let policy = PickupPolicy::load(&ca.path("policies")).unwrap();
    let now = Clock::system().now();
    let pw = "Gate1234x";
    // (a) an id the profile's template does not give this holder;
    // (b) a holder the intake rules refuse (no e-mail domain).
    let mut bad_email = holder("008");
    bad_email.email = "taro-at-example".into();
    let cases = [
        (
            "TI99999999999999999007".to_string(),
            holder("007"),
            "certificate_id",
        ),
        (certificate_id("008"), bad_email, "email"),
    ];
    for (id, h, field) in cases {
        let mut store = Store::open(&ca.path("kxca.db"), false).unwrap();
        let (e, code) = store
            .write(|tx| {
                let e = enrolment::open(
                    tx,
                    &NewEnrolment {
                        certificate_id: &id,
                        holder: &h,
                        profile: "office-client",
                        supersedes: None,
                        key_algorithm: Some(KeyAlgorithm::EcdsaP256),
                    },
                    "test-admin",
                    now,
                )?;
                Ok((e, enrolment::mint_code(tx, e, &policy, now)?))
            })
            .unwrap();
        let a = pickup(dir, &server, &id, &code, pw, pw, "");
        assert_eq!(a.code, 500, "{}", a.text());
        assert!(a.text().contains("発行できませんでした"), "{}", a.text());
        let seen = store
            .read(|c| enrolment::get(c, e, Clock::system().now()))
            .unwrap()
            .unwrap();
        // Nothing issued; the code works again once the admins fix it.
        assert_eq!(seen.state, EnrolmentState::Waiting);
        let error = seen.last_error.unwrap_or_default();
        assert!(error.contains(field), "{error}");
        let conn = rusqlite::Connection::open_with_flags(
            ca.path("kxca.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let issued: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM certificates WHERE state = 'issued' AND email = ?1",
                [&h.email],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(issued, 0);
    }
}

//! The admin console over TLS (`[console.tls]`): a server certificate from
//! kxca's own CA (`kxca admin tls-cert`) checked with `openssl s_client` /
//! `openssl verify -purpose sslserver` and curl, the Host guard with the
//! certificate's names, plain HTTP refused on the TLS port, and the
//! admin client certificate (`kxca admin cert`) as the second factor over
//! mutual TLS: password + certificate opens a session; password alone,
//! another admin's certificate or a revoked one are refused, and a
//! revocation ends a live session at its next request. pkilint on both
//! certificates; `openssl pkcs12 -info` opens the admin's PKCS#12.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use kxca_test_support::browser::free_port;
use kxca_test_support::common::{self, TestCa};
use kxca_test_support::console::{
    audit_events, code, login_body, new_admin, response, spawn_daemon, NewAdmin,
};

const NAME: &str = "console.kx.test";

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn with_pass(ca: &TestCa, args: &[&str]) -> Output {
    ca.cmd()
        .args(args)
        .env("KXCA_KEY_PASSPHRASE", common::PASSPHRASE)
        .output()
        .unwrap()
}

fn set_console(ca: &TestCa, console: &str) {
    let config = ca.path("kxca.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    if let Some(i) = text.find("\n[console]") {
        text.truncate(i);
    }
    text.push_str(&format!("\n[console]\n{console}"));
    std::fs::write(&config, text).unwrap();
}

/// Starts the daemon; Ok(url printed) once ready, or Err(stderr) if it exits.
fn start(ca: &TestCa) -> Result<(Daemon, String), String> {
    spawn_daemon(ca, true, Stdio::piped())
        .map(|(child, url)| (Daemon(child), url.unwrap_or_default()))
}

fn openssl(args: &[&str]) -> (bool, String) {
    common::run("openssl", args)
}

/// One curl exchange: (status, lower-cased head, body). `extra`: cert
/// options. Cookies live in `jar`.
fn curl(
    dir: &Path,
    port: u16,
    method: &str,
    path: &str,
    jar: &Path,
    body: Option<&str>,
    extra: &[&str],
) -> (u16, String, String) {
    let root = dir.join("home/ca/root.pem");
    let url = format!("https://{NAME}:{port}{path}");
    let resolve = format!("{NAME}:{port}:127.0.0.1");
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-i", "--max-time", "20", "--cacert"])
        .arg(&root)
        .args(["--resolve", &resolve, "-X", method, "-b"])
        .arg(jar)
        .arg("-c")
        .arg(jar)
        .args(extra);
    if let Some(b) = body {
        cmd.args(["--data-raw", b]);
    }
    let out = cmd.arg(&url).output().unwrap();
    response(&out.stdout)
}

/// Logs in over HTTPS with curl (`cert`: curl's client certificate
/// options); Ok(jar) with a session, Err(status) otherwise.
fn login(
    dir: &Path,
    port: u16,
    jar_name: &str,
    name: &str,
    password: &str,
    code: &str,
    cert: &[&str],
) -> Result<PathBuf, u16> {
    let jar = dir.join(jar_name);
    let _ = std::fs::remove_file(&jar);
    let (status, _, page) = curl(dir, port, "GET", "/login", &jar, None, cert);
    assert_eq!(status, 200, "{page}");
    let body = login_body(&page, name, password, code);
    let (status, head, _) = curl(dir, port, "POST", "/login", &jar, Some(&body), cert);
    if status == 303 && head.contains("set-cookie: __host-kxca-console=") {
        assert!(
            head.contains("secure") && head.contains("httponly"),
            "{head}"
        );
        Ok(jar)
    } else {
        Err(status)
    }
}

/// `kxca admin cert NAME`: (serial, PEM with key and chain for curl).
fn admin_cert(ca: &TestCa, name: &str) -> (String, PathBuf) {
    let dir = ca.dir.path();
    let pw = dir.join(format!("{name}.pw"));
    std::fs::write(&pw, "Pkcs12Pass42\n").unwrap();
    let p12 = dir.join(format!("{name}.p12"));
    let out = with_pass(
        ca,
        &[
            "admin",
            "cert",
            name,
            "--out",
            common::p(&p12),
            "--password-file",
            common::p(&pw),
            "--json",
        ],
    );
    common::assert_ok(&out, "admin cert");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&p12).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the PKCS#12 is the admin's private key"
    );
    // The PKCS#12 opens with openssl (MAC and encryption with the password).
    let passin = format!("file:{}", pw.display());
    let (ok, text) = openssl(&[
        "pkcs12",
        "-info",
        "-in",
        common::p(&p12),
        "-passin",
        &passin,
        "-nodes",
    ]);
    assert!(ok && text.contains("BEGIN PRIVATE KEY"), "{text}");
    let pem = dir.join(format!("{name}.pem"));
    let (ok, text) = openssl(&[
        "pkcs12",
        "-in",
        common::p(&p12),
        "-passin",
        &passin,
        "-nodes",
        "-out",
        common::p(&pem),
    ]);
    assert!(ok, "{text}");
    (v["serial"].as_str().unwrap().to_string(), pem)
}

/// The leaf of a PEM bundle, alone in its own file.
fn first_cert(bundle: &Path, out: &Path) {
    let text = String::from_utf8_lossy(&std::fs::read(bundle).unwrap()).to_string();
    let end = "-----END CERTIFICATE-----";
    let start = text.find("-----BEGIN CERTIFICATE-----").unwrap();
    let stop = text[start..].find(end).unwrap() + start + end.len();
    std::fs::write(out, format!("{}\n", &text[start..stop])).unwrap();
}

#[test]
fn tls_console_with_kxca_certificate_and_client_certificate_second_factor() {
    let ca = TestCa::new();
    let dir = ca.dir.path().to_path_buf();
    let out = with_pass(
        &ca,
        &[
            "admin",
            "tls-cert",
            "--dns",
            NAME,
            "--ip",
            "127.0.0.1",
            "--json",
        ],
    );
    common::assert_ok(&out, "admin tls-cert");
    {
        use std::os::unix::fs::PermissionsExt;
        let key = ca.path("console/tls/server.key");
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let port = free_port();
    // Off loopback without TLS: refused at the start, naming the key.
    set_console(&ca, &format!("listen = \"0.0.0.0:{port}\"\n"));
    let err = start(&ca)
        .err()
        .expect("a non-loopback console without TLS");
    assert!(
        err.contains("[console] tls") && err.contains("0.0.0.0"),
        "{err}"
    );

    set_console(
        &ca,
        &format!("listen = \"0.0.0.0:{port}\"\n\n[console.tls]\n"),
    );
    let NewAdmin {
        password: alice_pw,
        secret: alice_totp,
        ..
    } = new_admin(&ca, "alice", "admin");
    let NewAdmin {
        password: bob_pw,
        secret: bob_totp,
        ..
    } = new_admin(&ca, "bob", "admin");
    let NewAdmin {
        password: carol_pw,
        secret: _,
        ..
    } = new_admin(&ca, "carol", "admin");
    let (bob_serial, bob_pem) = admin_cert(&ca, "bob");
    let (carol_serial, carol_pem) = admin_cert(&ca, "carol");
    let (_daemon, url) = start(&ca).expect("the daemon starts with [console.tls]");
    assert_eq!(url, format!("https://0.0.0.0:{port}/"));

    // The served chain verifies for TLS servers against kxca's root.
    let connect = format!("127.0.0.1:{port}");
    let sc = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &connect,
            "-servername",
            NAME,
            "-showcerts",
            "-verify_hostname",
            NAME,
            "-CAfile",
        ])
        .arg(ca.path("ca/root.pem"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&sc.stdout).to_string();
    assert!(
        shown.contains("Verify return code: 0 (ok)"),
        "s_client: {shown}{}",
        String::from_utf8_lossy(&sc.stderr)
    );
    let served = dir.join("served.pem");
    std::fs::write(&served, &shown).unwrap();
    let leaf = dir.join("server-leaf.pem");
    first_cert(&served, &leaf);
    let (ok, text) = openssl(&[
        "verify",
        "-purpose",
        "sslserver",
        "-x509_strict",
        "-CAfile",
        common::p(&ca.path("ca/root.pem")),
        "-untrusted",
        common::p(&served),
        common::p(&leaf),
    ]);
    assert!(ok && text.contains(": OK"), "{text}");

    // Clients that connect and never speak do not stall the accepts: each
    // handshake runs on its own, under a 10 s timeout (one after another,
    // these three would outlast curl's 20 s).
    let _silent = [
        std::net::TcpStream::connect(&connect).unwrap(),
        std::net::TcpStream::connect(&connect).unwrap(),
        std::net::TcpStream::connect(&connect).unwrap(),
    ];
    // curl with kxca's root gets the Japanese login page.
    let jar = dir.join("anon.jar");
    let (status, head, page) = curl(&dir, port, "GET", "/login", &jar, None, &[]);
    assert_eq!(status, 200, "{head}{page}");
    assert!(
        page.contains("ログイン") && page.contains("クライアント証明書"),
        "{page}"
    );
    assert!(head.contains("set-cookie: __host-kxca-login=") && head.contains("secure"));
    // Another name pointing here (DNS rebinding) is refused.
    let evil = Command::new("curl")
        .args([
            "-s",
            "-k",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--resolve",
        ])
        .arg(format!("evil.example:{port}:127.0.0.1"))
        .arg(format!("https://evil.example:{port}/login"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&evil.stdout), "421");
    // Plain HTTP to the TLS port gets no page.
    let plain = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("http://127.0.0.1:{port}/login"))
        .output()
        .unwrap();
    assert!(
        !plain.status.success() && String::from_utf8_lossy(&plain.stdout) != "200",
        "plain HTTP answered: {:?}",
        plain
    );

    // A TOTP admin still logs in with password + code, no certificate.
    let jar = login(
        &dir,
        port,
        "alice.jar",
        "alice",
        &alice_pw,
        &code(&alice_totp, 0),
        &[],
    )
    .expect("alice: password + TOTP over TLS");
    let (status, _, page) = curl(&dir, port, "GET", "/", &jar, None, &[]);
    assert_eq!(status, 200, "{page}");

    // bob's factor is his certificate.
    let bob_cert = ["--cert", common::p(&bob_pem)];
    let carol_cert = ["--cert", common::p(&carol_pem)];
    assert_eq!(
        login(&dir, port, "b1.jar", "bob", &bob_pw, "", &[]).err(),
        Some(401),
        "password without a certificate"
    );
    assert_eq!(
        login(
            &dir,
            port,
            "b2.jar",
            "bob",
            &bob_pw,
            &code(&bob_totp, 0),
            &[]
        )
        .err(),
        Some(401),
        "password + TOTP: bob's factor is his certificate"
    );
    assert_eq!(
        login(&dir, port, "b3.jar", "bob", &bob_pw, "", &carol_cert).err(),
        Some(401),
        "another admin's certificate"
    );
    assert_eq!(
        login(&dir, port, "b4.jar", "bob", "wrong-password", "", &bob_cert).err(),
        Some(401),
        "his certificate without the password"
    );
    let jar = login(&dir, port, "bob.jar", "bob", &bob_pw, "", &bob_cert)
        .expect("bob: password + his certificate");
    let (status, _, page) = curl(&dir, port, "GET", "/", &jar, None, &bob_cert);
    assert_eq!(status, 200, "{page}");
    // His session cookie over a connection without his certificate: refused
    // (a stolen cookie is not enough), and the session is ended.
    let (status, head, _) = curl(&dir, port, "GET", "/", &jar, None, &carol_cert);
    assert_eq!(status, 303, "{head}");
    assert!(head.contains("location: /login"), "{head}");
    assert!(audit_events(&ca, "admin.certificate_refused") >= 1);

    // A revocation stops a live session at its next request.
    let jar =
        login(&dir, port, "bob2.jar", "bob", &bob_pw, "", &bob_cert).expect("bob logs in again");
    let (status, _, _) = curl(&dir, port, "GET", "/", &jar, None, &bob_cert);
    assert_eq!(status, 200);
    let out = ca.kxca(&["revoke", &bob_serial, "--reason", "keyCompromise"]);
    common::assert_ok(&out, "revoke bob's certificate");
    let (status, head, _) = curl(&dir, port, "GET", "/", &jar, None, &bob_cert);
    assert_eq!(status, 303, "a revoked certificate's session: {head}");
    assert_eq!(
        login(&dir, port, "bob3.jar", "bob", &bob_pw, "", &bob_cert).err(),
        Some(401),
        "a revoked certificate"
    );
    let failed: String = rusqlite::Connection::open(ca.path("kxca.db"))
        .unwrap()
        .query_row(
            "SELECT detail FROM audit WHERE action = 'admin.login_failed' ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(failed.contains("certificate revoked"), "{failed}");
    assert_eq!(audit_events(&ca, "admin.certificate"), 2);
    assert_eq!(audit_events(&ca, "console.tls_certificate"), 1);

    // A new certificate for carol revokes her previous one (superseded) in
    // the transaction that binds the new one.
    let carol_old = dir.join("carol-old.pem");
    std::fs::copy(&carol_pem, &carol_old).unwrap();
    std::fs::remove_file(dir.join("carol.p12")).unwrap();
    let (carol_new, carol_new_pem) = admin_cert(&ca, "carol");
    assert_ne!(carol_new, carol_serial);
    let reason: i64 = rusqlite::Connection::open(ca.path("kxca.db"))
        .unwrap()
        .query_row(
            "SELECT r.reason FROM revocations r JOIN certificates c ON c.id = r.certificate WHERE c.serial = ?1",
            [&carol_serial],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(reason, 4, "carol's previous certificate: superseded");
    assert_eq!(
        login(
            &dir,
            port,
            "carol3.jar",
            "carol",
            &carol_pw,
            "",
            &["--cert", common::p(&carol_old)]
        )
        .err(),
        Some(401),
        "her previous certificate"
    );
    login(
        &dir,
        port,
        "carol4.jar",
        "carol",
        &carol_pw,
        "",
        &["--cert", common::p(&carol_new_pem)],
    )
    .expect("her new certificate");
    assert!(audit_events(&ca, "admin.login") >= 3);

    // pkilint: the server and the admin certificates, with the CRL.
    common::assert_ok(&with_pass(&ca, &["crl"]), "crl");
    let bob_leaf = dir.join("bob-leaf.pem");
    first_cert(&bob_pem, &bob_leaf);
    let crl = std::fs::read_dir(ca.path("crl"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "crl"))
        .expect("a CRL");
    common::pkilint_certificates_and_crl(&[leaf, bob_leaf], &crl);
}

#[test]
fn the_daemon_refuses_missing_mismatched_or_foreign_tls_files() {
    let ca = TestCa::new();
    set_console(&ca, "listen = \"127.0.0.1:0\"\n\n[console.tls]\n");
    // Missing: names the file and the command to run.
    let err = start(&ca).err().expect("no certificate yet");
    assert!(
        err.contains("server-chain.pem") && err.contains("missing") && err.contains("tls-cert"),
        "{err}"
    );
    let first = with_pass(&ca, &["admin", "tls-cert", "--dns", NAME, "--json"]);
    common::assert_ok(&first, "tls-cert");
    let first: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    let key = ca.path("console/tls/server.key");
    let first_key = std::fs::read(&key).unwrap();
    let again = with_pass(&ca, &["admin", "tls-cert", "--dns", NAME, "--json"]);
    common::assert_ok(&again, "tls-cert again");
    // The certificate it replaces is revoked (superseded): a forgotten
    // copy of the old key is not trusted any more.
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["superseded"], first["serial"], "{again}");
    let old: i64 = rusqlite::Connection::open(ca.path("kxca.db"))
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM revocations r JOIN certificates c ON c.id = r.certificate
             WHERE c.serial = ?1 AND r.reason = 4",
            [first["serial"].as_str().unwrap()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(old, 1, "the replaced server certificate is revoked");
    // A loose mode is refused.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = start(&ca).err().expect("a world-readable key");
        assert!(
            err.contains("server.key") && err.contains("chmod 600"),
            "{err}"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // The renewed certificate with the previous key: does not match.
    let new_key = std::fs::read(&key).unwrap();
    std::fs::write(&key, &first_key).unwrap();
    let err = start(&ca).err().expect("a key of another certificate");
    assert!(
        err.contains("server.key") && err.contains("does not match"),
        "{err}"
    );
    std::fs::write(&key, &new_key).unwrap();
    {
        let (_d, url) = start(&ca).expect("the renewed pair starts");
        assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    }
    // A certificate and key from another kxca: not this CA's.
    let other = TestCa::new();
    common::assert_ok(
        &with_pass(&other, &["admin", "tls-cert", "--dns", NAME]),
        "tls-cert elsewhere",
    );
    std::fs::copy(
        other.path("console/tls/server-chain.pem"),
        ca.path("console/tls/server-chain.pem"),
    )
    .unwrap();
    std::fs::copy(other.path("console/tls/server.key"), &key).unwrap();
    let err = start(&ca).err().expect("another CA's certificate");
    assert!(err.contains("not issued by this kxca"), "{err}");
    // Loopback without TLS stays fine.
    set_console(&ca, "listen = \"127.0.0.1:0\"\n");
    let (_d, url) = start(&ca).expect("plain loopback");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
}

//! The admin console (kxca-console in `kxca daemon`): the real flow in
//! headless Chromium through WebDriver (log in with password + TOTP, open an
//! application with an invalid row, see the highlighted cell and its
//! message, approve the valid row, see the mails queued), and its security
//! over plain HTTP (no session, forged or missing CSRF token, wrong role,
//! after logout, after expiry, brute force, foreign Host, non-loopback bind).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kxca_test_support::common::{self, TestCa};
use kxca_test_support::intake::{row, s, set, standard, V};

const APPLICANT: &str = "applicant@office.test";

/// A daemon with `[console]` and a Maildir intake, killed on drop.
struct Console {
    ca: TestCa,
    daemon: Option<Child>,
    /// `http://127.0.0.1:PORT`
    base: String,
}

impl Drop for Console {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

fn signup(form: &[u8]) -> Vec<u8> {
    format!(
        "From: {APPLICANT}\r\nTo: signup@kx.test\r\nSubject: =?UTF-8?B?{}?=\r\nMessage-ID: <console-1@office.test>\r\n\
Date: Mon, 07 Dec 2026 10:00:00 +0900\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\n\
Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--XX\r\n\
Content-Type: application/vnd.openxmlformats-officedocument.spreadsheetml.sheet; name=\"form.xlsx\"\r\n\
Content-Disposition: attachment; filename=\"form.xlsx\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
{}\r\n--XX--\r\n",
        common::mime_base64("利用申込".as_bytes()),
        common::mime_base64("申込書を送付します。\r\n".as_bytes()),
        common::mime_base64(form)
    )
    .into_bytes()
}

/// A CA with one application (row 2 valid, row 3 with a bad office code),
/// `[console]` on a free loopback port, and the daemon running.
fn start(extra_console: &str) -> Console {
    let ca = TestCa::new();
    let maildir = ca.dir.path().join("Maildir");
    for d in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(d)).unwrap();
    }
    let config = ca.path("kxca.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[mail]\nmaildir = {maildir:?}\ninterval_seconds = 3600\n\n[console]\nlisten = \"127.0.0.1:0\"\n{extra_console}"
    ));
    std::fs::write(&config, text).unwrap();
    let mut good = row(1, "3456789", "001");
    set(&mut good, "メールアドレス1", s(APPLICANT));
    let mut bad = row(2, "34X6", "001");
    set(&mut bad, "メールアドレス1", s(APPLICANT));
    let form: Vec<Vec<V>> = vec![good, bad];
    std::fs::write(
        maildir.join("new/0001.signup.host"),
        signup(&standard(&form)),
    )
    .unwrap();
    let out = ca.kxca(&["intake", "fetch", "--json"]);
    common::assert_ok(&out, "intake fetch");
    let mut daemon = ca
        .cmd()
        .arg("daemon")
        .env("KXCA_KEY_PASSPHRASE", common::PASSPHRASE)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(daemon.stdout.take().unwrap()).lines();
    let mut base = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(url) = line.strip_prefix("kxca console listening on ") {
            base = Some(url.trim_end_matches('/').to_string());
        }
        if line == "kxca daemon ready" {
            break;
        }
    }
    // Keep reading so the daemon never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let base = base.expect("the daemon printed no console address");
    Console {
        ca,
        daemon: Some(daemon),
        base,
    }
}

struct NewAdmin {
    name: String,
    password: String,
    secret: Vec<u8>,
}

fn add_admin(c: &Console, name: &str, role: &str) -> NewAdmin {
    let out = c.ca.kxca(&["admin", "add", name, "--role", role, "--json"]);
    common::assert_ok(&out, "admin add");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let uri = v["otpauth"].as_str().unwrap();
    let b32 = uri
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let secret = totp_rs::Secret::try_from_base32(b32).unwrap();
    NewAdmin {
        name: name.to_string(),
        password: v["password"].as_str().unwrap().to_string(),
        secret: secret.as_bytes().to_vec(),
    }
}

/// The TOTP code `steps` periods from now (RFC 6238, SHA-1, 6 digits).
fn code(secret: &[u8], steps: i64) -> String {
    let totp = totp_rs::Builder::new()
        .with_secret(totp_rs::Secret::new(secret.to_vec().into_boxed_slice()))
        .build()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    totp.generate((now + 30 * steps) as u64).to_string()
}

/// One HTTP/1.1 exchange: (status, headers lower-cased, body).
fn http(
    base: &str,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: &str,
) -> (u16, String, String) {
    http_host(base, method, path, cookie, body, None)
}

fn http_host(
    base: &str,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: &str,
    host: Option<&str>,
) -> (u16, String, String) {
    let addr = base.trim_start_matches("http://");
    let s = TcpStream::connect(addr).unwrap();
    exchange(s, addr, method, path, cookie, body, host)
}

/// One exchange from the client address `from` (another loopback address:
/// the console sees the connection's peer, never a header).
fn http_from(
    base: &str,
    from: &str,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: &str,
) -> (u16, String, String) {
    let addr = base.trim_start_matches("http://");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let s = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{from}:0").parse().unwrap())
            .unwrap_or_else(|e| panic!("binding {from} as a second client address: {e}"));
        sock.connect(addr.parse().unwrap()).await.unwrap()
    });
    let s = s.into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    exchange(s, addr, method, path, cookie, body, None)
}

fn exchange(
    mut s: TcpStream,
    addr: &str,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: &str,
    host: Option<&str>,
) -> (u16, String, String) {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        host.unwrap_or(addr)
    );
    match cookie {
        // A whole cookie header (the login form's), or a session id.
        Some(c) if c.contains('=') => req.push_str(&format!("Cookie: {c}\r\n")),
        Some(c) => req.push_str(&format!("Cookie: __Host-kxca-console={c}\r\n")),
        None => {}
    }
    if method == "POST" {
        req.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

fn enc(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Logs in over HTTP: the session cookie's value, or the refusal page.
fn login(c: &Console, a: &NewAdmin, password: &str, steps: i64) -> Result<String, (u16, String)> {
    // The login form first: its cookie and the token bound to it.
    let (status, head, page) = http(&c.base, "GET", "/login", None, "");
    assert_eq!(status, 200, "{page}");
    let pre = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: __host-kxca-login="))
        .map(|v| v.split(';').next().unwrap().to_string())
        .expect("the login form's cookie");
    let body = format!(
        "csrf={}&name={}&password={}&code={}",
        csrf_of(&page),
        enc(&a.name),
        enc(password),
        code(&a.secret, steps)
    );
    let cookie = format!("__Host-kxca-login={pre}");
    let (status, head, page) = http(&c.base, "POST", "/login", Some(&cookie), &body);
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: __host-kxca-console="))
        .map(|v| v.split(';').next().unwrap().to_string());
    match (status, cookie) {
        (303, Some(cookie)) => {
            assert!(
                head.contains("httponly")
                    && head.contains("samesite=strict")
                    && head.contains("secure"),
                "{head}"
            );
            Ok(cookie)
        }
        _ => Err((status, page)),
    }
}

fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a form with a CSRF token")
        .to_string()
}

fn db(c: &Console) -> rusqlite::Connection {
    rusqlite::Connection::open(c.ca.path("kxca.db")).unwrap()
}

fn audit_count(c: &Console, action: &str) -> i64 {
    db(c)
        .query_row(
            "SELECT COUNT(*) FROM audit WHERE action = ?1",
            [action],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn refuses_without_session_csrf_role_after_logout_and_expiry_and_locks_brute_force() {
    let c = start("");
    let bob = add_admin(&c, "bob", "admin");
    let carol = add_admin(&c, "carol", "auditor");
    let dave = add_admin(&c, "dave", "admin");

    // Security headers on every page, and no page without a session.
    let (status, head, _) = http(&c.base, "GET", "/", None, "");
    assert_eq!(status, 303, "{head}");
    assert!(head.contains("location: /login"), "{head}");
    for h in [
        "content-security-policy: default-src 'none'",
        "frame-ancestors 'none'",
        "cache-control: no-store",
        "x-frame-options: deny",
    ] {
        assert!(head.contains(h), "missing {h}: {head}");
    }
    let (status, _, _) = http(&c.base, "GET", "/applications/1", None, "");
    assert_eq!(status, 303);
    let (status, _, _) = http(&c.base, "GET", "/applications/1/file", None, "");
    assert_eq!(status, 303);
    let (status, _, _) = http(
        &c.base,
        "POST",
        "/applications/1/approve",
        None,
        "scope=valid&confirm=yes",
    );
    assert_eq!(status, 303);
    // A forged session id is no session.
    let (status, _, _) = http(&c.base, "GET", "/", Some(&"ab".repeat(32)), "");
    assert_eq!(status, 303);
    // A page asked for under another host name is not served (DNS rebinding).
    let (status, _, _) = http_host(
        &c.base,
        "GET",
        "/login",
        None,
        "",
        Some("console.evil.test"),
    );
    assert_eq!(status, 421);

    // A login post without the login form's token (a login CSRF) is
    // refused before the credentials are looked at.
    let body = format!(
        "name=bob&password={}&code={}",
        enc(&bob.password),
        code(&bob.secret, 0)
    );
    let (status, head, page) = http(&c.base, "POST", "/login", None, &body);
    assert_eq!(status, 403, "{page}");
    assert!(!head.contains("set-cookie: __host-kxca-console"), "{head}");
    let (status, _, page) = http(
        &c.base,
        "POST",
        "/login",
        Some(&format!("__Host-kxca-login={}", "ab".repeat(32))),
        &format!("csrf={}&{body}", "0".repeat(64)),
    );
    assert_eq!(status, 403, "{page}");
    assert_eq!(audit_count(&c, "admin.login"), 0);

    // bob: a session; a post without or with a forged CSRF token changes nothing.
    let session = login(&c, &bob, &bob.password, 0).unwrap();
    let (status, _, page) = http(&c.base, "GET", "/applications/1", Some(&session), "");
    assert_eq!(status, 200, "{page}");
    let csrf = csrf_of(&page);
    for body in [
        "scope=valid&confirm=yes".to_string(),
        format!("csrf={}&scope=valid&confirm=yes", "0".repeat(64)),
        format!("csrf={}x&scope=valid&confirm=yes", &csrf[..63]),
    ] {
        let (status, _, page) = http(
            &c.base,
            "POST",
            "/applications/1/approve",
            Some(&session),
            &body,
        );
        assert_eq!(status, 403, "{body}: {page}");
        assert!(page.contains("操作を受け付けられませんでした"), "{page}");
    }
    let decided: i64 = db(&c)
        .query_row("SELECT COUNT(*) FROM application_decisions", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(decided, 0, "a refused post decided a row");
    // With the token, the confirmation step comes first.
    let (status, _, page) = http(
        &c.base,
        "POST",
        "/applications/1/approve",
        Some(&session),
        &format!("csrf={csrf}&scope=valid"),
    );
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("承認の確認") && page.contains("取り消せません"),
        "{page}"
    );
    // bob's token is not carol's.
    let carol_session = login(&c, &carol, &carol.password, 0).unwrap();
    let (status, _, page) = http(
        &c.base,
        "POST",
        "/applications/1/reject",
        Some(&carol_session),
        &format!("csrf={csrf}&row=6&reason=x&confirm=yes"),
    );
    assert_eq!(status, 403, "{page}");

    // carol (auditor) reads, and is refused any action with her own token.
    let (status, _, page) = http(&c.base, "GET", "/applications/1", Some(&carol_session), "");
    assert_eq!(status, 200);
    assert!(
        !page.contains("id=\"approve-valid\""),
        "an auditor is offered approval"
    );
    let carol_csrf = csrf_of(&page);
    let (status, _, page) = http(
        &c.base,
        "POST",
        "/applications/1/reject",
        Some(&carol_session),
        &format!("csrf={carol_csrf}&row=6&reason=x&confirm=yes"),
    );
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("権限がありません"), "{page}");
    // An auditor reads the outbox, the accounts and the audit log.
    for page in ["/outbox", "/audit?action=admin.", "/accounts?q=3456789"] {
        let (status, _, body) = http(&c.base, "GET", page, Some(&carol_session), "");
        assert_eq!(status, 200, "{page}: {body}");
    }
    // After logout the session opens nothing.
    let (status, _, _) = http(
        &c.base,
        "POST",
        "/logout",
        Some(&carol_session),
        &format!("csrf={carol_csrf}"),
    );
    assert_eq!(status, 303);
    let (status, _, _) = http(&c.base, "GET", "/", Some(&carol_session), "");
    assert_eq!(status, 303, "a logged-out session still opens pages");
    assert_eq!(audit_count(&c, "admin.logout"), 1);

    // After the idle timeout bob's session is over, and stays over.
    db(&c)
        .execute(
            "UPDATE console_sessions SET last_seen = last_seen - 16 * 60",
            [],
        )
        .unwrap();
    let (status, _, _) = http(&c.base, "GET", "/", Some(&session), "");
    assert_eq!(status, 303, "an idle session still opens pages");
    db(&c)
        .execute(
            "UPDATE console_sessions SET last_seen = strftime('%s','now')",
            [],
        )
        .unwrap();
    let (status, _, _) = http(&c.base, "GET", "/", Some(&session), "");
    assert_eq!(status, 303, "an expired session came back");

    // A session used all along still ends session_hours after its login.
    let session2 = login(&c, &bob, &bob.password, 1).unwrap();
    let (status, _, _) = http(&c.base, "GET", "/", Some(&session2), "");
    assert_eq!(status, 200);
    db(&c)
        .execute(
            "UPDATE console_sessions SET created_at = created_at - 8 * 3600 - 1 WHERE ended_at IS NULL",
            [],
        )
        .unwrap();
    let (status, _, _) = http(&c.base, "GET", "/", Some(&session2), "");
    assert_eq!(
        status, 303,
        "a session older than session_hours still opens pages"
    );
    // The same TOTP code is not taken twice.
    let (status, page) = login(&c, &bob, &bob.password, 1).unwrap_err();
    assert_eq!(status, 401, "{page}");

    // dave: five wrong passwords lock the account; then the right one fails too.
    for i in 1..=5 {
        let (status, page) = login(&c, &dave, "wrong-password", 0).unwrap_err();
        assert_eq!(status, 401);
        if i < 5 {
            assert!(page.contains("正しくありません"), "{page}");
        } else {
            assert!(page.contains("ロック"), "{page}");
        }
    }
    let (status, page) = login(&c, &dave, &dave.password, 0).unwrap_err();
    assert_eq!(status, 401);
    assert!(page.contains("ロック"), "{page}");
    assert_eq!(audit_count(&c, "admin.locked"), 1);
    assert!(audit_count(&c, "admin.login_failed") >= 6);
    assert_eq!(audit_count(&c, "admin.login"), 3);
    // No secret in the store: only hashes and sealed TOTP secrets.
    let stored: String = db(&c)
        .query_row(
            "SELECT group_concat(password_phc || hex(totp_sealed)) FROM console_admins",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!stored.contains(&bob.password));
    assert!(!stored.contains(&hex::encode_upper(&bob.secret)));
    let sessions: String = db(&c)
        .query_row(
            "SELECT group_concat(id_hash) FROM console_sessions",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!sessions.contains(&session));

    // The CLI's retry is the console's: a queued mail is refused, a failed one queued.
    let out = c.ca.kxca(&["outbox", "retry", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not failed"));
    db(&c)
        .execute("UPDATE outbox SET state = 'failed' WHERE id = 1", [])
        .unwrap();
    common::assert_ok(&c.ca.kxca(&["outbox", "retry", "1"]), "outbox retry");
    let state: String = db(&c)
        .query_row("SELECT state FROM outbox WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(state, "queued");
}

#[test]
fn a_non_loopback_console_is_refused_naming_the_key() {
    let ca = TestCa::new();
    let config = ca.path("kxca.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[console]\nlisten = \"0.0.0.0:8470\"\n");
    std::fs::write(&config, text).unwrap();
    let out = ca.kxca(&["admin", "list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[console] listen") && err.contains("loopback"),
        "{err}"
    );
}

#[test]
fn a_public_url_that_is_not_plain_http_is_refused_naming_the_key() {
    let ca = TestCa::new();
    let config = ca.path("kxca.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[console]\npublic_url = \"https://kx-ca.example.jp\"\n");
    std::fs::write(&config, text).unwrap();
    let out = ca.kxca(&["admin", "list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[console] public_url") && err.contains("only http://"),
        "{err}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// chromedriver on a free port, killed on drop.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn artefacts() -> PathBuf {
    let dir = kxca_test_support::repo_root().join("target/test-artefacts/console");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits (up to 10 s) for the page whose heading is `want`: a click's
/// navigation is not awaited by WebDriver.
async fn h1_is(client: &fantoccini::Client, want: &str) {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < Duration::from_secs(10) {
        if let Ok(h1) = client.find(fantoccini::Locator::Css("h1")).await {
            if let Ok(text) = h1.text().await {
                if text == want {
                    return;
                }
                last = text;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("expected the page {want:?}, still on {last:?}");
}

/// Checks the page (see [`accessible`]), then writes its screenshot.
async fn shot(client: &fantoccini::Client, name: &str) {
    accessible(client, name).await;
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    std::fs::write(artefacts().join(format!("{name}.png")), png).unwrap();
}

/// Accessibility of the page on screen: every input, select and textarea
/// has a label (label[for], a wrapping label, or aria-label), there is one
/// h1, lang="ja", no horizontal scroll at 1024x768, and Tab reaches the
/// submit button of every form. The focus is given back where it was.
async fn accessible(client: &fantoccini::Client, name: &str) {
    use fantoccini::actions::{InputSource, KeyAction, KeyActions};
    let facts = client
        .execute(
            r#"
const unlabelled = [];
for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
  const byFor = el.id && document.querySelector('label[for="' + CSS.escape(el.id) + '"]');
  if (!byFor && !el.closest('label') && !el.getAttribute('aria-label')) {
    unlabelled.push(el.outerHTML.slice(0, 160));
  }
}
window.__kxBefore = document.activeElement;
window.__kxSeen = [];
const submits = [...document.forms]
  .map(f => f.querySelector('button[type=submit], button:not([type]), input[type=submit]'))
  .filter(b => b && !b.disabled);
submits.forEach((b, i) => b.setAttribute('data-kx-submit', String(i)));
document.addEventListener('focusin', e => {
  const v = e.target.getAttribute && e.target.getAttribute('data-kx-submit');
  if (v !== null && !window.__kxSeen.includes(v)) window.__kxSeen.push(v);
});
if (document.activeElement) document.activeElement.blur();
return {
  unlabelled,
  h1: document.querySelectorAll('h1').length,
  lang: document.documentElement.getAttribute('lang'),
  width: document.documentElement.scrollWidth,
  submits: submits.length,
  // Chromium stops on each part of a date or time field (year, month, day).
  focusable: [...document.querySelectorAll('a[href], button, input:not([type=hidden]), select, textarea')]
    .reduce((n, el) => n + (['date', 'time', 'datetime-local', 'month', 'week'].includes(el.type) ? 3 : 1), 0),
};"#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        facts["unlabelled"].as_array().map(Vec::len),
        Some(0),
        "{name}: fields without a label: {facts}"
    );
    assert_eq!(facts["h1"], 1, "{name}: not exactly one h1: {facts}");
    assert_eq!(facts["lang"], "ja", "{name}: {facts}");
    assert!(
        facts["width"].as_u64().unwrap() <= 1024,
        "{name}: scrolls horizontally at 1024x768: {facts}"
    );
    let submits = facts["submits"].as_u64().unwrap();
    if submits > 0 {
        let tabs = facts["focusable"].as_u64().unwrap() + 2;
        let mut keys = KeyActions::new("keyboard".to_string());
        for _ in 0..tabs {
            keys = keys
                .then(KeyAction::Down { value: '\u{e004}' })
                .then(KeyAction::Up { value: '\u{e004}' });
        }
        client.perform_actions(keys).await.unwrap();
        let seen = client
            .execute("return window.__kxSeen.length;", vec![])
            .await
            .unwrap();
        assert_eq!(
            seen.as_u64(),
            Some(submits),
            "{name}: Tab does not reach every form's submit button ({tabs} presses): {facts}"
        );
    }
    client
        .execute(
            "const b = window.__kxBefore; if (b && b !== document.body) { b.focus(); } else if (document.activeElement) { document.activeElement.blur(); }",
            vec![],
        )
        .await
        .unwrap();
}

#[test]
fn the_real_flow_in_chromium_login_inbox_highlighted_cell_approve_mails_queued() {
    let chromium = which("chromium");
    let driver = which("chromedriver");
    if !kxca_test_support::require(
        "chromium + chromedriver",
        chromium.is_some() && driver.is_some(),
        "apt-get install chromium chromium-driver fonts-ipafont-gothic (tests/install-deps)",
    ) {
        return;
    }
    let c = start("");
    let alice = add_admin(&c, "alice", "admin");
    let port = free_port();
    let mut child = Command::new(driver.unwrap())
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("chromedriver did not listen on {port} within 20 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _driver = Driver(child);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(session(&c, &alice, port, chromium.unwrap().as_path()));
}

/// Runs [`flow`] in a Chromium session that is closed even when an
/// assertion fails: otherwise the browser outlives chromedriver.
async fn session(c: &Console, alice: &NewAdmin, port: u16, chromium: &Path) {
    use fantoccini::ClientBuilder;
    use futures_util::FutureExt;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_string(),
        serde_json::json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1024,768", "--lang=ja-JP"],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session with Chromium");
    let outcome = std::panic::AssertUnwindSafe(flow(c, alice, &client))
        .catch_unwind()
        .await;
    // The session may already be over (the last handle in `flow` ends it);
    // closing is only to make sure no browser is left behind.
    let _ = client.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn flow(c: &Console, alice: &NewAdmin, client: &fantoccini::Client) {
    use fantoccini::Locator;
    let client = client.clone();
    let base = &c.base;

    // The login page, then password + TOTP.
    client.goto(&format!("{base}/")).await.unwrap();
    assert!(client.current_url().await.unwrap().path() == "/login");
    shot(&client, "01-login").await;
    // Every field has a label.
    for id in ["name", "password", "code"] {
        client
            .find(Locator::Css(&format!("label[for=\"{id}\"]")))
            .await
            .unwrap_or_else(|_| panic!("no label for #{id}"));
    }
    // By keyboard only: the name field has the focus, Tab moves to the
    // next field, Enter submits.
    const TAB: &str = "\u{e004}";
    const ENTER: &str = "\u{e007}";
    let focused = client.active_element().await.unwrap();
    assert_eq!(focused.attr("id").await.unwrap().as_deref(), Some("name"));
    focused
        .send_keys(&format!("{}{TAB}", alice.name))
        .await
        .unwrap();
    let focused = client.active_element().await.unwrap();
    assert_eq!(
        focused.attr("id").await.unwrap().as_deref(),
        Some("password")
    );
    focused
        .send_keys(&format!("{}{TAB}", alice.password))
        .await
        .unwrap();
    let focused = client.active_element().await.unwrap();
    assert_eq!(focused.attr("id").await.unwrap().as_deref(), Some("code"));
    focused
        .send_keys(&format!("{}{ENTER}", code(&alice.secret, 0)))
        .await
        .unwrap();

    // The inbox: the application with its counts.
    h1_is(&client, "申込受付").await;
    let line = client
        .find(Locator::Css("table.list tbody tr"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        line.contains(APPLICANT) && line.contains("form.xlsx"),
        "{line}"
    );
    shot(&client, "02-inbox").await;

    // The application: sheet row 6 (the bad office code) highlighted, its message beside it.
    client
        .find(Locator::Id("app-1"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    h1_is(&client, "申込 1").await;
    shot(&client, "03-application").await;
    let bad = client
        .find(Locator::Css("#row-6 td.invalid"))
        .await
        .expect("a highlighted invalid cell");
    let text = bad.text().await.unwrap();
    assert!(
        text.contains("34X6"),
        "the cell shows the value as sent: {text}"
    );
    let msg = bad
        .find(Locator::Css(".msg"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        msg.contains("事業所コード"),
        "the message names the column: {msg}"
    );
    let bg = bad.css_value("background-color").await.unwrap();
    assert!(
        bg.contains("255, 214, 214"),
        "the invalid cell is highlighted: {bg}"
    );
    assert!(
        client
            .find(Locator::Css("#row-5 td.invalid"))
            .await
            .is_err(),
        "the valid row is highlighted"
    );

    // Approve the valid rows: confirmation, then the result with the mails queued.
    client
        .find(Locator::Id("approve-valid"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    h1_is(&client, "承認の確認").await;
    shot(&client, "04-confirm").await;
    client
        .find(Locator::Id("confirm"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    h1_is(&client, "承認しました").await;
    let body = client
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("1行を承認し、メール2通を送信待ちにしました"),
        "{body}"
    );
    shot(&client, "05-approved").await;
    let queued: i64 = db(c)
        .query_row(
            "SELECT COUNT(*) FROM outbox WHERE kind IN ('certificate-ready', 'initial-passwords')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(queued, 2, "mail 1 and mail 2 of the approved row");
    let actor: String = db(c)
        .query_row(
            "SELECT actor FROM audit WHERE action = 'account.approve'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(actor, "console:alice");

    // Back on the application, sheet row 5 is decided and offered no more.
    client
        .find(Locator::Id("back"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    h1_is(&client, "申込 1").await;
    let row5 = client
        .find(Locator::Css("#row-5"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(row5.contains("承認済み"), "{row5}");
    assert!(client.find(Locator::Id("pick-5")).await.is_err());

    // Reject sheet row 6 with a reason: the applicant is told by mail.
    client
        .find(Locator::Id("reason-6"))
        .await
        .unwrap()
        .send_keys("事業所コードを確認のうえ再提出してください")
        .await
        .unwrap();
    client
        .find(Locator::Id("reject-6"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    h1_is(&client, "却下の確認").await;
    client
        .find(Locator::Id("confirm"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    h1_is(&client, "却下しました").await;
    let rejected: i64 = db(c)
        .query_row(
            "SELECT COUNT(*) FROM outbox WHERE kind = 'application-rejected'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rejected, 1);

    // The status page: the approved contact's pickup waits, the CRL is
    // current, three mails wait to be sent.
    client
        .find(Locator::LinkText("状況"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    h1_is(&client, "状況").await;
    let pickups = client
        .find(Locator::Css("#pickups tbody"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        pickups.contains("TI26276000003456789001") && pickups.contains("受け取り待ち"),
        "{pickups}"
    );
    let crl = client
        .find(Locator::Id("crl"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(crl.contains("正常"), "{crl}");
    let queued = client
        .find(Locator::Id("queued"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(queued.contains("送信待ち: 4通"), "{queued}");
    client
        .find(Locator::Id("expiring-none"))
        .await
        .expect("no certificate expires soon");
    shot(&client, "06-status").await;

    // Accounts: search by office code, open the account, revoke it (with
    // its confirmation step); the register says revoked, by this admin.
    client
        .find(Locator::LinkText("アカウント"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    h1_is(&client, "アカウント検索").await;
    client
        .find(Locator::Id("q"))
        .await
        .unwrap()
        .send_keys("3456789\u{e007}")
        .await
        .unwrap();
    let cid = "TI26276000003456789001";
    let link = {
        let started = Instant::now();
        loop {
            if let Ok(l) = client.find(Locator::LinkText(cid)).await {
                break l;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no search result for 3456789"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    shot(&client, "07-accounts").await;
    link.click().await.unwrap();
    h1_is(&client, &format!("アカウント {cid}")).await;
    let state = client
        .find(Locator::Id("state"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(state, "有効");
    shot(&client, "08-account").await;
    // Resend mail 1, confirmed: one more certificate-ready mail, no mail 2.
    client
        .find(Locator::Id("resend"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    h1_is(&client, "メール1再送の確認").await;
    client
        .find(Locator::Id("confirm"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    h1_is(&client, "メール1を再送します").await;
    let (ready, secrets): (i64, i64) = db(c)
        .query_row(
            "SELECT SUM(kind = 'certificate-ready'), SUM(kind = 'initial-passwords') FROM outbox",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((ready, secrets), (2, 1));
    assert_eq!(audit_count(c, "account.resend_mail1"), 1);
    client
        .find(Locator::Id("back"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    h1_is(&client, &format!("アカウント {cid}")).await;
    client
        .find(Locator::Css(
            "#reason option[value=\"cessationOfOperation\"]",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .find(Locator::Id("revoke"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    h1_is(&client, "失効の確認").await;
    client
        .find(Locator::Id("confirm"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    h1_is(&client, "失効しました").await;
    client
        .find(Locator::Id("back"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    h1_is(&client, &format!("アカウント {cid}")).await;
    let state = client
        .find(Locator::Id("state"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(state, "失効済み");
    assert!(
        client.find(Locator::Id("revoke")).await.is_err(),
        "a revoked account offers revocation"
    );
    let (state, actor): (String, String) = db(c)
        .query_row(
            "SELECT a.state, (SELECT actor FROM audit WHERE action = 'account.revoke') FROM accounts a WHERE certificate_id = ?1",
            [cid],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (state.as_str(), actor.as_str()),
        ("revoked", "console:alice")
    );

    // The outbox: the mails queued by the approval, the rejection and the revocation.
    client
        .find(Locator::LinkText("送信メール"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    h1_is(&client, "送信メール").await;
    let mails = client
        .find(Locator::Css("#mails tbody"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for kind in [
        "メール1(受け取りの案内)",
        "メール2(初期パスワード)",
        "却下の通知",
        "送信待ち",
    ] {
        assert!(mails.contains(kind), "{kind} not in the outbox: {mails}");
    }
    shot(&client, "09-outbox").await;
    // The audit log, filtered by action: this admin's acts.
    client
        .find(Locator::LinkText("監査ログ"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    h1_is(&client, "監査ログ").await;
    client
        .find(Locator::Id("action"))
        .await
        .unwrap()
        .send_keys("account.")
        .await
        .unwrap();
    client
        .find(Locator::Id("actor"))
        .await
        .unwrap()
        .send_keys("console:alice")
        .await
        .unwrap();
    client
        .find(Locator::Id("filter"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let url = client.current_url().await.unwrap();
        if url.query().is_some_and(|q| q.contains("action=account.")) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the filter was not applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = client
        .find_all(Locator::Css("#events tbody tr"))
        .await
        .unwrap();
    let mut actions = Vec::new();
    for r in &rows {
        let cells = r.find_all(Locator::Css("td")).await.unwrap();
        assert_eq!(cells[2].text().await.unwrap(), "console:alice");
        actions.push(cells[3].text().await.unwrap());
    }
    assert!(
        actions.contains(&"account.approve".to_string()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"account.revoke".to_string()),
        "{actions:?}"
    );
    assert!(
        actions.iter().all(|a| a.starts_with("account.")),
        "{actions:?}"
    );
    shot(&client, "10-audit").await;

    // Logout: the session ends, and its pages lead to the login page.
    client
        .find(Locator::Css("form.logout button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    h1_is(&client, "ログイン").await;
    assert_eq!(client.current_url().await.unwrap().path(), "/login");
    client
        .goto(&format!("{base}/applications/1"))
        .await
        .unwrap();
    assert_eq!(client.current_url().await.unwrap().path(), "/login");
    client.close().await.unwrap();
}

/// The flow with the real mail stack and both roles: the daemon (console,
/// mail pass) and `kxca serve` (pickup, OCSP, CRL).
struct Live {
    console: Console,
    serve: Child,
    /// `http://127.0.0.1:PORT` of `kxca serve`.
    public: String,
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.serve.kill();
        let _ = self.serve.wait();
    }
}

/// Starts `kxca serve` on its `[serve] listen`; returns it and its URL.
fn start_serve(ca: &TestCa) -> (Child, String) {
    let mut serve = ca
        .cmd()
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("kxca serve said {first:?}"))
        .trim_end_matches('/')
        .to_string();
    std::thread::spawn(move || for _ in lines {});
    (serve, url)
}

/// A CA whose `[mail]` is `stack`, `[serve]` on a free port (the console
/// finds the public role there: no `public_url`), one signup mail with two
/// contacts of two offices waiting in the signup mailbox; serve and the
/// daemon running.
fn start_live(stack: &kxca_test_support::mailstack::MailStack) -> Live {
    use kxca_test_support::intake::{contact_row, signup_mail, standard, SIGNUP};
    let ca = TestCa::new();
    let config = ca.path("kxca.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    let port = free_port();
    assert!(text.contains("listen = \"127.0.0.1:8080\""), "{text}");
    text = text.replacen(
        "listen = \"127.0.0.1:8080\"",
        &format!("listen = \"127.0.0.1:{port}\""),
        1,
    );
    text.push_str(&stack.config(&ca.home, "implicit"));
    text.push_str("\n[console]\nlisten = \"127.0.0.1:0\"\n");
    std::fs::write(&config, text).unwrap();
    let form = standard(&[
        contact_row(1, "12345", "001", None),
        contact_row(2, "12346", "001", None),
    ]);
    stack.send(
        APPLICANT,
        SIGNUP,
        &signup_mail("console-flow-1@office.test", &form),
    );
    assert_eq!(stack.wait_for(SIGNUP, "INBOX", 1), 1);
    let (serve, public) = start_serve(&ca);
    assert_eq!(public, format!("http://127.0.0.1:{port}"));
    let mut daemon = ca
        .cmd()
        .arg("daemon")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(ca.path("daemon.log")).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(daemon.stdout.take().unwrap()).lines();
    let mut base = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(url) = line.strip_prefix("kxca console listening on ") {
            base = Some(url.trim_end_matches('/').to_string());
        }
        if line == "kxca daemon ready" {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Live {
        console: Console {
            ca,
            daemon: Some(daemon),
            base: base.expect("the daemon printed no console address"),
        },
        serve,
        public,
    }
}

#[test]
fn pickup_in_chromium_live_ocsp_reset_revoke_lockout_and_public_health() {
    let chromium = which("chromium");
    let driver = which("chromedriver");
    if !kxca_test_support::require(
        "chromium + chromedriver",
        chromium.is_some() && driver.is_some(),
        "apt-get install chromium chromium-driver fonts-ipafont-gothic (tests/install-deps)",
    ) || !common::require_tool("openssl", &["version"])
    {
        return;
    }
    let Some(stack) = kxca_test_support::mailstack::private("console-flow", 28310) else {
        return;
    };
    let mut live = start_live(&stack);
    let alice = add_admin(&live.console, "alice", "admin");
    let port = free_port();
    let mut child = Command::new(driver.unwrap())
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("chromedriver did not listen on {port} within 20 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _driver = Driver(child);
    let downloads = live.console.ca.dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use fantoccini::ClientBuilder;
        use futures_util::FutureExt;
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_string(),
            serde_json::json!({
                "binary": chromium.unwrap(),
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--window-size=1024,768", "--lang=ja-JP"],
                // Downloads land in the test's directory without a prompt.
                "prefs": {
                    "download.default_directory": downloads,
                    "download.prompt_for_download": false,
                    "download.directory_upgrade": true,
                    "safebrowsing.enabled": false,
                },
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session with Chromium");
        let outcome =
            std::panic::AssertUnwindSafe(live_flow(&mut live, &stack, &alice, &client, &downloads))
                .catch_unwind()
                .await;
        let _ = client.close().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    });
}

/// Text of the element `css`, or "" when it is not on the page.
async fn text_of(client: &fantoccini::Client, css: &str) -> String {
    match client.find(fantoccini::Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Reloads `url` until the text of `css` satisfies `ok` (bounded: 60 s).
async fn reload_until(
    client: &fantoccini::Client,
    url: &str,
    css: &str,
    what: &str,
    ok: impl Fn(&str) -> bool,
) -> String {
    let started = Instant::now();
    loop {
        client.goto(url).await.unwrap();
        let text = text_of(client, css).await;
        if ok(&text) {
            return text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what}: {css} still says {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Mail 2 for `cid` that is not one of `seen`: its pickup code (bounded wait).
fn new_code(stack: &kxca_test_support::mailstack::MailStack, cid: &str, seen: &[String]) -> String {
    let started = Instant::now();
    loop {
        for m in stack.read(APPLICANT, "INBOX") {
            let body = m["body"].as_str().unwrap_or_default();
            if !body.contains(cid) {
                continue;
            }
            if let Some(code) = body.lines().find_map(|l| {
                l.trim()
                    .strip_prefix("認証局へ初回ログイン用のパスワード：")
                    .map(|v| v.trim().to_string())
            }) {
                if !seen.contains(&code) {
                    return code;
                }
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no new mail 2 for {cid}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Fills the office pickup page in Chromium and submits it.
async fn fill_pickup(client: &fantoccini::Client, public: &str, cid: &str, code: &str, pw: &str) {
    use fantoccini::Locator;
    client.goto(&format!("{public}/pickup")).await.unwrap();
    h1_is(client, "クライアント証明書の受け取り").await;
    for (id, value) in [
        ("certificate_id", cid),
        ("code", code),
        ("password", pw),
        ("password_confirm", pw),
    ] {
        let field = client.find(Locator::Id(id)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }
    client
        .find(Locator::Css("form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Waits for `<cid>.p12` in `dir` (Chromium writes `.crdownload` first),
/// moves it to `to`, and opens it with `openssl pkcs12` and `openssl
/// verify`: returns the certificate's PEM file.
fn downloaded(ca: &TestCa, dir: &Path, cid: &str, to: &str, pw: &str) -> PathBuf {
    let file = dir.join(format!("{cid}.p12"));
    let started = Instant::now();
    while !file.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no download {}: {:?}",
            file.display(),
            std::fs::read_dir(dir).unwrap().collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let p12 = ca.dir.path().join(format!("{to}.p12"));
    std::fs::rename(&file, &p12).unwrap();
    let cert = ca.dir.path().join(format!("{to}.pem"));
    let passin = format!("pass:{pw}");
    let (ok, text) = common::run(
        "openssl",
        &[
            "pkcs12",
            "-in",
            common::p(&p12),
            "-passin",
            &passin,
            "-clcerts",
            "-nokeys",
            "-out",
            common::p(&cert),
        ],
    );
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

fn serial_of(cert: &Path) -> String {
    let (ok, t) = common::run(
        "openssl",
        &["x509", "-in", common::p(cert), "-noout", "-serial"],
    );
    assert!(ok, "{t}");
    t.trim().trim_start_matches("serial=").to_lowercase()
}

async fn live_flow(
    live: &mut Live,
    stack: &kxca_test_support::mailstack::MailStack,
    alice: &NewAdmin,
    client: &fantoccini::Client,
    downloads: &Path,
) {
    use fantoccini::Locator;
    let c = &live.console;
    let base = c.base.clone();
    let public = live.public.clone();
    let cid = "TI26276000000012345001";
    let other = "TI26276000000012346001";

    // Log in with password + TOTP.
    client.goto(&format!("{base}/login")).await.unwrap();
    h1_is(client, "ログイン").await;
    shot(client, "20-login").await;
    client
        .find(Locator::Id("name"))
        .await
        .unwrap()
        .send_keys(&alice.name)
        .await
        .unwrap();
    client
        .find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(&alice.password)
        .await
        .unwrap();
    client
        .find(Locator::Id("code"))
        .await
        .unwrap()
        .send_keys(&format!("{}\u{e007}", code(&alice.secret, 0)))
        .await
        .unwrap();
    h1_is(client, "申込受付").await;

    // The daemon's mail pass takes the signup mail in over IMAP.
    reload_until(
        client,
        &format!("{base}/"),
        "#app-1",
        "the application arrives",
        |t| !t.is_empty(),
    )
    .await;
    shot(client, "21-inbox").await;
    client
        .find(Locator::Id("app-1"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    h1_is(client, "申込 1").await;
    shot(client, "22-application").await;
    client
        .find(Locator::Id("approve-valid"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    h1_is(client, "承認の確認").await;
    shot(client, "23-confirm").await;
    client
        .find(Locator::Id("confirm"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    h1_is(client, "承認しました").await;
    shot(client, "24-approved").await;

    // The daemon sends mail 1 and mail 2 of both rows; mail 2 over IMAP.
    let code1 = new_code(stack, cid, &[]);
    let code_other = new_code(stack, other, &[]);

    // The office pickup page in Chromium: the PKCS#12 is downloaded and
    // opens with the chosen password.
    fill_pickup(client, &public, cid, &code1, "Pickup1234").await;
    let cert1 = downloaded(&c.ca, downloads, cid, "first", "Pickup1234");
    let serial1 = serial_of(&cert1);
    client.goto(&format!("{public}/pickup")).await.unwrap();
    h1_is(client, "クライアント証明書の受け取り").await;
    shot(client, "25-pickup").await;

    // The account page: OCSP from the public role says good.
    let account = format!("{base}/accounts/{cid}");
    let cell = format!("#cert-{serial1} td.ocsp");
    let got = reload_until(client, &account, &cell, "OCSP good", |t| t == "有効").await;
    assert_eq!(got, "有効");
    shot(client, "26-account-good").await;

    // The status page: the public role's CRL and OCSP are healthy.
    client.goto(&format!("{base}/status")).await.unwrap();
    h1_is(client, "状況").await;
    let crl = text_of(client, "#public-crl").await;
    assert!(
        crl.starts_with("正常") && crl.contains("署名を確認済み"),
        "{crl}"
    );
    let ocsp = text_of(client, "#public-ocsp").await;
    assert!(ocsp.starts_with("正常") && ocsp.contains("有効"), "{ocsp}");
    shot(client, "27-status").await;

    // Reset the live certificate: a new pickup; once picked up the old
    // serial is superseded.
    client.goto(&account).await.unwrap();
    client
        .find(Locator::Id("reset"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    h1_is(client, "再発行の確認").await;
    shot(client, "28-reset-confirm").await;
    client
        .find(Locator::Id("confirm"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    h1_is(client, "再発行の受け取りを開始しました").await;
    let code2 = new_code(stack, cid, std::slice::from_ref(&code1));
    fill_pickup(client, &public, cid, &code2, "Second5678").await;
    let cert2 = downloaded(&c.ca, downloads, cid, "second", "Second5678");
    let serial2 = serial_of(&cert2);
    assert_ne!(serial1, serial2);
    let old = reload_until(
        client,
        &account,
        &format!("#cert-{serial1} td.ocsp"),
        "OCSP superseded",
        |t| t.starts_with("失効"),
    )
    .await;
    assert!(old.contains("別の証明書への切り替え"), "{old}");
    assert_eq!(
        text_of(client, &format!("#cert-{serial2} td.ocsp")).await,
        "有効"
    );
    shot(client, "29-account-superseded").await;

    // Revoke: the account page shows the revocation from OCSP, and
    // openssl agrees.
    client
        .find(Locator::Css("#reason option[value=\"keyCompromise\"]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .find(Locator::Id("revoke"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    h1_is(client, "失効の確認").await;
    client
        .find(Locator::Id("confirm"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    h1_is(client, "失効しました").await;
    shot(client, "30-revoked").await;
    let now_revoked = reload_until(
        client,
        &account,
        &format!("#cert-{serial2} td.ocsp"),
        "OCSP revoked",
        |t| t.starts_with("失効"),
    )
    .await;
    assert!(now_revoked.contains("鍵の漏えい"), "{now_revoked}");
    shot(client, "31-account-revoked").await;
    let (ok, out) = common::run(
        "openssl",
        &[
            "ocsp",
            "-issuer",
            common::p(&c.ca.path("ca/issuing-1.pem")),
            "-CAfile",
            common::p(&c.ca.path("ca/root.pem")),
            "-url",
            &format!("{public}/ocsp"),
            "-no_nonce",
            "-cert",
            common::p(&cert2),
        ],
    );
    assert!(
        ok && out.contains("Response verify OK") && out.contains(": revoked"),
        "{out}"
    );
    assert!(out.contains("keyCompromise"), "{out}");

    // The lockout page: wrong codes on the pickup page until it locks.
    let mut locked = false;
    for _ in 0..10 {
        fill_pickup(
            client,
            &public,
            other,
            "AAAA-AAAA-AAAA-AAAA-AAAA",
            "Wrong12345",
        )
        .await;
        let started = Instant::now();
        let alert = loop {
            let t = text_of(client, "p.error").await;
            if !t.is_empty() || started.elapsed() > Duration::from_secs(10) {
                break t;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if alert.contains("ロックされました") {
            locked = true;
            break;
        }
        assert!(alert.contains("正しくありません"), "{alert}");
        if alert.contains("あと4回") {
            shot(client, "32-pickup-wrong-code").await;
        }
    }
    assert!(locked, "the pickup never locked");
    shot(client, "33-pickup-locked").await;
    // The page was a 423 (WebDriver hides statuses: ask again with curl).
    let (status, _, _) = http_post_form(
        &public,
        "/pickup",
        &format!("certificate_id={other}&code={code_other}&password=Right12345&password_confirm=Right12345&format=modern"),
    );
    assert_eq!(status, 423, "a locked pickup still takes the right code");
    client.goto(&format!("{base}/status")).await.unwrap();
    let pickups = text_of(client, "#pickups tbody").await;
    assert!(
        pickups.contains(other) && pickups.contains("ロック中"),
        "{pickups}"
    );

    // The public role stops: the pages still render, saying so.
    let _ = live.serve.kill();
    let _ = live.serve.wait();
    let started = Instant::now();
    client.goto(&account).await.unwrap();
    h1_is(client, &format!("アカウント {cid}")).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    let note = text_of(client, "#ocsp-note").await;
    assert!(note.contains("公開側に問い合わせできません"), "{note}");
    shot(client, "34-account-public-down").await;
    client.goto(&format!("{base}/status")).await.unwrap();
    h1_is(client, "状況").await;
    for id in ["#public-crl", "#public-ocsp"] {
        let t = text_of(client, id).await;
        assert!(
            t.starts_with("異常") && t.contains("公開側に問い合わせできません"),
            "{id}: {t}"
        );
    }
    shot(client, "35-status-public-down").await;
}

/// POSTs a form to `base` + `path` over HTTP/1.1: (status, head, body).
fn http_post_form(base: &str, path: &str, body: &str) -> (u16, String, String) {
    http(base, "POST", path, None, body)
}

/// A login from client address `from`: (status, page, Retry-After).
fn login_from(c: &Console, from: &str, name: &str, password: &str, code: &str) -> (u16, String) {
    let (status, head, page) = http_from(&c.base, from, "GET", "/login", None, "");
    assert_eq!(status, 200, "{page}");
    let pre = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: __host-kxca-login="))
        .map(|v| v.split(';').next().unwrap().to_string())
        .expect("the login form's cookie");
    let body = format!(
        "csrf={}&name={}&password={}&code={}",
        csrf_of(&page),
        enc(name),
        enc(password),
        code
    );
    let cookie = format!("__Host-kxca-login={pre}");
    let (status, head, page) = http_from(&c.base, from, "POST", "/login", Some(&cookie), &body);
    if status == 429 {
        assert!(head.contains("retry-after: "), "{head}");
    }
    (status, page)
}

/// The used-code memory forgotten, so one admin logs in more than twice
/// within a TOTP period (the test's clock cannot wait).
fn forget_steps(c: &Console) {
    db(c)
        .execute("UPDATE console_admins SET last_step = NULL", [])
        .unwrap();
}

fn admins_json(c: &Console) -> serde_json::Value {
    let out = c.ca.kxca(&["admin", "list", "--json"]);
    common::assert_ok(&out, "admin list --json");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn admin_entry(c: &Console, name: &str) -> serde_json::Value {
    admins_json(c)
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

/// The page without its per-request CSRF token, to compare two answers.
fn without_token(page: &str) -> String {
    let token = csrf_of(page);
    page.replace(&token, "")
}

fn post_password(
    c: &Console,
    session: &str,
    current: &str,
    new: &str,
    confirm: &str,
) -> (u16, String) {
    let (status, _, page) = http(&c.base, "GET", "/password", Some(session), "");
    assert_eq!(status, 200, "{page}");
    let body = format!(
        "csrf={}&current={}&new={}&confirm={}",
        csrf_of(&page),
        enc(current),
        enc(new),
        enc(confirm)
    );
    let (status, _, page) = http(&c.base, "POST", "/password", Some(session), &body);
    (status, page)
}

#[test]
fn admin_lifecycle_password_change_remove_unlock_resets_and_per_client_limit() {
    let c = start("ip_max_failures = 15\nip_window_minutes = 10\n");
    let erin = add_admin(&c, "erin", "admin");
    let frank = add_admin(&c, "frank", "admin");
    let gina = add_admin(&c, "gina", "auditor");
    add_admin(&c, "hana", "admin");

    // --- Password change: two sessions; the page is linked from the header.
    let s1 = login(&c, &erin, &erin.password, 0).unwrap();
    let s2 = login(&c, &erin, &erin.password, 1).unwrap();
    let (_, _, home) = http(&c.base, "GET", "/", Some(&s1), "");
    assert!(home.contains("href=\"/password\""), "{home}");
    // Without the form's token: refused, nothing changed.
    let body = "csrf=00&current=x&new=Kawasaki-Tokyo-2026&confirm=Kawasaki-Tokyo-2026";
    let (status, _, _) = http(&c.base, "POST", "/password", Some(&s1), body);
    assert_eq!(status, 403);
    let (status, page) = post_password(&c, &s1, &erin.password, "short-1", "short-1");
    assert_eq!(status, 400);
    assert!(page.contains("12文字以上"), "{page}");
    let (status, page) = post_password(
        &c,
        &s1,
        &erin.password,
        "my-name-is-ERIN-2026",
        "my-name-is-ERIN-2026",
    );
    assert_eq!(status, 400);
    assert!(page.contains("管理者名"), "{page}");
    let (status, page) = post_password(
        &c,
        &s1,
        &erin.password,
        "Kawasaki-Tokyo-2026",
        "Kawasaki-Tokyo-2027",
    );
    assert_eq!(status, 400);
    assert!(page.contains("一致しません"), "{page}");
    let (status, page) = post_password(
        &c,
        &s1,
        "not-the-password",
        "Kawasaki-Tokyo-2026",
        "Kawasaki-Tokyo-2026",
    );
    assert_eq!(status, 403);
    assert!(
        page.contains("現在のパスワードが正しくありません"),
        "{page}"
    );
    assert_eq!(
        admin_entry(&c, "erin")["failures"],
        1,
        "a wrong current password counts"
    );
    let new_password = "Kawasaki-Tokyo-2026";
    let (status, page) = post_password(&c, &s1, &erin.password, new_password, new_password);
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("パスワードを変更しました") && page.contains("1件"),
        "{page}"
    );
    let (status, _, _) = http(&c.base, "GET", "/", Some(&s1), "");
    assert_eq!(status, 200, "the session that changed the password stays");
    let (status, _, _) = http(&c.base, "GET", "/", Some(&s2), "");
    assert_eq!(status, 303, "the admin's other session is ended");
    forget_steps(&c);
    let (status, _) = login(&c, &erin, &erin.password, 0).unwrap_err();
    assert_eq!(status, 401, "the old password still logs in");
    forget_steps(&c);
    let s3 = login(&c, &erin, new_password, 0).expect("the new password logs in");
    assert_eq!(audit_count(&c, "admin.password_change"), 1);

    // --- Unknown names: every officer command refuses them, naming them.
    for cmd in ["remove", "unlock", "reset-password", "reset-totp"] {
        let out = c.ca.kxca(&["admin", cmd, "nobody"]);
        assert!(!out.status.success(), "admin {cmd} nobody succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("\"nobody\"") && err.contains("kxca admin list"),
            "{cmd}: {err}"
        );
    }

    // --- Remove: frank's session is refused at once.
    let sf = login(&c, &frank, &frank.password, 0).unwrap();
    let (status, _, _) = http(&c.base, "GET", "/", Some(&sf), "");
    assert_eq!(status, 200);
    let out = c.ca.kxca(&["admin", "remove", "frank"]);
    common::assert_ok(&out, "admin remove");
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 session(s) ended"));
    let (status, _, _) = http(&c.base, "GET", "/", Some(&sf), "");
    assert_eq!(status, 303, "a removed admin's session still opens pages");
    forget_steps(&c);
    assert_eq!(login(&c, &frank, &frank.password, 0).unwrap_err().0, 401);
    assert!(admin_entry(&c, "frank").is_null());
    assert_eq!(audit_count(&c, "admin.remove"), 1);

    // --- Unlock: gina locked by five wrong passwords, unlocked by an officer.
    for _ in 0..5 {
        login(&c, &gina, "wrong-password", 0).unwrap_err();
    }
    let g = admin_entry(&c, "gina");
    assert!(g["locked_until"].is_i64(), "{g}");
    assert_eq!(g["role"], "auditor");
    assert_eq!(g["factor"], "totp");
    let listed = c.ca.kxca(&["admin", "list"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("LOCKED UNTIL") && listed.contains("LAST LOGIN"),
        "{listed}"
    );
    assert_eq!(login(&c, &gina, &gina.password, 0).unwrap_err().0, 401);
    let out = c.ca.kxca(&["admin", "unlock", "gina"]);
    common::assert_ok(&out, "admin unlock");
    assert!(String::from_utf8_lossy(&out.stdout).contains("unlocked"));
    assert!(admin_entry(&c, "gina")["locked_until"].is_null());
    forget_steps(&c);
    let sg = login(&c, &gina, &gina.password, 0).expect("gina logs in once unlocked");
    assert!(admin_entry(&c, "gina")["last_login"].is_i64());
    assert_eq!(audit_count(&c, "admin.unlock"), 1);

    // --- Reset password: a new one shown once; gina's session ended.
    let out = c.ca.kxca(&["admin", "reset-password", "gina", "--json"]);
    common::assert_ok(&out, "admin reset-password");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let gina_new = v["password"].as_str().unwrap().to_string();
    assert!(gina_new.len() >= 12 && gina_new != gina.password);
    assert_eq!(v["sessions_ended"], 1);
    let (status, _, _) = http(&c.base, "GET", "/", Some(&sg), "");
    assert_eq!(status, 303);
    forget_steps(&c);
    assert_eq!(login(&c, &gina, &gina.password, 0).unwrap_err().0, 401);
    forget_steps(&c);
    login(&c, &gina, &gina_new, 0).expect("the reset password logs in");
    assert_eq!(audit_count(&c, "admin.reset_password"), 1);

    // --- Reset TOTP: the old authenticator entry stops working.
    let out = c.ca.kxca(&["admin", "reset-totp", "erin", "--json"]);
    common::assert_ok(&out, "admin reset-totp");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["sessions_ended"], 2,
        "s1 (kept by the password change) and s3"
    );
    let b32 = v["otpauth"]
        .as_str()
        .unwrap()
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let erin2 = NewAdmin {
        name: "erin".to_string(),
        password: new_password.to_string(),
        secret: totp_rs::Secret::try_from_base32(b32)
            .unwrap()
            .as_bytes()
            .to_vec(),
    };
    for s in [&s1, &s3] {
        let (status, _, _) = http(&c.base, "GET", "/", Some(s), "");
        assert_eq!(status, 303);
    }
    assert_eq!(
        login(&c, &erin, new_password, 0).unwrap_err().0,
        401,
        "the old TOTP secret still works"
    );
    login(&c, &erin2, new_password, 0).expect("the new TOTP secret works");
    assert_eq!(audit_count(&c, "admin.reset_totp"), 1);

    // --- Per-client limit (15), from 127.0.0.2: unknown names count; the 16th
    // attempt is refused with 429 whatever the name, even with the right
    // password and code; 127.0.0.1 (11 failures so far) is not affected.
    let wrong = "000000";
    for i in 1..=15 {
        let (status, page) = login_from(
            &c,
            "127.0.0.2",
            &format!("ghost-{i}"),
            "guess-password",
            wrong,
        );
        assert_eq!(status, 401, "attempt {i}: {page}");
    }
    assert_eq!(audit_count(&c, "admin.login_limited"), 1);
    let (status, unknown_page) = login_from(&c, "127.0.0.2", "ghost-16", "guess-password", wrong);
    assert_eq!(status, 429, "{unknown_page}");
    assert!(
        unknown_page.contains("しばらくログインを受け付けません"),
        "{unknown_page}"
    );
    let (status, known_page) =
        login_from(&c, "127.0.0.2", "gina", &gina_new, &code(&gina.secret, 1));
    assert_eq!(status, 429, "{known_page}");
    assert_eq!(
        without_token(&unknown_page),
        without_token(&known_page),
        "the 429 page tells a known name from an unknown one"
    );
    assert_eq!(
        audit_count(&c, "admin.login_limited"),
        1,
        "one event per limit, not one per refusal"
    );
    let limited: String = db(&c)
        .query_row(
            "SELECT detail FROM audit WHERE action = 'admin.login_limited'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(limited.contains("127.0.0.2"), "{limited}");
    forget_steps(&c);
    login(&c, &gina, &gina_new, 0).expect("127.0.0.1 is not limited by 127.0.0.2's failures");

    // --- Backup and doctor: the console key is listed, not copied; a
    // restore without it makes doctor name it, and a new key makes doctor
    // name each admin whose TOTP secret it cannot open.
    let backup = c.ca.dir.path().join("backup");
    let out = c.ca.kxca(&["backup", backup.to_str().unwrap()]);
    common::assert_ok(&out, "backup");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("admin console key") && said.contains("console/console.key"),
        "{said}"
    );
    assert!(said.contains("kxca admin reset-totp"), "{said}");
    assert!(!backup.join("console/console.key").exists());
    let key = std::fs::read(c.ca.path("console/console.key")).unwrap();
    for f in walk(&backup) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(key.len()).any(|w| w == key.as_slice()),
            "the console key's bytes are in {}",
            f.display()
        );
    }
    let new_home = c.ca.dir.path().join("restored");
    let out = Command::new(env!("CARGO_BIN_EXE_kxca"))
        .args([
            "restore",
            backup.to_str().unwrap(),
            new_home.to_str().unwrap(),
        ])
        .env("KXCA_ACTOR", "test")
        .output()
        .unwrap();
    common::assert_ok(&out, "restore");
    let at = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kxca"))
            .env("KXCA_HOME", &new_home)
            .env("KXCA_ACTOR", "test")
            .env_remove("KXCA_KEY_PASSPHRASE")
            .args(args)
            .output()
            .unwrap()
    };
    let out = at(&["doctor"]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success());
    assert!(
        said.contains("secret_missing: admin console key") && said.contains("reset-totp"),
        "{said}"
    );
    // An officer re-enrols erin under a new key: doctor names the others.
    common::assert_ok(
        &at(&["admin", "reset-totp", "erin"]),
        "reset-totp in the restored home",
    );
    let out = at(&["doctor"]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        !said.contains("secret_missing: admin console key"),
        "{said}"
    );
    assert!(
        said.contains("console_key_mismatch: console admin gina"),
        "{said}"
    );
    assert!(
        said.contains("console_key_mismatch: console admin hana"),
        "{said}"
    );
    assert!(!said.contains("console admin erin"), "{said}");
    let listed = String::from_utf8_lossy(&at(&["admin", "list"]).stdout).to_string();
    assert!(listed.contains("kxca admin reset-totp gina"), "{listed}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn init_writes_the_console_section_commented_and_it_loads_uncommented() {
    let ca = TestCa::new();
    let config = ca.path("kxca.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains("\n# [console]\n") && text.contains("# listen = \"127.0.0.1:8470\"\n"),
        "{text}"
    );
    assert!(text.contains("kxca admin add NAME --role admin"), "{text}");
    // Off as written: `admin add` says how to turn it on.
    let out = ca.kxca(&["admin", "add", "ines", "--role", "admin"]);
    common::assert_ok(&out, "admin add");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("uncomment the [console] section"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Uncommented as is, every key is one the console knows and accepts.
    let mut on = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line == "# [console]" {
            inside = true;
        }
        match line.strip_prefix("# ") {
            Some(l) if inside && (l.starts_with('[') || l.contains(" = ")) => on.push_str(l),
            _ => on.push_str(line),
        }
        on.push('\n');
    }
    assert!(on.contains("\n[console]\n"), "{on}");
    std::fs::write(&config, on).unwrap();
    let out = ca.kxca(&["admin", "add", "jun", "--role", "admin"]);
    common::assert_ok(&out, "admin add with [console] on");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("uncomment"));
}

//! The admin console under test: a CA home with one application in its
//! inbox, `kxca daemon` with `[console]` on a free loopback port, admins
//! made by `kxca admin add`, and plain HTTP/1.1 exchanges with it (the
//! console's own cookies, CSRF tokens and TOTP login). Shared by
//! tests/console*.rs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::common::{self, TestCa};
use crate::intake::{row, s, set, signup_mail, standard, APPLICANT, V};

/// A daemon with `[console]`, killed on drop.
pub struct Console {
    /// The CA home the daemon runs on.
    pub ca: TestCa,
    /// The running `kxca daemon`.
    pub daemon: Option<Child>,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl Drop for Console {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

/// Work on the home before the daemon starts (see [`Start`]).
pub type Hook = Box<dyn FnOnce(&TestCa)>;

/// What [`start`] puts in the home before the daemon runs.
pub struct Start {
    /// The one application's rows; `None` is row 2 valid, row 3 with a
    /// bad office code (both to [`APPLICANT`]).
    pub form: Option<Vec<Vec<V>>>,
    /// The signup mail's Message-ID.
    pub message_id: &'static str,
    /// Lines appended to `[console]` after its `listen`.
    pub console: String,
    /// Runs on the home after the intake and before the daemon starts.
    pub before_daemon: Option<Hook>,
}

impl Default for Start {
    fn default() -> Self {
        Start {
            form: None,
            message_id: "console-1@office.test",
            console: String::new(),
            before_daemon: None,
        }
    }
}

/// The default application: row 2 valid, row 3 with a bad office code.
fn one_good_one_bad() -> Vec<Vec<V>> {
    let mut good = row(1, "3456789", "001");
    set(&mut good, "メールアドレス1", s(APPLICANT));
    let mut bad = row(2, "34X6", "001");
    set(&mut bad, "メールアドレス1", s(APPLICANT));
    vec![good, bad]
}

/// A CA with one application (see [`Start`]) fetched from a Maildir,
/// `[console]` on a free loopback port, and the daemon running.
pub fn start(opts: Start) -> Console {
    let ca = TestCa::new();
    let maildir = ca.dir.path().join("Maildir");
    for d in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(d)).unwrap();
    }
    let config = ca.path("kxca.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[mail]\nmaildir = {maildir:?}\ninterval_seconds = 3600\n\n[console]\nlisten = \"127.0.0.1:0\"\n{}",
        opts.console
    ));
    std::fs::write(&config, text).unwrap();
    let form = opts.form.unwrap_or_else(one_good_one_bad);
    std::fs::write(
        maildir.join("new/0001.signup.host"),
        signup_mail(opts.message_id, &standard(&form)),
    )
    .unwrap();
    let out = ca.kxca(&["intake", "fetch", "--json"]);
    common::assert_ok(&out, "intake fetch");
    if let Some(hook) = opts.before_daemon {
        hook(&ca);
    }
    daemon(ca, true, Stdio::null())
}

/// Starts `kxca daemon` on `ca` (with the key passphrase in its
/// environment when `passphrase`) and waits for it to be ready.
pub fn daemon(ca: TestCa, passphrase: bool, stderr: Stdio) -> Console {
    let (daemon, url) = spawn_daemon(&ca, passphrase, stderr)
        .unwrap_or_else(|err| panic!("the daemon exited before it was ready: {err}"));
    Console {
        ca,
        daemon: Some(daemon),
        base: url
            .expect("the daemon printed no console address")
            .trim_end_matches('/')
            .to_string(),
    }
}

/// Starts `kxca daemon` on `ca` and waits for `kxca daemon ready`: the
/// child and the console address it printed, as printed; or, when it
/// exits first, its stderr (empty unless `stderr` is piped).
pub fn spawn_daemon(
    ca: &TestCa,
    passphrase: bool,
    stderr: Stdio,
) -> Result<(Child, Option<String>), String> {
    let mut cmd = ca.cmd();
    cmd.arg("daemon");
    if passphrase {
        cmd.env("KXCA_KEY_PASSPHRASE", common::PASSPHRASE);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(stderr).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut url = None;
    let mut ready = false;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(u) = line.strip_prefix("kxca console listening on ") {
            url = Some(u.to_string());
        }
        if line == "kxca daemon ready" {
            ready = true;
            break;
        }
    }
    if !ready {
        let out = child.wait_with_output().unwrap();
        return Err(String::from_utf8_lossy(&out.stderr).to_string());
    }
    // Keep reading so the daemon never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok((child, url))
}

/// An admin as `kxca admin add --json` made it.
pub struct NewAdmin {
    /// The login name.
    pub name: String,
    /// The first password it printed.
    pub password: String,
    /// The TOTP secret from its otpauth URI.
    pub secret: Vec<u8>,
}

/// `kxca admin add NAME --role ROLE` on the console's home.
pub fn add_admin(c: &Console, name: &str, role: &str) -> NewAdmin {
    new_admin(&c.ca, name, role)
}

/// `kxca admin add NAME --role ROLE --json` on `ca`: the admin it made.
pub fn new_admin(ca: &TestCa, name: &str, role: &str) -> NewAdmin {
    let out = ca.kxca(&["admin", "add", name, "--role", role, "--json"]);
    common::assert_ok(&out, "admin add");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    NewAdmin {
        name: name.to_string(),
        password: v["password"].as_str().unwrap().to_string(),
        secret: totp_secret(v["otpauth"].as_str().unwrap()),
    }
}

/// The TOTP secret of an `otpauth://` URI (its base32 `secret=`).
pub fn totp_secret(otpauth: &str) -> Vec<u8> {
    let b32 = otpauth
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    totp_rs::Secret::try_from_base32(b32)
        .unwrap()
        .as_bytes()
        .to_vec()
}

/// The TOTP code `steps` periods from now (RFC 6238, SHA-1, 6 digits).
pub fn code(secret: &[u8], steps: i64) -> String {
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
pub fn http(
    base: &str,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: &str,
) -> (u16, String, String) {
    http_host(base, method, path, cookie, body, None)
}

/// [`http`] with another `Host` header than the address connected to.
pub fn http_host(
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
pub fn http_from(
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

/// Writes one request on `s` and reads the whole answer:
/// (status, headers lower-cased, body). A `cookie` with `=` is a whole
/// Cookie header, without it the console session's value.
pub fn exchange(
    mut s: TcpStream,
    addr: &str,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: &str,
    host: Option<&str>,
) -> (u16, String, String) {
    // 60 s, the longer of the two the console tests had: on this shared
    // machine a slow page is not what they test.
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
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
    response(&raw)
}

/// A raw HTTP/1.x answer: (status, headers lower-cased, body); status 0
/// when there is no status line.
pub fn response(raw: &[u8]) -> (u16, String, String) {
    let text = String::from_utf8_lossy(raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// Percent-encodes a form value.
pub fn enc(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Logs in over HTTP: the session cookie's value, or the refusal page.
pub fn login(
    c: &Console,
    a: &NewAdmin,
    password: &str,
    steps: i64,
) -> Result<String, (u16, String)> {
    // The login form first: its cookie and the token bound to it.
    let (status, head, page) = http(&c.base, "GET", "/login", None, "");
    assert_eq!(status, 200, "{page}");
    let cookie = login_cookie(&head);
    let body = login_body(&page, &a.name, password, &code(&a.secret, steps));
    let (status, head, page) = http(&c.base, "POST", "/login", Some(&cookie), &body);
    let cookie = set_cookie(&head, "__host-kxca-console");
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

/// The value of the cookie `name` (lower-case) that `head` (lower-cased
/// headers) sets.
pub fn set_cookie(head: &str, name: &str) -> Option<String> {
    let prefix = format!("set-cookie: {name}=");
    head.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map(|v| v.split(';').next().unwrap().to_string())
}

/// The Cookie header value that sends back the login form's cookie from
/// the form's answer `head`.
pub fn login_cookie(head: &str) -> String {
    let pre = set_cookie(head, "__host-kxca-login").expect("the login form's cookie");
    format!("__Host-kxca-login={pre}")
}

/// The login form's POST body: the form's CSRF token from `page`, the name,
/// password and second-factor code.
pub fn login_body(page: &str, name: &str, password: &str, code: &str) -> String {
    format!(
        "csrf={}&name={}&password={}&code={}",
        csrf_of(page),
        enc(name),
        enc(password),
        code
    )
}

/// The CSRF token of the first form on `page`.
pub fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a form with a CSRF token")
        .to_string()
}

/// The console home's store.
pub fn db(c: &Console) -> rusqlite::Connection {
    rusqlite::Connection::open(c.ca.path("kxca.db")).unwrap()
}

/// How many audit events of `action` the console's store holds.
pub fn audit_count(c: &Console, action: &str) -> i64 {
    audit_events(&c.ca, action)
}

/// How many audit events of `action` the store of `ca` holds.
pub fn audit_events(ca: &TestCa, action: &str) -> i64 {
    rusqlite::Connection::open(ca.path("kxca.db"))
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM audit WHERE action = ?1",
            [action],
            |r| r.get(0),
        )
        .unwrap()
}

/// [`login`] with the admin's own password and the current code: the
/// session cookie's value; a refusal fails the test.
pub fn login_ok(c: &Console, a: &NewAdmin) -> String {
    login(c, a, &a.password, 0)
        .unwrap_or_else(|(status, page)| panic!("login of {}: {status}: {page}", a.name))
}

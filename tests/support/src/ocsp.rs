//! Helpers for the revocation service tests: a running `kxca serve` (and
//! `kxca daemon`), curl, openssl ocsp and pkilint.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{p, TestCa};

/// Reads the first stdout line of a starting child; panics with its log if
/// it is not `expect`ed.
fn first_line(child: &mut Child, log: &Path, what: &str) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if line.trim().is_empty() {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{what} did not start:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
    line.trim().to_string()
}

/// Sends SIGTERM to a child and waits: returns whether the exit was clean.
fn terminate(child: Option<Child>) -> bool {
    let Some(mut child) = child else {
        return true;
    };
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn log_path(ca: &TestCa, what: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    ca.dir.path().join(format!(
        "{what}-{}-{}.log",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A `kxca daemon` child process (the private role), stopped with SIGTERM on drop.
pub struct Daemon {
    child: Option<Child>,
    /// The child's stderr (its log), as a file.
    pub log: PathBuf,
}

impl Daemon {
    /// Starts the daemon with extra environment (e.g. SOFTHSM2_CONF) and
    /// waits until it has brought the store up to date.
    pub fn start_with(ca: &TestCa, env: &[(&str, &Path)]) -> Daemon {
        let log = log_path(ca, "daemon");
        let mut child = ca
            .cmd()
            .envs(env.iter().copied())
            .arg("daemon")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let line = first_line(&mut child, &log, "kxca daemon");
        assert_eq!(line, "kxca daemon ready");
        Daemon {
            child: Some(child),
            log,
        }
    }

    /// Starts the daemon for this CA.
    pub fn start(ca: &TestCa) -> Daemon {
        Daemon::start_with(ca, &[])
    }

    /// Sends SIGTERM and waits: returns whether the exit was clean.
    pub fn stop(&mut self) -> bool {
        terminate(self.child.take())
    }

    /// The log written so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `kxca serve` child process (the public role), with by default a
/// `kxca daemon` beside it to sign; both stopped with SIGTERM on drop.
pub struct Server {
    child: Option<Child>,
    /// The signing daemon beside it, when started with one.
    pub daemon: Option<Daemon>,
    /// The address it listens on, `host:port`.
    pub addr: String,
    /// The server's stderr (its log), as a file.
    pub log: PathBuf,
}

impl Server {
    /// Starts the server and its daemon for this CA.
    pub fn start(ca: &TestCa) -> Server {
        Server::start_with(ca, &[])
    }

    /// Starts the daemon, then the server, with extra environment (e.g.
    /// SOFTHSM2_CONF for a CA on a token).
    pub fn start_with(ca: &TestCa, env: &[(&str, &Path)]) -> Server {
        let daemon = Daemon::start_with(ca, env);
        let mut cmd = ca.cmd();
        cmd.envs(env.iter().copied());
        let mut server = Server::start_cmd(ca, cmd);
        server.daemon = Some(daemon);
        server
    }

    /// Starts the daemon, then the server with a soft open-file limit of
    /// `soft` (as a service manager's default 1024 would), through util-linux
    /// `prlimit`, which execs the server in place: the child's PID is the
    /// server's.
    pub fn start_with_nofile(ca: &TestCa, soft: u64) -> Server {
        let daemon = Daemon::start_with(ca, &[]);
        let base = ca.cmd();
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--nofile={soft}:"))
            .arg("--")
            .arg(base.get_program());
        for (k, v) in base.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let mut server = Server::start_cmd(ca, cmd);
        server.daemon = Some(daemon);
        server
    }

    /// Starts `kxca serve --listen 127.0.0.1:0` from `cmd` (the program and
    /// its environment; e.g. a sandbox that hides the CA keys), alone.
    pub fn start_cmd(ca: &TestCa, mut cmd: Command) -> Server {
        let log = log_path(ca, "serve");
        let mut child = cmd
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let line = first_line(&mut child, &log, "kxca serve");
        let addr = line
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("kxca serve said {line:?}"))
            .to_string();
        Server {
            child: Some(child),
            daemon: None,
            addr,
            log,
        }
    }

    /// The server process id (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// An http:// URL on the server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends SIGTERM to the server, then to its daemon, and waits: returns
    /// whether both exits were clean.
    pub fn stop(&mut self) -> bool {
        let serve = terminate(self.child.take());
        let daemon = self.daemon.as_mut().is_none_or(Daemon::stop);
        serve && daemon
    }

    /// The server's log, then its daemon's.
    pub fn log_text(&self) -> String {
        let mut text = self.serve_log_text();
        if let Some(d) = &self.daemon {
            text.push_str(&d.log_text());
        }
        text
    }

    /// The server's own log.
    pub fn serve_log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `openssl ocsp` against the server (or with extra args); returns
/// (success, combined output).
pub fn openssl_ocsp(ca: &TestCa, server: &Server, args: &[&str]) -> (bool, String) {
    let issuer = ca.path("ca/issuing-1.pem");
    let root = ca.path("ca/root.pem");
    let url = server.url("/ocsp");
    let mut all = vec![
        "ocsp",
        "-issuer",
        p(&issuer),
        "-CAfile",
        p(&root),
        "-url",
        &url,
    ];
    all.extend_from_slice(args);
    crate::common::run("openssl", &all)
}

/// POSTs `body` with a content type; returns (http code, body bytes).
pub fn post(url: &str, content_type: &str, body: &[u8], dir: &Path) -> (u16, Vec<u8>) {
    let req = dir.join(format!("req-{}.bin", rand_suffix()));
    let out = dir.join(format!("resp-{}.bin", rand_suffix()));
    std::fs::write(&req, body).unwrap();
    let o = Command::new("curl")
        .args([
            "-s",
            "-o",
            p(&out),
            "-w",
            "%{http_code}",
            "-H",
            &format!("Content-Type: {content_type}"),
            "--data-binary",
            &format!("@{}", p(&req)),
            url,
        ])
        .output()
        .unwrap();
    let code = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (code, std::fs::read(&out).unwrap_or_default())
}

/// GETs a URL; returns (http code, headers lowercased, body).
pub fn get(url: &str, extra: &[&str], dir: &Path) -> (u16, String, Vec<u8>) {
    let out = dir.join(format!("get-{}.bin", rand_suffix()));
    let hdr = dir.join(format!("hdr-{}.txt", rand_suffix()));
    let mut args = vec!["-s", "-o", p(&out), "-D", p(&hdr), "-w", "%{http_code}"];
    args.extend_from_slice(extra);
    args.push(url);
    let o = Command::new("curl").args(&args).output().unwrap();
    let code = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (
        code,
        std::fs::read_to_string(&hdr)
            .unwrap_or_default()
            .to_lowercase(),
        std::fs::read(&out).unwrap_or_default(),
    )
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Lints a DER OCSP response with pkilint; panics on any ERROR or FATAL finding.
pub fn lint(der: &[u8], dir: &Path, what: &str) {
    let f = dir.join(format!("lint-{}.der", rand_suffix()));
    std::fs::write(&f, der).unwrap();
    let (ok, text) = crate::common::run(
        "lint_ocsp_response",
        &["lint", "-s", "ERROR", "--document-format", "DER", p(&f)],
    );
    assert!(ok && text.trim().is_empty(), "pkilint on {what}: {text}");
}

/// `openssl ocsp -reqout` of a request for `cert` (no nonce); returns the DER.
pub fn request_der(ca: &TestCa, cert: &Path, extra: &[&str]) -> Vec<u8> {
    let out = ca.dir.path().join(format!("req-{}.der", rand_suffix()));
    let issuer = ca.path("ca/issuing-1.pem");
    let mut args = vec![
        "ocsp",
        "-issuer",
        p(&issuer),
        "-no_nonce",
        "-reqout",
        p(&out),
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-cert", p(cert)]);
    let (ok, text) = crate::common::run("openssl", &args);
    assert!(ok, "openssl ocsp -reqout: {text}");
    std::fs::read(&out).unwrap()
}

/// Waits (bounded) until `f` holds; the bound is a safety net, not an assertion of speed.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("gave up waiting for: {what}");
}

/// openssl, curl and pkilint present (skip-or-fail for each).
pub fn tools_present() -> bool {
    crate::common::require_tool("openssl", &["version"])
        && crate::common::require_tool("curl", &["--version"])
        && crate::common::require_tool("lint_ocsp_response", &["--help"])
}

//! Helpers shared by the end-to-end tests: a CA home in a temp directory,
//! running the real `kxca` binary, and checking external tools are there.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The key passphrase every test CA is initialised with.
pub const PASSPHRASE: &str = "test-passphrase-Kx7";

pub use crate::services_required;

/// Checks an external program is installed. When it is not: a loud skip
/// under bare `cargo test`, a failure under `tests/run`.
pub fn require_tool(name: &str, probe: &[&str]) -> bool {
    let ok = Command::new(name)
        .args(probe)
        .output()
        .map(|o| o.status.success() || !o.stdout.is_empty() || !o.stderr.is_empty())
        .unwrap_or(false);
    crate::require(name, ok, "run tests/run to install it")
}

/// A CA home in a temp directory, driven through the real `kxca` binary.
pub struct TestCa {
    /// The temp directory holding the home and the passphrase file; removed on drop.
    pub dir: tempfile::TempDir,
    /// KXCA_HOME.
    pub home: PathBuf,
    /// The file holding [`PASSPHRASE`], for `--key-secret-file`.
    pub pass_file: PathBuf,
}

impl TestCa {
    /// A fresh, initialised CA with soft ECDSA keys.
    // Not `Default`: this runs `kxca init`, which is no default value.
    #[allow(clippy::new_without_default)]
    pub fn new() -> TestCa {
        let t = TestCa::uninitialised();
        let out = t.kxca(&["init", "--key-secret-file", t.pass_file.to_str().unwrap()]);
        assert_ok(&out, "init");
        t
    }

    /// A home directory and passphrase file, with no `kxca init` run yet.
    pub fn uninitialised() -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let pass_file = dir.path().join("passphrase");
        std::fs::write(&pass_file, format!("{PASSPHRASE}\n")).unwrap();
        TestCa {
            dir,
            home,
            pass_file,
        }
    }

    /// A `kxca` command for this home, with no passphrase or log level inherited from the caller.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(crate::kxca_bin());
        c.env("KXCA_HOME", &self.home)
            .env("KXCA_ACTOR", "test")
            .env_remove("KXCA_KEY_PASSPHRASE")
            .env_remove("KXCA_LOG");
        c
    }

    /// Runs `kxca ARGS` for this home and returns its output.
    pub fn kxca(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// A path inside the home.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.home.join(rel)
    }

    /// Issues a certificate; returns (serial, p12 path, cert pem path, password).
    pub fn issue(&self, office: &str, contact: &str, extra: &[&str]) -> Issued {
        let mut args = issue_args(office, contact);
        args.extend_from_slice(extra);
        Issued::from_output(&self.kxca(&args))
    }

    /// A logical snapshot of every table, to prove a failed command changed nothing.
    pub fn snapshot(&self) -> String {
        let db = self.path("kxca.db");
        let conn =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap();
        let mut out = String::new();
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for t in tables {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM {t} ORDER BY rowid"))
                .unwrap();
            let n = stmt.column_count();
            let rows: Vec<String> = stmt
                .query_map([], |r| {
                    let mut s = String::new();
                    for i in 0..n {
                        let v: rusqlite::types::Value = r.get(i)?;
                        s.push_str(&format!("{v:?}|"));
                    }
                    Ok(s)
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            out.push_str(&format!("{t}:{}\n", rows.join("\n")));
        }
        out
    }
}

/// What `issue` produced.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Serial number as `kxca` prints it.
    pub serial: String,
    /// The certificate id in the CA database.
    pub certificate_id: String,
    /// The PKCS#12 file handed to the subscriber.
    pub p12: PathBuf,
    /// The certificate, PEM.
    pub cert: PathBuf,
    /// The PKCS#12 password, when `kxca` generated one.
    pub password: Option<String>,
}

/// Panics with stdout and stderr unless the command succeeded.
pub fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a program and returns (success, stdout + stderr).
pub fn run(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A path as a command-line argument (temp paths are UTF-8).
pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Base64 as a MIME body carries it: lines of 76 characters, CRLF between.
pub fn mime_base64(bytes: &[u8]) -> String {
    use base64::Engine;
    let s = base64::engine::general_purpose::STANDARD.encode(bytes);
    s.as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// `kxca issue --json` for one contact of an office of the head-office branch.
pub fn issue_args<'a>(office: &'a str, contact: &'a str) -> Vec<&'a str> {
    vec![
        "issue",
        "--json",
        "--centre",
        "JC",
        "--union-code",
        "26276",
        "--branch-code",
        "00",
        "--contract-unit",
        "2627600",
        "--office-code",
        office,
        "--contact-code",
        contact,
        "--office-name",
        "設計事務所テスト",
        "--contact-name",
        "山田 太郎",
        "--email",
        "taro@example.co.jp",
    ]
}

impl Issued {
    /// What `kxca issue --json` printed.
    pub fn from_output(out: &Output) -> Issued {
        assert_ok(out, "issue");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        Issued {
            serial: v["serial"].as_str().unwrap().to_string(),
            certificate_id: v["certificate_id"].as_str().unwrap().to_string(),
            p12: PathBuf::from(v["pkcs12"].as_str().unwrap()),
            cert: PathBuf::from(v["certificate"].as_str().unwrap()),
            password: v["password"].as_str().map(str::to_string),
        }
    }
}

/// pkilint finds no error-level problem in these certificates and this CRL
/// (skipped loudly, or failed under tests/run, without pkilint).
pub fn pkilint_certificates_and_crl(certs: &[PathBuf], crl: &Path) {
    if !require_tool("lint_pkix_cert", &["--help"]) {
        return;
    }
    for cert in certs {
        pkilint_clean(
            "lint_pkix_cert",
            &["lint", "-s", "ERROR", "-f", "JSON", p(cert)],
        );
    }
    pkilint_clean(
        "lint_crl",
        &[
            "lint",
            "-t",
            "CRL",
            "-p",
            "PKIX",
            "-s",
            "ERROR",
            "-f",
            "JSON",
            p(crl),
        ],
    );
}

fn pkilint_clean(program: &str, args: &[&str]) {
    let (_, text) = run(program, args);
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{program}: {e}: {text}"));
    assert!(
        v["results"].as_array().unwrap().is_empty(),
        "{program} {args:?} found errors: {text}"
    );
}

//! The real mail stack of tests/services/mail.sh: connection info from its
//! mail.env, private instances for tests that stop and start the servers,
//! and Python's smtplib/imaplib/email (tests/support/mailtool.py) as
//! the independent client that delivers signup mails and reads replies.
// Each test crate uses a different part of it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub mod bounded;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../services/mail.sh");
/// The SMTP/IMAP client script, by path (tests and humans run it directly).
pub const TOOL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/mailtool.py");

/// A running Postfix + Dovecot, described by its mail.env.
pub struct MailStack {
    env: HashMap<String, String>,
    /// Set for a private instance, stopped on drop.
    private: Option<(PathBuf, u16)>,
}

fn run_dir() -> Option<PathBuf> {
    std::env::var_os("KXCA_TEST_RUN_DIR").map(PathBuf::from)
}

fn read_env(path: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The shared stack tests/run started, or None (after a loud message)
/// when there is none and services are not required.
pub fn shared() -> Option<MailStack> {
    let file = run_dir().map(|d| d.join("mail.env"));
    match file {
        Some(f) if f.exists() => Some(MailStack {
            env: read_env(&f),
            private: None,
        }),
        _ => {
            crate::require(
                "the shared mail stack ($KXCA_TEST_RUN_DIR/mail.env)",
                false,
                "tests/run starts Postfix and Dovecot with tests/services/mail.sh",
            );
            None
        }
    }
}

/// A private Postfix + Dovecot for a test that stops and starts them.
/// Needs the shared stack too (as the sign that the packages are there).
pub fn private(name: &str, port_base: u16) -> Option<MailStack> {
    shared()?;
    let dir = run_dir().unwrap().join(format!("mail-{name}"));
    let mut s = MailStack {
        env: HashMap::new(),
        private: Some((dir.clone(), port_base)),
    };
    // A clean instance: mail left by an earlier run would be counted.
    s.script("stop");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    s.script("start");
    s.env = read_env(&dir.join("mail.env"));
    Some(s)
}

impl MailStack {
    /// A value from mail.env (ports, users, CA file); panics when absent.
    pub fn get(&self, key: &str) -> &str {
        &self.env[key]
    }

    /// `stop-imap`, `start-imap`, `stop-smtp`, `start-smtp` (private only).
    pub fn script(&self, cmd: &str) {
        let (dir, base) = self.private.as_ref().expect("a private instance");
        let out = bounded::output(
            Command::new("bash")
                .arg(SCRIPT)
                .args([cmd, dir.to_str().unwrap(), &base.to_string()]),
            &format!("mail.sh {cmd}"),
        );
        assert!(
            out.status.success(),
            "mail.sh {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn password(&self, user: &str) -> String {
        let local = user.split('@').next().unwrap();
        let entry = self.get(&format!("MAIL_USER_{local}"));
        entry.split_once(':').unwrap().1.to_string()
    }

    /// The `[mail]` section: IMAP as signup@kx.test and SMTP submission
    /// with AUTH, both over `tls`: "implicit" (IMAPS and SMTPS) or
    /// "starttls".
    pub fn config(&self, home: &Path, tls: &str) -> String {
        let imap_pw = home.join("imap-password");
        let smtp_pw = home.join("smtp-password");
        std::fs::write(&imap_pw, self.password("signup@kx.test") + "\n").unwrap();
        std::fs::write(&smtp_pw, self.password("signup@kx.test") + "\n").unwrap();
        let imap_port = if tls == "implicit" {
            self.get("MAIL_IMAPS_PORT")
        } else {
            self.get("MAIL_IMAP_PORT")
        };
        let smtp_port = if tls == "implicit" {
            self.get("MAIL_SMTPS_PORT")
        } else {
            self.get("MAIL_SMTP_PORT")
        };
        let ca = self.get("MAIL_CA_FILE");
        format!(
            "\n[mail]\ninterval_seconds = 1\n\n[mail.imap]\nhost = \"localhost\"\nport = {imap_port}\n\
             tls = \"{tls}\"\nuser = \"signup@kx.test\"\npassword_file = {imap_pw:?}\nca_file = {ca:?}\n\n\
             [mail.smtp]\nhost = \"localhost\"\nport = {smtp_port}\ntls = \"{tls}\"\nuser = \"signup@kx.test\"\n\
             password_file = {smtp_pw:?}\nfrom = \"signup@kx.test\"\nfrom_name = \"全国設計事務所健康保険組合\"\n\
             ca_file = {ca:?}\nbackoff_seconds = 1\n"
        )
    }

    /// Deliver one raw mail to `to` through Postfix (plain SMTP from 127.0.0.1).
    pub fn send(&self, from: &str, to: &str, raw: &[u8]) {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), raw).unwrap();
        let out = bounded::output(
            Command::new("python3")
                .args([TOOL, "send", self.get("MAIL_SMTP_PORT"), from, to])
                .arg(file.path()),
            "mailtool.py send",
        );
        assert!(
            out.status.success(),
            "SMTP delivery: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn tool(&self, cmd: &str, user: &str, mailbox: &str) -> String {
        self.tool_with(cmd, user, mailbox, &[])
    }

    fn tool_with(&self, cmd: &str, user: &str, mailbox: &str, extra: &[&str]) -> String {
        let out = bounded::output(
            Command::new("python3")
                .args([
                    TOOL,
                    cmd,
                    self.get("MAIL_IMAPS_PORT"),
                    self.get("MAIL_CA_FILE"),
                    user,
                    &self.password(user),
                    mailbox,
                ])
                .args(extra),
            &format!("mailtool.py {cmd}"),
        );
        assert!(
            out.status.success(),
            "IMAP {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Copies the first message of `mailbox` into `dest`, where the server
    /// gives it a new UID: the same mail seen again under another key.
    pub fn copy_first(&self, user: &str, mailbox: &str, dest: &str) {
        self.tool_with("copy", user, mailbox, &[dest]);
    }

    /// The number of messages in a user's mailbox, over IMAP.
    pub fn count(&self, user: &str, mailbox: &str) -> usize {
        self.tool("count", user, mailbox).trim().parse().unwrap()
    }

    /// The messages in `mailbox`, parsed by Python's email package.
    pub fn read(&self, user: &str, mailbox: &str) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.tool("read", user, mailbox)).unwrap()
    }

    /// The Maildir directory of `user`'s `folder` as Dovecot stores it.
    pub fn folder_dir(&self, user: &str, folder: &str) -> PathBuf {
        let (local, domain) = user.split_once('@').unwrap();
        PathBuf::from(self.get("MAIL_DIR"))
            .join("maildirs")
            .join(domain)
            .join(local)
            .join("Maildir")
            .join(format!(".{folder}"))
    }

    /// How many messages `folder` holds on disk: read without IMAP, fast
    /// enough to catch a fetch in the middle.
    pub fn on_disk(&self, user: &str, folder: &str) -> usize {
        let dir = self.folder_dir(user, folder);
        ["cur", "new"]
            .iter()
            .filter_map(|d| std::fs::read_dir(dir.join(d)).ok())
            .map(|entries| entries.count())
            .sum()
    }

    /// Polls until `mailbox` holds `n` messages (Postfix delivers
    /// asynchronously); the test's assertions then check exactly `n`.
    pub fn wait_for(&self, user: &str, mailbox: &str, n: usize) -> usize {
        let mut got = 0;
        for _ in 0..150 {
            got = self.count(user, mailbox);
            if got >= n {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        got
    }
}

impl Drop for MailStack {
    fn drop(&mut self) {
        if self.private.is_some() {
            self.script("stop");
        }
    }
}

//! What a failing command prints: one line, each cause once; and the
//! secret sources a newcomer gets wrong first (no passphrase, a relative
//! secret file).

use kxca_test_support::common;

use std::path::Path;
use std::process::{Command, Output};

use common::{assert_ok, TestCa, PASSPHRASE};

fn kxca_in(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kxca"));
    c.current_dir(dir)
        .env_remove("KXCA_HOME")
        .env_remove("KXCA_KEY_PASSPHRASE")
        .env_remove("KXCA_LOG");
    c
}

/// The error line of a failed command, checked to be one line with no cause
/// repeated (causes are joined with ": ").
fn error_line(what: &str, out: &Output) -> String {
    assert!(!out.status.success(), "{what} succeeded");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: not one line:\n{stderr}");
    let line = lines[0];
    assert!(line.starts_with("error: "), "{what}: {line}");
    let parts: Vec<&str> = line["error: ".len()..].split(": ").collect();
    for (i, p) in parts.iter().enumerate() {
        assert!(
            !parts[i + 1..].contains(p),
            "{what}: cause {p:?} repeated in: {line}"
        );
    }
    line.to_string()
}

#[test]
fn failing_commands_print_each_cause_once() {
    // The line from issue 11: the CA key's secret file is gone.
    let ca = TestCa::new();
    std::fs::remove_file(&ca.pass_file).unwrap();
    let line = error_line("crl without the secret file", &ca.kxca(&["crl"]));
    assert_eq!(
        line.matches("No such file or directory").count(),
        1,
        "{line}"
    );
    assert_eq!(
        line.matches(ca.pass_file.to_str().unwrap()).count(),
        1,
        "{line}"
    );
    assert!(line.contains("secret file"), "{line}");

    let line = error_line("revoke of a bad serial", &ca.kxca(&["revoke", "zz"]));
    assert!(line.contains("zz"), "{line}");

    let line = error_line(
        "list without a home",
        &ca.cmd()
            .env("KXCA_HOME", ca.dir.path().join("nowhere"))
            .arg("list")
            .output()
            .unwrap(),
    );
    assert!(line.contains("not a kxca home"), "{line}");

    let missing = ca.dir.path().join("missing.xlsx");
    error_line(
        "intake check of a missing file",
        &ca.kxca(&["intake", "check", missing.to_str().unwrap()]),
    );

    // A mail password given two ways: refused when kxca.toml loads, naming
    // the keys, and in words that are not about a CA key.
    let config = ca.path("kxca.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        "\n[mail]\nmaildir = \"maildir\"\n\n[mail.smtp]\nhost = \"127.0.0.1\"\nport = 25\n\
         tls = \"starttls\"\nuser = \"signup@kx.test\"\npassword_env = \"KX_SMTP_PW\"\n\
         password_file = \"smtp.pw\"\nfrom = \"signup@kx.test\"\n",
    );
    std::fs::write(&config, text).unwrap();
    let line = error_line("list with a bad [mail]", &ca.kxca(&["list"]));
    assert!(line.contains("kxca.toml"), "{line}");
    assert!(
        line.contains("[mail.smtp] password_env / password_file"),
        "{line}"
    );
    assert!(!line.contains("key secret"), "{line}");
}

#[test]
fn a_database_error_names_the_real_database() {
    let ca = TestCa::new();
    let db = ca.path("kxca.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("ALTER TABLE audit RENAME TO audit_elsewhere")
        .unwrap();
    drop(conn);
    let line = error_line("audit without its table", &ca.kxca(&["audit"]));
    assert!(
        line.contains(&format!("database {}: ", db.display())),
        "{line}"
    );
}

#[test]
fn mail_password_missing_is_named_as_such() {
    let ca = TestCa::new();
    let config = ca.path("kxca.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        "\n[mail]\nmaildir = \"maildir\"\n\n[mail.smtp]\nhost = \"127.0.0.1\"\nport = 25\n\
         tls = \"starttls\"\nuser = \"signup@kx.test\"\npassword_env = \"KX_TEST_SMTP_PW_UNSET\"\n\
         from = \"signup@kx.test\"\n",
    );
    std::fs::write(&config, text).unwrap();
    let out = ca
        .cmd()
        .env_remove("KX_TEST_SMTP_PW_UNSET")
        .args(["outbox", "send"])
        .output()
        .unwrap();
    let line = error_line("outbox send without its password", &out);
    assert!(line.contains("mail password"), "{line}");
    assert!(line.contains("KX_TEST_SMTP_PW_UNSET"), "{line}");
    assert!(!line.contains("key secret"), "{line}");

    // The mail pass (kxca_provisioner::pass) checks the same before it
    // touches the mailbox, in the same words.
    let out = ca
        .cmd()
        .env_remove("KX_TEST_SMTP_PW_UNSET")
        .args(["intake", "fetch"])
        .output()
        .unwrap();
    let line = error_line("intake fetch without its password", &out);
    assert!(line.starts_with("error: mail password: "), "{line}");
    assert!(line.contains("KX_TEST_SMTP_PW_UNSET"), "{line}");
}

#[test]
fn intake_fetch_without_mail_names_the_section() {
    let ca = TestCa::new();
    let line = error_line(
        "intake fetch without [mail]",
        &ca.kxca(&["intake", "fetch"]),
    );
    assert_eq!(
        line,
        "error: no [mail] section in kxca.toml (see provisioner/MAIL.md)"
    );
}

#[test]
fn init_without_a_passphrase_says_how_to_give_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = kxca_in(dir.path())
        .args(["init", "--home", "home"])
        .output()
        .unwrap();
    let line = error_line("init without a passphrase", &out);
    for part in ["KXCA_KEY_PASSPHRASE", "--key-secret-file", "kxca demo"] {
        assert!(line.contains(part), "{part} missing from: {line}");
    }
    assert!(
        !dir.path().join("home").exists(),
        "a failed init left a home"
    );
}

#[test]
fn a_relative_secret_file_is_stored_absolute() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("hsmy")).unwrap();
    std::fs::write(dir.path().join("hsmy/pin"), format!("{PASSPHRASE}\n")).unwrap();
    let out = kxca_in(dir.path())
        .args(["init", "--home", "home", "--key-secret-file", "hsmy/pin"])
        .output()
        .unwrap();
    assert_ok(&out, "init");
    let config = std::fs::read_to_string(dir.path().join("home/kxca.toml")).unwrap();
    let abs = dir.path().join("hsmy/pin").canonicalize().unwrap();
    assert!(
        config.contains(&format!("key_secret_file = {:?}", abs.to_str().unwrap()))
            || config.contains(&format!(
                "key_secret_file = {:?}",
                dir.path().join("hsmy/pin").to_str().unwrap()
            )),
        "kxca.toml does not hold the absolute path:\n{config}"
    );
    // From another directory, a command that opens the key still finds it.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = kxca_in(elsewhere.path())
        .arg("--home")
        .arg(dir.path().join("home"))
        .arg("crl")
        .output()
        .unwrap();
    assert_ok(&out, "crl from another directory");
}

/// Runs a command that, were kxca.toml accepted, would keep running (a
/// role): it must have stopped on its own within a few seconds.
fn stops_quickly(what: &str, mut cmd: Command) -> Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("{what} started despite a broken kxca.toml");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// kxca.toml is put together from each crate's section (src/config.rs)
/// and loaded before any command runs: a mistake in a section a command
/// does not use ([mail] for `kxca list`, [serve] for `kxca daemon`) still
/// stops it, naming the file and the key.
#[test]
fn every_command_checks_every_section() {
    let ca = TestCa::new();
    let config = ca.path("kxca.toml");
    let good = std::fs::read_to_string(&config).unwrap();
    assert!(
        good.contains("[serve]") && good.contains("max_connections"),
        "init writes [serve] through the root type:\n{good}"
    );

    std::fs::write(
        &config,
        format!("{good}\n[mail]\nmaildir = \"maildir\"\nintervall_seconds = 5\n"),
    )
    .unwrap();
    let form = ca.dir.path().join("form.xlsx");
    std::fs::write(&form, b"not read").unwrap();
    let out = ca.dir.path().join("pub");
    let commands: &[&[&str]] = &[
        &["list"],
        &["doctor"],
        &["audit"],
        &["audit", "verify"],
        &["crl"],
        &["show", "01"],
        &["outbox", "list"],
        &["applications", "list"],
        &["offices", "list"],
        &["intake", "check", form.to_str().unwrap()],
        &["publish", out.to_str().unwrap()],
    ];
    for args in commands {
        let what = format!("{args:?} with a typo in [mail]");
        let line = error_line(&what, &ca.kxca(args));
        assert!(line.contains(config.to_str().unwrap()), "{what}: {line}");
        assert!(line.contains("intervall_seconds"), "{what}: {line}");
    }
    for role in ["serve", "daemon"] {
        let mut cmd = ca.cmd();
        cmd.arg(role);
        if role == "serve" {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        let what = format!("{role} with a typo in [mail]");
        let line = error_line(&what, &stops_quickly(&what, cmd));
        assert!(line.contains("intervall_seconds"), "{what}: {line}");
    }

    // A [serve] value out of bounds stops the private role and the CLI too.
    std::fs::write(
        &config,
        good.replace("max_connections = 1024", "max_connections = 1"),
    )
    .unwrap();
    assert_ne!(std::fs::read_to_string(&config).unwrap(), good);
    for args in [&["list"][..], &["daemon"][..]] {
        let what = format!("{args:?} with [serve] max_connections = 1");
        let mut cmd = ca.cmd();
        cmd.args(args);
        let line = error_line(&what, &stops_quickly(&what, cmd));
        assert!(line.contains(config.to_str().unwrap()), "{what}: {line}");
        assert!(
            line.contains("serve.max_connections must be between 16 and 1000000"),
            "{what}: {line}"
        );
    }

    // The file as init wrote it runs again.
    std::fs::write(&config, &good).unwrap();
    assert_ok(&ca.kxca(&["list"]), "list with the file init wrote");
}

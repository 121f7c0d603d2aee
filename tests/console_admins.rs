//! The console's admins: their lifecycle through the officers' CLI
//! (`kxca admin` add, list, remove, unlock, reset), the password change
//! page, the per-client failure limit, and `kxca init`'s commented
//! `[console]` section.

use std::path::{Path, PathBuf};
use std::process::Command;

use kxca_test_support::common::{self, TestCa};
use kxca_test_support::console::{
    add_admin, audit_count, code, csrf_of, db, enc, http, http_from, login, login_body,
    login_cookie, start, totp_secret, Console, NewAdmin, Start,
};

/// A login from client address `from`: (status, page, Retry-After).
fn login_from(c: &Console, from: &str, name: &str, password: &str, code: &str) -> (u16, String) {
    let (status, head, page) = http_from(&c.base, from, "GET", "/login", None, "");
    assert_eq!(status, 200, "{page}");
    let cookie = login_cookie(&head);
    let body = login_body(&page, name, password, code);
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
    let c = start(Start {
        console: "ip_max_failures = 15\nip_window_minutes = 10\n".to_string(),
        ..Start::default()
    });
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
    let erin2 = NewAdmin {
        name: "erin".to_string(),
        password: new_password.to_string(),
        secret: totp_secret(v["otpauth"].as_str().unwrap()),
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

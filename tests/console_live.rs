//! The admin console with the real mail stack and both roles, in headless
//! Chromium: the office pickup page (id, code, password, the PKCS#12 opened
//! with openssl, the lockout after wrong codes), live OCSP status on the
//! account page, reset and revoke, and the public role's health.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use kxca_test_support::browser::{free_port, h1_is, shot, Browser};
use kxca_test_support::common::{self, TestCa};
use kxca_test_support::console::{add_admin, code, daemon, http, Console, NewAdmin};
use kxca_test_support::intake::APPLICANT;

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
    let log = std::fs::File::create(ca.path("daemon.log")).unwrap();
    let console = daemon(ca, false, Stdio::from(log));
    Live {
        console,
        serve,
        public,
    }
}

#[test]
fn pickup_in_chromium_live_ocsp_reset_revoke_lockout_and_public_health() {
    let Some(browser) = Browser::start() else {
        return;
    };
    if !common::require_tool("openssl", &["version"]) {
        return;
    }
    let Some(stack) = kxca_test_support::mailstack::private("console-flow", 28310) else {
        return;
    };
    let mut live = start_live(&stack);
    let alice = add_admin(&live.console, "alice", "admin");
    let downloads = live.console.ca.dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    // Downloads land in the test's directory without a prompt.
    let prefs = serde_json::json!({
        "download.default_directory": downloads,
        "download.prompt_for_download": false,
        "download.directory_upgrade": true,
        "safebrowsing.enabled": false,
    });
    browser.run(Some(prefs), async |client| {
        live_flow(&mut live, &stack, &alice, client, &downloads).await
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
    // The register's column says it in the admins' words too.
    let row = text_of(client, &format!("#cert-{serial1}")).await;
    assert!(
        row.contains("失効(別の証明書への切り替え)") && !row.contains("superseded"),
        "{row}"
    );
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

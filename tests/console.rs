//! The admin console (kxca-console in `kxca daemon`): the real flow in
//! headless Chromium through WebDriver (log in with password + TOTP, open an
//! application with an invalid row, see the highlighted cell and its
//! message, approve the valid row, see the mails queued), and its security
//! over plain HTTP (no session, forged or missing CSRF token, wrong role,
//! after logout, after expiry, brute force, foreign Host, non-loopback bind).
//! The live flow (pickup, OCSP, public role) is in tests/console_live.rs,
//! the admins' lifecycle in tests/console_admins.rs; the helpers in
//! tests/support (console, browser).

use std::time::{Duration, Instant};

use kxca_test_support::browser::{h1_is, shot, Browser};
use kxca_test_support::common::{self, TestCa};
use kxca_test_support::console::{
    add_admin, audit_count, code, csrf_of, db, enc, http, http_host, login, start, Console,
    NewAdmin, Start,
};
use kxca_test_support::intake::APPLICANT;

#[test]
fn refuses_without_session_csrf_role_after_logout_and_expiry_and_locks_brute_force() {
    let c = start(Start::default());
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

#[test]
fn the_real_flow_in_chromium_login_inbox_highlighted_cell_approve_mails_queued() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let c = start(Start::default());
    let alice = add_admin(&c, "alice", "admin");
    browser.run(None, async |client| flow(&c, &alice, client).await);
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
        line.contains(APPLICANT) && line.contains("form.xlsx") && line.contains("確認待ち"),
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
    shot(&client, "05b-reject-confirm").await;
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
    shot(&client, "05c-rejected").await;

    // The inbox says the application's review is done: its one row
    // without errors is decided.
    client.goto(&format!("{base}/")).await.unwrap();
    let line = client
        .find(Locator::Css("table.list tbody tr"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        line.contains("処理済み") && !line.contains("確認待ち"),
        "{line}"
    );

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

    // The password change page (checked for labels, Tab order, width).
    client.goto(&format!("{base}/password")).await.unwrap();
    shot(&client, "11-password").await;

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

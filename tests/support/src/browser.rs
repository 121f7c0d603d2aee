//! Headless Chromium through chromedriver (WebDriver, fantoccini) for the
//! console's browser tests: the driver on a free port, a session that is
//! closed even when the flow panics, the page checks (heading,
//! accessibility) and screenshots written as test artefacts.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback TCP port (free when asked; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `name` on the PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// chromedriver on a free port, killed on drop.
pub struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Chromium and a running chromedriver.
pub struct Browser {
    chromium: PathBuf,
    port: u16,
    _driver: Driver,
}

impl Browser {
    /// chromedriver started on a free port; `None` (a loud skip) when
    /// chromium or chromedriver is missing and services are not required.
    pub fn start() -> Option<Browser> {
        let chromium = which("chromium");
        let driver = which("chromedriver");
        if !crate::require(
            "chromium + chromedriver",
            chromium.is_some() && driver.is_some(),
            "apt-get install chromium chromium-driver fonts-ipafont-gothic (tests/install-deps)",
        ) {
            return None;
        }
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
        Some(Browser {
            chromium: chromium.unwrap(),
            port,
            _driver: Driver(child),
        })
    }

    /// Runs `flow` in a Chromium session (1024x768, ja-JP; `prefs` as
    /// Chromium's preferences) that is closed even when an assertion
    /// fails: otherwise the browser outlives chromedriver.
    pub fn run(
        &self,
        prefs: Option<serde_json::Value>,
        flow: impl AsyncFnOnce(&fantoccini::Client),
    ) {
        use fantoccini::ClientBuilder;
        use futures_util::FutureExt;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut options = serde_json::json!({
                "binary": self.chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--window-size=1024,768", "--lang=ja-JP"],
            });
            if let Some(prefs) = prefs {
                options["prefs"] = prefs;
            }
            let mut caps = serde_json::Map::new();
            caps.insert("goog:chromeOptions".to_string(), options);
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            let client = ClientBuilder::new(connector)
                .capabilities(caps)
                .connect(&format!("http://127.0.0.1:{}", self.port))
                .await
                .expect("a WebDriver session with Chromium");
            let outcome = std::panic::AssertUnwindSafe(flow(&client))
                .catch_unwind()
                .await;
            // The session may already be over (the flow may end it); closing
            // is only to make sure no browser is left behind.
            let _ = client.close().await;
            if let Err(panic) = outcome {
                std::panic::resume_unwind(panic);
            }
        });
    }
}

/// target/test-artefacts/console, where the screenshots go.
pub fn artefacts() -> PathBuf {
    let dir = crate::repo_root().join("target/test-artefacts/console");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
/// Waits (up to 10 s) for the page whose heading is `want`: a click's
/// navigation is not awaited by WebDriver.
pub async fn h1_is(client: &fantoccini::Client, want: &str) {
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
pub async fn shot(client: &fantoccini::Client, name: &str) {
    // The picture first: the Tab presses of the checks scroll the page.
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    std::fs::write(artefacts().join(format!("{name}.png")), png).unwrap();
    accessible(client, name).await;
}

/// Accessibility of the page on screen: every input, select and textarea
/// has a label (label[for], a wrapping label, or aria-label), there is one
/// h1, lang="ja", no horizontal scroll at 1024x768, and Tab reaches the
/// submit button of every form. The focus is given back where it was.
pub async fn accessible(client: &fantoccini::Client, name: &str) {
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

//! `kxca publish DIR` served by Debian's nginx on 127.0.0.1, queried as
//! RFC 5019 clients do (GET, no nonce) and checked with openssl ocsp.

use kxca_test_support::common;
use kxca_test_support::ocsp as support_ocsp;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{assert_ok, p, require_tool, TestCa};
use support_ocsp::{get, lint, request_der, tools_present};

/// An nginx started by this test on a free port, stopped (by PID) on drop.
struct Nginx {
    child: Child,
    port: u16,
}

impl Nginx {
    fn start(root: &std::path::Path, work: &std::path::Path) -> Nginx {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::create_dir_all(work.join("tmp")).unwrap();
        let w = p(work);
        let conf = format!(
            r#"
load_module /usr/lib/nginx/modules/ngx_http_js_module.so;
daemon off;
master_process off;
worker_processes 1;
user root;
error_log {w}/error.log;
pid {w}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log {w}/access.log;
    client_body_temp_path {w}/tmp/body;
    proxy_temp_path {w}/tmp/proxy;
    fastcgi_temp_path {w}/tmp/fastcgi;
    uwsgi_temp_path {w}/tmp/uwsgi;
    scgi_temp_path {w}/tmp/scgi;
{snippet}
}}
"#,
            snippet = include_str!("../docs/nginx-kxca.conf")
                .replace("/srv/kxca-publish", p(root))
                .replace(
                    "/etc/nginx/kxca-ocsp.js",
                    concat!(env!("CARGO_MANIFEST_DIR"), "/docs/kxca-ocsp.js")
                )
                .replace("listen 80;", &format!("listen 127.0.0.1:{port};"))
        );
        let conf_path = work.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new("nginx")
            .args([
                "-p",
                w,
                "-c",
                p(&conf_path),
                "-e",
                &format!("{w}/error.log"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start: {}",
                std::fs::read_to_string(work.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Nginx { child, port }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn published_tree_served_by_nginx() {
    if !tools_present() || !require_tool("nginx", &["-v"]) {
        return;
    }
    let ca = TestCa::new();
    let good = ca.issue("1234567", "001", &[]);
    let revoked = ca.issue("1234568", "001", &[]);
    assert_ok(
        &ca.kxca(&["revoke", &revoked.serial, "--reason", "superseded"]),
        "revoke",
    );
    let dir = ca.dir.path();
    let out_dir = dir.join("publish");
    let out = ca.kxca(&["publish", p(&out_dir)]);
    assert_ok(&out, "publish");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Published 4 OCSP responses"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let nginx = Nginx::start(&out_dir, &dir.join("nginx"));
    let base = format!("http://127.0.0.1:{}", nginx.port);
    let issuer = ca.path("ca/issuing-1.pem");
    let root = ca.path("ca/root.pem");

    for (cert, want, sha) in [
        (&good.cert, ": good", false),
        (&revoked.cert, ": revoked", false),
        (&good.cert, ": good", true),
    ] {
        let extra: &[&str] = if sha { &["-sha256"] } else { &[] };
        let der = request_der(&ca, cert, extra);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        let encoded = b64
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D");
        for path in [&b64, &encoded] {
            let (code, headers, body) = get(&format!("{base}/ocsp/{path}"), &[], dir);
            assert_eq!(code, 200, "GET /ocsp/{path}: {headers}");
            assert!(headers.contains("application/ocsp-response"), "{headers}");
            let resp = dir.join("nginx-resp.der");
            std::fs::write(&resp, &body).unwrap();
            let mut args = vec![
                "ocsp",
                "-respin",
                p(&resp),
                "-issuer",
                p(&issuer),
                "-CAfile",
                p(&root),
                "-no_nonce",
            ];
            args.extend_from_slice(extra);
            args.extend_from_slice(&["-cert", p(cert)]);
            let (ok, text) = common::run("openssl", &args);
            assert!(ok && text.contains("Response verify OK"), "{text}");
            assert!(text.contains(want), "{want}: {text}");
            lint(&body, dir, "published response");
        }
    }

    // A GET path ending in "/" (one response in 64) is published as the
    // directory's index.der: nginx must serve it for the "/"-ending URL.
    let sample = std::fs::read(published_file(&out_dir, &ca, &good.cert, &[])).unwrap();
    std::fs::create_dir_all(out_dir.join("ocsp/ends-in-slash")).unwrap();
    std::fs::write(out_dir.join("ocsp/ends-in-slash/index.der"), &sample).unwrap();
    let (code, headers, body) = get(&format!("{base}/ocsp/ends-in-slash/"), &[], dir);
    assert_eq!(code, 200, "{headers}");
    assert!(headers.contains("application/ocsp-response"), "{headers}");
    assert_eq!(body, sample);

    // What a relying party does: `openssl ocsp -url` POSTs the request,
    // njs maps it to the published file, and openssl checks the answer.
    let url = format!("{base}/ocsp");
    for (cert, want, sha) in [
        (&good.cert, ": good", false),
        (&revoked.cert, ": revoked", false),
        (&good.cert, ": good", true),
    ] {
        let mut args = vec![
            "ocsp",
            "-url",
            &url,
            "-issuer",
            p(&issuer),
            "-CAfile",
            p(&root),
            "-no_nonce",
        ];
        if sha {
            args.push("-sha256");
        }
        args.extend_from_slice(&["-cert", p(cert)]);
        let (ok, text) = common::run("openssl", &args);
        assert!(
            ok && text.contains("Response verify OK"),
            "openssl ocsp -url {url}: {text}"
        );
        assert!(text.contains(want), "{want}: {text}");
    }
    // A nonce cannot be pre-signed: the static tree has no answer for it.
    let (ok, text) = common::run(
        "openssl",
        &[
            "ocsp",
            "-url",
            &url,
            "-issuer",
            p(&issuer),
            "-CAfile",
            p(&root),
            "-cert",
            p(&good.cert),
        ],
    );
    assert!(!ok || !text.contains(": good"), "{text}");

    let (code, _, crl) = get(&format!("{base}/crl/issuing-1.crl"), &[], dir);
    assert_eq!(code, 200);
    let crl_path = dir.join("nginx.crl");
    std::fs::write(&crl_path, &crl).unwrap();
    let (ok, text) = common::run(
        "openssl",
        &[
            "crl",
            "-inform",
            "DER",
            "-in",
            p(&crl_path),
            "-noout",
            "-text",
        ],
    );
    assert!(ok, "{text}");
    assert!(
        text.to_uppercase().contains(&revoked.serial.to_uppercase()),
        "{text}"
    );
    let (code, _, cer) = get(&format!("{base}/ca/issuing-1.cer"), &[], dir);
    assert_eq!(code, 200);
    assert_eq!(cer, std::fs::read(ca.path("ca/issuing-1.cer")).unwrap());
}

/// Where `kxca publish` puts the response to this request: its GET path,
/// or the directory's index.der when the path ends in "/".
fn published_file(
    out_dir: &std::path::Path,
    ca: &TestCa,
    cert: &std::path::Path,
    extra: &[&str],
) -> std::path::PathBuf {
    let b64 = base64::engine::general_purpose::STANDARD.encode(request_der(ca, cert, extra));
    let file = out_dir.join("ocsp").join(&b64);
    if b64.ends_with('/') {
        file.join("index.der")
    } else {
        file
    }
}

/// Every file under `dir`, relative, `/`-separated, sorted.
fn tree(dir: &std::path::Path) -> Vec<String> {
    fn walk(root: &std::path::Path, d: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(
                    path.strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn republish_removes_only_its_own_stale_files() {
    if !tools_present() {
        return;
    }
    let ca = TestCa::new();
    let kept = ca.issue("1234567", "001", &[]);
    let expiring = ca.issue("1234568", "001", &[]);
    let dir = ca.dir.path();
    let out_dir = dir.join("publish");
    assert_ok(&ca.kxca(&["publish", p(&out_dir)]), "publish");
    let response_file =
        |cert: &std::path::Path, extra: &[&str]| published_file(&out_dir, &ca, cert, extra);
    let expiring_files = [
        response_file(&expiring.cert, &[]),
        response_file(&expiring.cert, &["-sha256"]),
    ];
    let kept_files = [
        response_file(&kept.cert, &[]),
        response_file(&kept.cert, &["-sha256"]),
    ];
    for f in expiring_files.iter().chain(&kept_files) {
        assert!(f.is_file(), "{} not published", f.display());
    }
    // The operator's own files in the same tree, and one outside it that a
    // tampered manifest names: publish must leave all of them alone.
    std::fs::write(out_dir.join("index.html"), "kx").unwrap();
    std::fs::write(out_dir.join("ocsp/README"), "kx").unwrap();
    std::fs::write(dir.join("outside"), "kx").unwrap();
    let manifest = out_dir.join(".kxca-publish");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str("../outside\n/etc/hostname\n");
    std::fs::write(&manifest, text).unwrap();

    // The certificate expires: its responses are no longer published.
    let db = rusqlite::Connection::open(ca.path("kxca.db")).unwrap();
    let changed = db
        .execute(
            "UPDATE certificates SET not_after = strftime('%s','now') - 60 WHERE lower(serial) = lower(?1)",
            [&expiring.serial],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);
    let out = ca.kxca(&["publish", p(&out_dir)]);
    assert_ok(&out, "publish again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Published 2 OCSP responses") && stdout.contains("removed 2 stale files"),
        "{stdout}"
    );
    for f in &expiring_files {
        assert!(!f.exists(), "{} still published", f.display());
    }
    let files = tree(&out_dir);
    assert!(
        files.iter().all(|f| !f.ends_with("tmp~")),
        "temporary files left: {files:?}"
    );
    for f in ["index.html", "ocsp/README"] {
        assert!(files.iter().any(|x| x == f), "{f} removed: {files:?}");
    }
    assert!(dir.join("outside").is_file());
    // The manifest now names exactly what publish wrote.
    let listed: Vec<String> = std::fs::read_to_string(&manifest)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let mut written: Vec<String> = files
        .into_iter()
        .filter(|f| !matches!(f.as_str(), "index.html" | "ocsp/README" | ".kxca-publish"))
        .collect();
    written.sort();
    let mut listed_sorted = listed.clone();
    listed_sorted.sort();
    assert_eq!(listed_sorted, written);
    // What is left still answers correctly for an independent client.
    let issuer = ca.path("ca/issuing-1.pem");
    let root = ca.path("ca/root.pem");
    for (f, extra) in kept_files.iter().zip([&[][..], &["-sha256"][..]]) {
        let mut args = vec![
            "ocsp",
            "-respin",
            p(f),
            "-issuer",
            p(&issuer),
            "-CAfile",
            p(&root),
            "-no_nonce",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-cert", p(&kept.cert)]);
        let (ok, text) = common::run("openssl", &args);
        assert!(ok && text.contains("Response verify OK"), "{text}");
        assert!(text.contains(": good"), "{text}");
    }
    // Publishing again with nothing changed removes nothing.
    let out = ca.kxca(&["publish", p(&out_dir)]);
    assert_ok(&out, "publish a third time");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("removed 0 stale files"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

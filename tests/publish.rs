//! `kxca publish DIR` served by Debian's nginx on 127.0.0.1, queried as
//! RFC 5019 clients do (GET, no nonce) and checked with openssl ocsp.

mod common;
mod support_ocsp;

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

//! The revocation service against real peers: openssl ocsp, curl, pkilint.

use kxca_test_support::common;
use kxca_test_support::ocsp as support_ocsp;

use base64::Engine as _;
use common::{assert_ok, p, TestCa};
use support_ocsp::{eventually, get, lint, openssl_ocsp, post, request_der, tools_present, Server};

const MALFORMED: &[u8] = &[0x30, 0x03, 0x0a, 0x01, 0x01];
const UNAUTHORIZED: &[u8] = &[0x30, 0x03, 0x0a, 0x01, 0x06];

fn b64(der: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(der)
}

#[test]
fn statuses_nonce_sha256_and_revocation_while_serving() {
    if !tools_present() {
        return;
    }
    let ca = TestCa::new();
    let a = ca.issue("1234567", "001", &[]);
    let b = ca.issue("1234568", "001", &[]);
    let server = Server::start(&ca);
    let dir = ca.dir.path();

    // good, with openssl's default nonce: echoed (openssl checks it) and verified
    // with only the root as trust anchor.
    let resp = dir.join("good-nonce.der");
    let (ok, out) = openssl_ocsp(&ca, &server, &["-cert", p(&a.cert), "-respout", p(&resp)]);
    assert!(ok, "{out}");
    assert!(out.contains("Response verify OK"), "{out}");
    assert!(out.contains(": good"), "{out}");
    assert!(!out.contains("WARNING"), "nonce not echoed? {out}");
    lint(
        &std::fs::read(&resp).unwrap(),
        dir,
        "good response with nonce",
    );

    // SHA-256 CertID, no nonce: the pre-signed response.
    let resp = dir.join("good-sha256.der");
    let (ok, out) = openssl_ocsp(
        &ca,
        &server,
        &[
            "-no_nonce",
            "-sha256",
            "-cert",
            p(&a.cert),
            "-respout",
            p(&resp),
        ],
    );
    assert!(
        ok && out.contains("Response verify OK") && out.contains(": good"),
        "{out}"
    );
    lint(
        &std::fs::read(&resp).unwrap(),
        dir,
        "pre-signed SHA-256 good response",
    );

    // A serial never issued is unknown, never good.
    let resp = dir.join("unknown.der");
    let (ok, out) = openssl_ocsp(
        &ca,
        &server,
        &[
            "-no_nonce",
            "-serial",
            "0x0123456789abcdef",
            "-respout",
            p(&resp),
        ],
    );
    assert!(ok && out.contains("Response verify OK"), "{out}");
    assert!(out.contains("0x0123456789abcdef: unknown"), "{out}");
    lint(&std::fs::read(&resp).unwrap(), dir, "unknown response");

    // Several certificates in one request.
    let (ok, out) = openssl_ocsp(
        &ca,
        &server,
        &["-cert", p(&a.cert), "-cert", p(&b.cert), "-serial", "0x42"],
    );
    assert!(ok && out.contains("Response verify OK"), "{out}");
    assert_eq!(out.matches(": good").count(), 2, "{out}");
    assert!(out.contains("0x42: unknown"), "{out}");

    // Revoke from the CLI (another process) while the server runs.
    assert_ok(
        &ca.kxca(&["revoke", &b.serial, "--reason", "keyCompromise"]),
        "revoke",
    );
    let resp = dir.join("revoked.der");
    let mut last = String::new();
    eventually("OCSP says revoked", || {
        let (_, out) = openssl_ocsp(
            &ca,
            &server,
            &["-no_nonce", "-cert", p(&b.cert), "-respout", p(&resp)],
        );
        last = out;
        last.contains(": revoked")
    });
    assert!(last.contains("Response verify OK"), "{last}");
    assert!(last.contains("Reason: keyCompromise"), "{last}");
    assert!(last.contains("Revocation Time:"), "{last}");
    lint(&std::fs::read(&resp).unwrap(), dir, "revoked response");
    // The other certificate is still good.
    let (_, out) = openssl_ocsp(&ca, &server, &["-no_nonce", "-cert", p(&a.cert)]);
    assert!(out.contains(": good"), "{out}");

    // The CRL at its URL lists it, without restart.
    let crl = dir.join("served.crl");
    eventually("CRL lists the revoked serial", || {
        let (code, _, body) = get(&server.url("/crl/issuing-1.crl"), &[], dir);
        std::fs::write(&crl, &body).unwrap();
        let (ok, text) = common::run(
            "openssl",
            &["crl", "-inform", "DER", "-in", p(&crl), "-noout", "-text"],
        );
        code == 200 && ok && text.to_uppercase().contains(&b.serial.to_uppercase())
    });
    let (ok, out) = common::run(
        "openssl",
        &[
            "crl",
            "-inform",
            "DER",
            "-in",
            p(&crl),
            "-CAfile",
            p(&ca.path("ca/issuing-1.pem")),
            "-noout",
        ],
    );
    assert!(ok && out.contains("verify OK"), "{out}");

    // The log has one line per request with status, serial and latency.
    let mut server = server;
    assert!(
        server.stop(),
        "graceful shutdown failed:\n{}",
        server.log_text()
    );
    let log = server.log_text();
    assert!(
        log.lines().any(|l| l.contains("status=revoked")
            && l.contains(&format!("serial={}", b.serial))
            && l.contains("latency_us=")),
        "{log}"
    );
}

#[test]
fn get_forms_caching_headers_and_304() {
    if !tools_present() {
        return;
    }
    let ca = TestCa::new();
    let a = ca.issue("1234567", "001", &[]);
    let server = Server::start(&ca);
    let dir = ca.dir.path();
    let der = request_der(&ca, &a.cert, &[]);
    let plain = b64(&der);
    let encoded = plain
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let (code, headers, body) = get(&server.url(&format!("/ocsp/{plain}")), &[], dir);
    assert_eq!(code, 200, "{headers}");
    let (code2, _, body2) = get(&server.url(&format!("/ocsp/{encoded}")), &[], dir);
    assert_eq!(code2, 200);
    assert_eq!(body, body2, "encoded and unencoded GET forms differ");
    assert!(
        headers.contains("content-type: application/ocsp-response"),
        "{headers}"
    );
    assert!(headers.contains("cache-control: max-age="), "{headers}");
    for h in ["etag: \"", "last-modified: ", "expires: "] {
        assert!(headers.contains(h), "missing {h}: {headers}");
    }
    // The bytes are a valid response for this certificate.
    let resp = dir.join("get.der");
    std::fs::write(&resp, &body).unwrap();
    let (ok, out) = common::run(
        "openssl",
        &[
            "ocsp",
            "-respin",
            p(&resp),
            "-issuer",
            p(&ca.path("ca/issuing-1.pem")),
            "-cert",
            p(&a.cert),
            "-CAfile",
            p(&ca.path("ca/root.pem")),
            "-no_nonce",
        ],
    );
    assert!(
        ok && out.contains("Response verify OK") && out.contains(": good"),
        "{out}"
    );

    let etag = headers
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .unwrap()
        .trim()
        .to_string();
    let (code, _, body) = get(
        &server.url(&format!("/ocsp/{plain}")),
        &["-H", &format!("If-None-Match: {etag}")],
        dir,
    );
    assert_eq!(code, 304);
    assert!(body.is_empty());
}

#[test]
fn bad_input_gets_ocsp_errors_and_the_server_keeps_serving() {
    if !tools_present() {
        return;
    }
    let ca = TestCa::new();
    let a = ca.issue("1234567", "001", &[]);
    let server = Server::start(&ca);
    let dir = ca.dir.path();
    let url = server.url("/ocsp");
    let good = request_der(&ca, &a.cert, &[]);

    let random: Vec<u8> = (0..300u32).map(|i| (i * 7919 % 251) as u8).collect();
    let mut oversized = good.clone();
    oversized.resize(17 * 1024, 0);
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("random bytes", "application/ocsp-request", random),
        (
            "truncated",
            "application/ocsp-request",
            good[..good.len() - 3].to_vec(),
        ),
        ("empty", "application/ocsp-request", Vec::new()),
        ("wrong content type", "text/plain", good.clone()),
    ];
    for (what, ctype, body) in cases {
        let (code, resp) = post(&url, ctype, &body, dir);
        assert_eq!(code, 200, "{what}");
        assert_eq!(resp, MALFORMED, "{what}: expected malformedRequest");
    }
    // Declared larger than max_request_bytes: refused before the body is read.
    let (code, _) = post(&url, "application/ocsp-request", &oversized, dir);
    assert_eq!(code, 413, "oversized");
    for path in ["/ocsp/!!!notbase64", "/ocsp/%zz", "/ocsp/AAAA"] {
        let (code, _, resp) = get(&server.url(path), &[], dir);
        assert_eq!((code, resp.as_slice()), (200, MALFORMED), "GET {path}");
    }

    // A foreign issuer, and the root (whose certificates this responder does not answer for).
    let foreign_key = dir.join("foreign.key");
    let foreign = dir.join("foreign.pem");
    let (ok, out) = common::run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            p(&foreign_key),
            "-out",
            p(&foreign),
            "-subj",
            "/CN=Foreign CA",
            "-days",
            "1",
        ],
    );
    assert!(ok, "{out}");
    for issuer in [foreign.clone(), ca.path("ca/root.pem")] {
        let req = dir.join("foreign-req.der");
        let (ok, out) = common::run(
            "openssl",
            &[
                "ocsp",
                "-issuer",
                p(&issuer),
                "-serial",
                "0x1234",
                "-no_nonce",
                "-reqout",
                p(&req),
            ],
        );
        assert!(ok, "{out}");
        let (code, resp) = post(
            &url,
            "application/ocsp-request",
            &std::fs::read(&req).unwrap(),
            dir,
        );
        assert_eq!(
            (code, resp.as_slice()),
            (200, UNAUTHORIZED),
            "issuer {}",
            issuer.display()
        );
    }
    let (_, out) = common::run(
        "openssl",
        &[
            "ocsp",
            "-issuer",
            p(&foreign),
            "-serial",
            "0x1234",
            "-url",
            &url,
        ],
    );
    assert!(out.contains("unauthorized"), "{out}");

    // Still serving.
    let (ok, out) = openssl_ocsp(&ca, &server, &["-cert", p(&a.cert)]);
    assert!(
        ok && out.contains(": good") && out.contains("Response verify OK"),
        "{out}"
    );
}

#[test]
fn health_metrics_and_ca_certificates() {
    if !tools_present() {
        return;
    }
    let ca = TestCa::new();
    let a = ca.issue("1234567", "001", &[]);
    let server = Server::start(&ca);
    let dir = ca.dir.path();
    let (ok, out) = openssl_ocsp(&ca, &server, &["-no_nonce", "-cert", p(&a.cert)]);
    assert!(ok, "{out}");

    // Healthy or not, nothing more: no key path, no backend, no check names.
    let (code, _, body) = get(&server.url("/healthz"), &[], dir);
    let health: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(code, 200, "{health}");
    assert_eq!(health, serde_json::json!({"status": "ok"}));

    let (code, headers, body) = get(&server.url("/metrics"), &[], dir);
    let text = String::from_utf8(body).unwrap();
    assert_eq!(code, 200);
    assert!(headers.contains("text/plain"));
    assert!(
        text.contains("kxca_ocsp_requests_total{status=\"good\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("kxca_ocsp_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains("kxca_crl_age_seconds{authority=\"issuing-1\"}"),
        "{text}"
    );
    assert!(
        text.contains("kxca_ocsp_oldest_presigned_age_seconds"),
        "{text}"
    );
    // The /healthz details are here instead, by check name only.
    for check in ["responder_key/issuing-1", "responder_certificate/issuing-1"] {
        assert!(
            text.contains(&format!("kxca_health_check{{check=\"{check}\"}} 1")),
            "{text}"
        );
    }
    assert!(!text.contains("ocsp-responder.p8"), "{text}");

    // caIssuers: the DER issuing CA certificate, byte for byte.
    let (code, headers, body) = get(&server.url("/ca/issuing-1.cer"), &[], dir);
    assert_eq!(code, 200);
    assert!(headers.contains("application/pkix-cert"), "{headers}");
    assert_eq!(body, std::fs::read(ca.path("ca/issuing-1.cer")).unwrap());
    let (code, _, _) = get(&server.url("/crl/nope.crl"), &[], dir);
    assert_eq!(code, 404);

    // The last request before SIGTERM is in the log too. (Shutdown also
    // flushes the log writer, but this test cannot tell: the exit takes
    // longer than one 10 ms drain.)
    let mut server = server;
    assert!(server.stop(), "{}", server.log_text());
    let log = server.log_text();
    assert!(log.contains("path=\"/crl/nope.crl\" http=404"), "{log}");
}

/// A client that sends half a body and then nothing (or headers and then
/// nothing) gets malformedRequest or a closed connection after
/// `[serve] request_timeout_seconds`, not a socket held for ever.
#[test]
fn stalled_requests_are_cut_off() {
    use std::io::{Read, Write};
    if !tools_present() {
        return;
    }
    let ca = TestCa::new();
    let config = ca.path("kxca.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("\nrequest_timeout_seconds = 10\n"), "{text}");
    std::fs::write(
        &config,
        text.replace(
            "\nrequest_timeout_seconds = 10\n",
            "\nrequest_timeout_seconds = 1\n",
        ),
    )
    .unwrap();
    let a = ca.issue("1234567", "001", &[]);
    let server = Server::start(&ca);
    let connect = || {
        let s = std::net::TcpStream::connect(&server.addr).unwrap();
        // Far above the server's 1 s: a server without the limit fails here.
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        s
    };

    let mut s = connect();
    s.write_all(
        b"POST /ocsp HTTP/1.1\r\nHost: kxca\r\nContent-Type: application/ocsp-request\r\n\
Content-Length: 100\r\n\r\n0123456789",
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(MALFORMED) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("no answer to a stalled body: {e}"),
        }
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        got.ends_with(MALFORMED),
        "{}",
        String::from_utf8_lossy(&got)
    );

    let mut s = connect();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: kx").unwrap();
    match s.read(&mut buf) {
        Ok(_) => {} // closed (0) or a 408: either way the server let go
        Err(e) => panic!("a stalled header held the connection: {e}"),
    }

    // And the server still answers.
    let (ok, out) = openssl_ocsp(&ca, &server, &["-cert", p(&a.cert)]);
    assert!(ok && out.contains(": good"), "{out}");
}

//! The two roles: `kxca serve` (public) runs with no access to the CA keys
//! and serves what `kxca daemon` (private) signed into the store. The
//! keyless property is proven by running serve in a mount namespace where
//! the CA key files and the CA key secret are replaced by empty mounts (the
//! tests run as root, so file modes would not stop it), with soft keys and
//! with SoftHSM2 tokens in production mode.

use kxca_test_support::common;
use kxca_test_support::ocsp as support_ocsp;
use kxca_test_support::softhsm;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{assert_ok, p, run, TestCa};
use support_ocsp::{eventually, get, openssl_ocsp, Daemon, Server};

/// Hides each path from the command: a directory under an empty tmpfs
/// (mode 000), a file under /dev/null. Runs in its own mount namespace, so
/// nothing outside sees the mounts.
const HIDE: &str = r#"set -e
bin=$1; shift; n=$1; shift; i=0
while [ "$i" -lt "$n" ]; do
  if [ -d "$1" ]; then mount -t tmpfs -o mode=000,size=1m tmpfs "$1"; else mount --bind /dev/null "$1"; fi
  shift; i=$((i+1))
done
exec "$bin" "$@""#;

/// `kxca` (with the test CA's home and no CA passphrase in its
/// environment) as it runs with `hide` hidden.
fn sandboxed(ca: &TestCa, hide: &[&Path], env: &[(&str, &Path)]) -> Command {
    let mut c = Command::new("unshare");
    c.args(["-m", "--", "sh", "-c", HIDE, "sh"])
        .arg(env!("CARGO_BIN_EXE_kxca"))
        .arg(hide.len().to_string())
        .args(hide)
        .env("KXCA_HOME", &ca.home)
        .env("KXCA_ACTOR", "test")
        .env_remove("KXCA_KEY_PASSPHRASE")
        .env_remove("KXCA_LOG")
        .envs(env.iter().copied());
    c
}

fn tools_present() -> bool {
    support_ocsp::tools_present() && common::require_tool("unshare", &["--version"])
}

fn db(ca: &TestCa) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(
        ca.path("kxca.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap()
}

/// The pre-signed SHA-1 response the store holds for a serial.
fn stored_response(ca: &TestCa, serial: &str) -> Vec<u8> {
    db(ca)
        .query_row(
            "SELECT der FROM ocsp_responses WHERE hash_alg = 'sha1' AND lower(serial) = lower(?1)",
            [serial],
            |r| r.get(0),
        )
        .unwrap()
}

/// (hash, serial, DER) of each pre-signed response; (number, DER) of each CRL.
type SignedRows = (Vec<(String, String, Vec<u8>)>, Vec<(i64, Vec<u8>)>);

/// Every pre-signed response and CRL in the store.
fn signed_rows(ca: &TestCa) -> SignedRows {
    let conn = db(ca);
    let responses = conn
        .prepare("SELECT hash_alg, serial, der FROM ocsp_responses ORDER BY hash_alg, serial")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let crls = conn
        .prepare("SELECT number, der FROM crls ORDER BY authority_id, number")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    (responses, crls)
}

/// `openssl ocsp -no_nonce` for a certificate: (output, served DER).
fn ask(ca: &TestCa, server: &Server, cert: &Path) -> (String, Vec<u8>) {
    let resp = ca.dir.path().join("ask.der");
    let _ = std::fs::remove_file(&resp);
    let (ok, out) = openssl_ocsp(
        ca,
        server,
        &["-no_nonce", "-cert", p(cert), "-respout", p(&resp)],
    );
    assert!(ok && out.contains("Response verify OK"), "{out}");
    (out, std::fs::read(&resp).unwrap())
}

/// The CRL at the CRL URL: (number, DER, `openssl crl -text`), verified
/// against the issuing CA.
fn served_crl(ca: &TestCa, server: &Server) -> (u64, Vec<u8>, String) {
    let dir = ca.dir.path();
    let (code, _, body) = get(&server.url("/crl/issuing-1.crl"), &[], dir);
    assert_eq!(code, 200);
    let f = dir.join("served.crl");
    std::fs::write(&f, &body).unwrap();
    let issuer = ca.path("ca/issuing-1.pem");
    let (ok, text) = run(
        "openssl",
        &[
            "crl",
            "-inform",
            "DER",
            "-in",
            p(&f),
            "-CAfile",
            p(&issuer),
            "-noout",
            "-text",
            "-crlnumber",
        ],
    );
    assert!(ok && text.contains("verify OK"), "{text}");
    let number = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("crlNumber=0x"))
        .map(|h| u64::from_str_radix(h.trim(), 16).unwrap())
        .unwrap_or_else(|| panic!("no CRL number: {text}"));
    (number, body, text)
}

fn health(ca: &TestCa, server: &Server) -> u16 {
    get(&server.url("/healthz"), &[], ca.dir.path()).0
}

/// The newest `crl.sign` audit event's actor.
fn crl_signer(ca: &TestCa) -> String {
    db(ca)
        .query_row(
            "SELECT actor FROM audit WHERE action = 'crl.sign' ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

/// The scenario both tests run: serve (hidden from `hide`) answers good;
/// a CLI revocation is answered revoked and listed on a new CRL within
/// seconds, both signed by the daemon; a daemon restart changes nothing
/// served; with the daemon stopped serve keeps answering and /healthz
/// turns unhealthy when the answers near expiry.
fn keyless_serve(
    ca: &TestCa,
    hide: &[&Path],
    env: &[(&str, &Path)],
    kxca: &dyn Fn(&[&str]) -> std::process::Output,
    issue: &dyn Fn(&str) -> (String, PathBuf),
) {
    // The sandbox really takes the keys away: a signing command in it fails.
    let out = sandboxed(ca, hide, env).arg("crl").output().unwrap();
    assert!(
        !out.status.success(),
        "kxca crl signed inside the sandbox: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");

    let (serial_a, cert_a) = issue("1234567");
    let (serial_b, cert_b) = issue("1234568");
    let mut daemon = Daemon::start_with(ca, env);
    let server = Server::start_cmd(ca, sandboxed(ca, hide, env));

    let (out, der_a) = ask(ca, &server, &cert_a);
    assert!(out.contains(": good"), "{out}");
    assert_eq!(
        der_a,
        stored_response(ca, &serial_a),
        "not the daemon's answer"
    );
    let (out, _) = ask(ca, &server, &cert_b);
    assert!(out.contains(": good"), "{out}");
    let (number, _, _) = served_crl(ca, &server);
    assert_eq!(health(ca, &server), 200, "{}", server.log_text());

    // A revocation by the CLI, signed by the daemon, served by serve.
    let revoked_at = Instant::now();
    assert_ok(
        &kxca(&["revoke", &serial_b, "--reason", "keyCompromise"]),
        "revoke",
    );
    let mut revoked = (String::new(), Vec::new());
    eventually("OCSP says revoked with the daemon's answer", || {
        revoked = ask(ca, &server, &cert_b);
        revoked.0.contains(": revoked") && revoked.1 == stored_response(ca, &serial_b)
    });
    let ocsp_after = revoked_at.elapsed();
    assert!(revoked.0.contains("Reason: keyCompromise"), "{}", revoked.0);
    let mut crl = (0, Vec::new(), String::new());
    eventually("a new CRL at the CRL URL", || {
        crl = served_crl(ca, &server);
        crl.0 > number
    });
    let crl_after = revoked_at.elapsed();
    eprintln!(
        "revocation served: OCSP after {} ms, CRL #{} after {} ms",
        ocsp_after.as_millis(),
        crl.0,
        crl_after.as_millis()
    );
    assert!(
        ocsp_after < Duration::from_secs(10) && crl_after < Duration::from_secs(10),
        "too slow: {ocsp_after:?} {crl_after:?}"
    );
    assert!(
        crl.2.to_uppercase().contains(&serial_b.to_uppercase()),
        "{}",
        crl.2
    );
    assert_eq!(crl_signer(ca), "kxca-daemon");
    assert!(
        signed_rows(ca).1.iter().any(|(_, der)| *der == crl.1),
        "the served CRL is not the stored one"
    );

    // A daemon restart changes nothing that was signed or answered.
    let before = signed_rows(ca);
    assert!(
        daemon.stop(),
        "daemon did not stop cleanly: {}",
        daemon.log_text()
    );
    // Stopped: serve keeps answering from what was pre-signed.
    assert_eq!(ask(ca, &server, &cert_a).1, der_a);
    assert_eq!(ask(ca, &server, &cert_b).1, revoked.1);
    assert_eq!(health(ca, &server), 200);
    let mut daemon = Daemon::start_with(ca, env);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(signed_rows(ca), before, "the restart re-signed something");
    assert_eq!(ask(ca, &server, &cert_a).1, der_a);
    assert_eq!(ask(ca, &server, &cert_b).1, revoked.1);
    assert_eq!(served_crl(ca, &server).1, crl.1);

    // The daemon stopped for days: the answers near expiry (simulated in
    // the store), serve still answers but /healthz says unhealthy.
    assert!(daemon.stop());
    let conn = rusqlite::Connection::open(ca.path("kxca.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.execute(
        "UPDATE ocsp_responses SET next_update = CAST(strftime('%s','now') AS INTEGER) + 3600",
        [],
    )
    .unwrap();
    drop(conn);
    eventually("/healthz unhealthy", || health(ca, &server) == 503);
    assert!(ask(ca, &server, &cert_a).0.contains(": good"));
    // The daemon back: fresh answers, healthy again.
    let mut daemon = Daemon::start_with(ca, env);
    eventually("/healthz healthy again", || health(ca, &server) == 200);
    let (out, der) = ask(ca, &server, &cert_a);
    assert!(out.contains(": good") && der != der_a, "{out}");

    let mut server = server;
    assert!(server.stop(), "{}", server.log_text());
    assert!(daemon.stop(), "{}", daemon.log_text());
    let log = server.serve_log_text();
    assert!(!log.contains("CA key"), "{log}");
}

#[test]
fn serve_without_the_ca_keys_answers_what_the_daemon_signed() {
    if !tools_present() {
        return;
    }
    let ca = TestCa::new();
    // The responder has its own secret, apart from the CA keys'.
    let config = std::fs::read_to_string(ca.path("kxca.toml")).unwrap();
    assert!(config.contains("responder_key_secret_file"), "{config}");
    assert!(!ca.path("keys/ocsp-responder.p8").exists());
    let keys = ca.path("keys");
    keyless_serve(
        &ca,
        &[&keys, &ca.pass_file],
        &[],
        &|args| ca.kxca(args),
        &|office| {
            let i = ca.issue(office, "001", &[]);
            (i.serial, i.cert)
        },
    );
}

#[test]
fn production_on_tokens_serve_gets_only_the_responder_pin() {
    if !tools_present() || !softhsm::available() {
        return;
    }
    const RESPONDER_PIN: &str = "kx-ocsp-7713";
    let ca = TestCa::uninitialised();
    let hsm = softhsm::SoftHsm::new(&["KX-CA"]);
    let out = hsm
        .util()
        .args(["--init-token", "--free", "--label", "KX-OCSP"])
        .args(["--so-pin", softhsm::SO_PIN, "--pin", RESPONDER_PIN])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let responder_pin = hsm.dir.path().join("responder-pin");
    std::fs::write(&responder_pin, format!("{RESPONDER_PIN}\n")).unwrap();
    let conf = hsm.conf.clone();
    let env: &[(&str, &Path)] = &[("SOFTHSM2_CONF", &conf)];
    let kxca = |args: &[&str]| {
        ca.cmd()
            .env("SOFTHSM2_CONF", &conf)
            .args(args)
            .output()
            .unwrap()
    };
    let init = |responder: &str, pin: &Path| {
        kxca(&[
            "init",
            "--production",
            "--root-key",
            "pkcs11:token=KX-CA;object=root",
            "--issuing-key",
            "pkcs11:token=KX-CA;object=issuing-1",
            "--key-secret-file",
            p(&hsm.pin_file),
            "--responder-key",
            responder,
            "--responder-key-secret-file",
            p(pin),
        ])
    };
    // Refused, with nothing created: the responder's PIN is the CA's, or
    // its key is on the CA token, or it is not given at all.
    for (out, word) in [
        (
            init("pkcs11:token=KX-OCSP;object=ocsp-responder", &hsm.pin_file),
            "secret",
        ),
        (
            init("pkcs11:token=KX-CA;object=ocsp-responder", &responder_pin),
            "own token",
        ),
        (
            kxca(&[
                "init",
                "--production",
                "--root-key",
                "pkcs11:token=KX-CA;object=root",
                "--issuing-key",
                "pkcs11:token=KX-CA;object=issuing-1",
                "--key-secret-file",
                p(&hsm.pin_file),
            ]),
            "--responder-key",
        ),
    ] {
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(word) && err.lines().count() == 1, "{err}");
        assert!(!ca.home.exists(), "a refused init left {:?}", ca.home);
    }
    let out = hsm
        .pkcs11_tool()
        .args([
            "--token-label",
            "KX-CA",
            "--login",
            "--pin",
            softhsm::USER_PIN,
        ])
        .args(["--list-objects"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("label:"),
        "a refused init made keys: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    assert_ok(
        &init("pkcs11:token=KX-OCSP;object=ocsp-responder", &responder_pin),
        "init --production",
    );
    // serve runs on this home as is: the CA PIN file hidden, only the
    // responder's PIN readable.
    keyless_serve(&ca, &[&hsm.pin_file], env, &|args| kxca(args), &|office| {
        let i = common::Issued::from_output(&kxca(&common::issue_args(office, "001")));
        (i.serial, i.cert)
    });
}

/// A responder key replaced under the same reference (a token
/// re-initialised, a lost soft key) is certified again by the daemon, and
/// serve does not pair the new key with the old certificate.
#[test]
fn a_replaced_responder_key_is_certified_again() {
    if !tools_present() {
        return;
    }
    let ca = TestCa::new();
    let issued = ca.issue("1234567", "001", &[]);
    let responder_certs = || -> i64 {
        db(&ca)
            .query_row("SELECT count(*) FROM ocsp_responder_certs", [], |r| {
                r.get(0)
            })
            .unwrap()
    };
    assert_eq!(responder_certs(), 1, "init certifies the responder");
    std::fs::remove_file(ca.path("ocsp/responder.p8")).unwrap();
    let server = Server::start(&ca);
    assert_eq!(responder_certs(), 2, "{}", server.log_text());
    let (out, _) = ask(&ca, &server, &issued.cert);
    assert!(out.contains(": good"), "{out}");
}

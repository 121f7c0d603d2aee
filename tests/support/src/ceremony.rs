//! Helpers for the key-ceremony tests (tests/ceremony.rs on soft keys,
//! tests/ceremony_pkcs11.rs on SoftHSM2 tokens): officers, ceremony files
//! and runs, and the openssl checks of chains, CRLs and OCSP answers.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use crate::common::{assert_ok, p, run, TestCa};
use crate::ocsp::Server;

/// `kxca ARGS` for this home with extra environment (e.g. SOFTHSM2_CONF
/// for a CA on a token).
pub fn kxca_env(ca: &TestCa, env: &[(&str, &Path)], args: &[&str]) -> Output {
    ca.cmd()
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap()
}

/// Enrols officer-a and officer-b (officer-c stays unenrolled); returns
/// their passphrase files.
pub fn enrol(ca: &TestCa, env: &[(&str, &Path)]) -> (PathBuf, PathBuf) {
    let mut files = Vec::new();
    for name in ["officer-a", "officer-b"] {
        let f = ca.dir.path().join(format!("{name}.pass"));
        std::fs::write(&f, format!("long passphrase of {name}\n")).unwrap();
        assert_ok(
            &kxca_env(
                ca,
                env,
                &["officer", "add", name, "--passphrase-file", p(&f)],
            ),
            "officer add",
        );
        files.push(f);
    }
    (files[0].clone(), files[1].clone())
}

/// Writes a ceremony file into the home.
pub fn ceremony_file(ca: &TestCa, name: &str, text: &str) -> PathBuf {
    let path = ca.path(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `kxca ceremony run FILE --approve NAME=PASSFILE ...`.
pub fn run_ceremony(
    ca: &TestCa,
    env: &[(&str, &Path)],
    file: &Path,
    approvals: &[(&str, &Path)],
) -> Output {
    let mut args = vec![
        "ceremony".to_string(),
        "run".to_string(),
        p(file).to_string(),
    ];
    for (name, pass) in approvals {
        args.push("--approve".into());
        args.push(format!("{name}={}", p(pass)));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    kxca_env(ca, env, &args)
}

/// An issuing-CA rollover ceremony: a new key generated at `key_ref`,
/// certified by the current root as `name`.
pub fn intermediate(key_ref: &str, name: &str, days: u32, out: &str) -> String {
    format!(
        r#"type = "intermediate"
description = "issuing CA rollover to {name}"
[key]
ref = "{key_ref}"
algorithm = "ecdsa-p256"
generate = true
[certificate]
name = "{name}"
common_name = "KX Issuing CA {name}"
validity_days = {days}
[outputs]
certificate = "{out}/{name}-ceremony.pem"
transcript = "ceremonies/{name}.txt"
"#
    )
}

/// A root rollover ceremony: a new root key at `key_ref` named `root-2`,
/// with the same subject as the first root (so only key identifiers tell
/// the roots apart), and link certificates both ways.
pub fn root_rollover(key_ref: &str) -> String {
    format!(
        r#"type = "root"
description = "root rollover"
[key]
ref = "{key_ref}"
algorithm = "ecdsa-p256"
generate = true
[certificate]
name = "root-2"
common_name = "KX Root CA"
validity_days = 9000
[outputs]
certificate = "ca/root-2-ceremony.pem"
link_new_by_old = "ca/root-2-by-root.pem"
link_old_by_new = "ca/root-by-root-2.pem"
transcript = "ceremonies/root-2.txt"
"#
    )
}

/// `openssl verify -x509_strict -purpose sslclient` of `cert` from the
/// trust anchor `ca_file`, with `untrusted` as intermediates.
pub fn verify(ca_file: &Path, untrusted: &[&Path], cert: &Path) -> (bool, String) {
    let mut args = vec![
        "verify",
        "-x509_strict",
        "-purpose",
        "sslclient",
        "-CAfile",
        p(ca_file),
    ];
    let bundle;
    if !untrusted.is_empty() {
        let mut pem = String::new();
        for u in untrusted {
            pem.push_str(&std::fs::read_to_string(u).unwrap());
        }
        bundle = cert.with_extension("untrusted.pem");
        std::fs::write(&bundle, pem).unwrap();
        args.extend_from_slice(&["-untrusted", p(&bundle)]);
    }
    args.push(p(cert));
    run("openssl", &args)
}

/// [`verify`] succeeds.
pub fn assert_verifies(ca_file: &Path, untrusted: &[&Path], cert: &Path, what: &str) {
    let (ok, text) = verify(ca_file, untrusted, cert);
    assert!(ok && text.contains(": OK"), "openssl verify {what}: {text}");
}

/// `openssl crl -verify` of `crl` with `issuer`; returns its text form.
pub fn crl_verifies(crl: &Path, issuer: &Path) -> String {
    let (ok, text) = run(
        "openssl",
        &[
            "crl",
            "-in",
            p(crl),
            "-CAfile",
            p(issuer),
            "-verify",
            "-noout",
            "-text",
        ],
    );
    assert!(
        ok && text.contains("verify OK"),
        "openssl crl {crl:?}: {text}"
    );
    text
}

/// `openssl ocsp` for `cert` of `issuer` against the server, the answer
/// verified up to the home's first root; returns openssl's output.
pub fn ocsp_status(ca: &TestCa, server: &Server, issuer: &Path, cert: &Path) -> String {
    ocsp_status_under(&ca.path("ca/root.pem"), server, issuer, cert)
}

/// `openssl ocsp` for `cert` of `issuer` against the server, the answer
/// verified up to the trust anchor `anchor` (e.g. a root made in a
/// rollover); returns openssl's output.
pub fn ocsp_status_under(anchor: &Path, server: &Server, issuer: &Path, cert: &Path) -> String {
    match ocsp_answer(anchor, server, issuer, cert) {
        Ok(text) => text,
        Err(text) => panic!("openssl ocsp: {text}"),
    }
}

/// `openssl ocsp` as [`ocsp_status_under`], for polling: `Err` with
/// openssl's output when there is no verified answer (yet).
pub fn ocsp_answer(
    anchor: &Path,
    server: &Server,
    issuer: &Path,
    cert: &Path,
) -> Result<String, String> {
    let url = server.url("/ocsp");
    let (ok, text) = run(
        "openssl",
        &[
            "ocsp",
            "-issuer",
            p(issuer),
            "-CAfile",
            p(anchor),
            "-url",
            &url,
            "-cert",
            p(cert),
        ],
    );
    if ok && text.contains("Response verify OK") {
        Ok(text)
    } else {
        Err(text)
    }
}

/// Polls `f` until it holds, or panics after `seconds`.
pub fn within(seconds: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("not within {seconds} s: {what}");
}

/// The DER inside a one-certificate PEM file.
pub fn pem_der(path: &Path) -> Vec<u8> {
    use base64::Engine;
    let text = std::fs::read_to_string(path).unwrap();
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

/// A certificate's `notAfter=` line.
pub fn enddate(cert: &Path) -> String {
    let (_, t) = run("openssl", &["x509", "-in", p(cert), "-noout", "-enddate"]);
    t.trim().to_string()
}

/// A certificate's `notBefore=` line.
pub fn startdate(cert: &Path) -> String {
    let (_, t) = run("openssl", &["x509", "-in", p(cert), "-noout", "-startdate"]);
    t.trim().to_string()
}

/// Checks the link certificates of a root rollover (`old_root` →
/// `new_root`, with `new_by_old` and `old_by_new`) and the cases of
/// issue 13: a new leaf under `new_issuing` verifies from the new root
/// alone and from the old root through NewWithOld (not without it); an old
/// leaf under `old_issuing` verifies from the old root and from the new
/// root through OldWithNew; the links carry AKI and SKI, are critical CA
/// certificates, start with the new root and end with the old one.
#[allow(clippy::too_many_arguments)]
pub fn assert_root_links(
    old_root: &Path,
    new_root: &Path,
    new_by_old: &Path,
    old_by_new: &Path,
    old_issuing: &Path,
    old_leaf: &Path,
    new_issuing: &Path,
    new_leaf: &Path,
) {
    assert_verifies(new_root, &[new_issuing], new_leaf, "new leaf, new root");
    assert_verifies(
        old_root,
        &[new_issuing, new_by_old],
        new_leaf,
        "new leaf, old root + NewWithOld",
    );
    let (ok, _) = verify(old_root, &[new_issuing], new_leaf);
    assert!(
        !ok,
        "without the link the old root cannot reach the new leaf"
    );
    assert_verifies(old_root, &[old_issuing], old_leaf, "old leaf, old root");
    assert_verifies(
        new_root,
        &[old_issuing, old_by_new],
        old_leaf,
        "old leaf, new root + OldWithNew",
    );
    let (ok, _) = verify(new_root, &[old_issuing], old_leaf);
    assert!(
        !ok,
        "without the link the new root cannot reach the old leaf"
    );
    for link in [new_by_old, old_by_new] {
        let (_, text) = run("openssl", &["x509", "-in", p(link), "-noout", "-text"]);
        assert!(
            text.contains("X509v3 Subject Key Identifier")
                && text.contains("X509v3 Authority Key Identifier")
                && text.contains("X509v3 Basic Constraints: critical")
                && text.contains("CA:TRUE")
                && text.contains("X509v3 Key Usage: critical")
                && text.contains("Certificate Sign, CRL Sign"),
            "{text}"
        );
        // Neither outlives the old root (the shorter-lived of the two),
        // nor starts before the new root.
        assert_eq!(enddate(link), enddate(old_root), "{link:?}");
        assert_eq!(startdate(link), startdate(new_root), "{link:?}");
    }
}

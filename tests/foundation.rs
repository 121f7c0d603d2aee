//! Foundation end to end: init, issue, revoke, CRL — every artefact checked
//! by independent implementations (openssl, keytool, NSS pk12util, Python
//! cryptography, pkilint).

use kxca_test_support::common;

use std::path::Path;

use common::{assert_ok, p, require_tool, run, Issued, TestCa};

fn openssl_verify(ca: &TestCa, cert: &Path, extra: &[&str]) -> (bool, String) {
    let root = ca.path("ca/root.pem");
    let inter = ca.path("ca/issuing-1.pem");
    let mut args = vec!["verify", "-x509_strict", "-purpose", "sslclient"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-CAfile", p(&root), "-untrusted", p(&inter), p(cert)]);
    run("openssl", &args)
}

/// Walks every TLV strictly as DER (definite, minimal lengths) and descends
/// into constructed values and OCTET STRINGs that hold DER themselves.
fn assert_der(bytes: &[u8], depth: usize) {
    use der::{Decode, Encode, Reader, Tagged};
    let mut reader = der::SliceReader::new(bytes).expect("reader");
    while !reader.is_finished() {
        let any = der::asn1::AnyRef::decode(&mut reader)
            .unwrap_or_else(|e| panic!("not DER at depth {depth}: {e}"));
        let reencoded = any.to_der().unwrap();
        assert!(
            bytes
                .windows(reencoded.len())
                .any(|w| w == reencoded.as_slice()),
            "non-canonical TLV at depth {depth}"
        );
        let tag = any.tag();
        // An OCTET STRING is walked only when all of it is DER: random bytes
        // (a key, a signature, a hash) can start like a TLV by chance.
        let holds_der = tag == der::Tag::OctetString && is_der(any.value());
        if tag.is_constructed() || holds_der {
            assert_der(any.value(), depth + 1);
        }
    }
}

/// Whether `bytes` is a sequence of DER TLVs all the way down, without panicking.
fn is_der(bytes: &[u8]) -> bool {
    use der::{Decode, Reader, Tagged};
    let Ok(mut reader) = der::SliceReader::new(bytes) else {
        return false;
    };
    if reader.is_finished() {
        return false;
    }
    while !reader.is_finished() {
        let Ok(any) = der::asn1::AnyRef::decode(&mut reader) else {
            return false;
        };
        if any.tag().is_constructed() && !any.value().is_empty() && !is_der(any.value()) {
            return false;
        }
    }
    true
}

fn check_pkcs12(ca: &TestCa, i: &Issued, legacy: bool) {
    let pass = i.password.as_deref().unwrap();
    let passin = format!("pass:{pass}");
    let p12 = p(&i.p12);

    // openssl: opens with the password, legacy without -legacy.
    let (ok, info) = run(
        "openssl",
        &["pkcs12", "-info", "-noout", "-in", p12, "-passin", &passin],
    );
    assert!(ok, "openssl pkcs12 -info {p12}: {info}");
    if legacy {
        assert!(
            info.contains("pbeWithSHA1And3-KeyTripleDES-CBC") && info.contains("MAC: sha1"),
            "{info}"
        );
        assert!(!info.contains("PBES2"), "{info}");
    } else {
        assert!(
            info.contains("PBES2, PBKDF2, AES-256-CBC")
                && info.contains("PRF hmacWithSHA256")
                && info.contains("MAC: sha256"),
            "{info}"
        );
    }
    let (ok, dump) = run(
        "openssl",
        &["pkcs12", "-in", p12, "-passin", &passin, "-nodes"],
    );
    assert!(ok, "{dump}");
    assert_eq!(
        dump.matches("BEGIN CERTIFICATE").count(),
        3,
        "leaf + issuing + root: {dump}"
    );
    assert!(
        dump.contains(&format!("friendlyName: {}", i.certificate_id)),
        "{dump}"
    );
    assert!(dump.contains("localKeyID:"), "{dump}");

    // The packaged key matches the certificate.
    let key = ca.dir.path().join(format!("{}.key", i.serial));
    let (ok, t) = run(
        "openssl",
        &[
            "pkcs12",
            "-in",
            p12,
            "-passin",
            &passin,
            "-nocerts",
            "-nodes",
            "-out",
            p(&key),
        ],
    );
    assert!(ok, "{t}");
    let (_, key_pub) = run("openssl", &["pkey", "-in", p(&key), "-pubout"]);
    let (_, cert_pub) = run("openssl", &["x509", "-in", p(&i.cert), "-pubkey", "-noout"]);
    assert!(
        key_pub.contains("BEGIN PUBLIC KEY") && key_pub == cert_pub,
        "key does not match certificate"
    );
    std::fs::remove_file(&key).unwrap();

    // DER, not BER.
    assert_der(&std::fs::read(&i.p12).unwrap(), 0);

    // Java keytool.
    if require_tool("keytool", &["-help"]) {
        let (ok, t) = run(
            "keytool",
            &[
                "-list",
                "-storetype",
                "PKCS12",
                "-keystore",
                p12,
                "-storepass",
                pass,
            ],
        );
        assert!(ok && t.contains("PrivateKeyEntry"), "keytool: {t}");
    }
    // NSS pk12util.
    if require_tool("pk12util", &[]) {
        let nssdb = tempfile::tempdir().unwrap();
        let db = format!("sql:{}", nssdb.path().display());
        let (ok, t) = run("certutil", &["-N", "-d", &db, "--empty-password"]);
        assert!(ok, "certutil: {t}");
        let (ok, t) = run("pk12util", &["-l", p12, "-W", pass, "-d", &db]);
        assert!(ok && t.contains("has private key"), "pk12util: {t}");
    }
    // Python cryptography.
    let script = "import sys\nfrom cryptography.hazmat.primitives.serialization import pkcs12\nk, c, extra = pkcs12.load_key_and_certificates(open(sys.argv[1], 'rb').read(), sys.argv[2].encode())\nassert k is not None and c is not None and len(extra) == 2\nprint(c.subject.rfc4514_string())";
    let (ok, t) = run("python3", &["-c", script, p12, pass]);
    assert!(
        ok && t.contains(&i.certificate_id),
        "python cryptography: {t}"
    );
}

#[test]
fn issue_revoke_and_crl_pass_independent_checks() {
    if !require_tool("openssl", &["version"]) {
        return;
    }
    let ca = TestCa::new();
    let modern_rsa = ca.issue("1234567", "001", &[]);
    let legacy_p256 = ca.issue(
        "7654321",
        "001",
        &["--pkcs12", "legacy", "--key", "ecdsa-p256"],
    );
    let legacy_rsa = ca.issue(
        "7654321",
        "002",
        &["--pkcs12", "legacy", "--key", "rsa-2048"],
    );
    let modern_p256 = ca.issue("1111111", "001", &["--key", "ecdsa-p256"]);
    let all = [&modern_rsa, &legacy_p256, &legacy_rsa, &modern_p256];

    for i in all {
        let (ok, t) = openssl_verify(&ca, &i.cert, &[]);
        assert!(
            ok && t.contains(": OK"),
            "openssl verify {}: {t}",
            i.certificate_id
        );
        assert_eq!(i.serial.len(), 32, "128-bit serial expected: {}", i.serial);
        let (_, text) = run("openssl", &["x509", "-in", p(&i.cert), "-noout", "-text"]);
        assert!(
            text.contains("Digital Signature") && text.contains("critical"),
            "{text}"
        );
        assert!(text.contains("TLS Web Client Authentication"), "{text}");
        assert!(text.contains("email:taro@example.co.jp"), "{text}");
        assert!(
            text.contains("URI:http://127.0.0.1:8080/crl/issuing-1.crl"),
            "{text}"
        );
        assert!(
            text.contains("OCSP - URI:http://127.0.0.1:8080/ocsp"),
            "{text}"
        );
        assert!(
            text.contains("CA Issuers - URI:http://127.0.0.1:8080/ca/issuing-1.cer"),
            "{text}"
        );
        let (_, subj) = run(
            "openssl",
            &[
                "x509",
                "-in",
                p(&i.cert),
                "-noout",
                "-subject",
                "-nameopt",
                "RFC2253,-esc_msb",
            ],
        );
        assert!(
            subj.contains(&format!("CN={},OU=", i.certificate_id))
                && subj.contains("O=全国設計事務所健康保険組合,C=JP"),
            "{subj}"
        );
    }
    let serials: std::collections::HashSet<_> = all.iter().map(|i| i.serial.clone()).collect();
    assert_eq!(serials.len(), 4);

    check_pkcs12(&ca, &modern_rsa, false);
    check_pkcs12(&ca, &modern_p256, false);
    check_pkcs12(&ca, &legacy_p256, true);
    check_pkcs12(&ca, &legacy_rsa, true);

    // Revoke one, sign a CRL, and check both certificates against it.
    let out = ca.kxca(&["revoke", &legacy_p256.serial, "--reason", "keyCompromise"]);
    assert_ok(&out, "revoke");
    assert_ok(&ca.kxca(&["crl"]), "crl");
    let crl = ca.path("crl/issuing-1.pem");
    let (ok, t) = run(
        "openssl",
        &[
            "crl",
            "-in",
            p(&crl),
            "-CAfile",
            p(&ca.path("ca/issuing-1.pem")),
            "-verify",
            "-noout",
        ],
    );
    assert!(ok && t.contains("verify OK"), "openssl crl -verify: {t}");
    let (_, text) = run("openssl", &["crl", "-in", p(&crl), "-noout", "-text"]);
    assert!(
        text.contains("X509v3 CRL Number")
            && text.contains("Key Compromise")
            && text.contains("Authority Key Identifier"),
        "{text}"
    );
    let crl_arg = ["-crl_check", "-CRLfile", p(&crl)];
    let (ok, t) = openssl_verify(&ca, &modern_rsa.cert, &crl_arg);
    assert!(ok && t.contains(": OK"), "good cert with CRL: {t}");
    let (ok, t) = openssl_verify(&ca, &legacy_p256.cert, &crl_arg);
    assert!(
        !ok && t.contains("certificate revoked"),
        "revoked cert with CRL: {t}"
    );

    // CRL numbers only go up.
    assert_ok(&ca.kxca(&["crl"]), "second crl");
    let (_, text2) = run("openssl", &["crl", "-in", p(&crl), "-noout", "-crlnumber"]);
    assert!(text2.trim().ends_with("0x02"), "{text2}");

    // pkilint: no error-level finding on certificates (leaf and CAs) and the CRL.
    let certs: Vec<std::path::PathBuf> = all
        .iter()
        .map(|i| i.cert.clone())
        .chain([ca.path("ca/root.pem"), ca.path("ca/issuing-1.pem")])
        .collect();
    common::pkilint_certificates_and_crl(&certs, &crl);

    // list and show.
    let out = ca.kxca(&["list", "--json"]);
    assert_ok(&out, "list");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 4);
    let out = ca.kxca(&["show", &legacy_p256.serial]);
    assert_ok(&out, "show");
    assert!(String::from_utf8_lossy(&out.stdout).contains("keyCompromise"));
    let out = ca.kxca(&["list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("revoked (keyCompromise)"));

    // Every change is in the audit trail.
    let out = ca.kxca(&["audit", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let actions: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "certificate.issue")
            .count(),
        4
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "certificate.prepare")
            .count(),
        4
    );
    assert!(
        actions.contains(&"ca.init")
            && actions.contains(&"certificate.revoke")
            && actions.contains(&"crl.sign")
    );
}

#[test]
fn ca_hierarchy_has_the_right_constraints() {
    if !require_tool("openssl", &["version"]) {
        return;
    }
    let ca = TestCa::new();
    let (_, root) = run(
        "openssl",
        &["x509", "-in", p(&ca.path("ca/root.pem")), "-noout", "-text"],
    );
    assert!(root.contains("CA:TRUE, pathlen:1"), "{root}");
    assert!(root.contains("Certificate Sign, CRL Sign"), "{root}");
    let (_, inter) = run(
        "openssl",
        &[
            "x509",
            "-in",
            p(&ca.path("ca/issuing-1.pem")),
            "-noout",
            "-text",
        ],
    );
    assert!(inter.contains("CA:TRUE, pathlen:0"), "{inter}");
    let (ok, t) = run(
        "openssl",
        &[
            "verify",
            "-x509_strict",
            "-CAfile",
            p(&ca.path("ca/root.pem")),
            p(&ca.path("ca/issuing-1.pem")),
        ],
    );
    assert!(ok, "{t}");
    // The database is in WAL mode with foreign keys enforced by the binary.
    let conn = rusqlite::Connection::open(ca.path("kxca.db")).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let v: i64 = conn
        .query_row(
            "SELECT MAX(version) FROM schema_migrations WHERE component = 'ca'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(v >= 1);
}

#[test]
fn password_from_file_and_secrets_stay_out_of_logs_and_store() {
    let ca = TestCa::new();
    let pw_file = ca.dir.path().join("p12-password");
    std::fs::write(&pw_file, "Operator2Chosen\n").unwrap();
    let out = ca
        .cmd()
        .args([
            "-vv",
            "issue",
            "--centre",
            "JC",
            "--union-code",
            "26276",
            "--branch-code",
            "00",
            "--contract-unit",
            "2627600",
            "--office-code",
            "42",
            "--contact-code",
            "001",
            "--office-name",
            "事務所",
            "--contact-name",
            "担当",
            "--email",
            "a@example.jp",
            "--password-file",
            p(&pw_file),
        ])
        .env("KXCA_LOG", "debug")
        .output()
        .unwrap();
    assert_ok(&out, "issue with --password-file");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stdout.contains("Operator2Chosen") && !stderr.contains("Operator2Chosen"));
    assert!(!stderr.contains(common::PASSPHRASE));
    let p12 = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("PKCS#12 (modern): "))
        .unwrap()
        .to_string();
    if require_tool("openssl", &["version"]) {
        let (ok, t) = run(
            "openssl",
            &[
                "pkcs12",
                "-info",
                "-noout",
                "-in",
                &p12,
                "-passin",
                "pass:Operator2Chosen",
            ],
        );
        assert!(ok, "{t}");
    }

    // A generated password is printed once and stored nowhere.
    let gen = ca.issue("43", "001", &[]);
    let pw = gen.password.clone().unwrap();
    assert_eq!(pw.len(), 16);
    let dump = ca.snapshot();
    assert!(
        !dump.contains(&pw)
            && !dump.contains("Operator2Chosen")
            && !dump.contains(common::PASSPHRASE)
    );
    let config = std::fs::read_to_string(ca.path("kxca.toml")).unwrap();
    assert!(!config.contains(common::PASSPHRASE));
    // Keys at rest are encrypted PKCS#8.
    let key = std::fs::read(ca.path("keys/issuing-1.p8")).unwrap();
    if require_tool("openssl", &["version"]) {
        let (ok, _) = run(
            "openssl",
            &[
                "pkey",
                "-inform",
                "DER",
                "-in",
                p(&ca.path("keys/issuing-1.p8")),
                "-passin",
                "pass:wrong",
                "-noout",
            ],
        );
        assert!(!ok, "key must not open with a wrong passphrase");
        let (ok, t) = run(
            "openssl",
            &[
                "pkey",
                "-inform",
                "DER",
                "-in",
                p(&ca.path("keys/issuing-1.p8")),
                "-passin",
                &format!("pass:{}", common::PASSPHRASE),
                "-noout",
            ],
        );
        assert!(ok, "key must open with the passphrase: {t}");
    }
    assert!(!key.is_empty());
}

#[test]
fn demo_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("demo");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kxca"))
        .args(["demo", "--dir", p(&home)])
        .env_remove("KXCA_HOME")
        .output()
        .unwrap();
    assert_ok(&out, "demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("openssl verify") && text.contains("password:"),
        "{text}"
    );
    assert!(home.join("crl/issuing-1.crl").exists());
    // Run the openssl commands the demo prints: the revoked one must fail.
    if require_tool("openssl", &["version"]) {
        for line in text
            .lines()
            .filter(|l| l.trim_start().starts_with("openssl "))
        {
            let (cmd, expect) = match line.split_once("    # ") {
                Some((c, e)) => (c.trim(), e.trim()),
                None => (line.trim(), "OK"),
            };
            let args: Vec<&str> = cmd.split_whitespace().skip(1).collect();
            let (ok, t) = run("openssl", &args);
            assert_eq!(ok, expect != "revoked", "{cmd}: {t}");
        }
    }
}

#[test]
fn holder_from_toml_and_json_files() {
    let ca = TestCa::new();
    let toml_file = ca.dir.path().join("holder.toml");
    std::fs::write(
        &toml_file,
        "centre = \"JC\"\nunion_code = \"26276\"\nbranch_code = \"00\"\ncontract_unit = \"2627600\"\noffice_code = \"\"\ncontact_code = \"901\"\noffice_name = \"全国設計事務所健康保険組合\"\ncontact_name = \"組合 担当\"\nemail = \"kumiai@example.jp\"\n",
    )
    .unwrap();
    let out = ca.kxca(&["issue", "--from", p(&toml_file), "--json"]);
    assert_ok(&out, "issue --from toml");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The union's own row has no office code: the id pads it, the subject leaves that OU out.
    assert_eq!(v["certificate_id"], "TI26276000000000000901");
    let json_file = ca.dir.path().join("holder.json");
    std::fs::write(
        &json_file,
        r#"{"centre":"JC","union_code":"26276","branch_code":"00","contract_unit":"2627600","office_code":"55","contact_code":"001","office_name":"事務所","contact_name":"担当","email":"t@example.jp"}"#,
    )
    .unwrap();
    assert_ok(
        &ca.kxca(&["issue", "--from", p(&json_file)]),
        "issue --from json",
    );
    let before = ca.snapshot();
    std::fs::write(&json_file, r#"{"centre":"JC","unoin_code":"26276"}"#).unwrap();
    let out = ca.kxca(&["issue", "--from", p(&json_file)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("holder.json") && stderr.contains("unoin_code"),
        "{stderr}"
    );
    assert_eq!(before, ca.snapshot());
}

//! The tamper-evident audit record (issue 13, "The record"): rows of the
//! event table edited, deleted, inserted and reordered with the `sqlite3`
//! CLI are named by `kxca audit verify`; checkpoints signed by another key
//! are refused; the published checkpoint verifies with OpenSSL and exported
//! inclusion proofs with the Python recipe of docs/AUDIT.md; the daemon
//! records configuration changes and signs checkpoints on its own.

use kxca_test_support::common;
use kxca_test_support::ocsp as support_ocsp;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{assert_ok, TestCa};
use support_ocsp::{eventually, Daemon};

fn tools_present() -> bool {
    common::require_tool("sqlite3", &["-version"])
        && common::require_tool("openssl", &["version"])
        && common::require_tool("python3", &["-c", "import cryptography"])
}

fn sqlite(ca: &TestCa, sql: &str) {
    let out = Command::new("sqlite3")
        .arg(ca.path("kxca.db"))
        .arg(sql)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sqlite3 {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sqlite_value(ca: &TestCa, sql: &str) -> String {
    let out = Command::new("sqlite3")
        .arg(ca.path("kxca.db"))
        .arg(sql)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `kxca audit verify`: (exit ok, the FAIL lines, all of stdout).
fn verify(ca: &TestCa, extra: &[&str]) -> (bool, Vec<String>, String) {
    let mut args = vec!["audit", "verify"];
    args.extend_from_slice(extra);
    let out = ca.kxca(&args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let fails = stdout
        .lines()
        .filter(|l| l.starts_with("FAIL "))
        .map(str::to_string)
        .collect();
    (out.status.success(), fails, stdout)
}

fn checkpoint(ca: &TestCa) -> Output {
    let out = ca.kxca(&["audit", "checkpoint"]);
    assert_ok(&out, "audit checkpoint");
    out
}

/// A CA with some history and two checkpoints (so that consistency is
/// checked too), its database saved aside for each tampering to start from.
fn ca_with_history() -> (TestCa, PathBuf) {
    let ca = TestCa::new();
    let a = ca.issue("1234567", "001", &[]);
    ca.issue("1234567", "002", &[]);
    checkpoint(&ca);
    assert_ok(&ca.kxca(&["revoke", &a.serial]), "revoke");
    ca.issue("1234567", "003", &[]);
    checkpoint(&ca);
    // One file holds everything: the copy is the whole store.
    sqlite(&ca, "PRAGMA wal_checkpoint(TRUNCATE)");
    let pristine = ca.dir.path().join("pristine.db");
    std::fs::copy(ca.path("kxca.db"), &pristine).unwrap();
    (ca, pristine)
}

fn restore(ca: &TestCa, pristine: &Path) {
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(ca.path(&format!("kxca.db{suffix}")));
    }
    std::fs::copy(pristine, ca.path("kxca.db")).unwrap();
}

#[test]
fn tampering_with_the_event_table_is_named() {
    if !tools_present() {
        return;
    }
    let (ca, pristine) = ca_with_history();
    let events: i64 = sqlite_value(&ca, "SELECT COUNT(*) FROM audit")
        .parse()
        .unwrap();
    assert!(events >= 8, "expected some history, got {events} events");

    let (ok, fails, stdout) = verify(&ca, &[]);
    assert!(ok, "an untouched log must verify: {stdout}");
    assert!(fails.is_empty());
    assert!(stdout.contains("2 checkpoints verified"), "{stdout}");

    // Edited: a revocation's actor rewritten.
    let revoke_id = sqlite_value(
        &ca,
        "SELECT id FROM audit WHERE action = 'certificate.revoke'",
    );
    sqlite(
        &ca,
        &format!("UPDATE audit SET actor = 'nobody' WHERE id = {revoke_id}"),
    );
    let (ok, fails, stdout) = verify(&ca, &[]);
    assert!(!ok, "edited row verified: {stdout}");
    assert!(
        fails[0].contains(&format!("event {revoke_id} ")) && fails[0].contains("edited"),
        "{stdout}"
    );

    // Deleted: an event in the middle.
    restore(&ca, &pristine);
    sqlite(&ca, "DELETE FROM audit WHERE id = 4");
    let (ok, fails, stdout) = verify(&ca, &[]);
    assert!(!ok, "deleted row verified: {stdout}");
    assert!(
        fails[0].contains("leaf 3: deleted") && fails[0].contains("between event 3 and event 5"),
        "{stdout}"
    );

    // Deleted: the newest events, which a checkpoint covers.
    restore(&ca, &pristine);
    sqlite(&ca, &format!("DELETE FROM audit WHERE id > {}", events - 2));
    let (ok, fails, stdout) = verify(&ca, &[]);
    assert!(!ok, "truncated log verified: {stdout}");
    assert!(
        fails[0].contains("deleted") && fails[0].contains(&format!("from leaf {} on", events - 2)),
        "{stdout}"
    );

    // Inserted: an event kxca never appended.
    restore(&ca, &pristine);
    sqlite(
        &ca,
        "INSERT INTO audit (at, actor, action, serial, detail) \
         VALUES (1796600000, 'admin', 'certificate.revoke', '01', '{}')",
    );
    let (ok, fails, stdout) = verify(&ca, &[]);
    assert!(!ok, "inserted row verified: {stdout}");
    assert!(
        fails[0].contains(&format!("event {} ", events + 1)) && fails[0].contains("inserted"),
        "{stdout}"
    );

    // Inserted in the middle: the later rows moved up one id to make room.
    restore(&ca, &pristine);
    sqlite(
        &ca,
        "UPDATE audit SET id = id + 100000 WHERE id >= 5; \
         UPDATE audit SET id = id - 99999 WHERE id >= 100000; \
         INSERT INTO audit (id, at, actor, action, serial, detail) \
         VALUES (5, 1796600000, 'admin', 'ca.init', NULL, '{}');",
    );
    let (ok, fails, stdout) = verify(&ca, &[]);
    assert!(!ok, "row inserted in the middle verified: {stdout}");
    assert!(
        fails[0].starts_with("FAIL event 5 (") && fails[0].contains("inserted"),
        "{stdout}"
    );

    // Reordered: two rows swap places (their ids), content untouched.
    restore(&ca, &pristine);
    sqlite(
        &ca,
        "UPDATE audit SET id = -1 WHERE id = 3; \
         UPDATE audit SET id = 3 WHERE id = 4; \
         UPDATE audit SET id = 4 WHERE id = -1;",
    );
    let (ok, fails, stdout) = verify(&ca, &[]);
    assert!(!ok, "reordered rows verified: {stdout}");
    assert!(
        fails[0].starts_with("FAIL event 3 (leaf 3): reordered"),
        "{stdout}"
    );

    // Edited with the leaf recomputed, as someone who read docs/AUDIT.md
    // would: the row checks, the signed checkpoint does not.
    restore(&ca, &pristine);
    let row = sqlite_value(
        &ca,
        "SELECT json_object('id', id, 'index', leaf_index, 'at', at, 'actor', actor, \
         'action', action, 'serial', serial, 'detail', json(detail)) FROM audit WHERE id = 2",
    );
    let leaf = Command::new("python3")
        .args([
            "-c",
            "import hashlib, json, sys\n\
             e = json.loads(sys.argv[1]); e['actor'] = 'nobody'\n\
             c = json.dumps(e, sort_keys=True, separators=(',', ':'), ensure_ascii=False)\n\
             print(hashlib.sha256(b'\\x00' + c.encode()).hexdigest())",
            &row,
        ])
        .output()
        .unwrap();
    assert!(leaf.status.success());
    let leaf = String::from_utf8_lossy(&leaf.stdout).trim().to_string();
    sqlite(
        &ca,
        &format!("UPDATE audit SET actor = 'nobody', leaf = x'{leaf}' WHERE id = 2"),
    );
    let (ok, fails, stdout) = verify(&ca, &[]);
    assert!(!ok, "rewritten row and leaf verified: {stdout}");
    assert!(
        fails[0].contains("no longer hashes to its signed root")
            && fails[0].contains("between event 1 and"),
        "{stdout}"
    );
    // And the daemon's signing path refuses to sign the tampered tree.
    ca.issue("1234567", "004", &[]);
    let out = ca.kxca(&["audit", "checkpoint"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("fails verification, no checkpoint signed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Restored, it verifies again: the findings came from the tampering.
    restore(&ca, &pristine);
    let (ok, _, stdout) = verify(&ca, &["--json"]);
    assert!(ok, "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["events"], events);
}

/// Signs `body` with an EC key made by openssl; returns the signature line
/// for `name` with the key ID of that key (or `key_id_of`'s).
fn foreign_signature(dir: &Path, name: &str, body: &str, key_id_of: Option<&Path>) -> String {
    let key = dir.join("other.key");
    let pubkey = dir.join("other.pem");
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let k = key.to_str().unwrap();
    run(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        k,
    ]);
    run(&[
        "pkey",
        "-in",
        k,
        "-pubout",
        "-out",
        pubkey.to_str().unwrap(),
    ]);
    let body_file = dir.join("body.txt");
    std::fs::write(&body_file, body).unwrap();
    let sig = run(&["dgst", "-sha256", "-sign", k, body_file.to_str().unwrap()]);
    let spki = run(&[
        "pkey",
        "-pubin",
        "-in",
        key_id_of.unwrap_or(&pubkey).to_str().unwrap(),
        "-outform",
        "DER",
    ]);
    let spki_file = dir.join("spki.der");
    std::fs::write(&spki_file, &spki).unwrap();
    let hash = run(&["dgst", "-sha256", "-binary", spki_file.to_str().unwrap()]);
    let mut raw = hash[..4].to_vec();
    raw.extend_from_slice(&sig);
    let raw_file = dir.join("raw.bin");
    std::fs::write(&raw_file, &raw).unwrap();
    let b64 = run(&["base64", "-A", "-in", raw_file.to_str().unwrap()]);
    format!("\u{2014} {name} {}\n", String::from_utf8_lossy(&b64).trim())
}

#[test]
fn checkpoints_verify_independently_and_other_keys_are_refused() {
    if !tools_present() {
        return;
    }
    let (ca, _pristine) = ca_with_history();
    let published = ca.path("crl/audit");
    let note = std::fs::read_to_string(published.join("checkpoint")).unwrap();
    let size = sqlite_value(&ca, "SELECT MAX(size) FROM audit_checkpoints");
    assert_eq!(
        std::fs::read_to_string(published.join("checkpoints").join(&size)).unwrap(),
        note
    );
    let (body, _) = note.split_once("\n\n").unwrap();
    let body = format!("{body}\n");
    let origin = body.lines().next().unwrap().to_string();

    // The OpenSSL recipe of docs/AUDIT.md, run as written.
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/AUDIT.md")).unwrap();
    let block = |tag: &str, lang: &str| {
        let at = doc.find(&format!("<!-- test:{tag}")).unwrap();
        let open = format!("```{lang}\n");
        let start = at + doc[at..].find(&open).unwrap() + open.len();
        let end = start + doc[start..].find("```").unwrap();
        doc[start..end].to_string()
    };
    let work = ca.dir.path().join("outside");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::copy(published.join("audit-key.pem"), work.join("audit-key.pem")).unwrap();
    std::fs::copy(published.join("checkpoint"), work.join("checkpoint")).unwrap();
    let out = Command::new("sh")
        .args(["-e", "-c", &block("openssl", "sh")])
        .current_dir(&work)
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified OK"),
        "openssl recipe: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // `kxca publish` ships them with the CRLs for nginx.
    let site = ca.dir.path().join("site");
    assert_ok(&ca.kxca(&["publish", site.to_str().unwrap()]), "publish");
    assert_eq!(
        std::fs::read_to_string(site.join("audit/checkpoint")).unwrap(),
        note
    );
    assert_eq!(
        std::fs::read(site.join(format!("audit/checkpoints/{size}"))).unwrap(),
        note.as_bytes()
    );
    assert_eq!(
        std::fs::read(site.join("audit/audit-key.pem")).unwrap(),
        std::fs::read(published.join("audit-key.pem")).unwrap()
    );

    // Export from event 2 and the Python recipe of docs/AUDIT.md.
    let export = work.join("export.jsonl");
    let out = ca.kxca(&[
        "audit",
        "export",
        "--since",
        "2",
        "--out",
        export.to_str().unwrap(),
    ]);
    assert_ok(&out, "audit export");
    let lines = std::fs::read_to_string(&export).unwrap();
    assert_eq!(
        lines.lines().count() as i64,
        size.parse::<i64>().unwrap() - 1
    );
    let script = work.join("verify_export.py");
    std::fs::write(&script, block("python", "python")).unwrap();
    let py = |export: &Path| {
        Command::new("python3")
            .arg(&script)
            .args(["audit-key.pem", "checkpoint"])
            .arg(export)
            .current_dir(&work)
            .output()
            .unwrap()
    };
    let out = py(&export);
    assert!(
        out.status.success(),
        "python recipe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!(
        "OK {} events included in checkpoint {size}",
        lines.lines().count()
    )));
    // The recipe is not a rubber stamp: an exported event changed after
    // the fact fails it.
    let forged = work.join("forged.jsonl");
    std::fs::write(
        &forged,
        lines.replacen("\"actor\":\"test\"", "\"actor\":\"nobody\"", 1),
    )
    .unwrap();
    assert!(!py(&forged).status.success());
    // Export by time: from the epoch, every covered event.
    let out = ca.kxca(&["audit", "export", "--since", "1970-01-01T00:00:00Z"]);
    assert_ok(&out, "audit export --since TIME");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        size.parse::<usize>().unwrap()
    );

    // A checkpoint kept outside verifies with `--checkpoint`.
    let (ok, _, stdout) = verify(
        &ca,
        &["--checkpoint", work.join("checkpoint").to_str().unwrap()],
    );
    assert!(ok, "{stdout}");

    // Signed by another key (its own key ID): refused, stored or given.
    let foreign = format!("{body}\n{}", foreign_signature(&work, &origin, &body, None));
    let foreign_file = work.join("foreign-checkpoint");
    std::fs::write(&foreign_file, &foreign).unwrap();
    let (ok, fails, stdout) = verify(&ca, &["--checkpoint", foreign_file.to_str().unwrap()]);
    assert!(!ok, "{stdout}");
    assert!(
        fails[0].contains("not signed by the audit key") && fails[0].contains("refused"),
        "{stdout}"
    );
    sqlite(
        &ca,
        &format!(
            "UPDATE audit_checkpoints SET note = '{}' WHERE size = {size}",
            foreign.replace('\'', "''")
        ),
    );
    let (ok, fails, stdout) = verify(&ca, &[]);
    assert!(!ok, "{stdout}");
    assert!(
        fails[0].starts_with(&format!(
            "FAIL checkpoint {size}: not signed by the audit key"
        )),
        "{stdout}"
    );

    // Another key posing under the audit key's name and key ID: the
    // signature does not verify, refused.
    let posing = format!(
        "{body}\n{}",
        foreign_signature(&work, &origin, &body, Some(&work.join("audit-key.pem")))
    );
    sqlite(
        &ca,
        &format!(
            "UPDATE audit_checkpoints SET note = '{}' WHERE size = {size}",
            posing.replace('\'', "''")
        ),
    );
    let (ok, fails, stdout) = verify(&ca, &[]);
    assert!(!ok, "{stdout}");
    assert!(
        fails[0].contains("does not verify with the audit public key: refused"),
        "{stdout}"
    );
}

#[test]
fn daemon_records_configuration_changes_and_signs_checkpoints() {
    if !tools_present() || !support_ocsp::tools_present() {
        return;
    }
    let ca = TestCa::new();
    let toml = ca.path("kxca.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    assert!(text.contains("checkpoint_interval_secs = 60"), "{text}");
    std::fs::write(
        &toml,
        text.replace(
            "checkpoint_interval_secs = 60",
            "checkpoint_interval_secs = 1",
        ),
    )
    .unwrap();
    let config_events = || {
        sqlite_value(
            &ca,
            "SELECT COUNT(*) FROM audit WHERE action = 'config.changed'",
        )
        .parse::<i64>()
        .unwrap()
    };
    assert_eq!(config_events(), 0);

    let mut daemon = Daemon::start(&ca);
    // The first start records every file.
    assert_eq!(config_events(), 1);
    let detail = sqlite_value(
        &ca,
        "SELECT detail FROM audit WHERE action = 'config.changed' ORDER BY id DESC LIMIT 1",
    );
    let v: serde_json::Value = serde_json::from_str(&detail).unwrap();
    assert!(v["files"]["kxca.toml"].is_string(), "{detail}");
    let policy = v["files"]
        .as_object()
        .unwrap()
        .keys()
        .find(|k| k.starts_with("policies/"))
        .expect("a policy file is recorded")
        .clone();
    // It signs a checkpoint of the tree on its own.
    let size = || sqlite_value(&ca, "SELECT COALESCE(MAX(size), 0) FROM audit_checkpoints");
    let tree = || sqlite_value(&ca, "SELECT MAX(leaf_index) + 1 FROM audit");
    eventually("the daemon signs a checkpoint of the whole tree", || {
        size() != "0" && size() == tree()
    });
    ca.issue("1234567", "001", &[]);
    eventually("the daemon signs the grown tree", || size() == tree());
    assert!(daemon.stop());

    // Restarted unchanged: nothing new. A policy edited: one event naming it.
    // (The daemon installs its SIGTERM handler just after saying it is
    // ready: a stop sent at once would race it, so give it a moment.)
    let settle = || std::thread::sleep(std::time::Duration::from_secs(1));
    let mut daemon = Daemon::start(&ca);
    settle();
    assert!(daemon.stop());
    assert_eq!(config_events(), 1);
    let path = ca.path(&policy);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("\n# reviewed\n");
    std::fs::write(&path, text).unwrap();
    let mut daemon = Daemon::start(&ca);
    settle();
    assert!(daemon.stop());
    assert_eq!(config_events(), 2);
    let detail = sqlite_value(
        &ca,
        "SELECT detail FROM audit WHERE action = 'config.changed' ORDER BY id DESC LIMIT 1",
    );
    let v: serde_json::Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(v["changed"], serde_json::json!([policy]), "{detail}");

    let (ok, _, stdout) = verify(&ca, &[]);
    assert!(ok, "{stdout}");
}

use kxca_test_support::softhsm;

/// Production: the audit key lives on a token with its own PIN; a soft one
/// is refused with nothing created.
#[test]
fn production_signs_checkpoints_with_a_token_key_and_refuses_a_soft_one() {
    if !tools_present() || !softhsm::available() {
        return;
    }
    const AUDIT_PIN: &str = "kx-audit-5521";
    let ca = TestCa::uninitialised();
    const RESPONDER_PIN: &str = "kx-ocsp-7713";
    let hsm = softhsm::SoftHsm::new(&["KX-CA"]);
    let own_token = |label: &str, pin: &str| {
        let out = hsm
            .util()
            .args(["--init-token", "--free", "--label", label])
            .args(["--so-pin", softhsm::SO_PIN, "--pin", pin])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let file = hsm.dir.path().join(format!("{label}.pin"));
        std::fs::write(&file, format!("{pin}\n")).unwrap();
        file
    };
    let responder_pin = own_token("KX-OCSP", RESPONDER_PIN);
    let audit_pin = own_token("KX-AUDIT", AUDIT_PIN);
    let kxca = |args: &[&str]| {
        ca.cmd()
            .env("SOFTHSM2_CONF", &hsm.conf)
            .args(args)
            .output()
            .unwrap()
    };
    let init = |audit_key: &str| {
        kxca(&[
            "init",
            "--production",
            "--root-key",
            "pkcs11:token=KX-CA;object=root",
            "--issuing-key",
            "pkcs11:token=KX-CA;object=issuing-1",
            "--key-secret-file",
            hsm.pin_file.to_str().unwrap(),
            "--responder-key",
            "pkcs11:token=KX-OCSP;object=ocsp-responder",
            "--responder-key-secret-file",
            responder_pin.to_str().unwrap(),
            "--audit-key",
            audit_key,
            "--audit-key-secret-file",
            audit_pin.to_str().unwrap(),
        ])
    };
    let soft = ca.dir.path().join("audit.p8");
    let out = init(&format!("soft:{}", soft.display()));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("audit") && err.contains("soft key"), "{err}");
    assert!(!ca.home.exists(), "a refused init left {:?}", ca.home);
    assert!(!soft.exists());

    assert_ok(
        &init("pkcs11:token=KX-AUDIT;object=kxca-audit"),
        "init --production",
    );
    let config = std::fs::read_to_string(ca.path("kxca.toml")).unwrap();
    assert!(
        config.contains("key = \"pkcs11:token=KX-AUDIT;object=kxca-audit\""),
        "{config}"
    );
    // The key was made on the audit token, not elsewhere.
    let out = hsm
        .pkcs11_tool()
        .args(["--token-label", "KX-AUDIT", "--login", "--pin", AUDIT_PIN])
        .args(["--list-objects", "--type", "pubkey"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("kxca-audit"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = kxca(&["audit", "checkpoint"]);
    assert_ok(&out, "audit checkpoint on the token");
    let out = kxca(&["audit", "verify"]);
    assert_ok(&out, "audit verify");
    // The published key is the token's: the checkpoint verifies with OpenSSL.
    let sig_line = std::fs::read_to_string(ca.path("crl/audit/checkpoint")).unwrap();
    let (body, sig) = sig_line.split_once("\n\n").unwrap();
    let dir = ca.dir.path();
    std::fs::write(dir.join("body.txt"), format!("{body}\n")).unwrap();
    let b64 = sig.trim().rsplit(' ').next().unwrap();
    std::fs::write(dir.join("sig.b64"), b64).unwrap();
    let out = Command::new("sh")
        .args([
            "-e",
            "-c",
            "base64 -d sig.b64 | tail -c +5 > sig.der && \
             openssl dgst -sha256 -verify \"$1\" -signature sig.der body.txt",
            "sh",
        ])
        .arg(ca.path("crl/audit/audit-key.pem"))
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Verified OK"),
        "{out:?}"
    );
}

/// `kxca serve` (keyless) publishes the latest checkpoint and the audit key
/// from the store, as the daemon signs them.
#[test]
fn serve_publishes_the_latest_checkpoint_and_the_key() {
    if !tools_present() || !support_ocsp::tools_present() {
        return;
    }
    let ca = TestCa::new();
    let toml = ca.path("kxca.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        text.replace(
            "checkpoint_interval_secs = 60",
            "checkpoint_interval_secs = 1",
        ),
    )
    .unwrap();
    let server = support_ocsp::Server::start(&ca);
    let dir = ca.dir.path();
    let url = |path: &str| format!("http://{}{path}", server.addr);
    let tree = || sqlite_value(&ca, "SELECT MAX(leaf_index) + 1 FROM audit");
    let served = |path: &str| support_ocsp::get(&url(path), &[], dir);
    let checks = |what: &str| {
        eventually(what, || {
            let (code, _, body) = served("/audit/checkpoint");
            code == 200
                && String::from_utf8_lossy(&body).lines().nth(1) == Some(tree().as_str())
                && body == std::fs::read(ca.path("crl/audit/checkpoint")).unwrap_or_default()
        });
    };
    checks("serve publishes the checkpoint of the whole tree");
    ca.issue("1234567", "001", &[]);
    checks("serve publishes the grown tree's checkpoint");
    let (code, headers, body) = served("/audit/audit-key.pem");
    assert_eq!(code, 200, "{headers}");
    assert_eq!(
        body,
        std::fs::read(ca.path("crl/audit/audit-key.pem")).unwrap()
    );
    let (code, _, _) = served("/audit/nothing");
    assert_eq!(code, 404);
}

//! `kxca backup` and `kxca restore` (issue 13, docs/BACKUP.md): a backup
//! taken while `kxca serve` answers OCSP, `kxca daemon` signs and a writer
//! issues and revokes in a loop is a consistent store (`sqlite3 ...
//! PRAGMA integrity_check`), matches its manifest (`sha256sum`), holds no
//! key or secret byte, and restores into a new home whose `kxca audit
//! verify` passes and whose `kxca serve` (once the officer has brought the
//! keys back) gives `openssl ocsp` the same answers. A tampered backup is
//! refused, naming the file; nothing is ever overwritten.

use kxca_test_support::common;
use kxca_test_support::ocsp as support_ocsp;
use kxca_test_support::softhsm;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{assert_ok, issue_args, p, run, Issued, TestCa, PASSPHRASE};
use support_ocsp::{eventually, openssl_ocsp, Server};

fn tools_present() -> bool {
    support_ocsp::tools_present()
        && common::require_tool("sqlite3", &["--version"])
        && common::require_tool("sha256sum", &["--version"])
}

/// Every regular file under `dir`, relative, `/`-separated.
fn files_under(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                out.insert(rel);
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The OCSP status `openssl ocsp` reports for a certificate, after checking
/// the response verifies against the root.
fn status(ca: &TestCa, server: &Server, cert: &Path) -> String {
    let (ok, out) = openssl_ocsp(ca, server, &["-no_nonce", "-cert", p(cert)]);
    assert!(ok && out.contains("Response verify OK"), "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{}:", p(cert))))
        .unwrap_or_else(|| panic!("no status line for {}: {out}", p(cert)));
    line.split(':').nth(1).unwrap().trim().to_string()
}

fn db(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

/// Rows of a query as debug strings, for comparing two stores.
fn rows(conn: &rusqlite::Connection, sql: &str) -> Vec<String> {
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        let mut s = String::new();
        for i in 0..n {
            let v: rusqlite::types::Value = r.get(i)?;
            s.push_str(&format!("{v:?}|"));
        }
        Ok(s)
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// A TestCa for a home restored elsewhere (same CA passphrase file).
fn restored(source: &TestCa, home: &Path) -> TestCa {
    TestCa {
        dir: tempfile::tempdir().unwrap(),
        home: home.to_path_buf(),
        pass_file: source.pass_file.clone(),
    }
}

fn kxca_at(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kxca"))
        .env("KXCA_HOME", home)
        .env("KXCA_ACTOR", "test")
        .env_remove("KXCA_KEY_PASSPHRASE")
        .env_remove("KXCA_LOG")
        .args(args)
        .output()
        .unwrap()
}

/// Copies a directory tree (the officer bringing key material back).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

#[test]
fn backup_under_load_restores_with_the_same_answers_and_no_secrets() {
    if !tools_present() {
        return;
    }
    let ca = TestCa::new();
    let a = ca.issue("1000001", "001", &[]);
    let b = ca.issue("1000002", "001", &[]);
    let c = ca.issue("1000003", "001", &["--key", "p256"]);
    assert_ok(
        &ca.kxca(&["revoke", &b.serial, "--reason", "keyCompromise"]),
        "revoke",
    );
    let mut server = Server::start(&ca);
    eventually("the daemon signs the revocation", || {
        status(&ca, &server, &b.cert) == "revoked"
    });
    eventually("the daemon signs an audit checkpoint", || {
        !rows(
            &db(&ca.path("kxca.db")),
            "SELECT size FROM audit_checkpoints",
        )
        .is_empty()
    });
    let before: BTreeMap<String, String> = [&a, &b, &c]
        .iter()
        .map(|i| (i.serial.clone(), status(&ca, &server, &i.cert)))
        .collect();
    assert_eq!(before[&a.serial], "good");
    assert_eq!(before[&c.serial], "good");

    let backup = ca.dir.path().join("backup");
    let stop = AtomicBool::new(false);
    let issued_in_loop = AtomicUsize::new(0);
    let answered = AtomicUsize::new(0);
    let mut loop_certs: Vec<Issued> = Vec::new();
    let backup_out = std::thread::scope(|s| {
        // The writer: issues and revokes until told to stop.
        let writer = s.spawn(|| {
            let mut mine = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 200 {
                n += 1;
                let contact = format!("{:03}", n % 1000);
                let issued = Issued::from_output(&ca.kxca(&issue_args("2000001", &contact)));
                if n % 2 == 0 {
                    assert_ok(
                        &ca.kxca(&["revoke", &issued.serial, "--reason", "superseded"]),
                        "revoke in the loop",
                    );
                }
                mine.push(issued);
                issued_in_loop.fetch_add(1, Ordering::Relaxed);
            }
            mine
        });
        // The public role keeps answering during the backup.
        let reader = s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(status(&ca, &server, &a.cert), "good");
                answered.fetch_add(1, Ordering::Relaxed);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        while issued_in_loop.load(Ordering::Relaxed) < 3 {
            assert!(
                Instant::now() < deadline,
                "the writer loop does not progress"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // What an outside party kept before the backup: the audit key
        // and the latest published checkpoint.
        for f in ["audit-key.pem", "checkpoint"] {
            std::fs::copy(ca.path("crl/audit").join(f), ca.dir.path().join(f)).unwrap();
        }
        let out = ca.kxca(&["backup", p(&backup)]);
        let at_backup = issued_in_loop.load(Ordering::Relaxed);
        while issued_in_loop.load(Ordering::Relaxed) < at_backup + 2 {
            assert!(Instant::now() < deadline, "the writer loop stopped");
            std::thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::Relaxed);
        loop_certs = writer.join().unwrap();
        reader.join().unwrap();
        out
    });
    assert_ok(&backup_out, "kxca backup under load");
    assert!(
        answered.load(Ordering::Relaxed) > 0,
        "no OCSP answer during the backup"
    );
    let said = String::from_utf8_lossy(&backup_out.stdout).to_string();
    for left in [
        "issuing CA key",
        "CA key passphrase",
        "OCSP responder key",
        "audit checkpoint key",
    ] {
        assert!(
            said.contains(left),
            "the output does not list {left} as left out: {said}"
        );
    }

    // The copy is a sound database, by SQLite's own CLI.
    let (ok, text) = run(
        "sqlite3",
        &[p(&backup.join("kxca.db")), "PRAGMA integrity_check"],
    );
    assert!(ok && text.trim() == "ok", "integrity_check: {text}");

    // The manifest lists exactly the files there, with sha256sum's hashes.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(backup.join("manifest.json")).unwrap())
            .unwrap();
    let listed: BTreeMap<String, String> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut present = files_under(&backup);
    assert!(present.remove("manifest.json"));
    assert_eq!(listed.keys().cloned().collect::<BTreeSet<_>>(), present);
    for (rel, sha) in &listed {
        let (ok, out) = run("sha256sum", &[p(&backup.join(rel))]);
        assert!(ok, "{out}");
        assert_eq!(out.split_whitespace().next().unwrap(), sha, "{rel}");
        let size = std::fs::metadata(backup.join(rel)).unwrap().len();
        let entry = manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == rel.as_str())
            .unwrap();
        assert_eq!(entry["size"].as_u64().unwrap(), size, "{rel}");
    }
    for needed in [
        "kxca.db",
        "kxca.toml",
        "ca/root.pem",
        "ca/issuing-1.pem",
        "crl/issuing-1.crl",
        "policies/profiles/office-client.toml",
        "crl/audit/audit-key.pem",
    ] {
        assert!(
            listed.contains_key(needed),
            "{needed} is not in the backup: {listed:?}"
        );
    }
    assert!(
        manifest["schema"]["ca"].as_i64().unwrap() >= 3,
        "{manifest}"
    );
    assert_eq!(manifest["kxca_version"], env!("CARGO_PKG_VERSION"));
    let tree_size = manifest["audit"]["tree_size"].as_i64().unwrap();
    assert!(tree_size > 5, "{manifest}");

    // No key file, PKCS#12 or secret: not as a file, not as bytes anywhere.
    let mut secrets: Vec<(String, Vec<u8>)> =
        vec![("CA passphrase".into(), PASSPHRASE.as_bytes().to_vec())];
    for rel in ["ocsp/responder.secret", "audit/audit.secret"] {
        let text = std::fs::read_to_string(ca.path(rel)).unwrap();
        secrets.push((rel.into(), text.trim().as_bytes().to_vec()));
    }
    for rel in [
        "keys/root.p8",
        "keys/issuing-1.p8",
        "ocsp/responder.p8",
        "audit/audit.p8",
    ] {
        secrets.push((rel.into(), std::fs::read(ca.path(rel)).unwrap()));
    }
    for i in [&a, &b, &c].into_iter().chain(loop_certs.iter()) {
        secrets.push((p(&i.p12).to_string(), std::fs::read(&i.p12).unwrap()));
        if let Some(pw) = &i.password {
            secrets.push((format!("password of {}", i.serial), pw.as_bytes().to_vec()));
        }
    }
    secrets.push(("a PEM private key".into(), b"PRIVATE KEY".to_vec()));
    for rel in files_under(&backup) {
        assert!(
            !rel.ends_with(".p8") && !rel.ends_with(".p12") && !rel.ends_with(".secret"),
            "{rel} is in the backup"
        );
        let bytes = std::fs::read(backup.join(&rel)).unwrap();
        for (what, secret) in &secrets {
            assert!(!contains(&bytes, secret), "{rel} holds {what}");
        }
    }

    // The source recorded the backup.
    let events = ca.kxca(&["audit", "--json", "--limit", "1000"]);
    assert!(String::from_utf8_lossy(&events.stdout).contains("store.backup"));
    assert!(
        server.stop(),
        "the roles did not stop cleanly:\n{}",
        server.log_text()
    );

    // Restore into a new home.
    let new_home = ca.dir.path().join("restored");
    let out = Command::new(env!("CARGO_BIN_EXE_kxca"))
        .args(["restore", p(&backup), p(&new_home)])
        .env("KXCA_ACTOR", "test")
        .output()
        .unwrap();
    assert_ok(&out, "kxca restore");
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        said.contains(&format!("{}/keys/issuing-1.p8", p(&new_home))),
        "{said}"
    );
    let verify = kxca_at(&new_home, &["audit", "verify"]);
    assert_ok(&verify, "kxca audit verify of the restored home");
    let verify_text = String::from_utf8_lossy(&verify.stdout);
    assert!(
        !verify_text.contains(" 0 checkpoints"),
        "no checkpoint was checked: {verify_text}"
    );
    let outside = kxca_at(
        &new_home,
        &[
            "audit",
            "verify",
            "--key",
            p(&ca.dir.path().join("audit-key.pem")),
            "--checkpoint",
            p(&ca.dir.path().join("checkpoint")),
        ],
    );
    assert_ok(
        &outside,
        "audit verify against the key and checkpoint kept outside",
    );

    // Doctor names what to bring back before the roles start.
    let doctor = kxca_at(&new_home, &["doctor", "--json"]);
    assert_eq!(doctor.status.code(), Some(1), "{doctor:?}");
    let findings: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    let missing: Vec<String> = findings
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "key_missing" || f["kind"] == "secret_missing")
        .map(|f| f["detail"].as_str().unwrap().to_string())
        .collect();
    for rel in [
        "keys/issuing-1.p8",
        "ocsp/responder.p8",
        "ocsp/responder.secret",
        "audit/audit.p8",
    ] {
        let path = format!("{}/{rel}", p(&new_home));
        assert!(
            missing.iter().any(|m| m.contains(&path)),
            "doctor does not name {path}: {missing:?}"
        );
    }

    // The restored store is the source up to the backup: its events, CRLs
    // and certificates are the source's.
    let (src, dst) = (db(&ca.path("kxca.db")), db(&new_home.join("kxca.db")));
    let q = format!("SELECT id, at, actor, action, serial, detail, leaf_index, leaf FROM audit WHERE leaf_index < {tree_size} ORDER BY id");
    assert_eq!(rows(&src, &q), rows(&dst, &q));
    let restored_events = rows(&dst, "SELECT action FROM audit ORDER BY id");
    assert_eq!(
        restored_events.len() as i64,
        tree_size + 1,
        "one store.restore event more"
    );
    assert!(restored_events.last().unwrap().contains("store.restore"));
    // CRL numbers and times (a superseded CRL's DER is blanked in the
    // source when the next one is stored, so only the numbers compare).
    let q = "SELECT authority_id, number, this_update, next_update, entries FROM crls ORDER BY authority_id, number";
    let (src_crls, dst_crls) = (rows(&src, q), rows(&dst, q));
    assert!(
        !dst_crls.is_empty() && src_crls.starts_with(&dst_crls),
        "restored CRLs are not the source's: {dst_crls:?} restored, {src_crls:?} in the source"
    );
    let q = "SELECT serial, der FROM certificates WHERE state = 'issued' ORDER BY id";
    let src_certs = rows(&src, q);
    for row in rows(&dst, q) {
        assert!(
            src_certs.contains(&row),
            "restored certificate not in the source: {row}"
        );
    }

    // The officer brings the keys and secrets back; doctor has nothing left
    // to ask for, and the restored roles answer as before the backup.
    for dir in ["keys", "ocsp", "audit"] {
        copy_tree(&ca.path(dir), &new_home.join(dir));
    }
    let doctor = kxca_at(&new_home, &["doctor", "--json"]);
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        !text.contains("key_missing") && !text.contains("secret_missing"),
        "{text}"
    );
    let again = restored(&ca, &new_home);
    let server = Server::start(&again);
    for i in [&a, &b, &c] {
        assert_eq!(
            status(&again, &server, &i.cert),
            before[&i.serial],
            "{}",
            i.serial
        );
    }
    // Certificates of the loop: as the restored store says; those issued
    // after the backup are unknown to the restored CA.
    let revoked: BTreeSet<String> = rows(
        &dst,
        "SELECT lower(c.serial) FROM revocations r JOIN certificates c ON c.id = r.certificate",
    )
    .into_iter()
    .collect();
    let known: BTreeSet<String> = rows(
        &dst,
        "SELECT lower(serial) FROM certificates WHERE state = 'issued'",
    )
    .into_iter()
    .collect();
    let quoted = |s: &str| format!("Text({:?})|", s.to_lowercase());
    let mut unknown = 0;
    for i in &loop_certs {
        let want = if revoked.contains(&quoted(&i.serial)) {
            "revoked"
        } else if known.contains(&quoted(&i.serial)) {
            "good"
        } else {
            unknown += 1;
            "unknown"
        };
        eventually(&format!("{} is {want}", i.serial), || {
            status(&again, &server, &i.cert) == want
        });
    }
    eprintln!(
        "{} certificates issued in the loop ({unknown} after the backup), {} OCSP answers during it, tree size {tree_size} at the backup",
        loop_certs.len(),
        answered.load(Ordering::Relaxed)
    );
    assert!(
        unknown >= 1,
        "no certificate issued after the backup was checked"
    );
    drop(server);
}

#[test]
fn a_tampered_backup_is_refused_and_nothing_is_overwritten() {
    if !tools_present() {
        return;
    }
    let ca = TestCa::new();
    let a = ca.issue("1000001", "001", &[]);
    assert_ok(&ca.kxca(&["revoke", &a.serial]), "revoke");
    // A ceremony transcript is kept; a key put beside it, and a stray
    // file, are left out and listed.
    std::fs::create_dir(ca.path("ceremonies")).unwrap();
    std::fs::write(ca.path("ceremonies/issuing-2.txt"), "transcript\n").unwrap();
    let leak = "-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n";
    std::fs::write(ca.path("ceremonies/issuing-2-key.pem"), leak).unwrap();
    std::fs::write(ca.path("notes.txt"), "stray").unwrap();
    let backup = ca.dir.path().join("b");
    let out = ca.kxca(&["backup", p(&backup)]);
    assert_ok(&out, "backup");
    let kept = files_under(&backup);
    assert!(kept.contains("ceremonies/issuing-2.txt"), "{kept:?}");
    assert!(
        !kept.contains("ceremonies/issuing-2-key.pem") && !kept.contains("notes.txt"),
        "{kept:?}"
    );
    let manifest = std::fs::read_to_string(backup.join("manifest.json")).unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    for left in ["ceremonies/issuing-2-key.pem", "notes.txt", "issued"] {
        assert!(
            manifest.contains(left) && said.contains(left),
            "{left} not listed as left out"
        );
    }

    // Backups never overwrite: not a non-empty directory, not inside the home.
    let out = ca.kxca(&["backup", p(&backup)]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not empty"),
        "{out:?}"
    );
    let inside = ca.path("crl/backup");
    let out = ca.kxca(&["backup", p(&inside)]);
    assert!(!out.status.success() && !inside.exists(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("inside the home"),
        "{out:?}"
    );

    let restore = |from: &Path, to: &Path| {
        Command::new(env!("CARGO_BIN_EXE_kxca"))
            .args(["restore", p(from), p(to)])
            .env("KXCA_ACTOR", "test")
            .output()
            .unwrap()
    };
    // Restore never overwrites a home, nor any non-empty directory.
    let before = ca.snapshot();
    let out = restore(&backup, &ca.home);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not empty"),
        "{out:?}"
    );
    assert_eq!(ca.snapshot(), before);
    let busy = ca.dir.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("notes.txt"), "mine").unwrap();
    assert!(!restore(&backup, &busy).status.success());
    assert_eq!(
        files_under(&busy),
        BTreeSet::from(["notes.txt".to_string()])
    );
    assert_eq!(
        std::fs::read_to_string(busy.join("notes.txt")).unwrap(),
        "mine"
    );

    // Each tampering is refused, naming the file; no home is made.
    let copy = |name: &str| -> PathBuf {
        let to = ca.dir.path().join(name);
        let (ok, text) = run("cp", &["-a", p(&backup), p(&to)]);
        assert!(ok, "{text}");
        to
    };
    let refused = |from: &Path, named: &str, why: &str| {
        let to = ca.dir.path().join(format!(
            "home-from-{}",
            from.file_name().unwrap().to_string_lossy()
        ));
        let check = Command::new(env!("CARGO_BIN_EXE_kxca"))
            .args(["restore", p(from), "--check"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&check.stderr).to_string();
        assert!(
            !check.status.success(),
            "a backup with {why} passed --check"
        );
        assert!(
            err.contains(named),
            "--check does not name {named} ({why}): {err}"
        );
        let out = restore(from, &to);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "a backup with {why} was restored");
        assert!(
            err.contains(named),
            "the error does not name {named} ({why}): {err}"
        );
        assert!(!to.exists(), "a refused restore left {}", to.display());
        let leftovers: Vec<_> = std::fs::read_dir(ca.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.contains("restoring"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    };
    let t = copy("t-config");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(t.join("kxca.toml"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"# edited\n").unwrap();
    refused(&t, "kxca.toml", "an edited kxca.toml");

    let t = copy("t-db");
    let (ok, text) = run(
        "sqlite3",
        &[p(&t.join("kxca.db")), "UPDATE revocations SET reason = 4"],
    );
    assert!(ok, "{text}");
    refused(&t, "kxca.db", "an edited store");

    let t = copy("t-extra");
    std::fs::write(t.join("crl/extra.crl"), b"not ours").unwrap();
    refused(&t, "crl/extra.crl", "an added file");

    let t = copy("t-missing");
    std::fs::remove_file(t.join("ca/root.pem")).unwrap();
    refused(&t, "ca/root.pem", "a missing file");

    // An audit event edited, and the manifest's hashes made to match: the
    // record itself gives it away.
    let t = copy("t-audit");
    let (ok, text) = run(
        "sqlite3",
        &[
            p(&t.join("kxca.db")),
            "UPDATE audit SET actor = 'mallory' WHERE id = 2",
        ],
    );
    assert!(ok, "{text}");
    let manifest_path = t.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    let (_, sum) = run("sha256sum", &[p(&t.join("kxca.db"))]);
    for f in manifest["files"].as_array_mut().unwrap() {
        if f["path"] == "kxca.db" {
            f["sha256"] = sum.split_whitespace().next().unwrap().into();
            f["size"] = std::fs::metadata(t.join("kxca.db")).unwrap().len().into();
        }
    }
    std::fs::write(
        &manifest_path,
        serde_json::to_string_pretty(&manifest).unwrap(),
    )
    .unwrap();
    refused(
        &t,
        "event 2",
        "an edited audit event behind a matching manifest",
    );

    // The untouched backup passes --check, which writes nothing, and
    // restores, into an empty directory too.
    let before = files_under(ca.dir.path());
    let check = Command::new(env!("CARGO_BIN_EXE_kxca"))
        .args(["restore", p(&backup), "--check"])
        .output()
        .unwrap();
    assert_ok(&check, "restore --check");
    assert!(String::from_utf8_lossy(&check.stdout).contains("Nothing was written"));
    assert_eq!(files_under(ca.dir.path()), before);
    let good = ca.dir.path().join("good");
    std::fs::create_dir(&good).unwrap();
    assert_ok(&restore(&backup, &good), "restore of the untouched backup");
    assert_ok(&kxca_at(&good, &["audit", "verify"]), "audit verify");
}

#[test]
fn a_large_store_reports_progress_and_copies_whole() {
    if !tools_present() {
        return;
    }
    let ca = TestCa::new();
    // 24 MB of rows: above the 16 MiB from which progress is shown.
    let (ok, text) = run(
        "sqlite3",
        &[
            p(&ca.path("kxca.db")),
            "CREATE TABLE filler (x BLOB); WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 6000) INSERT INTO filler SELECT randomblob(4000) FROM c;",
        ],
    );
    assert!(ok, "{text}");
    let backup = ca.dir.path().join("big");
    // Another connection commits rows all through the backup: the copy
    // must finish (not restart at every commit) and be one consistent
    // snapshot: between the counts before and after.
    let stop = AtomicBool::new(false);
    let committed = AtomicUsize::new(0);
    let (out, during) = std::thread::scope(|s| {
        s.spawn(|| {
            let conn = rusqlite::Connection::open(ca.path("kxca.db")).unwrap();
            conn.busy_timeout(Duration::from_secs(10)).unwrap();
            while !stop.load(Ordering::Relaxed) {
                conn.execute("INSERT INTO filler VALUES (randomblob(4000))", [])
                    .unwrap();
                committed.fetch_add(1, Ordering::Relaxed);
                // A writer that re-takes the lock the instant it commits
                // starves SQLite's busy handler (it sleeps, then finds the
                // lock taken again): the backup's own audit event then
                // timed out on a loaded machine. Real writers pause.
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        while committed.load(Ordering::Relaxed) < 5 {
            std::thread::sleep(Duration::from_millis(10));
        }
        let before = committed.load(Ordering::Relaxed);
        // Bounded: a copy restarted by every commit never ends.
        let out = Command::new("timeout")
            .arg("120")
            .arg(env!("CARGO_BIN_EXE_kxca"))
            .args(["--home", p(&ca.home), "backup", p(&backup)])
            .output()
            .unwrap();
        let during = committed.load(Ordering::Relaxed) - before;
        stop.store(true, Ordering::Relaxed);
        (out, during)
    });
    assert_ok(&out, "backup of a large store");
    assert!(during > 0, "no commit while the backup ran");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("backup: store 50%"), "{err}");
    assert!(err.contains("backup: store 100%"), "{err}");
    let (ok, text) = run(
        "sqlite3",
        &[p(&backup.join("kxca.db")), "PRAGMA integrity_check"],
    );
    assert!(ok && text.trim() == "ok", "{text}");
    let (ok, text) = run(
        "sqlite3",
        &[p(&backup.join("kxca.db")), "SELECT COUNT(*) FROM filler"],
    );
    let copied: usize = text.trim().parse().unwrap();
    let total = 6000 + committed.load(Ordering::Relaxed);
    assert!(
        ok && (6000..=total).contains(&copied),
        "{copied} of {total} rows"
    );
    eprintln!("{during} commits during the backup; {copied} of {total} rows copied");
}

/// A production home with its keys on SoftHSM2 tokens: the backup names
/// the token keys as the HSM's to back up and holds no PIN; the officers'
/// part is SoftHSM2's token directory (docs/BACKUP.md). After the token
/// directory is lost and brought back from their copy, the restored home
/// answers as before.
#[test]
fn keys_on_tokens_are_left_to_the_hsm_and_come_back_with_its_backup() {
    if !tools_present() || !softhsm::available() {
        return;
    }
    const RESPONDER_PIN: &str = "kx-ocsp-3391";
    const AUDIT_PIN: &str = "kx-audit-5521";
    let ca = TestCa::uninitialised();
    let hsm = softhsm::SoftHsm::new(&["KX-CA"]);
    let mut pins = vec![(softhsm::USER_PIN, hsm.pin_file.clone())];
    for (label, pin) in [("KX-OCSP", RESPONDER_PIN), ("KX-AUDIT", AUDIT_PIN)] {
        let out = hsm
            .util()
            .args(["--init-token", "--free", "--label", label])
            .args(["--so-pin", softhsm::SO_PIN, "--pin", pin])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let file = hsm.dir.path().join(format!("{label}.pin"));
        std::fs::write(&file, format!("{pin}\n")).unwrap();
        pins.push((pin, file));
    }
    let env: &[(&str, &Path)] = &[("SOFTHSM2_CONF", &hsm.conf)];
    let out = ca
        .cmd()
        .envs(env.iter().copied())
        .args([
            "init",
            "--production",
            "--root-key",
            "pkcs11:token=KX-CA;object=root",
            "--issuing-key",
            "pkcs11:token=KX-CA;object=issuing-1",
            "--key-secret-file",
            p(&pins[0].1),
            "--responder-key",
            "pkcs11:token=KX-OCSP;object=ocsp-responder",
            "--responder-key-secret-file",
            p(&pins[1].1),
            "--audit-key",
            "pkcs11:token=KX-AUDIT;object=audit",
            "--audit-key-secret-file",
            p(&pins[2].1),
        ])
        .output()
        .unwrap();
    assert_ok(&out, "init --production on tokens");
    let kxca = |home: &Path, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kxca"))
            .env("KXCA_HOME", home)
            .env("KXCA_ACTOR", "test")
            .env_remove("KXCA_KEY_PASSPHRASE")
            .envs(env.iter().copied())
            .args(args)
            .output()
            .unwrap()
    };
    let a = Issued::from_output(&kxca(&ca.home, &issue_args("1000001", "001")));
    let b = Issued::from_output(&kxca(&ca.home, &issue_args("1000002", "001")));
    assert_ok(&kxca(&ca.home, &["revoke", &b.serial]), "revoke");
    let mut server = Server::start_with(&ca, env);
    eventually("b is revoked", || {
        status(&ca, &server, &b.cert) == "revoked"
    });
    assert_eq!(status(&ca, &server, &a.cert), "good");

    let backup = ca.dir.path().join("backup");
    let out = kxca(&ca.home, &["backup", p(&backup)]);
    assert_ok(&out, "backup of a production home");
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    for key in [
        "pkcs11:token=KX-CA;object=issuing-1",
        "pkcs11:token=KX-OCSP;object=ocsp-responder",
        "pkcs11:token=KX-AUDIT;object=audit",
    ] {
        let line = said
            .lines()
            .skip_while(|l| !l.contains(key))
            .nth(1)
            .unwrap_or_else(|| panic!("{key} is not listed as left out: {said}"));
        assert!(line.contains("HSM vendor's tooling"), "{key}: {line}");
    }
    for rel in files_under(&backup) {
        let bytes = std::fs::read(backup.join(&rel)).unwrap();
        for (pin, _) in &pins {
            assert!(!contains(&bytes, pin.as_bytes()), "{rel} holds a PIN");
        }
    }

    // The officers' copy of the token directory, taken with the daemon
    // stopped; then the machine is lost: the tokens and the home.
    assert!(server.stop(), "{}", server.log_text());
    // The holders keep their certificates; the CA's copies go with the home.
    let (a_cert, b_cert) = (ca.dir.path().join("a.pem"), ca.dir.path().join("b.pem"));
    std::fs::copy(&a.cert, &a_cert).unwrap();
    std::fs::copy(&b.cert, &b_cert).unwrap();
    let tokens_copy = ca.dir.path().join("tokens-copy");
    copy_tree(&hsm.tokens, &tokens_copy);
    std::fs::remove_dir_all(&hsm.tokens).unwrap();
    // The new machine's SoftHSM2, with no token yet.
    std::fs::create_dir(&hsm.tokens).unwrap();
    std::fs::remove_dir_all(&ca.home).unwrap();

    // Restore: into the same path (the machine rebuilt as it was).
    let out = kxca(&ca.home, &["restore", p(&backup), p(&ca.home)]);
    assert_ok(&out, "restore");
    // Token keys cannot be checked by doctor without their PINs; the PIN
    // files are there: nothing to report as missing.
    let doctor = kxca(&ca.home, &["doctor", "--json"]);
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        !text.contains("key_missing") && !text.contains("secret_missing"),
        "{text}"
    );
    // Without the token directory the daemon cannot start...
    let out = Command::new("timeout")
        .args(["20", env!("CARGO_BIN_EXE_kxca"), "daemon"])
        .env("KXCA_HOME", &ca.home)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    // Exit 124 would be `timeout` stopping a daemon that started.
    assert!(
        !out.status.success() && out.status.code() != Some(124),
        "the daemon ran without its keys: {out:?}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("KX-"), "the error names no token: {err}");
    // ...with the officers' copy brought back, both roles answer as before.
    copy_tree(&tokens_copy, &hsm.tokens);
    let server = Server::start_with(&ca, env);
    assert_eq!(status(&ca, &server, &a_cert), "good");
    assert_eq!(status(&ca, &server, &b_cert), "revoked");
    assert_ok(&kxca(&ca.home, &["audit", "verify"]), "audit verify");
    drop(server);
}

//! Secrets at rest: forms with passwords typed into both password columns
//! (.xlsx built here, .xls and .ods from the committed fixtures with
//! passwords patched in), checked with `kxca intake check` and fetched by
//! mail from the real Postfix + Dovecot, leave no trace of a password
//! anywhere under the home — raw bytes of every file, UTF-8 and UTF-16,
//! inside every zip decompressed, every BLOB in the store, the WAL — and
//! the store and issued files are 0600 (directories 0700) under umask 022.

use kxca_test_support::common;
use kxca_test_support::intake as support_intake;
use kxca_test_support::mailstack as support_mailstack;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{assert_ok, TestCa};
use support_intake::{row, s, set, standard, APPLICANT, SIGNUP};

const PW_CA: &str = "認証局へ初回ログイン用のパスワード";
const PW_KX: &str = "KXサーバへ初回ログイン時のパスワード";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/provisioner/tests/fixtures");

/// kxca under umask 022, whatever the test runner's umask is.
fn kxca(ca: &TestCa, args: &[&str]) -> Output {
    Command::new("sh")
        .args(["-c", "umask 022 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_kxca"))
        .args(args)
        .env("KXCA_HOME", &ca.home)
        .env("KXCA_ACTOR", "test")
        .env_remove("KXCA_KEY_PASSPHRASE")
        .env_remove("KXCA_LOG")
        .output()
        .unwrap()
}

/// The test suite's .xlsx form, one row with both passwords typed.
fn xlsx_form(pw_ca: &str, pw_kx: &str) -> Vec<u8> {
    let mut r = row(1, "34567", "001");
    set(&mut r, PW_CA, s(pw_ca));
    set(&mut r, PW_KX, s(pw_kx));
    standard(&[r])
}

/// The committed .xls fixture with its first row's office and contact name
/// cells moved into the two password columns (LABELSST records, column
/// field) and those two strings replaced in the shared-string table by
/// same-length passwords: an .xls exactly as Excel would hold typed
/// passwords, without regenerating the fixture.
fn xls_form(pw_ca: &str, pw_kx: &str) -> Vec<u8> {
    let mut b = std::fs::read(Path::new(FIXTURES).join("form.xls")).unwrap();
    let utf16 = |t: &str| -> Vec<u8> { t.encode_utf16().flat_map(|u| u.to_le_bytes()).collect() };
    for (old, new) in [("山田設計株式会社", pw_ca), ("山田 太郎", pw_kx)] {
        let (old, new) = (utf16(old), utf16(new));
        assert_eq!(
            old.len(),
            new.len(),
            "a password must keep the string's length"
        );
        let at = find(&b, &old).expect("string in the fixture's SST");
        b[at..at + old.len()].copy_from_slice(&new);
    }
    // LABELSST (0x00FD, length 10): row, column, XF, SST index. The first
    // application row is row index 4; office name is column 10, contact
    // name 11; the password columns are 12 and 13.
    let mut moved = 0;
    for at in 0..b.len().saturating_sub(14) {
        if b[at..at + 4] == [0xFD, 0x00, 0x0A, 0x00] && b[at + 4..at + 6] == [4, 0] {
            let col = u16::from_le_bytes([b[at + 6], b[at + 7]]);
            if col == 10 || col == 11 {
                b[at + 6..at + 8].copy_from_slice(&(col + 2).to_le_bytes());
                moved += 1;
            }
        }
    }
    assert_eq!(moved, 2, "the fixture's layout changed");
    b
}

/// The committed .ods fixture with both passwords typed into its first row.
fn ods_form(pw_ca: &str, pw_kx: &str) -> Vec<u8> {
    let bytes = std::fs::read(Path::new(FIXTURES).join("form.ods")).unwrap();
    let mut zin = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for i in 0..zin.len() {
        let mut entry = zin.by_index(i).unwrap();
        let name = entry.name().unwrap().to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        if name == "content.xml" {
            let text = String::from_utf8(data).unwrap();
            let anchor = "<text:p>山田 太郎</text:p></table:table-cell>";
            let at = text.find(anchor).expect("first row's contact name") + anchor.len();
            let cell = |v: &str| {
                format!("<table:table-cell office:value-type=\"string\" calcext:value-type=\"string\"><text:p>{v}</text:p></table:table-cell>")
            };
            let rest = text[at..].replacen(
                "table:number-columns-repeated=\"16372\"",
                "table:number-columns-repeated=\"16370\"",
                1,
            );
            data = format!("{}{}{}{rest}", &text[..at], cell(pw_ca), cell(pw_kx)).into_bytes();
        }
        let method = if name == "mimetype" {
            zip::CompressionMethod::Stored
        } else {
            zip::CompressionMethod::Deflated
        };
        if name.ends_with('/') {
            out.add_directory(
                name.trim_end_matches('/'),
                zip::write::SimpleFileOptions::default(),
            )
            .unwrap();
        } else {
            out.start_file(
                name,
                zip::write::SimpleFileOptions::default().compression_method(method),
            )
            .unwrap();
            std::io::Write::write_all(&mut out, &data).unwrap();
        }
    }
    out.finish().unwrap().into_inner()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Each password as UTF-8 and as UTF-16LE (how .xls and Windows store it).
fn needles(passwords: &[&str]) -> Vec<(String, Vec<u8>)> {
    passwords
        .iter()
        .flat_map(|p| {
            [
                (format!("{p} (UTF-8)"), p.as_bytes().to_vec()),
                (
                    format!("{p} (UTF-16LE)"),
                    p.encode_utf16().flat_map(|u| u.to_le_bytes()).collect(),
                ),
            ]
        })
        .collect()
}

/// Where in `bytes` (and, for a zip, in any entry decompressed, nested
/// zips too) a needle occurs.
fn traces(what: &str, bytes: &[u8], needles: &[(String, Vec<u8>)], found: &mut Vec<String>) {
    for (name, n) in needles {
        if find(bytes, n).is_some() {
            found.push(format!("{name} in {what}"));
        }
    }
    if bytes.starts_with(b"PK\x03\x04") {
        if let Ok(mut z) = zip::ZipArchive::new(std::io::Cursor::new(bytes)) {
            for i in 0..z.len() {
                let mut e = z.by_index(i).unwrap();
                let entry = format!("{what}!{}", e.name().unwrap());
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                traces(&entry, &data, needles, found);
            }
        }
    }
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, files);
        } else {
            files.push(p);
        }
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

fn json(out: &Output) -> serde_json::Value {
    assert_ok(out, "kxca");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn mail_with(name: &str, id: &str, bytes: &[u8]) -> Vec<u8> {
    format!(
        "From: {APPLICANT}\r\nTo: {SIGNUP}\r\nSubject: form\r\nMessage-ID: <{id}>\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n\
--XX\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n申込書を送ります\r\n\
--XX\r\nContent-Type: application/octet-stream\r\n\
Content-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--XX--\r\n",
        common::mime_base64(bytes)
    )
    .into_bytes()
}

#[test]
fn typed_passwords_leave_no_trace_under_the_home_and_its_files_are_private() {
    let Some(stack) = support_mailstack::shared() else {
        return;
    };
    let ca = TestCa::uninitialised();
    assert_ok(
        &kxca(
            &ca,
            &["init", "--key-secret-file", ca.pass_file.to_str().unwrap()],
        ),
        "init",
    );
    let config = ca.path("kxca.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&stack.config(&ca.home, "implicit"));
    std::fs::write(&config, text).unwrap();

    let passwords = [
        "XlsxCA-pw-7731",
        "XlsxKX-pw-9184",
        "XlsCA-pw",
        "XK5pw",
        "OdsCA-pw-5521",
        "OdsKX-pw-6642",
    ];
    let forms = [
        ("form.xlsx", "xlsx", xlsx_form(passwords[0], passwords[1])),
        ("form.xls", "xls", xls_form(passwords[2], passwords[3])),
        ("form.ods", "ods", ods_form(passwords[4], passwords[5])),
    ];

    // A read transaction held open from here on: the WAL kxca writes can
    // be neither checkpointed away nor deleted, so every frame kxca writes
    // stays on disk to be searched.
    let keeper = rusqlite::Connection::open(ca.path("kxca.db")).unwrap();
    keeper.execute_batch("BEGIN").unwrap();
    keeper
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap();
    let db = rusqlite::Connection::open(ca.path("kxca.db")).unwrap();

    // `kxca intake check` reads each form (and sees both passwords typed).
    for (name, _, bytes) in &forms {
        let path = ca.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = kxca(&ca, &["intake", "check", "--json", path.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("\"rows\""),
            "{name}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for p in &passwords {
            assert!(!text.contains(p), "{name}: check printed a password");
        }
    }

    // Then by mail, fetched over IMAPS and answered.
    let inbox_before = stack.count(SIGNUP, "INBOX");
    for (i, (name, _, bytes)) in forms.iter().enumerate() {
        stack.send(
            APPLICANT,
            SIGNUP,
            &mail_with(name, &format!("secret{i}@office.test"), bytes),
        );
    }
    assert_eq!(
        stack.wait_for(SIGNUP, "INBOX", inbox_before + 3),
        inbox_before + 3
    );
    let fetched = json(&kxca(&ca, &["intake", "fetch", "--json"]));
    assert_eq!(fetched["fetch"]["applications"], 3, "{fetched}");

    // A certificate issued into the home: personal data on disk.
    let issued = common::Issued::from_output(&kxca(&ca, &common::issue_args("34567", "001")));

    let apps = json(&kxca(&ca, &["applications", "list", "--json"]));
    let apps = apps.as_array().unwrap();
    assert_eq!(apps.len(), 3, "{apps:?}");

    // Private files under umask 022.
    assert_eq!(mode(&ca.home), 0o700, "the home");
    for f in ["kxca.db", "kxca.db-wal", "kxca.db-shm"] {
        assert_eq!(mode(&ca.path(f)), 0o600, "{f}");
    }
    assert_eq!(mode(&ca.path("issued")), 0o700, "issued/");
    assert_eq!(mode(&issued.p12), 0o600, "{}", issued.p12.display());
    assert_eq!(mode(&issued.cert), 0o600, "{}", issued.cert.display());
    // Reading the store's files below (std::fs::read) closes descriptors
    // of kxca.db, which drops this process's POSIX locks on it: after
    // that no kxca may run, or it would checkpoint and delete the WAL.
    // No trace of any password: every file under the home, raw and with
    // zips opened, the WAL included...
    let needles = needles(&passwords);
    let mut found = Vec::new();
    let mut files = Vec::new();
    walk(&ca.home, &mut files);
    assert!(
        files.iter().any(|f| f.ends_with("kxca.db-wal")),
        "no WAL to search: {files:?}"
    );
    for f in &files {
        traces(
            &f.display().to_string(),
            &std::fs::read(f).unwrap(),
            &needles,
            &mut found,
        );
    }
    // ...and every value in the store, BLOBs decompressed.
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for t in tables {
        let mut stmt = db.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
        let n = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            for i in 0..n {
                let bytes = match r.get::<_, rusqlite::types::Value>(i).unwrap() {
                    rusqlite::types::Value::Blob(b) => b,
                    rusqlite::types::Value::Text(s) => s.into_bytes(),
                    _ => continue,
                };
                traces(
                    &format!("table {t} column {i}"),
                    &bytes,
                    &needles,
                    &mut found,
                );
            }
        }
    }
    assert!(found.is_empty(), "passwords found at rest: {found:#?}");

    // What an auditor still sees: name, size, SHA-256 and format of what
    // was received, and the sheet itself without the passwords.
    for (name, format, bytes) in &forms {
        let app = apps
            .iter()
            .find(|a| a["file_name"] == *name)
            .unwrap_or_else(|| panic!("no application for {name}: {apps:?}"));
        assert_eq!(app["size"], bytes.len(), "{app}");
        assert_eq!(app["original_format"], *format, "{app}");
        assert_eq!(app["stored_format"], "xlsx-without-passwords", "{app}");
        let (ok, sha) = common::run(
            "sh",
            &[
                "-c",
                &format!(
                    "openssl dgst -sha256 -r {}",
                    ca.dir.path().join(name).display()
                ),
            ],
        );
        assert!(ok, "{sha}");
        assert_eq!(
            app["sha256"],
            sha.split_whitespace().next().unwrap(),
            "{app}"
        );
        // Both columns were read as typed in: the form does hold passwords.
        let fields: String = db
            .query_row(
                "SELECT fields FROM application_rows WHERE application_id = ?1 ORDER BY row LIMIT 1",
                [app["id"].as_i64().unwrap()],
                |r| r.get(0),
            )
            .unwrap();
        let fields: serde_json::Value = serde_json::from_str(&fields).unwrap();
        assert_eq!(fields["password_ca_present"], true, "{name}: {fields}");
        assert_eq!(fields["password_kx_present"], true, "{name}: {fields}");
        let stored: Vec<u8> = db
            .query_row(
                "SELECT file FROM applications WHERE id = ?1",
                [app["id"].as_i64().unwrap()],
                |r| r.get(0),
            )
            .unwrap();
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(stored)).unwrap();
        let mut all = String::new();
        for i in 0..z.len() {
            let mut e = z.by_index(i).unwrap();
            let mut t = String::new();
            let _ = e.read_to_string(&mut t);
            all.push_str(&t);
        }
        // The copy is the form: its titles and the row's other cells.
        assert!(
            all.contains(PW_CA) && all.contains("JC"),
            "{name}: copy lacks the form"
        );
    }

    drop(keeper);
}

//! The crate layering of issue 11, read from what cargo resolves and from
//! the public role's source: hsm ← ca ← (responder, provisioner) ← kxca;
//! `ca` links no HTTP or async runtime; the network face (kxca-responder)
//! links no mail or spreadsheet parsing and calls nothing that opens a CA
//! key. tests/roles.rs proves the keyless role at run time; this catches a
//! dependency or a call that would break it before anything runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Package name → names of its normal (not dev, not build) dependencies,
/// as cargo resolves the workspace.
fn resolved() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Only what this machine builds: other platforms' crates are not
    // downloaded, and --offline must not need them.
    let rustc = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("run rustc -vV");
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("rustc -vV names the host");
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host])
        .current_dir(root())
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let name_of: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let mut graph = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().unwrap() {
        let name = name_of[node["id"].as_str().unwrap()].to_string();
        let deps: BTreeSet<String> = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].is_null())
            })
            .map(|d| name_of[d["pkg"].as_str().unwrap()].to_string())
            .collect();
        graph.entry(name).or_insert_with(BTreeSet::new).extend(deps);
    }
    graph
}

/// Every package `name` links, directly or not.
fn closure(graph: &BTreeMap<String, BTreeSet<String>>, name: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![name.to_string()];
    while let Some(n) = todo.pop() {
        for d in graph.get(&n).into_iter().flatten() {
            if seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    seen
}

fn assert_links_none(graph: &BTreeMap<String, BTreeSet<String>>, name: &str, banned: &[&str]) {
    let linked = closure(graph, name);
    let found: Vec<&&str> = banned.iter().filter(|b| linked.contains(**b)).collect();
    assert!(
        found.is_empty(),
        "{name} links {found:?}: see issue 11's layering"
    );
}

#[test]
fn crates_link_only_down_the_layers() {
    let g = resolved();
    assert!(
        g.contains_key("kxca-responder"),
        "no kxca-responder package"
    );
    assert_links_none(
        &g,
        "kxca-hsm",
        &["kxca-ca", "kxca-responder", "kxca-provisioner"],
    );
    // The CA (issuance, store, keys) links no HTTP server or async runtime.
    assert_links_none(
        &g,
        "kxca-ca",
        &[
            "kxca-responder",
            "kxca-provisioner",
            "hyper",
            "hyper-util",
            "http",
            "http-body-util",
            "bytes",
            "tokio",
        ],
    );
    // The network face parses no mail and no spreadsheets.
    assert_links_none(
        &g,
        "kxca-responder",
        &[
            "kxca-provisioner",
            "mail-parser",
            "lettre",
            "async-imap",
            "calamine",
            "zip",
        ],
    );
    let face = closure(&g, "kxca-responder");
    assert!(face.contains("kxca-ca") && face.contains("hyper"));
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The identifiers of `code`, comments and string literals left out.
fn identifiers(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in code.lines() {
        let mut ident = String::new();
        let mut in_str = false;
        let mut prev = ' ';
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if in_str {
                if c == '"' && prev != '\\' {
                    in_str = false;
                }
            } else if c == '"' {
                in_str = true;
            } else if c == '/' && chars.get(i + 1) == Some(&'/') {
                break;
            } else if c.is_alphanumeric() || c == '_' {
                ident.push(c);
            } else if !ident.is_empty() {
                out.push(std::mem::take(&mut ident));
            }
            prev = c;
            i += 1;
        }
        if !ident.is_empty() {
            out.push(ident);
        }
    }
    out
}

/// What opens or uses a CA key: the `Ca` (`Ca::open`, `Ca::signer`, CRL
/// signing, issuance), the keyed maintainer, the CA keys' secret, and
/// opening or making a key directly instead of through
/// `kxca_ca::ocsp::responder_key` (the responder key's own secret).
const KEYED: &[&str] = &[
    "Ca",
    "Maintainer",
    "generate_crl",
    "generate_crl_with",
    "issue_and_record",
    "key_secret",
    "open_with",
    "generate_with",
];

#[test]
fn the_public_role_never_names_a_ca_key() {
    let mut files = vec![root().join("src/serve.rs")];
    rust_files(&root().join("responder/src"), &mut files);
    assert!(files.len() > 5, "responder sources not found: {files:?}");
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for id in identifiers(&text) {
            if KEYED.contains(&id.as_str()) {
                found.push(format!("{}: {id}", f.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the public role must not reach a CA key (issue 11): {found:?}"
    );
}

#[test]
fn the_scan_sees_a_call_and_skips_comments() {
    let ids = identifiers("let ca = Ca::open(home, clock)?; // Ca::signer\nlet s = \"Ca\";");
    assert!(ids.iter().any(|i| i == "Ca") && ids.iter().any(|i| i == "open"));
    assert!(!ids.iter().any(|i| i == "signer"), "{ids:?}");
    assert_eq!(ids.iter().filter(|i| *i == "Ca").count(), 1, "{ids:?}");
}

/// Code of `text` with `//` comments cut off each line.
fn code_lines(text: &str) -> String {
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `text` (one source file) names rusqlite's `Connection` or
/// `Transaction`. Unit tests (from `#[cfg(test)]` on) may open a connection
/// of their own to the database file, `rusqlite::Connection::open`, to
/// play another program that tampers with it (and prove a tampered row is
/// refused); nothing else, there or before.
fn names_raw_sqlite(text: &str) -> bool {
    let (code, tests) = match text.find("#[cfg(test)]") {
        Some(at) => text.split_at(at),
        None => (text, ""),
    };
    let tests = code_lines(tests).replace("rusqlite::Connection::open", "");
    [code, &tests]
        .iter()
        .flat_map(|part| identifiers(part))
        .any(|i| i == "Connection" || i == "Transaction")
}

/// Issue 11: the store hands out no rusqlite connection or transaction.
/// Table code everywhere takes `kxca_ca::store::Tx` / `Snapshot`, which
/// cannot commit, begin, nest or change pragmas; only ca's store module
/// (ca/src/store/mod.rs, tx.rs, migrations) holds the connection.
#[test]
fn only_the_store_module_names_the_sqlite_connection() {
    let mut files = Vec::new();
    for dir in ["src", "ca/src", "responder/src", "provisioner/src"] {
        rust_files(&root().join(dir), &mut files);
    }
    assert!(files.len() > 40, "sources not found: {files:?}");
    let mut found = Vec::new();
    for f in &files {
        let rel = f
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .to_string();
        if rel.starts_with("ca/src/store/") {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        if code_lines(&text).contains(".conn()") {
            found.push(format!("{rel}: .conn()"));
        }
        if names_raw_sqlite(&text) {
            found.push(format!("{rel}: names rusqlite Connection/Transaction"));
        }
    }
    assert!(
        found.is_empty(),
        "only kxca-ca's store module holds the SQLite connection; take a kxca_ca::store::Tx or Snapshot (issue 11): {found:?}"
    );
    // Neither the binary nor the network face links rusqlite itself: their
    // store access goes through kxca-ca.
    let g = resolved();
    for name in ["kxca", "kxca-responder"] {
        assert!(
            !g[name].contains("rusqlite"),
            "{name} depends on rusqlite directly"
        );
    }
}

#[test]
fn the_sqlite_scan_sees_a_raw_transaction_and_skips_comments_and_unit_tests() {
    assert!(names_raw_sqlite(
        "pub fn list(conn: &rusqlite::Connection) -> Result<(), Error> {}"
    ));
    assert!(names_raw_sqlite(
        "use rusqlite::{params, Transaction};\nfn f(tx: &Transaction<'_>) {}"
    ));
    assert!(!names_raw_sqlite(
        "fn f(tx: &Tx<'_>) {} // was a rusqlite::Transaction"
    ));
    assert!(!names_raw_sqlite(
        "fn f(s: &Snapshot<'_>) {}\n#[cfg(test)]\nmod tests {\n    fn t() { rusqlite::Connection::open(\"x\"); }\n}"
    ));
    // A unit test's own connection does not excuse a raw type after it.
    assert!(names_raw_sqlite(
        "#[cfg(test)]\nmod tests {\n    fn t() { rusqlite::Connection::open(\"x\"); }\n}\npub fn g(c: &rusqlite::Connection) {}"
    ));
    assert!(names_raw_sqlite(
        "pub fn g() { let c = rusqlite::Connection::open(\"kxca.db\"); }"
    ));
}

#[test]
fn the_connection_scan_skips_comments() {
    assert!(code_lines("let c = store.conn();").contains(".conn()"));
    assert!(!code_lines("// store.conn() is gone").contains(".conn()"));
}

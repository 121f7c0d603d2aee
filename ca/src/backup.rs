//! Backups of a CA home (docs/BACKUP.md): a consistent copy of the store
//! taken while both roles run, the home's non-secret files, and a manifest
//! of hashes; and the restore of such a backup into a new home.
//!
//! Key material and secrets are never copied: they are listed in the
//! manifest (`left_out`) with where they must be backed up instead, and
//! [`missing_material`] lets `kxca doctor` say which must be brought back
//! before the roles start.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use kxca_hsm::{KeyRef, SecretSource};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::{audit, authorities, certificates};
use crate::{rfc3339, AuditAction, Clock, Config, Error, Home, Store};

/// The manifest's file name, at the top of a backup directory.
pub const MANIFEST: &str = "manifest.json";
/// The store's file name inside a backup (as in a home).
pub const DATABASE: &str = crate::home::DATABASE_FILE;
/// `format` of the manifests this version writes and reads.
pub const FORMAT: &str = "kxca-backup/1";

/// `manifest.json`: what a backup holds and what it deliberately does not.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// The kxca that took the backup.
    pub kxca_version: String,
    /// When the backup was taken (RFC 3339, UTC).
    pub created_at: String,
    /// The same, as Unix seconds.
    pub created_at_unix: i64,
    /// The home it was taken from (absolute): paths under it in kxca.toml
    /// and the store are moved to the new home on restore.
    pub source_home: PathBuf,
    /// The newest applied migration of each schema component in the copy.
    pub schema: BTreeMap<String, i64>,
    /// The audit record in the copy.
    pub audit: AuditState,
    /// Every file of the backup but this manifest, sorted by path.
    pub files: Vec<FileEntry>,
    /// Key material and secrets not in the backup, and where each must be
    /// backed up instead.
    pub left_out: Vec<LeftOut>,
}

/// The audit tree of the copied store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditState {
    /// Events (leaves) in the tree.
    pub tree_size: i64,
    /// RFC 6962 root hash of the `tree_size` leaves, hex.
    pub root: String,
    /// Size of the newest signed checkpoint in the copy, if any.
    pub latest_checkpoint: Option<i64>,
}

/// One file of the backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Relative to the backup (and to the home), `/`-separated.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256 of the content, hex (what `sha256sum` prints).
    pub sha256: String,
    /// Unix permission bits to restore it with.
    pub mode: u32,
}

/// Something the backup does not hold, on purpose.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeftOut {
    /// What it is ("issuing CA key", "OCSP responder key secret").
    pub what: String,
    /// Where it is: a file, a key reference, an environment variable.
    pub location: String,
    /// Where and how it must be backed up instead.
    pub back_up: String,
}

/// What [`take`] did.
#[derive(Debug, Clone)]
pub struct Taken {
    /// The backup directory.
    pub dir: PathBuf,
    /// What was written to its manifest.
    pub manifest: Manifest,
}

/// What [`restore`] did.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The new home.
    pub home: PathBuf,
    /// The verified manifest of the backup.
    pub manifest: Manifest,
    /// kxca.toml keys whose paths were moved from the old home to the new one.
    pub config_keys_moved: Vec<String>,
    /// Store rows whose key references or PKCS#12 paths were moved.
    pub rows_moved: usize,
    /// The manifest's `left_out`, with locations under the old home given
    /// under the new one: what the officers must bring back, and where.
    pub bring_back: Vec<LeftOut>,
}

fn backup_err(path: &Path, message: impl Into<String>) -> Error {
    Error::Backup {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Takes a backup of `home` into `dir`, which must not exist or be an empty
/// directory (a backup never overwrites). The home's files are copied
/// first, then the store through SQLite's online backup API (the roles go
/// on meanwhile), so the copied published files are never newer than the
/// copied store. The copy is integrity-checked, the manifest written last,
/// and the backup recorded as an audit event in the source store.
/// `progress(copied, total)` reports the store copy, in pages. On failure
/// nothing is left in `dir`.
pub fn take(
    home: &Home,
    dir: &Path,
    actor: &str,
    clock: &Clock,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Taken, Error> {
    let config = Config::load(&home.config())?;
    let mut store = Store::open(&home.database(), false)?;
    let created = prepare_empty_dir(dir)?;
    let home_root = fs::canonicalize(home.root()).map_err(|e| Error::io(home.root(), e))?;
    let dir_real = fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
    if dir_real.starts_with(&home_root) {
        discard(dir, created);
        return Err(backup_err(
            dir,
            format!(
                "is inside the home {}: keep backups out of it",
                home.root().display()
            ),
        ));
    }
    match take_into(home, &config, &store, dir, clock, progress) {
        Ok(manifest) => {
            let detail = serde_json::json!({
                "dir": dir.display().to_string(),
                "files": manifest.files.len(),
                "database_sha256": manifest.files.iter().find(|f| f.path == DATABASE).map(|f| f.sha256.clone()),
                "tree_size": manifest.audit.tree_size,
                "root": manifest.audit.root,
                "left_out": manifest.left_out.len(),
            });
            let now = clock.now();
            // A backup the record does not mention is not kept: an officer
            // must be able to tell from the record which backups exist.
            if let Err(e) = store
                .write(|tx| audit::append(tx, now, actor, AuditAction::StoreBackup, None, detail))
            {
                discard(dir, created);
                return Err(e);
            }
            Ok(Taken {
                dir: dir.to_path_buf(),
                manifest,
            })
        }
        Err(e) => {
            discard(dir, created);
            Err(e)
        }
    }
}

fn take_into(
    home: &Home,
    config: &Config,
    store: &Store,
    dir: &Path,
    clock: &Clock,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Manifest, Error> {
    let now = clock.now();
    let mut secrets = store.read(|conn| ca_keys(conn, now))?;
    secrets.extend(inventory(config, home));
    let secret_paths: Vec<&Path> = secrets.iter().filter_map(|m| m.path.as_deref()).collect();
    let mut left_out = Vec::new();
    let mut holders = 0usize;
    for (rel, path, is_file) in walk(home.root())? {
        let top = rel.split('/').next().unwrap_or("");
        let sqlite_side_file = ["-wal", "-shm", "-journal"]
            .iter()
            .any(|s| rel.strip_prefix(DATABASE) == Some(*s));
        if rel == DATABASE || sqlite_side_file {
            continue; // the store is copied through SQLite below
        }
        let name = rel.rsplit('/').next().unwrap_or("");
        if name == ".lock" || name.ends_with('~') {
            continue; // a lock file, or a file being written and renamed
        }
        if top == "issued" {
            holders += 1;
            continue;
        }
        // `ceremonies/`: ceremony files, transcripts and their public
        // outputs (docs/CEREMONIES.md), part of the CA's record.
        let kept = rel == "kxca.toml" || ["policies", "ca", "crl", "ceremonies"].contains(&top);
        if secret_paths.iter().any(|p| *p == path) {
            continue; // listed below with where to back it up
        }
        let why = if !is_file {
            Some("not a regular file (a link or device): not followed")
        } else if !kept {
            match top {
                "keys" => Some("soft key file"),
                "ocsp" => Some("OCSP responder key material or its secret"),
                "audit" => Some("audit checkpoint key material or its secret"),
                "console" if rel.starts_with("console/tls/") => Some(
                    "the admin console's TLS key and certificate: after a restore, issue new ones with kxca admin tls-cert (docs/CONSOLE.md)",
                ),
                "console" => Some(
                    "the admin console's key (CSRF, sealed TOTP secrets): after a restore, re-enrol the admins",
                ),
                _ => Some("not a file kxca needs to run"),
            }
        } else {
            None
        };
        if let Some(why) = why {
            left_out.push(LeftOut {
                what: why.to_string(),
                location: path.display().to_string(),
                back_up:
                    "not in this backup: see the key and secret entries below and docs/BACKUP.md"
                        .to_string(),
            });
            continue;
        }
        let bytes = fs::read(&path).map_err(|e| Error::io(&path, e))?;
        if contains(&bytes, b"PRIVATE KEY") {
            // Defence in depth: a key someone put beside the certificates
            // is still key material.
            left_out.push(LeftOut {
                what: "file holding a private key".to_string(),
                location: path.display().to_string(),
                back_up:
                    "move it out of the home; keys are backed up by the officers (docs/BACKUP.md)"
                        .to_string(),
            });
            continue;
        }
        let dest = dir.join(&rel);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        write_new(&dest, &bytes, mode_of(&path))?;
    }
    if holders > 0 {
        left_out.push(LeftOut {
            what: format!("{holders} PKCS#12 file(s) of certificate holders (each holds the holder's private key)"),
            location: home.issued_dir().display().to_string(),
            back_up: "not backed up: they were delivered to their holders; a lost one is replaced by a reset".to_string(),
        });
    }
    let db = dir.join(DATABASE);
    store.backup_to(&db, progress)?;
    let facts = inspect_copy(&db)?;
    for m in &secrets {
        left_out.push(LeftOut {
            what: m.what.clone(),
            location: m.location.clone(),
            back_up: m.back_up.clone(),
        });
    }
    for a in &facts.authority_keys {
        if !secrets.iter().any(|m| &m.location == a) {
            if let Ok(key_ref) = a.parse::<KeyRef>() {
                let (location, back_up) = key_advice(&key_ref, a);
                left_out.push(LeftOut {
                    what: "CA key of an earlier authority in the store".to_string(),
                    location,
                    back_up,
                });
            }
        }
    }
    let mut files = Vec::new();
    for (rel, path, _) in walk(dir)? {
        files.push(entry(&rel, &path)?);
    }
    let manifest = Manifest {
        format: FORMAT.to_string(),
        kxca_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at: rfc3339(now),
        created_at_unix: now,
        source_home: home.root().to_path_buf(),
        schema: facts.schema,
        audit: facts.audit,
        files,
        left_out,
    };
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| Error::encoding("backup manifest", e))?;
    write_new(&dir.join(MANIFEST), format!("{text}\n").as_bytes(), 0o600)?;
    Ok(manifest)
}

/// Verifies a backup: every file listed with its size and SHA-256, no
/// file that is not listed, the store's integrity, schema versions and
/// audit tree as the manifest says. The first mismatch is the error,
/// naming the file.
pub fn verify(backup: &Path) -> Result<Manifest, Error> {
    let path = backup.join(MANIFEST);
    let text = fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| backup_err(&path, format!("not a kxca backup manifest: {e}")))?;
    if manifest.format != FORMAT {
        return Err(backup_err(
            &path,
            format!(
                "format {:?} is not {FORMAT:?}: restore it with the kxca that took it",
                manifest.format
            ),
        ));
    }
    let mut listed = BTreeMap::new();
    for f in &manifest.files {
        let rel = Path::new(&f.path);
        if f.path == MANIFEST || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(backup_err(
                &path,
                format!("lists {:?}, which is not a plain relative path", f.path),
            ));
        }
        listed.insert(f.path.clone(), f);
    }
    for (rel, file, is_file) in walk(backup)? {
        if rel == MANIFEST {
            continue;
        }
        let Some(want) = listed.remove(&rel) else {
            return Err(backup_err(
                &file,
                "is not listed in the manifest: the backup was changed after it was taken",
            ));
        };
        if !is_file {
            return Err(backup_err(&file, "is not a regular file"));
        }
        let got = entry(&rel, &file)?;
        if got.size != want.size || got.sha256 != want.sha256 {
            return Err(backup_err(
                &file,
                format!(
                    "does not match the manifest (size {} vs {}, SHA-256 {} vs {}): the backup was changed after it was taken",
                    got.size, want.size, got.sha256, want.sha256
                ),
            ));
        }
    }
    if let Some(missing) = listed.keys().next() {
        return Err(backup_err(
            &backup.join(missing),
            "is listed in the manifest but missing from the backup",
        ));
    }
    let db = backup.join(DATABASE);
    for needed in [DATABASE, "kxca.toml"] {
        if !manifest.files.iter().any(|f| f.path == needed) {
            return Err(backup_err(&path, format!("lists no {needed}")));
        }
    }
    let facts = inspect_copy(&db)?;
    if facts.schema != manifest.schema {
        return Err(backup_err(
            &db,
            format!(
                "schema versions {:?} are not the manifest's {:?}",
                facts.schema, manifest.schema
            ),
        ));
    }
    if facts.audit != manifest.audit {
        return Err(backup_err(
            &db,
            format!(
                "audit tree (size {}, root {}) is not the manifest's (size {}, root {})",
                facts.audit.tree_size,
                facts.audit.root,
                manifest.audit.tree_size,
                manifest.audit.root
            ),
        ));
    }
    Ok(manifest)
}

/// Everything [`restore`] checks, down to the audit record's verification,
/// done on a throwaway home in a temporary directory: a backup nobody has
/// tried to restore is not known to be one. Writes nothing that stays.
pub fn check(backup: &Path, actor: &str, clock: &Clock) -> Result<Manifest, Error> {
    let manifest = verify(backup)?;
    let scratch = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let home = scratch.path().join("home");
    fs::create_dir(&home).map_err(|e| Error::io(&home, e))?;
    restore_into(backup, &home, &home, &manifest, actor, clock)?;
    Ok(manifest)
}

/// Restores a verified backup into `new_home`, which must not exist or be
/// an empty directory (a restore never overwrites). Paths under the old
/// home in kxca.toml and in the store (soft key references, PKCS#12
/// destinations) are moved to the new home, in one transaction with a
/// `store.restore` audit event. The home is assembled beside `new_home`
/// and renamed into place, so a failure leaves no half-written home.
pub fn restore(
    backup: &Path,
    new_home: &Path,
    actor: &str,
    clock: &Clock,
) -> Result<Restored, Error> {
    let manifest = verify(backup)?;
    if !new_home.is_absolute() {
        return Err(backup_err(
            new_home,
            "the new home must be an absolute path",
        ));
    }
    match fs::read_dir(new_home) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(backup_err(
                    new_home,
                    "exists and is not empty: restore never overwrites a home; give a new directory",
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(new_home, e)),
    }
    let name = new_home
        .file_name()
        .ok_or_else(|| backup_err(new_home, "names no directory"))?;
    let parent = new_home
        .parent()
        .ok_or_else(|| backup_err(new_home, "has no parent directory"))?;
    if !parent.is_dir() {
        return Err(backup_err(
            parent,
            "does not exist: create the new home's parent directory first",
        ));
    }
    let mut staging_name = std::ffi::OsString::from(".");
    staging_name.push(name);
    staging_name.push(format!(".restoring-{}", std::process::id()));
    let staging = parent.join(staging_name);
    fs::create_dir(&staging).map_err(|e| Error::io(&staging, e))?;
    set_mode(&staging, 0o700)?;
    let result = restore_into(backup, &staging, new_home, &manifest, actor, clock);
    let (config_keys_moved, rows_moved) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    // rename(2) replaces an empty directory, and only an empty one: a home
    // someone filled since the check above makes this fail, not vanish.
    if let Err(e) = fs::rename(&staging, new_home) {
        let _ = fs::remove_dir_all(&staging);
        return Err(Error::io(new_home, e));
    }
    let (old, new) = (path_text(&manifest.source_home)?, path_text(new_home)?);
    let bring_back = manifest
        .left_out
        .iter()
        .map(|l| LeftOut {
            location: moved_path(&l.location, old, new).unwrap_or_else(|| l.location.clone()),
            ..l.clone()
        })
        .collect();
    Ok(Restored {
        home: new_home.to_path_buf(),
        bring_back,
        manifest,
        config_keys_moved,
        rows_moved,
    })
}

fn restore_into(
    backup: &Path,
    staging: &Path,
    new_home: &Path,
    manifest: &Manifest,
    actor: &str,
    clock: &Clock,
) -> Result<(Vec<String>, usize), Error> {
    for f in &manifest.files {
        let from = backup.join(&f.path);
        let to = staging.join(&f.path);
        if let Some(dir) = to.parent() {
            fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let bytes = fs::read(&from).map_err(|e| Error::io(&from, e))?;
        // Read once more after verify: what is written is what was hashed.
        if hex::encode(Sha256::digest(&bytes)) != f.sha256 {
            return Err(backup_err(&from, "changed while it was being restored"));
        }
        write_new(&to, &bytes, f.mode & 0o777)?;
    }
    let old = path_text(&manifest.source_home)?;
    let new = path_text(new_home)?;
    let config_path = staging.join("kxca.toml");
    let mut moved = Vec::new();
    if old != new {
        let text = fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
        let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| Error::Config {
            path: config_path.clone(),
            message: format!("{e}").trim().replace('\n', " "),
        })?;
        move_paths(doc.as_item_mut(), "", old, new, &mut moved);
        if !moved.is_empty() {
            fs::write(&config_path, doc.to_string()).map_err(|e| Error::io(&config_path, e))?;
        }
    }
    let config = Config::load(&config_path)?;
    let mut store = Store::open(&staging.join(DATABASE), false)?;
    // What `kxca audit verify` will say of the new home, said before it
    // exists: an event edited in the backup (its hashes recomputed to
    // match) or a checkpoint signed by another key is refused here.
    let key_path = staging.join("crl").join("audit").join("audit-key.pem");
    let public = if key_path.exists() {
        Some(crate::audit_log::read_public_key(&key_path)?)
    } else {
        None
    };
    let report = crate::audit_log::verify(
        &store,
        &crate::audit_log::origin(&config),
        public.as_deref(),
        &[],
    )?;
    if let Some(f) = report.findings.first() {
        return Err(backup_err(
            &backup.join(DATABASE),
            format!(
                "the audit record fails verification: {} ({} finding(s)); not restored",
                f.message,
                report.findings.len()
            ),
        ));
    }
    let now = clock.now();
    let detail = serde_json::json!({
        "backup": backup.display().to_string(),
        "taken_at": manifest.created_at,
        "source_home": manifest.source_home.display().to_string(),
        "home": new,
        "tree_size_at_backup": manifest.audit.tree_size,
        "root_at_backup": manifest.audit.root,
        "config_keys_moved": moved,
    });
    let rows = store.write(|tx| {
        let mut rows = 0;
        if old != new {
            rows += authorities::relocate_soft_keys(tx, old, new)?;
            rows += crate::ocsp::store::relocate_soft_keys(tx, old, new)?;
            rows += certificates::relocate_pkcs12_paths(tx, old, new)?;
        }
        let mut detail = detail;
        detail["rows_moved"] = rows.into();
        audit::append(tx, now, actor, AuditAction::StoreRestore, None, detail)?;
        Ok(rows)
    })?;
    // The restored store is one file again, like the backup it came from.
    store.truncate_wal("after the restore")?;
    Ok((moved, rows))
}

/// Rewrites every string in the document equal to `old` or starting with
/// `old/` (optionally after `soft:`) to the same under `new`.
fn move_paths(item: &mut toml_edit::Item, at: &str, old: &str, new: &str, moved: &mut Vec<String>) {
    match item {
        toml_edit::Item::Table(t) => {
            for (k, v) in t.iter_mut() {
                let key = if at.is_empty() {
                    k.get().to_string()
                } else {
                    format!("{at}.{}", k.get())
                };
                move_paths(v, &key, old, new, moved);
            }
        }
        toml_edit::Item::ArrayOfTables(a) => {
            for t in a.iter_mut() {
                for (k, v) in t.iter_mut() {
                    move_paths(v, &format!("{at}.{}", k.get()), old, new, moved);
                }
            }
        }
        toml_edit::Item::Value(v) => move_value(v, at, old, new, moved),
        toml_edit::Item::None => {}
    }
}

fn move_value(v: &mut toml_edit::Value, at: &str, old: &str, new: &str, moved: &mut Vec<String>) {
    match v {
        toml_edit::Value::String(s) => {
            if let Some(text) = moved_path(s.value(), old, new) {
                let mut f = toml_edit::Formatted::new(text);
                *f.decor_mut() = s.decor().clone();
                *s = f;
                moved.push(at.to_string());
            }
        }
        toml_edit::Value::Array(a) => {
            for x in a.iter_mut() {
                move_value(x, at, old, new, moved);
            }
        }
        toml_edit::Value::InlineTable(t) => {
            for (k, x) in t.iter_mut() {
                move_value(x, &format!("{at}.{}", k.get()), old, new, moved);
            }
        }
        _ => {}
    }
}

/// `text` with the directory `old` replaced by `new`, when it is `old` or
/// a path under it (optionally a `soft:` key reference); else `None`.
fn moved_path(text: &str, old: &str, new: &str) -> Option<String> {
    let (prefix, rest) = match text.strip_prefix("soft:") {
        Some(rest) => ("soft:", rest),
        None => ("", text),
    };
    let tail = if rest == old {
        ""
    } else {
        rest.strip_prefix(old).filter(|t| t.starts_with('/'))?
    };
    Some(format!("{prefix}{new}{tail}"))
}

fn path_text(p: &Path) -> Result<&str, Error> {
    p.to_str()
        .ok_or_else(|| backup_err(p, "is not valid UTF-8: kxca.toml cannot name it"))
}

/// A key or secret the home needs that a backup never holds.
#[derive(Debug, Clone)]
struct Material {
    what: String,
    location: String,
    back_up: String,
    /// The file holding it, when it is one.
    path: Option<PathBuf>,
    /// Secret (true) or key (false), for `kxca doctor`'s kinds.
    secret: bool,
    /// Which role or command cannot work without it.
    needed_by: &'static str,
}

/// Where a key reference's key lives and how it is backed up.
fn key_advice(key_ref: &KeyRef, text: &str) -> (String, String) {
    let back_up = match key_ref {
        KeyRef::Soft { .. } => "copy the encrypted key file to the officers' offline key backup (soft keys are for tests and demos)".to_string(),
        KeyRef::Pkcs11 { .. } => "on the HSM token: back it up with the HSM vendor's tooling (SoftHSM2: its token directory; docs/BACKUP.md)".to_string(),
        KeyRef::YubiKey { .. } => "generated on the YubiKey and not exportable: it cannot be backed up; keep a second YubiKey with its own key, made in a ceremony (docs/BACKUP.md)".to_string(),
    };
    (text.to_string(), back_up)
}

fn key_material(what: &str, text: &str, needed_by: &'static str) -> Material {
    let key_ref = text.parse::<KeyRef>().ok();
    let (location, back_up) = match &key_ref {
        Some(k) => key_advice(k, text),
        None => (
            text.to_string(),
            "an unreadable key reference: fix kxca.toml".to_string(),
        ),
    };
    let path = match key_ref {
        Some(KeyRef::Soft { path }) => Some(path),
        _ => None,
    };
    Material {
        what: what.to_string(),
        location,
        back_up,
        path,
        secret: false,
        needed_by,
    }
}

fn secret_material(what: &str, source: &SecretSource, needed_by: &'static str) -> Material {
    match source {
        SecretSource::File(path) => Material {
            what: what.to_string(),
            location: path.display().to_string(),
            back_up: "a PIN or passphrase: keep a copy with the officers' secrets (sealed envelope or password safe), never with this backup".to_string(),
            path: Some(path.clone()),
            secret: true,
            needed_by,
        },
        SecretSource::Env(name) => Material {
            what: what.to_string(),
            location: format!("environment variable {name}"),
            back_up: "set in the service's environment (systemd credential or EnvironmentFile): keep its value with the officers' secrets".to_string(),
            path: None,
            secret: true,
            needed_by,
        },
    }
}

/// The key of a CA: where it is and how it is backed up.
fn ca_key_material(role: crate::AuthorityRole, name: &str, key_ref: &str) -> Material {
    key_material(
        &format!("{} CA key of {name}", role.as_str()),
        key_ref,
        match role {
            crate::AuthorityRole::Root => "the next ceremony that uses the root CA",
            crate::AuthorityRole::Issuing => "kxca daemon",
        },
    )
}

/// The CA keys in use: those of every authority in the store that still
/// signs. The store is the one record of which key an authority uses
/// (ceremonies add authorities there); kxca.toml's `ca.root_key` and
/// `ca.issuing_key` only seed `kxca init`, so after a rollover they name
/// keys that may be retired and destroyed. A retired authority (a
/// ceremony destroyed or archived its key) and an expired one sign nothing
/// more: their keys are not asked for.
fn ca_keys(conn: &crate::store::Snapshot<'_>, now: i64) -> Result<Vec<Material>, Error> {
    let retired = crate::ceremony::retired_ids(conn)?;
    let mut out = Vec::new();
    for a in authorities::all(conn)? {
        if a.not_after <= now || retired.contains(&a.id) {
            continue;
        }
        out.push(ca_key_material(a.role, &a.name, &a.key_ref));
    }
    Ok(out)
}

/// Every key and secret `config` names (defaults resolved against `home`)
/// besides the CA keys, which are the store's ([`ca_keys`]).
fn inventory(config: &Config, home: &Home) -> Vec<Material> {
    const DAEMON: &str = "kxca daemon";
    const BOTH: &str = "kxca serve and kxca daemon";
    let mut out = vec![secret_material(
        "CA key passphrase or PIN",
        &config.key_secret(),
        DAEMON,
    )];
    let responder = config
        .ocsp
        .responder_key
        .clone()
        .unwrap_or_else(|| format!("soft:{}", home.keys().join("ocsp-responder.p8").display()));
    out.push(key_material("OCSP responder key", &responder, BOTH));
    if let Ok(Some(s)) = config.ocsp.responder_secret() {
        out.push(secret_material(
            "OCSP responder key passphrase or PIN",
            &s,
            BOTH,
        ));
    }
    // In production without [audit] key no checkpoint is signed (the
    // daemon warns): there is no audit key to back up.
    if config.audit.key.is_some() || !config.production {
        let audit_key = config.audit.key.clone().unwrap_or_else(|| {
            format!(
                "soft:{}",
                home.root().join("audit").join("audit.p8").display()
            )
        });
        out.push(key_material("audit checkpoint key", &audit_key, DAEMON));
        let audit_secret = SecretSource::from_config(
            config.audit.key_secret_env.as_deref(),
            config.audit.key_secret_file.as_deref(),
            "[audit] key_secret_env / key_secret_file",
        );
        match audit_secret {
            Ok(Some(s)) => out.push(secret_material("audit key passphrase or PIN", &s, DAEMON)),
            // Unset outside production: kxca keeps it beside the soft audit key.
            _ if !config.production => out.push(secret_material(
                "audit key passphrase",
                &SecretSource::File(home.root().join("audit").join("audit.secret")),
                DAEMON,
            )),
            _ => {}
        }
    }
    let y = &config.yubikey;
    if let Some(file) = &y.management_key_file {
        out.push(secret_material(
            "YubiKey management key",
            &SecretSource::File(file.clone()),
            "kxca yubikey procedures",
        ));
    } else if let Some(env) = &y.management_key_env {
        out.push(secret_material(
            "YubiKey management key",
            &SecretSource::Env(env.clone()),
            "kxca yubikey procedures",
        ));
    }
    // The admin console's key: listed when the home has one (a home whose
    // console never ran has nothing to keep). Whether a restored home
    // still lacks it is the console's question (`kxca doctor` asks it: it
    // matters only when admins exist).
    let console_key = home.root().join("console").join("console.key");
    if console_key.exists() {
        out.push(Material {
            what: "admin console key (CSRF tokens, the admins' sealed TOTP secrets)".to_string(),
            location: console_key.display().to_string(),
            back_up: "copy it to the officers' offline secret backup, never beside this backup (with the store it opens every admin's TOTP secret); without it, give every admin a new TOTP secret after a restore: kxca admin reset-totp NAME (docs/CONSOLE.md)".to_string(),
            path: Some(console_key),
            secret: true,
            needed_by: "the admin console",
        });
    }
    // `[mail]` is read as written (its type is the provisioner's): only
    // where its passwords are matters here.
    let mail = config
        .mail
        .as_ref()
        .and_then(|m| toml::Table::try_from(m).ok());
    for (section, what) in [("imap", "IMAP password"), ("smtp", "SMTP password")] {
        let table = mail.as_ref().and_then(|m| m.get(section)?.as_table());
        let text = |key: &str| table.and_then(|t| t.get(key)?.as_str());
        if let Some(file) = text("password_file") {
            out.push(secret_material(
                what,
                &SecretSource::File(file.into()),
                DAEMON,
            ));
        } else if let Some(env) = text("password_env") {
            out.push(secret_material(
                what,
                &SecretSource::Env(env.into()),
                DAEMON,
            ));
        }
    }
    out
}

/// The keys and secrets a home names that are not where it says (files
/// only: a token's or YubiKey's key, or an environment variable, cannot be
/// checked without using them). Each is `(kind, subject, detail)` for
/// `kxca doctor`: `key_missing` or `secret_missing`.
pub fn missing_material(
    config: &Config,
    home: &Home,
    conn: &crate::store::Snapshot<'_>,
    now: i64,
) -> Result<Vec<(&'static str, String, String)>, Error> {
    let mut items = ca_keys(conn, now)?;
    items.extend(inventory(config, home));
    let mut out = Vec::new();
    for m in items {
        let Some(path) = &m.path else { continue };
        if path.exists() {
            continue;
        }
        out.push((
            if m.secret { "secret_missing" } else { "key_missing" },
            m.what.clone(),
            format!(
                "{} does not exist: bring it back from the officers' backup before starting {} (docs/BACKUP.md)",
                path.display(),
                m.needed_by
            ),
        ));
    }
    Ok(out)
}

/// What the copy of a store says about itself.
struct CopyFacts {
    schema: BTreeMap<String, i64>,
    audit: AuditState,
    authority_keys: Vec<String>,
}

/// Opens a copied store read-only: `PRAGMA integrity_check` must say ok;
/// then its schema versions, audit tree and CA key references.
fn inspect_copy(db: &Path) -> Result<CopyFacts, Error> {
    crate::store::read_copy(db, |conn| {
        let schema = crate::store::migrations::versions(conn)?;
        let Some((size, root)) = audit::stored_root(conn)? else {
            return Err(backup_err(
                db,
                "the audit table's leaves do not make a tree: run `kxca audit verify` on the source",
            ));
        };
        let root = hex::encode(root);
        let latest_checkpoint = audit::checkpoints(conn)?.last().map(|c| c.size);
        let authority_keys = authorities::all(conn)?
            .into_iter()
            .map(|a| a.key_ref)
            .collect();
        Ok(CopyFacts {
            schema,
            audit: AuditState {
                tree_size: size,
                root,
                latest_checkpoint,
            },
            authority_keys,
        })
    })
}

/// Creates `dir` (0700), or accepts it empty. Returns whether it was created.
fn prepare_empty_dir(dir: &Path) -> Result<bool, Error> {
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(backup_err(
                    dir,
                    "exists and is not empty: a backup never overwrites; give a new or empty directory",
                ));
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir(dir).map_err(|e| Error::io(dir, e))?;
            set_mode(dir, 0o700)?;
            Ok(true)
        }
        Err(e) => Err(Error::io(dir, e)),
    }
}

/// Removes what a failed backup wrote: the directory if it made it, else
/// its content (it was empty before).
fn discard(dir: &Path, created: bool) {
    if created {
        let _ = fs::remove_dir_all(dir);
    } else if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            let _ = if p.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
        }
    }
}

/// Every entry under `root`, recursively, sorted: (relative `/` path, full
/// path, is a regular file). Directories are descended, not listed;
/// symbolic links are listed (as not regular files), never followed.
fn walk(root: &Path) -> Result<Vec<(String, PathBuf, bool)>, Error> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let e = e.map_err(|e| Error::io(&dir, e))?;
            let path = e.path();
            let kind = e.file_type().map_err(|e| Error::io(&path, e))?;
            if kind.is_dir() {
                todo.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push((rel, path, kind.is_file()));
        }
    }
    out.sort();
    Ok(out)
}

fn entry(rel: &str, path: &Path) -> Result<FileEntry, Error> {
    let mut f = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok(FileEntry {
        path: rel.to_string(),
        size,
        sha256: hex::encode(hasher.finalize()),
        mode: mode_of(path),
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn mode_of(path: &Path) -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).map_or(0o600, |m| m.permissions().mode() & 0o777)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        0o600
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), Error> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(path, e))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Writes a new file (never over an existing one) with `mode`.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    let mut f = options.open(path).map_err(|e| Error::io(path, e))?;
    std::io::Write::write_all(&mut f, bytes).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))?;
    // The umask may have taken bits the original had.
    set_mode(path, mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_under_the_old_home_move() {
        let m = |t| moved_path(t, "/srv/kx", "/srv/new");
        assert_eq!(m("/srv/kx").as_deref(), Some("/srv/new"));
        assert_eq!(
            m("/srv/kx/keys/a.p8").as_deref(),
            Some("/srv/new/keys/a.p8")
        );
        assert_eq!(
            m("soft:/srv/kx/keys/a.p8").as_deref(),
            Some("soft:/srv/new/keys/a.p8")
        );
        // A sibling sharing the prefix, a path elsewhere, a token reference.
        assert_eq!(m("/srv/kx2/pin"), None);
        assert_eq!(m("/etc/kxca/pin"), None);
        assert_eq!(m("pkcs11:token=KX-CA;object=root"), None);
    }

    #[test]
    fn config_paths_move_and_comments_stay() {
        let text = "# reviewed by the officers\n[ca]\nroot_key = \"soft:/srv/kx/keys/root.p8\" # the root\nkey_secret_file = \"/etc/kxca/pin\"\n[mail.imap]\npassword_file = \"/srv/kx/imap.pw\"\n";
        let mut doc: toml_edit::DocumentMut = text.parse().unwrap();
        let mut moved = Vec::new();
        move_paths(doc.as_item_mut(), "", "/srv/kx", "/srv/new", &mut moved);
        assert_eq!(moved, ["ca.root_key", "mail.imap.password_file"]);
        let out = doc.to_string();
        assert!(out.starts_with("# reviewed by the officers\n"), "{out}");
        assert!(
            out.contains("root_key = \"soft:/srv/new/keys/root.p8\" # the root"),
            "{out}"
        );
        assert!(out.contains("key_secret_file = \"/etc/kxca/pin\""), "{out}");
        assert!(
            out.contains("password_file = \"/srv/new/imap.pw\""),
            "{out}"
        );
    }

    fn config(extra: &str) -> Config {
        let text = format!(
            "production = false\n[union]\nname = \"KX\"\ncode = \"26276\"\n\
             [ca]\nroot_key = \"pkcs11:token=KX-CA;object=root\"\n\
             issuing_key = \"yubikey:serial=1234;slot=9c\"\nkey_secret_env = \"KX_PIN\"\n\
             root_common_name = \"R\"\nissuing_common_name = \"I\"\n\
             [publication]\ncrl_url = \"http://a/crl\"\nocsp_url = \"http://a/ocsp\"\n\
             ca_issuers_url = \"http://a/ca\"\n{extra}"
        );
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn every_key_and_secret_is_listed_with_its_custodian() {
        let home = Home::new("/srv/kx");
        let c = config(
            "[mail.imap]\nhost = \"h\"\nport = 993\ntls = \"implicit\"\nuser = \"u\"\n\
             password_file = \"/etc/kxca/imap\"\n\
             [mail.smtp]\nhost = \"h\"\nport = 465\ntls = \"implicit\"\nuser = \"u\"\n\
             password_env = \"KX_SMTP\"\nfrom = \"a@b.jp\"\n",
        );
        let all = inventory(&c, &home);
        let find = |what: &str| {
            all.iter()
                .find(|m| m.what == what)
                .unwrap_or_else(|| panic!("{what} not listed: {all:?}"))
        };
        // The CA keys are the store's (kxca.toml only seeds init): listed
        // per authority, not from the configuration.
        assert!(!all.iter().any(|m| m.what.contains("CA key of")), "{all:?}");
        let root = ca_key_material(crate::AuthorityRole::Root, "root", &c.ca.root_key);
        assert!(root.back_up.contains("HSM vendor's tooling"));
        let issuing = ca_key_material(
            crate::AuthorityRole::Issuing,
            "issuing-1",
            &c.ca.issuing_key,
        );
        assert!(issuing.back_up.contains("cannot be backed up"));
        assert_eq!(
            find("CA key passphrase or PIN").location,
            "environment variable KX_PIN"
        );
        assert_eq!(
            find("OCSP responder key").path.as_deref(),
            Some(Path::new("/srv/kx/keys/ocsp-responder.p8"))
        );
        assert_eq!(
            find("IMAP password").path.as_deref(),
            Some(Path::new("/etc/kxca/imap"))
        );
        assert_eq!(
            find("SMTP password").location,
            "environment variable KX_SMTP"
        );
        assert!(find("audit key passphrase").secret);
    }
}

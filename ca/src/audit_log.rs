//! The tamper-evident audit record: the `audit` table's events are leaves of
//! an RFC 6962 Merkle tree (crate::merkle, leaves written by
//! store::audit::append); the private role signs checkpoints of the tree in
//! the C2SP signed-note checkpoint format with a dedicated audit key, stores
//! them and publishes them next to the CRLs; `kxca audit verify` recomputes
//! everything and names the first event that was edited, deleted, inserted
//! or reordered; `kxca audit export` writes events with inclusion proofs.
//! docs/AUDIT.md describes the formats for third parties.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use kxca_hsm::{KeyAlgorithm, KeyRef, SecretSource, Signer};
use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::merkle::{self, Hash, Tree};
use crate::store::audit::{self, StoredCheckpoint, StoredEvent};
use crate::store::Snapshot;
use crate::{Config, Error, Home, Store};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// `[audit]` in kxca.toml.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The checkpoint signing key (`soft:...`, `pkcs11:...`). Unset: a soft
    /// key under `<home>/audit/`, refused in production.
    #[serde(default)]
    pub key: Option<String>,
    /// Environment variable holding the audit key's own passphrase or PIN.
    #[serde(default)]
    pub key_secret_env: Option<String>,
    /// File holding the audit key's own passphrase or PIN (first line).
    #[serde(default)]
    pub key_secret_file: Option<PathBuf>,
    /// The checkpoint origin line and signature key name (a schema-less URL).
    /// Unset: `<host of publication.crl_url>/kxca-audit`.
    #[serde(default)]
    pub origin: Option<String>,
    /// Seconds between checkpoints while the tree grows.
    #[serde(default = "default_interval")]
    pub checkpoint_interval_secs: u64,
}

fn default_interval() -> u64 {
    60
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            key: None,
            key_secret_env: None,
            key_secret_file: None,
            origin: None,
            checkpoint_interval_secs: default_interval(),
        }
    }
}

/// Where the published checkpoints and the audit public key live.
pub fn publish_dir(home: &Home) -> PathBuf {
    home.crl_dir().join("audit")
}

/// The published audit public key (PEM SubjectPublicKeyInfo).
pub fn public_key_path(home: &Home) -> PathBuf {
    publish_dir(home).join("audit-key.pem")
}

/// The checkpoint origin line of this CA (C2SP signed note), from its union code.
pub fn origin(config: &Config) -> String {
    if let Some(o) = &config.audit.origin {
        return o.clone();
    }
    let url = &config.publication.crl_url;
    let host = url
        .strip_prefix("http://")
        .unwrap_or(url)
        .split('/')
        .next()
        .unwrap_or("kxca");
    format!("{host}/kxca-audit")
}

/// The key ID of C2SP signed-note signature type 0x02 (ECDSA P-256 over
/// SHA-256, ASN.1 DER signature): `SHA-256(DER SubjectPublicKeyInfo)[:4]`.
pub fn key_id(spki_der: &[u8]) -> [u8; 4] {
    let d = Sha256::digest(spki_der);
    [d[0], d[1], d[2], d[3]]
}

fn key_ref_text(config: &Config, home: &Home) -> String {
    match &config.audit.key {
        Some(k) => k.clone(),
        None => format!(
            "soft:{}",
            home.root().join("audit").join("audit.p8").display()
        ),
    }
}

/// The audit key's secret: the configured one, else (outside production) a
/// random passphrase in `<home>/audit/audit.secret`, made when `create`.
fn key_secret(config: &Config, home: &Home, create: bool) -> Result<SecretSource, Error> {
    let a = &config.audit;
    let dir = home.root().join("audit");
    let path = dir.join("audit.secret");
    let configured = SecretSource::from_config(
        a.key_secret_env.as_deref(),
        a.key_secret_file.as_deref(),
        "[audit] key_secret_env / key_secret_file",
    )
    .map_err(|e| Error::Config {
        path: home.config(),
        message: e.to_string(),
    })?;
    match configured {
        // `kxca init` names the default file before it exists.
        Some(SecretSource::File(f)) if f != path || config.production => {
            return Ok(SecretSource::File(f))
        }
        Some(env @ SecretSource::Env(_)) => return Ok(env),
        _ => {}
    }
    if config.production {
        return Err(Error::Config {
            path: home.config(),
            message: "production: set audit.key_secret_env or audit.key_secret_file (the audit \
                      key's own PIN)"
                .into(),
        });
    }
    if !path.exists() && create {
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io(&dir, e))?;
        }
        // Checkpoints are signed unattended: like the responder key's, the
        // soft audit key's passphrase lives beside it, readable by kxca only.
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&path).map_err(|e| Error::io(&path, e))?;
        let pass = crate::generate_password();
        std::io::Write::write_all(&mut f, format!("{}\n", pass.expose()).as_bytes())
            .map_err(|e| Error::io(&path, e))?;
    }
    Ok(SecretSource::File(path))
}

/// Opens the audit key (creating a missing soft or token key when `create`)
/// and checks it is ECDSA P-256, the one type the checkpoint format defines.
pub fn open_key(config: &Config, home: &Home, create: bool) -> Result<Box<dyn Signer>, Error> {
    let text = key_ref_text(config, home);
    let bad = |message: String| Error::Config {
        path: home.config(),
        message,
    };
    let key_ref: KeyRef = text
        .parse()
        .map_err(|e: kxca_hsm::Error| bad(format!("audit.key: {e}")))?;
    if config.production && (config.audit.key.is_none() || key_ref.is_soft()) {
        return Err(Error::SoftKeyInProduction {
            path: home.config(),
            role: "audit".into(),
            key_ref: text,
        });
    }
    let secret = key_secret(config, home, create)?;
    let backend = config.backend_options();
    let signer = crate::delegated_key::open_or_create(
        &key_ref,
        &text,
        &secret,
        &backend,
        create,
        bad,
        "`kxca daemon` (or `kxca audit checkpoint`) creates the audit key",
    )?;
    if signer.algorithm() != KeyAlgorithm::EcdsaP256 {
        return Err(bad(format!(
            "audit.key {text} is {}: checkpoints are signed with ECDSA P-256 only (C2SP \
             signed-note type 0x02)",
            signer.algorithm().name()
        )));
    }
    Ok(signer)
}

/// `[audit]` for a new home: the given key and secret, else (outside
/// production) a soft key and a random passphrase under `<home>/audit/`.
/// Production without `--audit-key` leaves the key unset (the daemon warns).
pub(crate) fn init_config(home: &Home, o: &crate::InitOptions) -> Result<AuditConfig, Error> {
    let dir = home.root().join("audit");
    let (key_secret_env, key_secret_file) = match &o.audit_key_secret {
        Some(SecretSource::Env(n)) => (Some(n.clone()), None),
        Some(SecretSource::File(p)) => (None, Some(p.clone())),
        None if o.production && o.audit_key.is_some() => {
            return Err(Error::Config {
                path: home.config(),
                message: "production: give the audit key's own PIN (--audit-key-secret-file or \
                          --audit-key-secret-env)"
                    .into(),
            })
        }
        None if o.production => (None, None),
        None => (None, Some(dir.join("audit.secret"))),
    };
    let key = match &o.audit_key {
        Some(k) => Some(k.clone()),
        None if o.production => None,
        None => Some(format!("soft:{}", dir.join("audit.p8").display())),
    };
    Ok(AuditConfig {
        key,
        key_secret_env,
        key_secret_file,
        ..Default::default()
    })
}

/// Creates the audit key (and a soft key's secret) and publishes its
/// public key: `kxca init`.
pub fn init_key(config: &Config, home: &Home) -> Result<(), Error> {
    let signer = open_key(config, home, true)?;
    publish_key(home, signer.public_key_der())
}

/// The checkpoint body: origin, tree size, base64 root hash, each on a line.
pub fn note_body(origin: &str, size: i64, root: &Hash) -> String {
    format!("{origin}\n{size}\n{}\n", B64.encode(root))
}

/// A parsed signed note.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The log's origin line.
    pub origin: String,
    /// How many leaves the checkpoint covers.
    pub size: i64,
    /// The tree root over those leaves.
    pub root: Hash,
    /// The signed text: the body lines with their final newline.
    pub body: String,
    /// (key name, key ID, signature) of each signature line.
    pub signatures: Vec<(String, [u8; 4], Vec<u8>)>,
}

pub(crate) fn parse_note(text: &str) -> Result<Checkpoint, String> {
    let (body, sigs) = text
        .split_once("\n\n")
        .ok_or("no blank line between the checkpoint and its signatures")?;
    let body = format!("{body}\n");
    let mut lines = body.lines();
    let origin = lines.next().unwrap_or_default().to_string();
    let size: i64 = lines
        .next()
        .and_then(|l| l.parse().ok())
        .ok_or("the second line is not a tree size")?;
    let root: Hash = lines
        .next()
        .and_then(|l| B64.decode(l).ok())
        .and_then(|v| v.try_into().ok())
        .ok_or("the third line is not a base64 SHA-256 root hash")?;
    let mut signatures = Vec::new();
    for line in sigs.lines() {
        let rest = line
            .strip_prefix("\u{2014} ")
            .ok_or_else(|| format!("signature line {line:?} does not start with an em dash"))?;
        let (name, sig) = rest
            .split_once(' ')
            .ok_or_else(|| format!("signature line {line:?} has no signature"))?;
        let raw = B64
            .decode(sig)
            .map_err(|_| format!("signature of {name} is not base64"))?;
        if raw.len() < 5 {
            return Err(format!("signature of {name} is too short"));
        }
        signatures.push((
            name.to_string(),
            [raw[0], raw[1], raw[2], raw[3]],
            raw[4..].to_vec(),
        ));
    }
    if signatures.is_empty() {
        return Err("no signature line".into());
    }
    Ok(Checkpoint {
        origin,
        size,
        root,
        body,
        signatures,
    })
}

/// Checks the note is signed by the audit key (`origin` as the key name,
/// the key ID of `public_key_der`) and the signature verifies. Signatures of
/// other keys are ignored, as the signed-note spec requires; a note with
/// none by the audit key is refused.
pub fn check_signature(cp: &Checkpoint, origin: &str, public_key_der: &[u8]) -> Result<(), String> {
    if cp.origin != origin {
        return Err(format!(
            "origin {:?} is not this record's ({origin:?})",
            cp.origin
        ));
    }
    let id = key_id(public_key_der);
    let mine: Vec<&Vec<u8>> = cp
        .signatures
        .iter()
        .filter(|(name, kid, _)| name == origin && *kid == id)
        .map(|(_, _, sig)| sig)
        .collect();
    if mine.is_empty() {
        let others: Vec<String> = cp
            .signatures
            .iter()
            .map(|(n, k, _)| format!("{n} key ID {}", hex::encode(k)))
            .collect();
        return Err(format!(
            "not signed by the audit key (key ID {}); signed by {}: refused",
            hex::encode(id),
            others.join(", ")
        ));
    }
    for sig in mine {
        kxca_hsm::verify(
            KeyAlgorithm::EcdsaP256,
            public_key_der,
            cp.body.as_bytes(),
            sig,
        )
        .map_err(|_| {
            "the signature under the audit key's name and ID does not verify with the audit \
             public key: refused"
                .to_string()
        })?;
    }
    Ok(())
}

/// One problem `verify` found. `message` is the line printed.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// edited, deleted, inserted, reordered, checkpoint
    pub kind: &'static str,
    /// The audit event's id, when the finding is about one event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<i64>,
    /// The leaf index concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leaf: Option<i64>,
    /// The checkpoint (by size) concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<i64>,
    /// What is wrong, in English.
    pub message: String,
}

/// The outcome of `kxca audit verify`: what was checked and every finding.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// No findings.
    pub ok: bool,
    /// Events read.
    pub events: usize,
    /// Leaves in the rebuilt tree.
    pub tree_size: i64,
    /// Checkpoints checked (stored and given).
    pub checkpoints: usize,
    /// Size of the newest checkpoint that verified.
    pub latest_checkpoint: Option<i64>,
    /// When that checkpoint was signed (Unix seconds), when it is one of
    /// the store's (a note given from outside carries no time).
    pub latest_checkpoint_at: Option<i64>,
    /// The root of the tree rebuilt from the events, hex.
    pub root: String,
    /// Events after the latest checkpoint: not yet covered by a signature.
    pub unsigned_events: i64,
    /// Every inconsistency found, in order.
    pub findings: Vec<Finding>,
}

/// The rows checked against their leaves, and the tree of the log as it is.
struct Checked {
    findings: Vec<Finding>,
    /// (leaf index, event id) of each row in the tree, in tree order.
    order: Vec<(i64, i64)>,
    tree: Tree,
}

fn check_rows(rows: &[StoredEvent]) -> Checked {
    let mut findings = Vec::new();
    let where_: HashMap<i64, i64> = rows
        .iter()
        .filter_map(|e| Some((e.leaf_index?, e.id)))
        .collect();
    let mut accounted: HashSet<i64> = HashSet::new();
    let mut expected: i64 = 0;
    let mut prev_id: Option<i64> = None;
    let mut leaves = Vec::with_capacity(rows.len());
    let mut order = Vec::with_capacity(rows.len());
    for e in rows {
        let (Some(li), Some(stored)) = (e.leaf_index, e.leaf.as_ref()) else {
            findings.push(Finding {
                kind: "inserted",
                event: Some(e.id),
                leaf: None,
                checkpoint: None,
                message: format!(
                    "event {} ({} {} by {}): inserted: it has no leaf in the tree, so it was \
                     never appended by kxca",
                    e.id,
                    crate::rfc3339(e.at),
                    e.action,
                    e.actor
                ),
            });
            prev_id = Some(e.id);
            continue;
        };
        let content = e.content_leaf();
        let mut out_of_order = false;
        if li > expected {
            if let Some(other) = where_
                .get(&expected)
                .filter(|_| !accounted.contains(&expected))
            {
                out_of_order = true;
                accounted.insert(expected);
                accounted.insert(li);
                findings.push(Finding {
                    kind: "reordered",
                    event: Some(e.id),
                    leaf: Some(li),
                    checkpoint: None,
                    message: format!(
                        "event {} (leaf {li}): reordered: it stands where leaf {expected} \
                         (now event {other}) belongs",
                        e.id
                    ),
                });
            } else {
                let after = prev_id.map_or("the start".to_string(), |p| format!("event {p}"));
                findings.push(Finding {
                    kind: "deleted",
                    event: Some(e.id),
                    leaf: Some(expected),
                    checkpoint: None,
                    message: format!(
                        "leaf {expected}{}: deleted: {} event(s) missing between {after} and \
                         event {}",
                        if li - expected > 1 {
                            format!("..{}", li - 1)
                        } else {
                            String::new()
                        },
                        li - expected,
                        e.id
                    ),
                });
            }
            expected = li + 1;
        } else if li < expected {
            out_of_order = true;
            if accounted.insert(li) {
                findings.push(Finding {
                    kind: "reordered",
                    event: Some(e.id),
                    leaf: Some(li),
                    checkpoint: None,
                    message: format!(
                        "event {} (leaf {li}): reordered: it comes after leaf {} in the table",
                        e.id,
                        expected - 1
                    ),
                });
            }
        } else {
            expected += 1;
        }
        if !out_of_order && content.as_ref().map(|c| &c[..]) != Some(&stored[..]) {
            findings.push(Finding {
                kind: "edited",
                event: Some(e.id),
                leaf: Some(li),
                checkpoint: None,
                message: format!(
                    "event {} (leaf {li}, {} {} by {}): edited: its content no longer hashes to \
                     its recorded leaf",
                    e.id,
                    crate::rfc3339(e.at),
                    e.action,
                    e.actor
                ),
            });
        }
        // The tree is of the log as it now is: every kept row, in tree order.
        leaves.push((li, content.unwrap_or([0u8; 32])));
        order.push((li, e.id));
        prev_id = Some(e.id);
    }
    leaves.sort_by_key(|(li, _)| *li);
    order.sort_by_key(|(li, _)| *li);
    Checked {
        findings,
        order,
        tree: Tree::new(leaves.into_iter().map(|(_, h)| h).collect()),
    }
}

/// Recomputes every leaf from the event rows, rebuilds the tree, checks
/// every checkpoint (stored ones and `extra` notes, e.g. copies an outside
/// party kept) against `public_key_der` (`None`: no key was ever
/// published, so any checkpoint is a finding) and the tree, and each later
/// checkpoint's consistency with the one before it.
pub fn verify(
    store: &Store,
    origin: &str,
    public_key_der: Option<&[u8]>,
    extra: &[(String, String)],
) -> Result<Report, Error> {
    store
        .read(|snapshot| verify_tree(snapshot, origin, public_key_der, extra))
        .map(|(report, _)| report)
}

/// `verify`, also returning the tree it rebuilt.
fn verify_tree(
    snapshot: &Snapshot<'_>,
    origin: &str,
    public_key_der: Option<&[u8]>,
    extra: &[(String, String)],
) -> Result<(Report, Tree), Error> {
    // One read snapshot for the rows and the checkpoints: a checkpoint
    // signed meanwhile must not look like it covers missing events.
    let rows = audit::all_rows(snapshot, 0)?;
    let Checked {
        mut findings,
        order,
        tree,
    } = check_rows(&rows);
    let event_at = |leaf: i64| -> String {
        order
            .get(leaf as usize)
            .map_or(format!("leaf {leaf}"), |(_, id)| format!("event {id}"))
    };
    let stored = audit::checkpoints(snapshot)?;
    let mut notes: Vec<(String, String)> = stored
        .iter()
        .cloned()
        .map(|c| (format!("checkpoint {}", c.size), c.note))
        .collect();
    notes.extend(extra.iter().cloned());
    let mut good: Vec<Checkpoint> = Vec::new();
    for (label, note) in &notes {
        let fail = |message: String| Finding {
            kind: "checkpoint",
            event: None,
            leaf: None,
            checkpoint: None,
            message: format!("{label}: {message}"),
        };
        let cp = match parse_note(note) {
            Ok(cp) => cp,
            Err(e) => {
                findings.push(fail(format!("not a signed checkpoint: {e}")));
                continue;
            }
        };
        let Some(public_key_der) = public_key_der else {
            findings.push(Finding {
                checkpoint: Some(cp.size),
                ..fail("cannot be checked: no audit public key (give --key)".into())
            });
            continue;
        };
        if let Err(e) = check_signature(&cp, origin, public_key_der) {
            findings.push(Finding {
                checkpoint: Some(cp.size),
                ..fail(e)
            });
            continue;
        }
        good.push(cp);
    }
    good.sort_by_key(|c| c.size);
    let size = tree.size() as i64;
    let mut last_match: i64 = 0;
    let mut mismatched: HashSet<i64> = HashSet::new();
    for cp in &good {
        let finding = |message: String| Finding {
            kind: "checkpoint",
            event: None,
            leaf: None,
            checkpoint: Some(cp.size),
            message: format!("checkpoint {}: {message}", cp.size),
        };
        if cp.size > size {
            // Only a gap at the end is named here; one in the middle was
            // named row by row above.
            let present = order.last().map_or(0, |(li, _)| li + 1);
            findings.push(finding(if present < cp.size {
                format!(
                    "it signs {} events but the log has {size}: deleted: the events from leaf \
                     {present} on are missing",
                    cp.size
                )
            } else {
                format!(
                    "it signs {} events but the log has {size}: deleted: {} of them are missing",
                    cp.size,
                    cp.size - size
                )
            }));
            mismatched.insert(cp.size);
            continue;
        }
        if tree.root(cp.size as usize) != cp.root {
            mismatched.insert(cp.size);
            findings.push(finding(format!(
                "the log no longer hashes to its signed root: an event between {} and {} was \
                 changed after it was signed",
                event_at(last_match),
                event_at(cp.size - 1)
            )));
            continue;
        }
        last_match = cp.size;
    }
    // The proof comes from the log: where a root already does not match,
    // that finding says more than a failed proof would.
    for pair in good.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if b.size > size
            || a.size == 0
            || mismatched.contains(&a.size)
            || mismatched.contains(&b.size)
        {
            continue;
        }
        let proof = tree.consistency_proof(a.size as usize, b.size as usize);
        if !merkle::verify_consistency(a.size as u64, b.size as u64, &a.root, &b.root, &proof) {
            findings.push(Finding {
                kind: "checkpoint",
                event: None,
                leaf: None,
                checkpoint: Some(b.size),
                message: format!(
                    "checkpoint {}: not consistent with checkpoint {}: the history was rewritten \
                     between them",
                    b.size, a.size
                ),
            });
        }
    }
    let latest = good.last().map(|c| c.size);
    let latest_at = good.last().and_then(|cp| {
        stored
            .iter()
            .filter(|s| s.size == cp.size && s.note.starts_with(&cp.body))
            .map(|s| s.signed_at)
            .max()
    });
    let report = Report {
        latest_checkpoint_at: latest_at,
        root: hex::encode(tree.root(size as usize)),
        ok: findings.is_empty(),
        events: rows.len(),
        tree_size: size,
        checkpoints: good.len(),
        latest_checkpoint: latest,
        unsigned_events: size - latest.unwrap_or(0).min(size),
        findings,
    };
    Ok((report, tree))
}

/// `verify` as `kxca audit verify` runs it without `--key`: against the
/// audit public key published under the home (none published: events are
/// still checked, any checkpoint is a finding). The console's audit state
/// calls this too.
pub fn verify_published(
    store: &Store,
    home: &Home,
    config: &Config,
    extra: &[(String, String)],
) -> Result<Report, Error> {
    let path = public_key_path(home);
    let public = if path.exists() {
        Some(read_public_key(&path)?)
    } else {
        None
    };
    verify(store, &origin(config), public.as_deref(), extra)
}

/// The audit public key as published (DER SPKI), or the key in `file`.
pub fn read_public_key(path: &Path) -> Result<Vec<u8>, Error> {
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let (label, der) = der::pem::decode_vec(text.as_bytes()).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        message: format!("not a PEM public key: {e}"),
    })?;
    if label != "PUBLIC KEY" {
        return Err(Error::Config {
            path: path.to_path_buf(),
            message: format!("PEM label is {label:?}, expected \"PUBLIC KEY\""),
        });
    }
    Ok(der)
}

/// Signs a checkpoint of the tree when it grew since the last one, after
/// checking the whole record (a tampered log is never signed), stores it
/// and publishes it. Returns the new checkpoint, `None` when nothing grew.
pub fn checkpoint(
    store: &mut Store,
    home: &Home,
    config: &Config,
    signer: &dyn Signer,
    now: i64,
) -> Result<Option<StoredCheckpoint>, Error> {
    let origin = origin(config);
    let public = signer.public_key_der().to_vec();
    publish_key(home, &public)?;
    let Some((size, report, tree)) = store.read(|snapshot| {
        let last = audit::checkpoints(snapshot)?.last().map(|c| c.size);
        let size = audit::tree_size(snapshot)?;
        if Some(size) == last || size == 0 {
            return Ok(None);
        }
        let (report, tree) = verify_tree(snapshot, &origin, Some(&public), &[])?;
        Ok(Some((size, report, tree)))
    })?
    else {
        return Ok(None);
    };
    if let Some(f) = report.findings.first() {
        return Err(Error::Database {
            path: store.path().to_path_buf(),
            message: format!(
                "the audit record fails verification, no checkpoint signed: {} ({} finding(s); \
                 run `kxca audit verify`)",
                f.message,
                report.findings.len()
            ),
        });
    }
    // Verified: the tree has exactly `size` leaves, in order.
    let root = tree.root(size as usize);
    let body = note_body(&origin, size, &root);
    let sig = signer.sign(body.as_bytes())?;
    kxca_hsm::verify(KeyAlgorithm::EcdsaP256, &public, body.as_bytes(), &sig)?;
    let mut raw = key_id(&public).to_vec();
    raw.extend_from_slice(&sig);
    let note = format!("{body}\n\u{2014} {origin} {}\n", B64.encode(raw));
    let cp = StoredCheckpoint {
        size,
        root: root.to_vec(),
        note,
        signed_at: now,
        public_key: public.clone(),
    };
    store.write(|tx| audit::insert_checkpoint(tx, &cp))?;
    publish_checkpoint(home, &cp)?;
    Ok(Some(cp))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("tmp~");
    fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

fn publish_key(home: &Home, public: &[u8]) -> Result<(), Error> {
    let dir = publish_dir(home);
    fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let pem = crate::ca::pem("PUBLIC KEY", public);
    let path = public_key_path(home);
    if fs::read_to_string(&path).ok().as_deref() != Some(pem.as_str()) {
        write_atomic(&path, pem.as_bytes())?;
    }
    Ok(())
}

/// `<home>/crl/audit/checkpoint` (the latest) and
/// `<home>/crl/audit/checkpoints/<size>` (every one, never rewritten).
fn publish_checkpoint(home: &Home, cp: &StoredCheckpoint) -> Result<(), Error> {
    let dir = publish_dir(home).join("checkpoints");
    fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    write_atomic(&dir.join(cp.size.to_string()), cp.note.as_bytes())?;
    write_atomic(&publish_dir(home).join("checkpoint"), cp.note.as_bytes())
}

/// (URL path, body, content type, signing time).
pub type PublishedFile = (String, Vec<u8>, &'static str, i64);

/// What `kxca serve` publishes of the record, from the store: (URL path,
/// body, content type, signing time) of `/audit/checkpoint` (the latest)
/// and `/audit/audit-key.pem` (the key that signed it).
pub fn published(conn: &Snapshot<'_>) -> Result<Vec<PublishedFile>, Error> {
    let latest: Option<(String, i64, Vec<u8>)> = conn
        .query_row(
            "SELECT note, signed_at, public_key FROM audit_checkpoints ORDER BY size DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(crate::store::sql)?;
    Ok(match latest {
        Some((note, at, key)) => vec![
            (
                "/audit/checkpoint".to_string(),
                note.into_bytes(),
                "text/plain; charset=utf-8",
                at,
            ),
            (
                "/audit/audit-key.pem".to_string(),
                crate::ca::pem("PUBLIC KEY", &key).into_bytes(),
                "application/x-pem-file",
                at,
            ),
        ],
        None => Vec::new(),
    })
}

/// The numbered checkpoints under `dir` (`publish_dir`), relative to it,
/// for `kxca publish` (the latest and the key come from `published`).
pub fn published_files(dir: &Path) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    let numbered = dir.join("checkpoints");
    match fs::read_dir(&numbered) {
        Ok(entries) => {
            for entry in entries {
                let name = entry.map_err(|e| Error::io(&numbered, e))?.file_name();
                let name = name.to_string_lossy();
                if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
                    out.push(format!("checkpoints/{name}"));
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&numbered, e)),
    }
    out.sort();
    Ok(out)
}

/// Where `kxca audit export` starts.
#[derive(Debug, Clone, Copy)]
pub enum Since {
    /// From this event id on.
    Id(i64),
    /// From this time (Unix seconds) on.
    Time(i64),
}

/// Writes one JSON line per event covered by the latest checkpoint, from
/// `since`, each with its leaf index, leaf hash and inclusion proof.
/// Returns (lines written, checkpoint size).
pub fn export(
    store: &Store,
    since: Since,
    out: &mut dyn std::io::Write,
) -> Result<(usize, i64), Error> {
    store.read(|snapshot| export_from(snapshot, since, out))
}

fn export_from(
    snapshot: &Snapshot<'_>,
    since: Since,
    out: &mut dyn std::io::Write,
) -> Result<(usize, i64), Error> {
    let Some(latest) = audit::checkpoints(snapshot)?.pop() else {
        return Err(Error::field(
            "audit",
            "no checkpoint yet: run `kxca daemon` or `kxca audit checkpoint` first",
        ));
    };
    let rows = audit::all_rows(snapshot, 0)?;
    let checked = check_rows(&rows);
    let n = latest.size as usize;
    if checked.tree.size() < n || checked.tree.root(n)[..] != latest.root[..] {
        return Err(Error::field(
            "audit",
            format!(
                "the record no longer matches checkpoint {}: run `kxca audit verify`",
                latest.size
            ),
        ));
    }
    let by_id: HashMap<i64, &StoredEvent> = rows.iter().map(|e| (e.id, e)).collect();
    let io = |e: std::io::Error| Error::io("export output", e);
    let mut written = 0;
    for &(li, id) in checked.order.iter().take(n) {
        let Some(e) = by_id.get(&id) else { continue };
        let keep = match since {
            Since::Id(from) => e.id >= from,
            Since::Time(from) => e.at >= from,
        };
        if !keep {
            continue;
        }
        let leaf = checked.tree.leaf(li as usize).copied().unwrap_or_default();
        let proof: Vec<String> = checked
            .tree
            .inclusion_proof(li as usize, n)
            .iter()
            .map(hex::encode)
            .collect();
        let line = serde_json::json!({
            "event": {
                "id": e.id,
                "index": li,
                "at": e.at,
                "actor": e.actor,
                "action": e.action,
                "serial": e.serial,
                "detail": e.detail,
            },
            "leaf_index": li,
            "leaf_hash": hex::encode(leaf),
            "tree_size": latest.size,
            "inclusion_proof": proof,
            "checkpoint": latest.note,
        });
        writeln!(out, "{line}").map_err(io)?;
        written += 1;
    }
    Ok((written, latest.size))
}

/// The files whose change is an audited event: kxca.toml and every file
/// under policies/, by path relative to the home, with their SHA-256.
fn config_hashes(home: &Home) -> Result<BTreeMap<String, String>, Error> {
    let mut out = BTreeMap::new();
    let config = home.config();
    let bytes = fs::read(&config).map_err(|e| Error::io(&config, e))?;
    out.insert("kxca.toml".to_string(), hex::encode(Sha256::digest(&bytes)));
    let mut stack = vec![home.policies()];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&dir, e)),
        };
        for entry in entries {
            let path = entry.map_err(|e| Error::io(&dir, e))?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.is_file() {
                let bytes = fs::read(&path).map_err(|e| Error::io(&path, e))?;
                let rel = path
                    .strip_prefix(home.root())
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, hex::encode(Sha256::digest(&bytes)));
            }
        }
    }
    Ok(out)
}

/// At the private role's start: appends a `config.changed` event when
/// kxca.toml or a policy file differs from what the last such event
/// recorded (the first start records them all). Returns the changed paths.
pub fn record_config(
    store: &mut Store,
    home: &Home,
    actor: &str,
    now: i64,
) -> Result<Vec<String>, Error> {
    let files = config_hashes(home)?;
    store.write(|tx| {
        let last: Option<String> = tx
            .query_row(
                "SELECT detail FROM audit WHERE action = 'config.changed' ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(crate::store::sql)?;
        let before: BTreeMap<String, String> = last
            .and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok())
            .and_then(|v| serde_json::from_value(v.get("files")?.clone()).ok())
            .unwrap_or_default();
        let mut changed: Vec<String> = files
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect();
        changed.extend(before.keys().filter(|k| !files.contains_key(*k)).cloned());
        if changed.is_empty() {
            return Ok(changed);
        }
        audit::append(
            tx,
            now,
            actor,
            crate::AuditAction::ConfigChanged,
            None,
            serde_json::json!({ "files": files, "changed": changed }),
        )?;
        Ok(changed)
    })
}

//! Key ceremonies (docs/CEREMONIES.md): a ceremony file says what to create
//! or sign; [`check`] validates all of it before anything is touched;
//! [`run`] needs M of N security officers' approvals, prints every step,
//! builds each certificate first as a throwaway signed by a temporary key,
//! lints it, signs the real one and checks it carries the same
//! to-be-signed bytes, and records a transcript with every fingerprint in
//! the audit log and a file.

mod certs;
mod file;
pub mod officers;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use der::Decode;
use kxca_hsm::{KeyAlgorithm, KeyRef, Signer};
use rusqlite::params;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::ca::{pem, sign_checked};
use crate::clock::rfc3339;
use crate::crl::{self, CrlInput, RevokedEntry};
use crate::store::{audit, authorities, crls, revocations, sql, Migration, Snapshot};
use crate::x509::{self, DnAttr};
use crate::{AuditAction, Authority, AuthorityRole, Ca, Error, RevocationReason};

pub use file::{CeremonyFile, Kind, Retire};
pub use officers::{enrol, enrolled, verify_approvals, Approval, CeremonyPolicy};

/// The ceremony tables, as their own migration component so that they
/// never collide with the CA's numbering.
pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description:
        "security officers, ceremonies, link certificates, retired and revoked authorities",
    sql: r#"
CREATE TABLE officers (
    name         TEXT PRIMARY KEY,
    -- Argon2id PHC string; never the passphrase.
    phc          TEXT NOT NULL,
    enrolled_at  INTEGER NOT NULL,
    enrolled_by  TEXT NOT NULL
);
CREATE TABLE ceremonies (
    id           INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL,
    file         TEXT NOT NULL,
    file_sha256  TEXT NOT NULL,
    officers     TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    transcript   TEXT
);
CREATE TABLE link_certificates (
    id           INTEGER PRIMARY KEY,
    issuer_id    INTEGER NOT NULL REFERENCES authorities(id),
    subject_id   INTEGER NOT NULL REFERENCES authorities(id),
    certificate  BLOB NOT NULL,
    not_after    INTEGER NOT NULL,
    ceremony_id  INTEGER NOT NULL REFERENCES ceremonies(id)
);
CREATE TABLE authority_states (
    authority_id       INTEGER PRIMARY KEY REFERENCES authorities(id),
    revoked_at         INTEGER,
    revocation_reason  INTEGER,
    retired_at         INTEGER,
    key_disposal       TEXT
);
"#,
}];

/// An authority's ceremony-made state: revoked at its root, retired.
#[derive(Debug, Clone, Default)]
pub struct AuthorityState {
    /// When it was revoked at its root.
    pub revoked_at: Option<i64>,
    /// RFC 5280 CRLReason code of that revocation.
    pub revocation_reason: Option<i64>,
    /// When its final CRL was signed and it was retired.
    pub retired_at: Option<i64>,
    /// What became of its key (destroyed, archived where).
    pub key_disposal: Option<String>,
}

/// The ceremony-made state of every authority that has one, by authority id.
pub fn authority_states(conn: &Snapshot<'_>) -> Result<HashMap<i64, AuthorityState>, Error> {
    let mut stmt = conn
        .prepare("SELECT authority_id, revoked_at, revocation_reason, retired_at, key_disposal FROM authority_states")
        .map_err(sql)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                AuthorityState {
                    revoked_at: r.get(1)?,
                    revocation_reason: r.get(2)?,
                    retired_at: r.get(3)?,
                    key_disposal: r.get(4)?,
                },
            ))
        })
        .map_err(sql)?;
    rows.collect::<Result<HashMap<_, _>, _>>().map_err(sql)
}

/// Ids of retired authorities: their key is gone, nothing is signed for them.
pub fn retired_ids(conn: &Snapshot<'_>) -> Result<Vec<i64>, Error> {
    let mut stmt = conn
        .prepare("SELECT authority_id FROM authority_states WHERE retired_at IS NOT NULL")
        .map_err(sql)?;
    let rows = stmt.query_map([], |r| r.get(0)).map_err(sql)?;
    rows.collect::<Result<Vec<i64>, _>>().map_err(sql)
}

/// Issued, unrevoked, unexpired certificates of an authority:
/// (serial, certificate id, e-mail, notAfter).
pub fn live_certificates(
    conn: &Snapshot<'_>,
    authority_id: i64,
    now: i64,
) -> Result<Vec<(String, String, String, i64)>, Error> {
    let mut stmt = conn
        .prepare(
            "SELECT c.serial, c.certificate_id, c.email, c.not_after FROM certificates c
             LEFT JOIN revocations r ON r.certificate = c.id
             WHERE c.authority_id = ?1 AND c.state = 'issued' AND r.certificate IS NULL AND c.not_after > ?2
             ORDER BY c.id",
        )
        .map_err(sql)?;
    let rows = stmt
        .query_map(params![authority_id, now], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}

/// The new key of a ceremony, checked.
#[derive(Debug, Clone)]
struct NewKey {
    key_ref: KeyRef,
    text: String,
    algorithm: KeyAlgorithm,
    generate: bool,
}

/// A checked ceremony: what [`run`] will do, resolved against the home.
#[derive(Debug)]
pub struct Checked {
    /// The ceremony file checked.
    pub file: PathBuf,
    /// Its contents.
    pub spec: CeremonyFile,
    /// SHA-256 of the ceremony file, recorded with the transcript.
    pub sha256: String,
    /// What `run` will do, in order, for the officers to read first.
    pub steps: Vec<String>,
    outputs: HashMap<&'static str, PathBuf>,
    not_before: i64,
    not_after: i64,
    /// The signing authority (intermediate, compromise: the active root;
    /// root: the current root; cross: the link's issuer; crl: the CRL's).
    issuer: Option<Authority>,
    /// cross: the certified authority; compromise: the compromised one.
    subject: Option<Authority>,
    new_key: Option<NewKey>,
}

fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn spki_sha256(spki: &[u8]) -> String {
    hex::encode(Sha256::digest(spki))
}

fn parse_time(s: &str, what: &str) -> Result<i64, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| format!("{what} {s:?}: not an RFC 3339 time ({e})"))
}

fn check_authority_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.starts_with(|c: char| c.is_ascii_lowercase());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "certificate.name {name:?}: use a-z, 0-9 and '-', starting with a letter (it names files and URLs)"
        ))
    }
}

/// Validates a ceremony file completely before anything is touched: the
/// officers' policy, keys reachable (the signing key is opened; a key to
/// generate must not exist yet), names, validity inside the issuer's,
/// outputs that do not exist yet.
pub fn check(ca: &Ca, path: &Path) -> Result<Checked, Error> {
    // Absolute: the transcript and the record name the file unambiguously.
    let path = &std::path::absolute(path).map_err(|e| Error::io(path, e))?;
    let spec = CeremonyFile::load(path)?;
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let bad = |message: String| Error::Ceremony {
        path: path.to_path_buf(),
        message,
    };
    let policy = CeremonyPolicy::load(ca.home())?;
    let enrolled_now = enrolled(ca.store())?;
    let ready = policy
        .officers
        .iter()
        .filter(|o| enrolled_now.contains(o))
        .count();
    if ready < policy.required {
        return Err(bad(format!(
            "only {ready} of the officers listed in {} are enrolled; {} must approve (kxca officer add NAME)",
            policy.path.display(),
            policy.required
        )));
    }
    let kind = spec.kind;
    let k = kind.as_str();
    // Sections a type does not use are errors: an officer who wrote them
    // expects them to have an effect.
    let uses = |section: &str| -> bool {
        matches!(
            (kind, section),
            (Kind::Key, "key")
                | (
                    Kind::Root | Kind::Intermediate | Kind::Compromise,
                    "key" | "certificate"
                )
                | (Kind::Cross, "link")
                | (Kind::Crl, "crl")
                | (Kind::Compromise, "compromise")
        )
    };
    for (name, present) in [
        ("key", spec.key.is_some()),
        ("certificate", spec.certificate.is_some()),
        ("link", spec.link.is_some()),
        ("crl", spec.crl.is_some()),
        ("compromise", spec.compromise.is_some()),
    ] {
        if present && !uses(name) {
            return Err(bad(format!("type = {k:?} does not use a [{name}] section")));
        }
        if !present && uses(name) {
            return Err(bad(format!("type = {k:?} needs a [{name}] section")));
        }
    }
    let needed: &[&str] = match kind {
        Kind::Key => &["public_key"],
        Kind::Root => &["certificate", "link_new_by_old", "link_old_by_new"],
        Kind::Intermediate | Kind::Cross => &["certificate"],
        Kind::Crl => &["crl"],
        Kind::Compromise => &["certificate", "crl", "reset_list"],
    };
    let o = &spec.outputs;
    let mut outputs: HashMap<&'static str, PathBuf> = HashMap::new();
    for (name, value) in [
        ("transcript", Some(&o.transcript)),
        ("certificate", o.certificate.as_ref()),
        ("public_key", o.public_key.as_ref()),
        ("crl", o.crl.as_ref()),
        ("link_new_by_old", o.link_new_by_old.as_ref()),
        ("link_old_by_new", o.link_old_by_new.as_ref()),
        ("reset_list", o.reset_list.as_ref()),
    ] {
        match value {
            Some(p) if name == "transcript" || needed.contains(&name) => {
                let resolved = if p.is_absolute() {
                    p.clone()
                } else {
                    ca.home().root().join(p)
                };
                check_output(ca, &resolved).map_err(|m| bad(format!("outputs.{name}: {m}")))?;
                if outputs.values().any(|q| *q == resolved) {
                    return Err(bad(format!(
                        "outputs.{name}: {} is also another output",
                        resolved.display()
                    )));
                }
                outputs.insert(name, resolved);
            }
            Some(_) => {
                return Err(bad(format!("type = {k:?} writes no outputs.{name}")));
            }
            None if needed.contains(&name) => {
                return Err(bad(format!("type = {k:?} needs outputs.{name}")));
            }
            None => {}
        }
    }

    let now = ca.clock().now();
    let all = ca.authorities()?;
    let states = ca.store().read(authority_states)?;
    let find = |name: &str| -> Result<Authority, Error> {
        all.iter().find(|a| a.name == name).cloned().ok_or_else(|| {
            bad(format!(
                "no authority named {name:?} (known: {})",
                all.iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    };
    let reachable = |a: &Authority| -> Result<(), Error> {
        if states.get(&a.id).and_then(|s| s.retired_at).is_some() {
            return Err(bad(format!(
                "authority {} is retired: its key is gone",
                a.name
            )));
        }
        ca.signer(a)
            .map(drop)
            .map_err(|e| bad(format!("the key of {} is not reachable: {e}", a.name)))
    };

    let mut steps = Vec::new();
    let mut checked = Checked {
        file: path.to_path_buf(),
        spec: spec.clone(),
        sha256,
        steps: Vec::new(),
        outputs,
        not_before: now,
        not_after: now,
        issuer: None,
        subject: None,
        new_key: None,
    };
    if let Some(key) = &spec.key {
        let nk = check_new_key(ca, key, &all).map_err(|m| bad(format!("key: {m}")))?;
        steps.push(if nk.generate {
            format!("generate a new {} key at {}", nk.algorithm, nk.text)
        } else {
            format!("use the existing {} key at {}", nk.algorithm, nk.text)
        });
        checked.new_key = Some(nk);
    }
    if let Some(c) = &spec.certificate {
        check_authority_name(&c.name).map_err(&bad)?;
        if all.iter().any(|a| a.name == c.name) {
            return Err(bad(format!(
                "certificate.name {:?} is already an authority; each CA gets a new name",
                c.name
            )));
        }
        if c.common_name.trim().is_empty() || c.common_name.len() > 64 {
            return Err(bad("certificate.common_name: 1 to 64 characters".into()));
        }
        if c.validity_days == 0 {
            return Err(bad("certificate.validity_days must be at least 1".into()));
        }
        let nb = match &c.not_before {
            Some(s) => parse_time(s, "certificate.not_before").map_err(&bad)?,
            None => now,
        };
        checked.not_before = nb;
        checked.not_after = nb + i64::from(c.validity_days) * 86_400;
    }
    let window = |c: &Checked, issuer: &Authority| -> Result<(), Error> {
        if c.not_before < issuer.not_before || c.not_after > issuer.not_after {
            return Err(bad(format!(
                "validity {} .. {} is not inside the issuer {}'s {} .. {}; shorten certificate.validity_days",
                rfc3339(c.not_before),
                rfc3339(c.not_after),
                issuer.name,
                rfc3339(issuer.not_before),
                rfc3339(issuer.not_after)
            )));
        }
        Ok(())
    };
    match kind {
        Kind::Key => {}
        Kind::Intermediate | Kind::Compromise => {
            let root = ca.authority(AuthorityRole::Root)?;
            reachable(&root)?;
            window(&checked, &root)?;
            if kind == Kind::Compromise {
                let section = spec
                    .compromise
                    .as_ref()
                    .ok_or_else(|| bad("[compromise]".into()))?;
                let old = find(&section.authority)?;
                if old.role != AuthorityRole::Issuing {
                    return Err(bad(format!(
                        "compromise.authority {} is a root; a root compromise is a new root and a new trust anchor, not this ceremony",
                        old.name
                    )));
                }
                if states.get(&old.id).and_then(|s| s.revoked_at).is_some() {
                    return Err(bad(format!("{} is already revoked", old.name)));
                }
                let reason: RevocationReason = section.reason.parse()?;
                let parent = old
                    .parent_id
                    .and_then(|id| all.iter().find(|a| a.id == id).cloned())
                    .ok_or_else(|| bad(format!("{} has no parent root in the store", old.name)))?;
                reachable(&parent)?;
                let live = ca.store().read(|c| live_certificates(c, old.id, now))?;
                steps.push(format!(
                    "revoke {} ({reason}) on a CRL signed by {}, valid {} days",
                    old.name, parent.name, section.root_crl_days
                ));
                steps.push(format!(
                    "list its {} live certificates for the reset flow",
                    live.len()
                ));
                checked.subject = Some(old);
            }
            let c = spec
                .certificate
                .as_ref()
                .ok_or_else(|| bad("[certificate]".into()))?;
            let publication = &ca.config().publication;
            if publication.crl_url_for(&c.name) == publication.crl_url {
                return Err(bad(format!(
                    "publication.crl_url {} has no file name kxca can vary per CA: the two issuing CAs' CRL URLs would be the same (use .../crl/issuing-1.crl)",
                    publication.crl_url
                )));
            }
            steps.push(format!(
                "build, lint and sign issuing CA {} (CN={}) under {}, valid {} .. {}",
                c.name,
                c.common_name,
                root.name,
                rfc3339(checked.not_before),
                rfc3339(checked.not_after)
            ));
            steps.push(format!("make {} the issuing CA for new certificates; the previous issuing CA keeps signing its CRLs and OCSP answers", c.name));
            steps.push(format!(
                "certify the OCSP responder key for {} and sign its first CRL",
                c.name
            ));
            checked.issuer = Some(root);
        }
        Kind::Root => {
            let old = ca.authority(AuthorityRole::Root)?;
            reachable(&old)?;
            let c = spec
                .certificate
                .as_ref()
                .ok_or_else(|| bad("[certificate]".into()))?;
            let link_end = checked.not_after.min(old.not_after);
            steps.push(format!(
                "build, lint and sign root {} (CN={}), valid {} .. {}",
                c.name,
                c.common_name,
                rfc3339(checked.not_before),
                rfc3339(checked.not_after)
            ));
            steps.push(format!(
                "link certificates valid until {}: {} certified by {} (NewWithOld) and {} certified by {} (OldWithNew)",
                rfc3339(link_end),
                c.name,
                old.name,
                old.name,
                c.name
            ));
            steps.push(format!("make {} the root for new issuing CAs", c.name));
            checked.issuer = Some(old);
        }
        Kind::Cross => {
            let l = spec.link.as_ref().ok_or_else(|| bad("[link]".into()))?;
            let issuer = find(&l.issuer)?;
            let subject = find(&l.subject)?;
            if issuer.id == subject.id {
                return Err(bad(
                    "link.issuer and link.subject are the same authority".into()
                ));
            }
            reachable(&issuer)?;
            checked.not_after = issuer.not_after.min(subject.not_after);
            steps.push(format!(
                "build, lint and sign a link certificate: {}'s key certified by {}, valid until {}",
                subject.name,
                issuer.name,
                rfc3339(checked.not_after)
            ));
            checked.issuer = Some(issuer);
            checked.subject = Some(subject);
        }
        Kind::Crl => {
            let s = spec.crl.as_ref().ok_or_else(|| bad("[crl]".into()))?;
            let a = find(&s.authority)?;
            reachable(&a)?;
            if s.final_crl {
                if a.role != AuthorityRole::Issuing {
                    return Err(bad(
                        "crl.final: only an issuing CA is retired with a final CRL".into(),
                    ));
                }
                if a.active {
                    return Err(bad(format!(
                        "{} still issues new certificates: roll to a new issuing CA (type = \"intermediate\") first",
                        a.name
                    )));
                }
                let live = ca.store().read(|c| live_certificates(c, a.id, now))?;
                if let Some(first) = live.first() {
                    return Err(bad(format!(
                        "{} certificates issued by {} are still live (first: serial {}, {}, until {}); retire it once all have expired or been revoked",
                        live.len(),
                        a.name,
                        first.0,
                        first.1,
                        rfc3339(first.3)
                    )));
                }
                match (s.retire, &s.archive_location) {
                    (None, _) => {
                        return Err(bad(
                            "crl.final needs crl.retire = \"archive\" or \"destroy\"".into(),
                        ))
                    }
                    (Some(Retire::Archive), None) => {
                        return Err(bad(
                            "crl.retire = \"archive\" needs crl.archive_location (where the key is kept)".into(),
                        ))
                    }
                    (Some(Retire::Destroy), _) => {
                        let key_ref: KeyRef = a.key_ref.parse()?;
                        if matches!(key_ref, KeyRef::YubiKey { .. }) {
                            return Err(bad(format!(
                                "crl.retire = \"destroy\": clear the YubiKey slot of {} with the vendor's tool (ykman piv keys delete) and record it with retire = \"archive\", archive_location = \"destroyed on ...\"",
                                a.key_ref
                            )));
                        }
                    }
                    _ => {}
                }
                steps.push(format!(
                    "sign the final CRL of {} (valid until its notAfter {})",
                    a.name,
                    rfc3339(a.not_after)
                ));
                steps.push(format!(
                    "retire {}: key {}",
                    a.name,
                    match s.retire {
                        Some(Retire::Destroy) => "destroyed".to_string(),
                        _ => format!(
                            "archived ({})",
                            s.archive_location.clone().unwrap_or_default()
                        ),
                    }
                ));
            } else {
                if s.retire.is_some() || s.archive_location.is_some() {
                    return Err(bad("crl.retire needs crl.final = true".into()));
                }
                steps.push(format!("sign a CRL of {}", a.name));
            }
            checked.issuer = Some(a);
        }
    }
    steps.push(format!(
        "write the transcript to {} and the audit log",
        checked.outputs["transcript"].display()
    ));
    checked.steps = steps;
    Ok(checked)
}

/// A ceremony output: absent (never overwritten), in a directory that
/// exists (the home's `ceremonies/` is made when needed).
fn check_output(ca: &Ca, path: &Path) -> Result<(), String> {
    if fs::symlink_metadata(path).is_ok() {
        return Err(format!(
            "{} already exists; a ceremony never overwrites",
            path.display()
        ));
    }
    let parent = path.parent().unwrap_or(Path::new("."));
    if !parent.is_dir() && parent != ca.home().root().join("ceremonies") {
        return Err(format!("directory {} does not exist", parent.display()));
    }
    Ok(())
}

fn check_new_key(ca: &Ca, k: &file::KeySection, all: &[Authority]) -> Result<NewKey, String> {
    let key_ref: KeyRef = k.key_ref.parse().map_err(|e| format!("ref: {e}"))?;
    let algorithm: KeyAlgorithm = k.algorithm.parse().map_err(|e| format!("algorithm: {e}"))?;
    if ca.config().production && key_ref.is_soft() {
        return Err(format!(
            "{}: production = true refuses soft CA keys",
            k.key_ref
        ));
    }
    // The responder key lives on its own token in production (its PIN is
    // used unattended); a new CA key must not join it there either.
    if ca.config().production {
        let token = |r: &str| match r.parse::<KeyRef>() {
            Ok(KeyRef::Pkcs11 { attributes }) => attributes.get("token").cloned(),
            _ => None,
        };
        let responder = ca.config().ocsp.responder_key.clone().unwrap_or_default();
        if let (Some(mine), Some(theirs)) = (token(&k.key_ref), token(&responder)) {
            if mine == theirs {
                return Err(format!(
                    "production: {} is on the OCSP responder key's token {mine:?}; CA keys go on their own token",
                    k.key_ref
                ));
            }
        }
    }
    if all.iter().any(|a| a.key_ref == k.key_ref) {
        return Err(format!(
            "{} is already the key of a CA; a new CA needs a new key",
            k.key_ref
        ));
    }
    let secret = ca.config().key_secret();
    let backend = ca.config().backend_options();
    if k.generate {
        match &key_ref {
            KeyRef::Soft { path } => {
                if fs::symlink_metadata(path).is_ok() {
                    return Err(format!(
                        "{} exists and is never overwritten (generate = false uses it)",
                        path.display()
                    ));
                }
                let parent = path.parent().unwrap_or(Path::new("."));
                if !parent.is_dir() {
                    return Err(format!("directory {} does not exist", parent.display()));
                }
                secret.check().map_err(|e| e.to_string())?;
            }
            KeyRef::Pkcs11 { .. } => match kxca_hsm::open_with(&key_ref, &secret, &backend) {
                Err(kxca_hsm::Error::TokenKeyMissing { .. }) => {}
                Ok(_) => {
                    return Err(format!(
                        "{} already exists on the token (generate = false uses it)",
                        k.key_ref
                    ))
                }
                Err(e) => return Err(format!("token not reachable: {e}")),
            },
            KeyRef::YubiKey { .. } => {
                return Err(
                    "YubiKey keys are made with `kxca yubikey generate` before the ceremony; then set generate = false"
                        .into(),
                )
            }
        }
    } else {
        let signer = kxca_hsm::open_with(&key_ref, &secret, &backend)
            .map_err(|e| format!("{}: {e}", k.key_ref))?;
        if signer.algorithm() != algorithm {
            return Err(format!(
                "{} is an {} key, not {}",
                k.key_ref,
                signer.algorithm(),
                algorithm
            ));
        }
        if let Some(a) = all.iter().find(|a| a.spki == signer.public_key_der()) {
            return Err(format!(
                "{} is the key of CA {} already; a new CA needs a new key",
                k.key_ref, a.name
            ));
        }
    }
    Ok(NewKey {
        key_ref,
        text: k.key_ref.clone(),
        algorithm,
        generate: k.generate,
    })
}

/// Every step, printed as it happens and kept for the audit log and file.
struct Transcript<'a> {
    lines: Vec<String>,
    say: &'a mut dyn FnMut(&str),
}

impl Transcript<'_> {
    fn line(&mut self, s: impl Into<String>) {
        let s = s.into();
        (self.say)(&s);
        self.lines.push(s);
    }
}

/// What a ceremony did.
#[derive(Debug, Clone)]
pub struct Report {
    /// Row id in the `ceremonies` table.
    pub ceremony_id: i64,
    /// The officers whose approvals counted.
    pub officers: Vec<String>,
    /// Every line printed, as recorded in the audit log and the transcript file.
    pub transcript: Vec<String>,
    /// The files written, the transcript last.
    pub outputs: Vec<PathBuf>,
    /// Compromise: the live certificates of the compromised CA (serial,
    /// certificate id, e-mail) that need new ones.
    pub reset: Vec<(String, String, String)>,
}

/// Runs a checked ceremony: the approvals are verified first (a wrong one
/// changes nothing), then each step is printed, done and recorded.
pub fn run(
    ca: &mut Ca,
    checked: Checked,
    approvals: &[Approval],
    actor: &str,
    say: &mut dyn FnMut(&str),
) -> Result<Report, Error> {
    let policy = CeremonyPolicy::load(ca.home())?;
    let officers = verify_approvals(ca.store(), &policy, approvals)?;
    // The check again, right before acting: an output made or a key
    // generated since `check` must still stop the ceremony.
    let again = check(ca, &checked.file)?;
    if again.sha256 != checked.sha256 {
        return Err(Error::Ceremony {
            path: checked.file.clone(),
            message: "the ceremony file changed after it was checked; check it again".into(),
        });
    }
    let mut t = Transcript {
        lines: Vec::new(),
        say,
    };
    let now = ca.clock().now();
    t.line(format!(
        "ceremony {} at {}: {} (sha256 {})",
        checked.spec.kind.as_str(),
        rfc3339(now),
        checked.file.display(),
        checked.sha256
    ));
    if !checked.spec.description.is_empty() {
        t.line(format!("description: {}", checked.spec.description));
    }
    t.line(format!(
        "approved by {} of {} required officers: {}",
        officers.len(),
        policy.required,
        officers.join(", ")
    ));
    // The policy the approvals were counted against, as it was: an edit
    // between ceremonies shows in the record even before the daemon's
    // next start notices it.
    let policy_bytes = fs::read(&policy.path).map_err(|e| Error::io(&policy.path, e))?;
    t.line(format!(
        "officer policy {} (sha256 {})",
        policy.path.display(),
        hex::encode(Sha256::digest(&policy_bytes))
    ));
    let kind = checked.spec.kind.as_str();
    let file_text = checked.file.display().to_string();
    let ceremony_id = ca.store_mut().write(|tx| {
        tx.execute(
            "INSERT INTO ceremonies (kind, file, file_sha256, officers, started_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![kind, file_text, checked.sha256, officers.join(","), now],
        )
        .map_err(sql)?;
        let id = tx.last_insert_rowid();
        for o in &officers {
            audit::append(
                tx,
                now,
                o,
                AuditAction::CeremonyApprove,
                None,
                json!({"ceremony": id, "type": kind, "file_sha256": checked.sha256}),
            )?;
        }
        Ok(id)
    })?;
    if let Some(dir) = checked.outputs["transcript"].parent() {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let mut ctx = Ctx {
        ca,
        checked: &checked,
        ceremony_id,
        actor,
        written: Vec::new(),
        reset: Vec::new(),
    };
    let result = match checked.spec.kind {
        Kind::Key => ctx.key(&mut t),
        Kind::Intermediate => ctx.intermediate(&mut t).map(drop),
        Kind::Root => ctx.root(&mut t),
        Kind::Cross => ctx.cross(&mut t),
        Kind::Crl => ctx.crl(&mut t),
        Kind::Compromise => ctx.compromise(&mut t),
    };
    if let Err(e) = &result {
        t.line(format!("FAILED: {e}"));
    }
    let Ctx {
        ca, written, reset, ..
    } = ctx;
    // The transcript is recorded whether the ceremony finished or not: a
    // half-done ceremony is exactly what the record must show.
    let finished = ca.clock().now();
    let transcript = t.lines.join("\n");
    let ok = result.is_ok();
    ca.store_mut().write(|tx| {
        tx.execute(
            "UPDATE ceremonies SET finished_at = ?1, transcript = ?2 WHERE id = ?3",
            params![finished, transcript, ceremony_id],
        )
        .map_err(sql)?;
        audit::append(
            tx,
            finished,
            actor,
            AuditAction::CeremonyRun,
            None,
            json!({
                "ceremony": ceremony_id,
                "type": kind,
                "file_sha256": checked.sha256,
                "officers": officers,
                "completed": ok,
                "transcript": t.lines,
            }),
        )
    })?;
    write_new(
        &checked.outputs["transcript"],
        format!("{transcript}\n").as_bytes(),
    )?;
    result?;
    let mut outputs = written;
    outputs.push(checked.outputs["transcript"].clone());
    Ok(Report {
        ceremony_id,
        officers,
        transcript: t.lines,
        outputs,
        reset,
    })
}

/// Writes a file that must not exist yet.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".kxca-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| Error::io(path, e))?;
    tmp.persist_noclobber(path)
        .map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

struct Ctx<'a> {
    ca: &'a mut Ca,
    checked: &'a Checked,
    ceremony_id: i64,
    actor: &'a str,
    written: Vec<PathBuf>,
    reset: Vec<(String, String, String)>,
}

impl Ctx<'_> {
    fn output(&mut self, name: &str, bytes: &[u8], t: &mut Transcript<'_>) -> Result<(), Error> {
        let path = self.checked.outputs[name].clone();
        write_new(&path, bytes)?;
        t.line(format!("wrote outputs.{name}: {}", path.display()));
        self.written.push(path);
        Ok(())
    }

    fn new_key(&mut self, t: &mut Transcript<'_>) -> Result<Box<dyn Signer>, Error> {
        let nk = self
            .checked
            .new_key
            .clone()
            .ok_or_else(|| Error::Ceremony {
                path: self.checked.file.clone(),
                message: "no [key] section".into(),
            })?;
        let config = self.ca.config();
        let secret = config.key_secret();
        let backend = config.backend_options();
        let signer = if nk.generate {
            let s = kxca_hsm::generate_with(&nk.key_ref, nk.algorithm, &secret, &backend)?;
            let now = self.ca.clock().now();
            let spki = spki_sha256(s.public_key_der());
            self.ca.store_mut().write(|tx| {
                audit::append(
                    tx,
                    now,
                    self.actor,
                    AuditAction::KeyGenerate,
                    None,
                    json!({"ceremony": self.ceremony_id, "key": nk.text, "algorithm": nk.algorithm.name(), "spki_sha256": spki}),
                )
            })?;
            t.line(format!("generated {} key {}", nk.algorithm, nk.text));
            s
        } else {
            t.line(format!("opened {} key {}", nk.algorithm, nk.text));
            kxca_hsm::open_with(&nk.key_ref, &secret, &backend)?
        };
        t.line(format!(
            "  public key SHA-256 (SPKI): {}",
            spki_sha256(signer.public_key_der())
        ));
        Ok(signer)
    }

    fn union_name(&self) -> String {
        self.ca.config().union.name.clone()
    }

    fn key(&mut self, t: &mut Transcript<'_>) -> Result<(), Error> {
        let key = self.new_key(t)?;
        let pem_text = pem("PUBLIC KEY", key.public_key_der());
        self.output("public_key", pem_text.as_bytes(), t)
    }

    /// The issuing-CA rollover: a new issuing CA under the active root
    /// takes over new issuance at once. Returns it.
    fn intermediate(&mut self, t: &mut Transcript<'_>) -> Result<Authority, Error> {
        let root = self
            .checked
            .issuer
            .clone()
            .ok_or_else(|| self.missing("issuer"))?;
        let root_signer = self.ca.signer(&root)?;
        t.line(format!(
            "opened the key of {} ({})",
            root.name, root.key_ref
        ));
        let key = self.new_key(t)?;
        let c = self
            .checked
            .spec
            .certificate
            .clone()
            .ok_or_else(|| self.missing("certificate"))?;
        let union = self.union_name();
        let subject = x509::name(&[
            DnAttr::Country("JP"),
            DnAttr::Organization(&union),
            DnAttr::CommonName(&c.common_name),
        ])?;
        let der = certs::make(
            t,
            &format!("issuing CA {}", c.name),
            root_signer.as_ref(),
            &root.subject_der,
            &root.key_id,
            &subject,
            key.public_key_der(),
            Some(0),
            self.checked.not_before,
            self.checked.not_after,
        )?;
        let now = self.ca.clock().now();
        let subject_der = x509::subject_der(&der)?;
        let key_id = x509::key_id(key.public_key_der())?;
        let previous = self.ca.authority(AuthorityRole::Issuing).ok();
        let fp = fingerprint(&der);
        let new = self.ca.store_mut().write(|tx| {
            tx.execute(
                "UPDATE authorities SET active = 0 WHERE role = 'issuing' AND active = 1",
                [],
            )
            .map_err(sql)?;
            let id = authorities::insert(
                tx,
                &authorities::NewAuthority {
                    name: &c.name,
                    role: AuthorityRole::Issuing,
                    parent_id: Some(root.id),
                    key_ref: &self
                        .checked
                        .new_key
                        .as_ref()
                        .map(|k| k.text.clone())
                        .unwrap_or_default(),
                    certificate: &der,
                    subject_der: &subject_der,
                    spki: key.public_key_der(),
                    key_id: &key_id,
                    not_before: self.checked.not_before,
                    not_after: self.checked.not_after,
                },
                now,
            )?;
            audit::append(
                tx,
                now,
                self.actor,
                AuditAction::CeremonyStep,
                None,
                json!({
                    "ceremony": self.ceremony_id,
                    "step": "issuing CA rollover",
                    "authority": c.name,
                    "previous": previous.as_ref().map(|p| p.name.clone()),
                    "certificate_sha256": fp,
                    "key": self.checked.new_key.as_ref().map(|k| k.text.clone()),
                }),
            )?;
            authorities::by_id(tx, id)
        })?;
        t.line(format!(
            "{} is the issuing CA for new certificates{}",
            new.name,
            previous
                .as_ref()
                .map(|p| format!(
                    "; {} keeps signing its CRLs and OCSP answers until everything it issued has expired or been revoked",
                    p.name
                ))
                .unwrap_or_default()
        ));
        self.output("certificate", pem("CERTIFICATE", &der).as_bytes(), t)?;
        // The CA certificate under the home's ca/ too, as `kxca init` does
        // for the first one; only when not there yet.
        for (file, bytes) in [
            (
                format!("{}.pem", new.name),
                pem("CERTIFICATE", &der).into_bytes(),
            ),
            (format!("{}.cer", new.name), der.clone()),
        ] {
            let p = self.ca.home().ca_dir().join(file);
            if !self.written.contains(&p) && fs::symlink_metadata(&p).is_err() {
                write_new(&p, &bytes)?;
            }
        }
        // The responder certificate, so that `kxca serve` answers for the
        // new CA at once; the daemon renews it from then on.
        match crate::ocsp::responder_key::open_responder_key(
            self.ca.config(),
            self.ca.home(),
            false,
        ) {
            Ok((responder, responder_ref)) => {
                let policy = self.ca.config().ocsp.clone();
                let row = crate::ocsp::responder_cert::issue_and_record(
                    self.ca.store_mut(),
                    &new,
                    key.as_ref(),
                    responder.as_ref(),
                    &responder_ref,
                    &union,
                    &policy,
                    now,
                    self.actor,
                )?;
                t.line(format!(
                    "OCSP responder certificate for {}: SHA-256 {}",
                    new.name,
                    fingerprint(&row.certificate)
                ));
            }
            Err(e) => t.line(format!(
                "OCSP responder certificate for {} not issued now ({e}); kxca daemon issues it",
                new.name
            )),
        }
        let (_, crl) = self.ca.generate_crl_with(&new, key.as_ref(), self.actor)?;
        t.line(format!(
            "first CRL of {}: number {}, SHA-256 {}",
            new.name,
            crl.number,
            fingerprint(&crl.der)
        ));
        t.line("a running kxca daemon takes up the new issuing key within seconds".to_string());
        Ok(new)
    }

    fn missing(&self, what: &str) -> Error {
        Error::Ceremony {
            path: self.checked.file.clone(),
            message: format!("internal: {what} not resolved by check"),
        }
    }

    /// A new root, and link certificates both ways with the current one.
    fn root(&mut self, t: &mut Transcript<'_>) -> Result<(), Error> {
        let old = self
            .checked
            .issuer
            .clone()
            .ok_or_else(|| self.missing("issuer"))?;
        let old_signer = self.ca.signer(&old)?;
        t.line(format!("opened the key of {} ({})", old.name, old.key_ref));
        let key = self.new_key(t)?;
        let c = self
            .checked
            .spec
            .certificate
            .clone()
            .ok_or_else(|| self.missing("certificate"))?;
        let union = self.union_name();
        let subject = x509::name(&[
            DnAttr::Country("JP"),
            DnAttr::Organization(&union),
            DnAttr::CommonName(&c.common_name),
        ])?;
        let subject_der = x509::enc("subject", &subject)?;
        let key_id = x509::key_id(key.public_key_der())?;
        // Self-signed, with an AKI like every certificate kxca makes: when
        // two roots share a name, the key identifiers pick the right one.
        let root_der = certs::make(
            t,
            &format!("root {}", c.name),
            key.as_ref(),
            &subject_der,
            &key_id,
            &subject,
            key.public_key_der(),
            Some(1),
            self.checked.not_before,
            self.checked.not_after,
        )?;
        // A link must not outlive the root whose key it certifies, nor the
        // one that signs it.
        let link_end = self.checked.not_after.min(old.not_after);
        let now = self.ca.clock().now();
        // Backdated a little for slow clocks, but never before either root's
        // own notBefore (BR 7.1.2.2.1's rule for cross-certificates).
        let link_start = (now - 300).max(old.not_before).max(self.checked.not_before);
        let new_by_old = certs::make(
            t,
            &format!("link {} certified by {} (NewWithOld)", c.name, old.name),
            old_signer.as_ref(),
            &old.subject_der,
            &old.key_id,
            &subject,
            key.public_key_der(),
            Some(1),
            link_start,
            link_end,
        )?;
        let old_subject = der::asn1::Any::from_der(&old.subject_der)
            .map_err(|e| Error::encoding("root subject", e))?;
        let old_by_new = certs::make(
            t,
            &format!("link {} certified by {} (OldWithNew)", old.name, c.name),
            key.as_ref(),
            &subject_der,
            &key_id,
            &old_subject,
            &old.spki,
            Some(1),
            link_start,
            link_end,
        )?;
        let key_text = self
            .checked
            .new_key
            .as_ref()
            .map(|k| k.text.clone())
            .unwrap_or_default();
        let (nb, na) = (self.checked.not_before, self.checked.not_after);
        let new = self.ca.store_mut().write(|tx| {
            tx.execute(
                "UPDATE authorities SET active = 0 WHERE role = 'root' AND active = 1",
                [],
            )
            .map_err(sql)?;
            let id = authorities::insert(
                tx,
                &authorities::NewAuthority {
                    name: &c.name,
                    role: AuthorityRole::Root,
                    parent_id: None,
                    key_ref: &key_text,
                    certificate: &root_der,
                    subject_der: &subject_der,
                    spki: key.public_key_der(),
                    key_id: &key_id,
                    not_before: nb,
                    not_after: na,
                },
                now,
            )?;
            for (issuer, subject, der) in [(old.id, id, &new_by_old), (id, old.id, &old_by_new)] {
                tx.execute(
                    "INSERT INTO link_certificates (issuer_id, subject_id, certificate, not_after, ceremony_id) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![issuer, subject, der, link_end, self.ceremony_id],
                )
                .map_err(sql)?;
            }
            audit::append(
                tx,
                now,
                self.actor,
                AuditAction::CeremonyStep,
                None,
                json!({
                    "ceremony": self.ceremony_id,
                    "step": "root rollover",
                    "authority": c.name,
                    "previous": old.name,
                    "certificate_sha256": fingerprint(&root_der),
                    "link_new_by_old_sha256": fingerprint(&new_by_old),
                    "link_old_by_new_sha256": fingerprint(&old_by_new),
                    "key": key_text,
                }),
            )?;
            authorities::by_id(tx, id)
        })?;
        t.line(format!(
            "{} is the root for new issuing CAs; issuing CAs under {} go on as they are",
            new.name, old.name
        ));
        self.output("certificate", pem("CERTIFICATE", &root_der).as_bytes(), t)?;
        self.output(
            "link_new_by_old",
            pem("CERTIFICATE", &new_by_old).as_bytes(),
            t,
        )?;
        self.output(
            "link_old_by_new",
            pem("CERTIFICATE", &old_by_new).as_bytes(),
            t,
        )?;
        for (file, bytes) in [
            (
                format!("{}.pem", new.name),
                pem("CERTIFICATE", &root_der).into_bytes(),
            ),
            (format!("{}.cer", new.name), root_der.clone()),
        ] {
            let p = self.ca.home().ca_dir().join(file);
            if !self.written.contains(&p) && fs::symlink_metadata(&p).is_err() {
                write_new(&p, &bytes)?;
            }
        }
        Ok(())
    }

    fn cross(&mut self, t: &mut Transcript<'_>) -> Result<(), Error> {
        let issuer = self
            .checked
            .issuer
            .clone()
            .ok_or_else(|| self.missing("issuer"))?;
        let subject = self
            .checked
            .subject
            .clone()
            .ok_or_else(|| self.missing("subject"))?;
        let signer = self.ca.signer(&issuer)?;
        t.line(format!(
            "opened the key of {} ({})",
            issuer.name, issuer.key_ref
        ));
        let subject_name = der::asn1::Any::from_der(&subject.subject_der)
            .map_err(|e| Error::encoding("subject", e))?;
        let now = self.ca.clock().now();
        let start = (now - 300).max(issuer.not_before).max(subject.not_before);
        let path_len = if subject.role == AuthorityRole::Root {
            1
        } else {
            0
        };
        let der = certs::make(
            t,
            &format!("link {} certified by {}", subject.name, issuer.name),
            signer.as_ref(),
            &issuer.subject_der,
            &issuer.key_id,
            &subject_name,
            &subject.spki,
            Some(path_len),
            start,
            self.checked.not_after,
        )?;
        let not_after = self.checked.not_after;
        self.ca.store_mut().write(|tx| {
            tx.execute(
                "INSERT INTO link_certificates (issuer_id, subject_id, certificate, not_after, ceremony_id) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![issuer.id, subject.id, der, not_after, self.ceremony_id],
            )
            .map_err(sql)?;
            audit::append(
                tx,
                now,
                self.actor,
                AuditAction::CeremonyStep,
                None,
                json!({"ceremony": self.ceremony_id, "step": "link certificate", "issuer": issuer.name, "subject": subject.name, "certificate_sha256": fingerprint(&der)}),
            )
        })?;
        self.output("certificate", pem("CERTIFICATE", &der).as_bytes(), t)
    }

    fn crl(&mut self, t: &mut Transcript<'_>) -> Result<(), Error> {
        let a = self
            .checked
            .issuer
            .clone()
            .ok_or_else(|| self.missing("issuer"))?;
        let s = self
            .checked
            .spec
            .crl
            .clone()
            .ok_or_else(|| self.missing("crl"))?;
        let signer = self.ca.signer(&a)?;
        t.line(format!("opened the key of {} ({})", a.name, a.key_ref));
        let now = self.ca.clock().now();
        let next_update = if s.final_crl {
            a.not_after
        } else {
            match s.next_update_days {
                Some(d) => now + i64::from(d) * 86_400,
                None => now + i64::from(self.ca.config().crl.validity_hours) * 3600,
            }
        };
        let der = sign_crl(
            self.ca,
            &a,
            signer.as_ref(),
            now,
            next_update,
            self.actor,
            t,
        )?;
        self.output("crl", pem("X509 CRL", &der).as_bytes(), t)?;
        if s.final_crl {
            let disposal = match s.retire {
                Some(Retire::Destroy) => {
                    let key_ref: KeyRef = a.key_ref.parse()?;
                    drop(signer);
                    match &key_ref {
                        KeyRef::Soft { path } => destroy_soft_key(path)?,
                        _ => kxca_hsm::destroy_with(
                            &key_ref,
                            &self.ca.config().key_secret(),
                            &self.ca.config().backend_options(),
                            &a.spki,
                        )?,
                    }
                    format!("destroyed ({})", a.key_ref)
                }
                _ => format!(
                    "archived: {}",
                    s.archive_location.clone().unwrap_or_default()
                ),
            };
            self.ca.store_mut().write(|tx| {
                tx.execute(
                    "INSERT INTO authority_states (authority_id, retired_at, key_disposal) VALUES (?1, ?2, ?3)
                     ON CONFLICT (authority_id) DO UPDATE SET retired_at = ?2, key_disposal = ?3",
                    params![a.id, now, disposal],
                )
                .map_err(sql)?;
                audit::append(
                    tx,
                    now,
                    self.actor,
                    AuditAction::AuthorityRetire,
                    None,
                    json!({"ceremony": self.ceremony_id, "authority": a.name, "key": disposal, "final_crl_sha256": fingerprint(&der)}),
                )
            })?;
            t.line(format!("{} retired; key {disposal}", a.name));
        }
        Ok(())
    }

    fn compromise(&mut self, t: &mut Transcript<'_>) -> Result<(), Error> {
        let old = self
            .checked
            .subject
            .clone()
            .ok_or_else(|| self.missing("subject"))?;
        let section = self
            .checked
            .spec
            .compromise
            .clone()
            .ok_or_else(|| self.missing("compromise"))?;
        let reason: RevocationReason = section.reason.parse()?;
        let parent_id = old.parent_id.ok_or_else(|| self.missing("parent"))?;
        let parent = self.ca.store().read(|c| authorities::by_id(c, parent_id))?;
        let parent_signer = self.ca.signer(&parent)?;
        t.line(format!(
            "opened the key of {} ({})",
            parent.name, parent.key_ref
        ));
        let now = self.ca.clock().now();
        // The revocation first, in its own transaction: whatever happens
        // next, the compromised CA is revoked.
        self.ca.store_mut().write(|tx| {
            tx.execute(
                "INSERT INTO authority_states (authority_id, revoked_at, revocation_reason) VALUES (?1, ?2, ?3)
                 ON CONFLICT (authority_id) DO UPDATE SET revoked_at = ?2, revocation_reason = ?3",
                params![old.id, now, reason.code()],
            )
            .map_err(sql)?;
            audit::append(
                tx,
                now,
                self.actor,
                AuditAction::AuthorityRevoke,
                None,
                json!({"ceremony": self.ceremony_id, "authority": old.name, "reason": reason.name(), "by": parent.name}),
            )
        })?;
        t.line(format!("{} revoked ({})", old.name, reason.name()));
        let next_update = now + i64::from(section.root_crl_days) * 86_400;
        let der = sign_crl(
            self.ca,
            &parent,
            parent_signer.as_ref(),
            now,
            next_update,
            self.actor,
            t,
        )?;
        self.output("crl", pem("X509 CRL", &der).as_bytes(), t)?;
        drop(parent_signer);
        let new = self.intermediate(t)?;
        let live = self
            .ca
            .store()
            .read(|c| live_certificates(c, old.id, now))?;
        let mut list = String::new();
        for (serial, id, email, not_after) in &live {
            list.push_str(
                &json!({"serial": serial, "certificate_id": id, "email": email, "not_after": rfc3339(*not_after), "old_issuer": old.name, "new_issuer": new.name})
                    .to_string(),
            );
            list.push('\n');
            self.reset.push((serial.clone(), id.clone(), email.clone()));
        }
        let serials: Vec<&str> = live.iter().map(|l| l.0.as_str()).collect();
        self.ca.store_mut().write(|tx| {
            audit::append(
                tx,
                now,
                self.actor,
                AuditAction::CeremonyStep,
                None,
                json!({"ceremony": self.ceremony_id, "step": "reset list", "authority": old.name, "count": live.len(), "serials": serials}),
            )
        })?;
        t.line(format!(
            "{} live certificates of {} need new ones (reset flow)",
            live.len(),
            old.name
        ));
        self.output("reset_list", list.as_bytes(), t)
    }
}

/// Overwrites a soft key file before removing it: the encrypted key must
/// not stay readable in the file's old blocks by name.
fn destroy_soft_key(path: &Path) -> Result<(), Error> {
    use std::io::Write;
    let len = fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(&vec![0u8; len as usize])
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(path, e))?;
    drop(f);
    fs::remove_file(path).map_err(|e| Error::io(path, e))
}

/// Signs a CRL of `a` in a ceremony: an issuing CA's lists its revoked
/// certificates; a root's lists the issuing CAs revoked at it.
fn sign_crl(
    ca: &mut Ca,
    a: &Authority,
    signer: &dyn Signer,
    now: i64,
    next_update: i64,
    actor: &str,
    t: &mut Transcript<'_>,
) -> Result<Vec<u8>, Error> {
    let (number, entries) = ca.store().read(|c| {
        let number = crls::next_number(c, a.id)?;
        let mut entries = Vec::new();
        match a.role {
            AuthorityRole::Issuing => {
                revocations::for_each_revoked(c, a.id, i64::MIN, |serial, at, reason| {
                    entries.push(RevokedEntry {
                        serial: hex::decode(serial)
                            .map_err(|e| Error::encoding("stored serial", e))?,
                        revoked_at: at,
                        reason,
                    });
                    Ok(())
                })?;
            }
            AuthorityRole::Root => {
                for (child, state) in revoked_children(c, a.id)? {
                    entries.push(RevokedEntry {
                        serial: certificate_serial(&child.certificate)?,
                        revoked_at: state.0,
                        reason: state.1 as u8,
                    });
                }
            }
        }
        Ok((number, entries))
    })?;
    let input = CrlInput {
        issuer_der: &a.subject_der,
        authority_key_id: &a.key_id,
        number: number as u64,
        this_update: now,
        next_update,
        signature_algorithm: signer.algorithm().signature_algorithm(),
    };
    let out = crl::build(&input, entries, |tbs| sign_checked(signer, tbs))?;
    crl::check(&out.der, &input, out.entries, signer.algorithm(), &a.spki)?;
    ca.store_mut().write(|tx| {
        if crls::next_number(tx, a.id)? != number {
            return Err(Error::Database {
                path: PathBuf::new(),
                message: format!("CRL number {number} of {} was taken meanwhile", a.name),
            });
        }
        crls::insert(
            tx,
            a.id,
            number,
            out.this_update,
            out.next_update,
            out.entries as i64,
            &out.der,
        )?;
        audit::append(
            tx,
            now,
            actor,
            AuditAction::CrlSign,
            None,
            json!({"authority": a.name, "number": number, "entries": out.entries, "sha256": fingerprint(&out.der)}),
        )
    })?;
    ca.write_crl_files_for(a)?;
    t.line(format!(
        "CRL of {}: number {}, {} entries, next update {}, SHA-256 {}",
        a.name,
        number,
        out.entries,
        rfc3339(next_update),
        fingerprint(&out.der)
    ));
    Ok(out.der)
}

/// An issuing CA revoked at its root: (authority, (revoked_at, reason)).
type RevokedChild = (Authority, (i64, i64));

/// Issuing CAs of a root revoked at it.
fn revoked_children(conn: &Snapshot<'_>, root_id: i64) -> Result<Vec<RevokedChild>, Error> {
    let states = authority_states(conn)?;
    let mut out = Vec::new();
    for a in authorities::all(conn)? {
        if a.parent_id != Some(root_id) {
            continue;
        }
        if let Some(s) = states.get(&a.id) {
            if let (Some(at), Some(reason)) = (s.revoked_at, s.revocation_reason) {
                out.push((a, (at, reason)));
            }
        }
    }
    Ok(out)
}

fn certificate_serial(der: &[u8]) -> Result<Vec<u8>, Error> {
    let cert =
        x509_cert::Certificate::from_der(der).map_err(|e| Error::encoding("CA certificate", e))?;
    let bytes = cert.tbs_certificate().serial_number().as_bytes();
    // The CRL entry takes the magnitude: a leading 0x00 sign octet is not part of it.
    Ok(match bytes {
        [0, rest @ ..] if !rest.is_empty() => rest.to_vec(),
        b => b.to_vec(),
    })
}

/// A link certificate as stored: issuer and subject authority ids, its
/// DER, and when its ceremony ran.
pub type LinkCertificate = (i64, i64, Vec<u8>, i64);

/// The link certificates made so far, oldest first.
pub fn link_certificates(conn: &Snapshot<'_>) -> Result<Vec<LinkCertificate>, Error> {
    let mut stmt = conn
        .prepare(
            "SELECT l.issuer_id, l.subject_id, l.certificate, c.started_at FROM link_certificates l
             JOIN ceremonies c ON c.id = l.ceremony_id ORDER BY l.id",
        )
        .map_err(sql)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}

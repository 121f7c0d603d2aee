//! The check: a ceremony file validated completely before anything is touched.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use kxca_hsm::{KeyAlgorithm, KeyRef};
use sha2::{Digest, Sha256};

use super::{authority_states, file, live_certificates};
use super::{enrolled, CeremonyFile, CeremonyPolicy, Kind, Retire};
use crate::clock::rfc3339;
use crate::{Authority, AuthorityRole, Ca, Error, RevocationReason};

/// The new key of a ceremony, checked.
#[derive(Debug, Clone)]
pub(super) struct NewKey {
    pub(super) key_ref: KeyRef,
    pub(super) text: String,
    pub(super) algorithm: KeyAlgorithm,
    pub(super) generate: bool,
}

/// A checked ceremony: what [`run`](fn@super::run) will do, resolved against the home.
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
    pub(super) outputs: HashMap<&'static str, PathBuf>,
    pub(super) not_before: i64,
    pub(super) not_after: i64,
    /// The signing authority (intermediate, compromise: the active root;
    /// root: the current root; cross: the link's issuer; crl: the CRL's).
    pub(super) issuer: Option<Authority>,
    /// cross: the certified authority; compromise: the compromised one.
    pub(super) subject: Option<Authority>,
    pub(super) new_key: Option<NewKey>,
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

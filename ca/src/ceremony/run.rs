//! The run: approvals, the transcript, and the context each step works in.

use std::fs;
use std::path::{Path, PathBuf};

use rusqlite::params;
use serde_json::json;
use sha2::{Digest, Sha256};

use der::asn1::Any;
use kxca_hsm::Signer;

use super::check::{check, Checked};
use super::file::CertificateSection;
use super::{verify_approvals, Approval, CeremonyPolicy, Kind};
use crate::clock::rfc3339;
use crate::store::{audit, sql};
use crate::x509::{self, DnAttr};
use crate::Authority;
use crate::{AuditAction, Ca, Error};

/// Every step, printed as it happens and kept for the audit log and file.
pub(super) struct Transcript<'a> {
    lines: Vec<String>,
    say: &'a mut dyn FnMut(&str),
}

impl Transcript<'_> {
    pub(super) fn line(&mut self, s: impl Into<String>) {
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
pub(super) fn write_new(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    crate::ca::synced_temp(path, bytes)?
        .persist_noclobber(path)
        .map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

pub(super) struct Ctx<'a> {
    pub(super) ca: &'a mut Ca,
    pub(super) checked: &'a Checked,
    pub(super) ceremony_id: i64,
    pub(super) actor: &'a str,
    pub(super) written: Vec<PathBuf>,
    pub(super) reset: Vec<(String, String, String)>,
}

impl Ctx<'_> {
    pub(super) fn output(
        &mut self,
        name: &str,
        bytes: &[u8],
        t: &mut Transcript<'_>,
    ) -> Result<(), Error> {
        let path = self.checked.outputs[name].clone();
        write_new(&path, bytes)?;
        t.line(format!("wrote outputs.{name}: {}", path.display()));
        self.written.push(path);
        Ok(())
    }

    pub(super) fn union_name(&self) -> String {
        self.ca.config().union.name.clone()
    }

    pub(super) fn missing(&self, what: &str) -> Error {
        Error::Ceremony {
            path: self.checked.file.clone(),
            message: format!("internal: {what} not resolved by check"),
        }
    }

    /// The signing authority `check` resolved.
    pub(super) fn issuer(&self) -> Result<Authority, Error> {
        self.checked
            .issuer
            .clone()
            .ok_or_else(|| self.missing("issuer"))
    }

    /// Opens an authority's key, saying so in the transcript.
    pub(super) fn open_key(
        &self,
        a: &Authority,
        t: &mut Transcript<'_>,
    ) -> Result<Box<dyn Signer>, Error> {
        let signer = self.ca.signer(a)?;
        t.line(format!("opened the key of {} ({})", a.name, a.key_ref));
        Ok(signer)
    }

    /// The `[certificate]` section of a new CA and its subject name:
    /// C=JP, O=the union, CN=common_name.
    pub(super) fn new_ca_subject(&self) -> Result<(CertificateSection, Any), Error> {
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
        Ok((c, subject))
    }
}

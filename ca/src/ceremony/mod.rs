//! Key ceremonies (docs/CEREMONIES.md): a ceremony file says what to create
//! or sign; [`check`] validates all of it before anything is touched;
//! [`run`] needs M of N security officers' approvals, prints every step,
//! builds each certificate first as a throwaway signed by a temporary key,
//! lints it, signs the real one and checks it carries the same
//! to-be-signed bytes, and records a transcript with every fingerprint in
//! the audit log and a file.

mod certs;
mod check;
mod compromise;
mod crl_step;
mod file;
mod intermediate;
mod keys;
pub mod officers;
mod root;
mod run;

use std::collections::HashMap;

use rusqlite::params;
use sha2::{Digest, Sha256};

use crate::store::{sql, Migration, Snapshot};
use crate::Error;

pub use check::{check, Checked};
pub use file::{CeremonyFile, Kind, Retire};
pub use officers::{enrol, enrolled, verify_approvals, Approval, CeremonyPolicy};
pub use run::{run, Report};

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

//! The responder's tables (migration component "ocsp"): its certificates and
//! the pre-signed responses. Nothing else writes to them.

use std::collections::HashMap;

use rusqlite::{params, OptionalExtension};

use crate::store::{Snapshot, Tx};

use super::asn1::HashAlg;
use super::response::Status;
use crate::store::{sql, Migration};
use crate::Error;

/// The OCSP tables (responder certificates, pre-signed responses), migrated as component "ocsp".
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "OCSP responder certificates and pre-signed responses",
    sql: r#"
CREATE TABLE ocsp_responder_certs (
    id            INTEGER PRIMARY KEY,
    authority_id  INTEGER NOT NULL REFERENCES authorities(id),
    key_ref       TEXT NOT NULL,
    serial        TEXT NOT NULL UNIQUE,
    certificate   BLOB NOT NULL,
    not_before    INTEGER NOT NULL,
    not_after     INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE TABLE ocsp_responses (
    authority_id  INTEGER NOT NULL REFERENCES authorities(id),
    hash_alg      TEXT NOT NULL CHECK (hash_alg IN ('sha1', 'sha256')),
    serial        TEXT NOT NULL,
    status        TEXT NOT NULL,
    responder     INTEGER NOT NULL REFERENCES ocsp_responder_certs(id),
    this_update   INTEGER NOT NULL,
    next_update   INTEGER NOT NULL,
    der           BLOB NOT NULL,
    PRIMARY KEY (authority_id, hash_alg, serial)
);
"#,
}];

impl HashAlg {
    /// The stored name of the CertID hash algorithm.
    pub fn as_str(self) -> &'static str {
        match self {
            HashAlg::Sha1 => "sha1",
            HashAlg::Sha256 => "sha256",
        }
    }
}

/// Points responder certificates made for a soft key under `from` at the
/// same key under `to` (a restored home, crate::backup), so the public role
/// finds its certificate for the key it opens. Returns the rows changed.
pub(crate) fn relocate_soft_keys(tx: &Tx<'_>, from: &str, to: &str) -> Result<usize, Error> {
    let exists = tx
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ocsp_responder_certs'",
            [],
            |_| Ok(()),
        )
        .optional()
        .map_err(sql)?
        .is_some();
    if !exists {
        return Ok(0);
    }
    tx.execute(
        "UPDATE ocsp_responder_certs SET key_ref = 'soft:' || ?2 || substr(key_ref, length(?1) + 6)
         WHERE substr(key_ref, 1, length(?1) + 6) = 'soft:' || ?1 || '/'",
        params![from, to],
    )
    .map_err(sql)
}

/// A responder certificate as stored.
#[derive(Debug, Clone)]
pub struct ResponderCertRow {
    /// Row id, which pre-signed responses refer to.
    pub id: i64,
    /// The responder key's reference.
    pub key_ref: String,
    /// The responder certificate, DER.
    pub certificate: Vec<u8>,
    /// When it expires, Unix seconds.
    pub not_after: i64,
}

/// The newest responder certificate of an authority.
pub fn latest_responder_cert(
    conn: &Snapshot<'_>,
    authority_id: i64,
) -> Result<Option<ResponderCertRow>, Error> {
    conn.query_row(
        "SELECT id, key_ref, certificate, not_after FROM ocsp_responder_certs
         WHERE authority_id = ?1 ORDER BY not_after DESC, id DESC LIMIT 1",
        [authority_id],
        |r| {
            Ok(ResponderCertRow {
                id: r.get(0)?,
                key_ref: r.get(1)?,
                certificate: r.get(2)?,
                not_after: r.get(3)?,
            })
        },
    )
    .optional()
    .map_err(sql)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn insert_responder_cert(
    tx: &Tx<'_>,
    authority_id: i64,
    key_ref: &str,
    serial: &str,
    certificate: &[u8],
    not_before: i64,
    not_after: i64,
    now: i64,
) -> Result<i64, Error> {
    tx.execute(
        "INSERT INTO ocsp_responder_certs (authority_id, key_ref, serial, certificate, not_before, not_after, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![authority_id, key_ref, serial, certificate, not_before, not_after, now],
    )
    .map_err(sql)?;
    Ok(tx.last_insert_rowid())
}

/// One pre-signed response row.
#[derive(Debug, Clone)]
pub struct ResponseRow {
    /// The issuing CA the certificate belongs to.
    pub authority_id: i64,
    /// The CertID hash algorithm the response answers for.
    pub hash: HashAlg,
    /// The certificate's serial, hex.
    pub serial: String,
    /// What the response says, as `Status::fingerprint`, to tell a stale one.
    pub status: String,
    /// The responder certificate (row id) that signed it.
    pub responder: i64,
    /// thisUpdate, Unix seconds.
    pub this_update: i64,
    /// nextUpdate, Unix seconds.
    pub next_update: i64,
    /// The signed OCSPResponse, DER.
    pub der: Vec<u8>,
}

pub(crate) fn upsert_response(tx: &Tx<'_>, r: &ResponseRow) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO ocsp_responses (authority_id, hash_alg, serial, status, responder, this_update, next_update, der)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (authority_id, hash_alg, serial) DO UPDATE SET
           status = excluded.status, responder = excluded.responder, this_update = excluded.this_update,
           next_update = excluded.next_update, der = excluded.der",
        params![r.authority_id, r.hash.as_str(), r.serial, r.status, r.responder, r.this_update, r.next_update, r.der],
    )
    .map_err(sql)?;
    Ok(())
}

/// Drops responses of certificates that have expired (nothing to answer for).
pub(crate) fn delete_expired(tx: &Tx<'_>, now: i64) -> Result<usize, Error> {
    tx.execute(
        "DELETE FROM ocsp_responses WHERE (authority_id, serial) IN
           (SELECT authority_id, serial FROM certificates WHERE not_after < ?1)",
        [now],
    )
    .map_err(sql)
}

/// Every pre-signed response, for the responder to load at start.
pub fn all_responses(conn: &Snapshot<'_>) -> Result<Vec<ResponseRow>, Error> {
    let mut stmt = conn
        .prepare("SELECT authority_id, hash_alg, serial, status, responder, this_update, next_update, der FROM ocsp_responses")
        .map_err(sql)?;
    let rows = stmt
        .query_map([], |r| {
            let alg: String = r.get(1)?;
            Ok(ResponseRow {
                authority_id: r.get(0)?,
                hash: if alg == "sha256" {
                    HashAlg::Sha256
                } else {
                    HashAlg::Sha1
                },
                serial: r.get(2)?,
                status: r.get(3)?,
                responder: r.get(4)?,
                this_update: r.get(5)?,
                next_update: r.get(6)?,
                der: r.get(7)?,
            })
        })
        .map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}

/// Issued certificates by authority id, then serial bytes.
pub type Statuses = HashMap<i64, HashMap<Box<[u8]>, KnownCert>>;

/// A certificate's status as the store says it, with its expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownCert {
    /// What the store says about the certificate now.
    pub status: Status,
    /// When it expires, Unix seconds.
    pub not_after: i64,
}

/// Every issued certificate of every authority: (authority, serial bytes) →
/// status. Pending and failed rows are left out, so they answer `unknown`.
pub fn issued_statuses(conn: &Snapshot<'_>) -> Result<Statuses, Error> {
    let mut stmt = conn
        .prepare(
            "SELECT c.authority_id, c.serial, c.not_after, r.revoked_at, r.reason
             FROM certificates c LEFT JOIN revocations r ON r.certificate = c.id
             WHERE c.state = 'issued'",
        )
        .map_err(sql)?;
    let mut rows = stmt.query([]).map_err(sql)?;
    let mut out: Statuses = HashMap::new();
    while let Some(r) = rows.next().map_err(sql)? {
        let authority: i64 = r.get(0).map_err(sql)?;
        let serial: String = r.get(1).map_err(sql)?;
        let not_after: i64 = r.get(2).map_err(sql)?;
        let revoked_at: Option<i64> = r.get(3).map_err(sql)?;
        let reason: Option<i64> = r.get(4).map_err(sql)?;
        let bytes = hex::decode(&serial).map_err(|e| Error::encoding("stored serial", e))?;
        let status = match revoked_at {
            Some(at) => Status::Revoked {
                at,
                // revocations.reason is NOT NULL: a revoked_at comes with it.
                reason: crate::store::revocations::stored_reason(reason.unwrap_or(0))?.code(),
            },
            None => Status::Good,
        };
        out.entry(authority)
            .or_default()
            .insert(bytes.into_boxed_slice(), KnownCert { status, not_after });
    }
    Ok(out)
}

/// SQLite's counter of commits by other connections: cheap to poll.
pub fn data_version(conn: &Snapshot<'_>) -> Result<i64, Error> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
        .map_err(sql)
}

use rusqlite::params;

use super::Store;
use crate::Error;

/// One numbered schema change. Never edit a released migration: add one.
pub struct Migration {
    /// Its number within its component, from 1 up.
    pub version: i64,
    /// What it does, recorded in `schema_migrations`.
    pub description: &'static str,
    /// The SQL it runs, in one transaction.
    pub sql: &'static str,
}

pub(super) const CA: &[Migration] = &[
    Migration {
    version: 1,
    description: "authorities, certificates, revocations, CRLs, audit",
    sql: r#"
CREATE TABLE authorities (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('root', 'issuing')),
    parent_id     INTEGER REFERENCES authorities(id),
    key_ref       TEXT NOT NULL,
    certificate   BLOB NOT NULL,
    subject_der   BLOB NOT NULL,
    spki          BLOB NOT NULL,
    key_id        BLOB NOT NULL,
    not_before    INTEGER NOT NULL,
    not_after     INTEGER NOT NULL,
    active        INTEGER NOT NULL CHECK (active IN (0, 1)),
    created_at    INTEGER NOT NULL
);
CREATE UNIQUE INDEX one_active_issuing ON authorities(role) WHERE active = 1;

CREATE TABLE certificates (
    id             INTEGER PRIMARY KEY,
    serial         TEXT NOT NULL UNIQUE,
    authority_id   INTEGER NOT NULL REFERENCES authorities(id),
    profile        TEXT NOT NULL,
    certificate_id TEXT NOT NULL,
    subject        TEXT NOT NULL,
    email          TEXT NOT NULL,
    holder         TEXT NOT NULL,
    key_algorithm  TEXT NOT NULL,
    not_before     INTEGER NOT NULL,
    not_after      INTEGER NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('pending', 'issued', 'failed')),
    tbs            BLOB NOT NULL,
    der            BLOB,
    created_at     INTEGER NOT NULL,
    issued_at      INTEGER,
    CHECK ((state = 'issued') = (der IS NOT NULL))
);
CREATE INDEX certificates_by_id ON certificates(certificate_id);
CREATE INDEX certificates_by_expiry ON certificates(not_after);

CREATE TABLE revocations (
    certificate  INTEGER PRIMARY KEY REFERENCES certificates(id),
    revoked_at   INTEGER NOT NULL,
    reason       INTEGER NOT NULL,
    actor        TEXT NOT NULL
);

CREATE TABLE crls (
    authority_id  INTEGER NOT NULL REFERENCES authorities(id),
    number        INTEGER NOT NULL,
    this_update   INTEGER NOT NULL,
    next_update   INTEGER NOT NULL,
    entries       INTEGER NOT NULL,
    der           BLOB NOT NULL,
    PRIMARY KEY (authority_id, number)
);

CREATE TABLE audit (
    id       INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    serial   TEXT,
    detail   TEXT NOT NULL
);
"#,
    },
    Migration {
        version: 2,
        description: "certificates: issuing process and PKCS#12 destination, to resolve rows a crash left pending",
        sql: r#"
ALTER TABLE certificates ADD COLUMN owner TEXT;
ALTER TABLE certificates ADD COLUMN pkcs12_path TEXT;
CREATE INDEX certificates_pending ON certificates(state) WHERE state = 'pending';
"#,
    },
    Migration {
        version: 3,
        description: "audit record: Merkle leaves and signed checkpoints",
        sql: r#"
ALTER TABLE audit ADD COLUMN leaf_index INTEGER;
ALTER TABLE audit ADD COLUMN leaf BLOB;
CREATE UNIQUE INDEX audit_by_leaf ON audit(leaf_index);
-- Events older than this migration get their leaves once, at the next open.
CREATE TABLE audit_backfill (upto INTEGER NOT NULL);
INSERT INTO audit_backfill SELECT COALESCE(MAX(id), 0) FROM audit;
CREATE TABLE audit_checkpoints (
    size       INTEGER PRIMARY KEY,
    root       BLOB NOT NULL,
    note       TEXT NOT NULL,
    signed_at  INTEGER NOT NULL,
    -- DER SPKI of the signing key, for the keyless public role to publish
    -- (verification never trusts it: docs/AUDIT.md).
    public_key BLOB NOT NULL
);
"#,
    },
    Migration {
        version: 4,
        description: "enrolments (one-time certificate pickups) and pickup requests",
        sql: r#"
-- One holder may pick up one certificate. `state`: open (waiting for the
-- contact, or locked/expired: see code_expires_at, locked_at), claimed (the
-- code was used, a request is with the daemon), issued, cancelled. The
-- code is kept only as an Argon2id PHC string.
CREATE TABLE enrolments (
    id              INTEGER PRIMARY KEY,
    certificate_id  TEXT NOT NULL,
    profile         TEXT NOT NULL,
    holder          TEXT NOT NULL,
    key_algorithm   TEXT,
    supersedes      TEXT,
    state           TEXT NOT NULL CHECK (state IN ('open', 'claimed', 'issued', 'cancelled')),
    code_hash       TEXT,
    code_minted_at  INTEGER,
    code_expires_at INTEGER,
    tries           INTEGER NOT NULL DEFAULT 0,
    locked_at       INTEGER,
    opened_at       INTEGER NOT NULL,
    opened_by       TEXT NOT NULL,
    closed_at       INTEGER,
    serial          TEXT,
    CHECK ((code_hash IS NULL) = (code_expires_at IS NULL)),
    CHECK ((state = 'issued') = (serial IS NOT NULL))
);
CREATE UNIQUE INDEX one_live_enrolment ON enrolments(certificate_id)
    WHERE state IN ('open', 'claimed');

-- A public key the public role generated at pickup, for the daemon to
-- sign. `state`: pending, signed, abandoned (the public role gave up or
-- the enrolment was cancelled: never signed), failed.
CREATE TABLE pickup_requests (
    id             INTEGER PRIMARY KEY,
    enrolment_id   INTEGER NOT NULL REFERENCES enrolments(id),
    public_key     BLOB NOT NULL,
    key_algorithm  TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('pending', 'signed', 'abandoned', 'failed')),
    created_at     INTEGER NOT NULL,
    done_at        INTEGER,
    serial         TEXT,
    error          TEXT,
    CHECK ((state = 'signed') = (serial IS NOT NULL))
);
CREATE UNIQUE INDEX one_pending_request ON pickup_requests(enrolment_id)
    WHERE state = 'pending';
CREATE INDEX pickup_requests_pending ON pickup_requests(state) WHERE state = 'pending';
"#,
    },
];

/// The newest applied migration of every component.
pub(crate) fn versions(
    conn: &super::Snapshot<'_>,
) -> Result<std::collections::BTreeMap<String, i64>, Error> {
    let mut stmt = conn
        .prepare("SELECT component, MAX(version) FROM schema_migrations GROUP BY component")
        .map_err(super::sql)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(super::sql)?;
    rows.collect::<Result<_, _>>().map_err(super::sql)
}

pub(super) fn apply(
    store: &mut Store,
    component: &str,
    migrations: &[Migration],
) -> Result<(), Error> {
    let e = |s: &Store, err| s.err(err);
    store
        .conn
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                component   TEXT NOT NULL,
                version     INTEGER NOT NULL,
                description TEXT NOT NULL,
                applied_at  INTEGER NOT NULL,
                PRIMARY KEY (component, version))",
        )
        .map_err(|err| e(store, err))?;
    let current: i64 = store
        .conn
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE component = ?1",
            [component],
            |r| r.get(0),
        )
        .map_err(|err| e(store, err))?;
    let newest = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    if current > newest {
        return Err(Error::Database {
            path: store.path.clone(),
            message: format!(
                "schema of {component} is at version {current}, newer than this kxca knows ({newest}); upgrade kxca"
            ),
        });
    }
    for m in migrations.iter().filter(|m| m.version > current) {
        let now = crate::Clock::system().now();
        let path = store.path.clone();
        let tx = store.conn.transaction().map_err(|err| Error::Database {
            path: path.clone(),
            message: err.to_string(),
        })?;
        tx.execute_batch(m.sql)
            .and_then(|_| {
                tx.execute(
                    "INSERT INTO schema_migrations (component, version, description, applied_at) VALUES (?1, ?2, ?3, ?4)",
                    params![component, m.version, m.description, now],
                )
            })
            .and_then(|_| tx.commit())
            .map_err(|err| Error::Database {
                path: path.clone(),
                message: format!("migration {component} {}: {err}", m.version),
            })?;
    }
    Ok(())
}

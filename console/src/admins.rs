//! Console admin accounts and their sessions: the `console_admins` and
//! `console_sessions` tables (component "console"). Passwords are Argon2id
//! PHC strings; TOTP secrets are stored sealed with the console key (never
//! in clear, see `key.rs`); a session is known by the SHA-256 of its random
//! id, so a copy of the database opens no session.

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use kxca_ca::store::{Migration, Snapshot, Tx};
use kxca_ca::{AuditAction, Error, Store};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::key::ConsoleKey;
use crate::ConsoleConfig;

/// The component name of the schema.
pub const COMPONENT: &str = "console";

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "console admins and sessions",
        sql: r#"
CREATE TABLE console_admins (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'officer', 'auditor')),
    password_phc  TEXT NOT NULL,
    totp_nonce    BLOB NOT NULL,
    totp_sealed   BLOB NOT NULL,
    failures      INTEGER NOT NULL DEFAULT 0,
    locked_until  INTEGER,
    last_step     INTEGER,
    created_at    INTEGER NOT NULL
);
CREATE TABLE console_sessions (
    id_hash     TEXT PRIMARY KEY,
    admin_id    INTEGER NOT NULL REFERENCES console_admins(id),
    created_at  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    ended_at    INTEGER
);
"#,
    },
    Migration {
        version: 2,
        description: "console admins: second factor TOTP or client certificate",
        // factor 'certificate': the admin logs in with their password and the
        // client certificate cert_serial (SHA-256 cert_sha256) over mutual TLS.
        sql: r#"
ALTER TABLE console_admins ADD COLUMN factor TEXT NOT NULL DEFAULT 'totp' CHECK (factor IN ('totp', 'certificate'));
ALTER TABLE console_admins ADD COLUMN cert_serial TEXT;
ALTER TABLE console_admins ADD COLUMN cert_sha256 TEXT;
"#,
    },
];

/// The schema, applied as component "console".
pub fn migrations() -> &'static [Migration] {
    MIGRATIONS
}

/// What an admin may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Applications and accounts.
    Admin,
    /// What an admin does, plus the ceremonies' status.
    Officer,
    /// Reads everything, changes nothing.
    Auditor,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Officer => "officer",
            Role::Auditor => "auditor",
        }
    }

    /// The role of a stored or typed name.
    pub fn parse(s: &str) -> Option<Role> {
        [Role::Admin, Role::Officer, Role::Auditor]
            .into_iter()
            .find(|r| r.as_str() == s)
    }

    /// The role's name as the console shows it.
    pub fn label_ja(self) -> &'static str {
        match self {
            Role::Admin => "管理者",
            Role::Officer => "セキュリティ責任者",
            Role::Auditor => "監査担当(閲覧のみ)",
        }
    }

    /// Whether the role may change anything (approve, reject, ...).
    pub fn may_act(self) -> bool {
        !matches!(self, Role::Auditor)
    }
}

/// What `kxca admin add` hands the new admin, once.
#[derive(Debug, Serialize)]
pub struct NewAdmin {
    /// The admin's name.
    pub name: String,
    /// The role.
    pub role: Role,
    /// The initial password (shown once, stored only as its hash).
    pub password: String,
    /// The `otpauth://` URI an authenticator app reads (as a QR code).
    pub otpauth: String,
}

fn sql(e: rusqlite::Error) -> Error {
    kxca_ca::store::sql(e)
}

fn invalid(field: &str, message: String) -> Error {
    Error::InvalidField {
        field: field.to_string(),
        message,
    }
}

/// The otpauth URI of `secret` for `name` (Google Authenticator's key URI
/// format: base32 secret, SHA1, 6 digits, 30 s).
pub fn otpauth_uri(issuer: &str, name: &str, secret: &[u8]) -> String {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let b32 = totp_rs::Secret::new(secret.to_vec().into_boxed_slice()).to_base32();
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits=6&period=30",
        enc(issuer).replace('+', "%20"),
        enc(name).replace('+', "%20"),
        b32.trim_end_matches('='),
        enc(issuer).replace('+', "%20")
    )
}

fn totp(secret: &[u8]) -> Result<totp_rs::Totp, Error> {
    totp_rs::Builder::new()
        .with_secret(totp_rs::Secret::new(secret.to_vec().into_boxed_slice()))
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .build()
        .map_err(|e| invalid("totp", e.to_string()))
}

fn hash_password(password: &str) -> Result<String, Error> {
    let mut salt = [0u8; 16];
    crate::key::random("admin password salt", &mut salt)?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default());
    argon
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|p| p.to_string())
        .map_err(|e| Error::Encoding {
            what: "admin password hash".to_string(),
            message: e.to_string(),
        })
}

fn verify_password(typed: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    parsed.algorithm.as_str() == "argon2id"
        && Argon2::default()
            .verify_password(typed.as_bytes(), &parsed)
            .is_ok()
}

/// Creates admin `name` with `role`: a generated password and a new TOTP
/// secret, both handed back once. One transaction with its audit event.
pub fn add(
    store: &mut Store,
    key: &ConsoleKey,
    issuer: &str,
    name: &str,
    role: Role,
    actor: &str,
    now: i64,
) -> Result<NewAdmin, Error> {
    let name = name.trim();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
    {
        return Err(invalid(
            "name",
            format!("{name:?}: 1 to 64 characters among A-Z a-z 0-9 . _ - @"),
        ));
    }
    store.migrate(COMPONENT, migrations())?;
    let password = kxca_ca::generate_password();
    let phc = hash_password(password.expose())?;
    let mut secret = [0u8; 20];
    crate::key::random("TOTP secret", &mut secret)?;
    let (nonce, sealed) = key.seal_totp(&secret)?;
    store.write(|tx| {
        let exists: bool = tx
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM console_admins WHERE name = ?1)",
                [name],
                |r| r.get(0),
            )
            .map_err(sql)?;
        if exists {
            return Err(invalid(
                "name",
                format!("admin {name:?} exists already (see `kxca admin list`)"),
            ));
        }
        tx.execute(
            "INSERT INTO console_admins (name, role, password_phc, totp_nonce, totp_sealed, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![name, role.as_str(), phc, &nonce[..], &sealed[..], now],
        )
        .map_err(sql)?;
        tx.audit(
            now,
            actor,
            AuditAction::AdminAdd,
            None,
            serde_json::json!({"admin": name, "role": role.as_str()}),
        )
    })?;
    Ok(NewAdmin {
        name: name.to_string(),
        role,
        password: password.expose().to_string(),
        otpauth: otpauth_uri(issuer, name, &secret),
    })
}

/// One admin as listed.
#[derive(Debug, Clone, Serialize)]
pub struct AdminRow {
    /// The login name.
    pub name: String,
    /// The role.
    pub role: Role,
    /// Failed logins since the last success.
    pub failures: i64,
    /// Locked until, Unix seconds.
    pub locked_until: Option<i64>,
    /// The second factor: `totp` or `certificate`.
    pub factor: String,
    /// The serial of their client certificate, when the factor is one.
    pub cert_serial: Option<String>,
}

/// Every admin, by name.
pub fn list(conn: &Snapshot<'_>) -> Result<Vec<AdminRow>, Error> {
    let mut stmt = conn
        .prepare("SELECT name, role, failures, locked_until, factor, cert_serial FROM console_admins ORDER BY name")
        .map_err(sql)?;
    let rows = stmt
        .query_map([], |r| {
            let role: String = r.get(1)?;
            Ok(AdminRow {
                name: r.get(0)?,
                role: Role::parse(&role).unwrap_or(Role::Auditor),
                failures: r.get(2)?,
                locked_until: r.get(3)?,
                factor: r.get(4)?,
                cert_serial: r.get(5)?,
            })
        })
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    Ok(rows)
}

/// Why a login was refused (the page says only that it failed, or that the
/// account is locked; the audit event says which).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefused {
    /// No such admin, wrong password or wrong code.
    Wrong,
    /// Locked after repeated failures.
    Locked,
}

/// A logged-in admin.
#[derive(Debug, Clone)]
pub struct Admin {
    /// Row id.
    pub id: i64,
    /// The login name.
    pub name: String,
    /// The role.
    pub role: Role,
}

/// Why the client certificate of an admin whose factor is `certificate`
/// does not stand now: none presented, another one, or theirs revoked,
/// expired or unknown to the store. `None`: it stands.
const CERT_STATE: &str = "SELECT c.state, c.not_after, r.certificate IS NOT NULL FROM certificates c LEFT JOIN revocations r ON r.certificate = c.id WHERE c.serial = ?1";

fn certificate_refusal(
    stored: (Option<&str>, Option<&str>),
    presented: Option<&str>,
    state: Option<(String, i64, bool)>,
    now: i64,
) -> Option<&'static str> {
    let (Some(_), Some(sha)) = stored else {
        return Some("no certificate recorded for the admin");
    };
    let Some(presented) = presented else {
        return Some("no client certificate presented");
    };
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        presented.as_bytes(),
        sha.as_bytes(),
    )) {
        return Some("another client certificate presented");
    }
    match state {
        None => Some("certificate unknown to the store"),
        Some((_, _, true)) => Some("certificate revoked"),
        Some((st, _, _)) if st != "issued" => Some("certificate not issued"),
        Some((_, not_after, _)) if not_after <= now => Some("certificate expired"),
        Some(_) => None,
    }
}

fn cert_state(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, i64, bool)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

/// Checks a login: the password and the admin's second factor — a TOTP
/// code, or (factor `certificate`) the client certificate of the TLS
/// connection, `client_cert` being its SHA-256 as rustls verified it. A
/// success opens a session and returns its id (the cookie's value; only its
/// hash is stored); a failure counts towards the lockout. Every outcome is
/// an audit event, committed with the counters it changes.
#[allow(clippy::too_many_arguments)]
pub fn login(
    store: &mut Store,
    key: &ConsoleKey,
    config: &ConsoleConfig,
    name: &str,
    password: &str,
    code: &str,
    client_cert: Option<&str>,
    now: i64,
) -> Result<Result<(Admin, String), LoginRefused>, Error> {
    let row = store.read(|s| {
        s.query_row(
            "SELECT id, role, password_phc, totp_nonce, totp_sealed, failures, locked_until, last_step, factor, cert_serial, cert_sha256 FROM console_admins WHERE name = ?1",
            [name],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                    r.get::<_, Vec<u8>>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                    r.get::<_, Option<i64>>(7)?,
                    (
                        r.get::<_, String>(8)?,
                        r.get::<_, Option<String>>(9)?,
                        r.get::<_, Option<String>>(10)?,
                    ),
                ))
            },
        )
        .optional()
        .map_err(sql)
    })?;
    let actor = format!("console:{name}");
    let Some((id, role, phc, nonce, sealed, failures, locked_until, last_step, factor)) = row
    else {
        // Argon2 still runs: an unknown name answers in the time a known one does.
        let _ = hash_password(password);
        store.write(|tx| {
            tx.audit(
                now,
                &actor,
                AuditAction::AdminLoginFailed,
                None,
                serde_json::json!({"admin": name, "why": "unknown admin"}),
            )
        })?;
        return Ok(Err(LoginRefused::Wrong));
    };
    if locked_until.is_some_and(|t| t > now) {
        store.write(|tx| {
            tx.audit(
                now,
                &actor,
                AuditAction::AdminLoginFailed,
                None,
                serde_json::json!({"admin": name, "why": "locked"}),
            )
        })?;
        return Ok(Err(LoginRefused::Locked));
    }
    let (factor, cert_serial, cert_sha256) = factor;
    let by_certificate = factor == "certificate";
    let mut why = "wrong password or code";
    let step = if !verify_password(password, &phc) {
        None
    } else if by_certificate {
        let state = match &cert_serial {
            Some(serial) => store.read(|s| {
                s.query_row(CERT_STATE, [serial], cert_state)
                    .optional()
                    .map_err(sql)
            })?,
            None => None,
        };
        match certificate_refusal(
            (cert_serial.as_deref(), cert_sha256.as_deref()),
            client_cert,
            state,
            now,
        ) {
            Some(w) => {
                why = w;
                None
            }
            // The TOTP step is not consumed: keep the last one.
            None => Some(last_step.unwrap_or(0)),
        }
    } else {
        let secret = key.open_totp(&nonce, &sealed)?;
        totp(&secret)?
            .check(code.trim(), now as u64)
            .map(|s| s as i64)
            // A code used once is not taken again (RFC 6238 section 5.2).
            .filter(|s| last_step.is_none_or(|l| *s > l))
    };
    let Some(step) = step else {
        let failures = failures + 1;
        let lock = failures >= i64::from(config.max_failures);
        store.write(|tx| {
            tx.execute(
                "UPDATE console_admins SET failures = ?2, locked_until = ?3 WHERE id = ?1",
                params![
                    id,
                    if lock { 0 } else { failures },
                    lock.then_some(now + config.lockout_minutes as i64 * 60)
                ],
            )
            .map_err(sql)?;
            tx.audit(
                now,
                &actor,
                AuditAction::AdminLoginFailed,
                None,
                serde_json::json!({"admin": name, "why": why, "failures": failures}),
            )?;
            if lock {
                tx.audit(
                    now,
                    &actor,
                    AuditAction::AdminLocked,
                    None,
                    serde_json::json!({"admin": name, "minutes": config.lockout_minutes}),
                )?;
            }
            Ok(())
        })?;
        return Ok(Err(if lock {
            LoginRefused::Locked
        } else {
            LoginRefused::Wrong
        }));
    };
    let mut raw = [0u8; 32];
    crate::key::random("session id", &mut raw)?;
    let session = hex::encode(raw);
    let role = Role::parse(&role).unwrap_or(Role::Auditor);
    store.write(|tx| {
        tx.execute(
            "UPDATE console_admins SET failures = 0, locked_until = NULL, last_step = ?2 WHERE id = ?1",
            params![id, step],
        )
        .map_err(sql)?;
        tx.execute(
            "INSERT INTO console_sessions (id_hash, admin_id, created_at, last_seen) VALUES (?1, ?2, ?3, ?3)",
            params![session_hash(&session), id, now],
        )
        .map_err(sql)?;
        tx.audit(
            now,
            &actor,
            AuditAction::AdminLogin,
            cert_serial.as_deref().filter(|_| by_certificate),
            serde_json::json!({"admin": name, "role": role.as_str(), "factor": factor}),
        )
    })?;
    Ok(Ok((
        Admin {
            id,
            name: name.to_string(),
            role,
        },
        session,
    )))
}

/// The stored form of a session id.
pub fn session_hash(session: &str) -> String {
    hex::encode(Sha256::digest(session.as_bytes()))
}

/// The admin of a live session, touching its idle clock; `None` for an
/// unknown, ended, idle or too old session (then ended). For an admin
/// whose factor is `certificate`, every request must come over a TLS
/// connection presenting that certificate (`client_cert`, its SHA-256),
/// still issued, unrevoked and unexpired in the store: a revocation ends
/// the session at the next request, with an audit event.
pub fn session(
    store: &mut Store,
    config: &ConsoleConfig,
    session: &str,
    client_cert: Option<&str>,
    now: i64,
) -> Result<Option<Admin>, Error> {
    let hash = session_hash(session);
    store.write(|tx| {
        let row = tx
            .query_row(
                "SELECT a.id, a.name, a.role, s.created_at, s.last_seen, a.factor, a.cert_serial, a.cert_sha256 FROM console_sessions s JOIN console_admins a ON a.id = s.admin_id WHERE s.id_hash = ?1 AND s.ended_at IS NULL",
                [&hash],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                        (
                            r.get::<_, String>(5)?,
                            r.get::<_, Option<String>>(6)?,
                            r.get::<_, Option<String>>(7)?,
                        ),
                    ))
                },
            )
            .optional()
            .map_err(sql)?;
        let Some((id, name, role, created, seen, (factor, cert_serial, cert_sha256))) = row else {
            return Ok(None);
        };
        let idle = now - seen > config.idle_minutes as i64 * 60;
        let old = now - created > config.session_hours as i64 * 3600;
        if idle || old {
            end(tx, &hash, now)?;
            return Ok(None);
        }
        if factor == "certificate" {
            let state = match &cert_serial {
                Some(serial) => tx
                    .query_row(CERT_STATE, [serial], cert_state)
                    .optional()
                    .map_err(sql)?,
                None => None,
            };
            if let Some(why) = certificate_refusal(
                (cert_serial.as_deref(), cert_sha256.as_deref()),
                client_cert,
                state,
                now,
            ) {
                end(tx, &hash, now)?;
                tx.audit(
                    now,
                    &format!("console:{name}"),
                    AuditAction::AdminCertificateRefused,
                    cert_serial.as_deref(),
                    serde_json::json!({"admin": name, "why": why}),
                )?;
                return Ok(None);
            }
        }
        tx.execute(
            "UPDATE console_sessions SET last_seen = ?2 WHERE id_hash = ?1",
            params![hash, now],
        )
        .map_err(sql)?;
        Ok(Some(Admin {
            id,
            name,
            role: Role::parse(&role).unwrap_or(Role::Auditor),
        }))
    })
}

fn end(tx: &Tx<'_>, hash: &str, now: i64) -> Result<(), Error> {
    tx.execute(
        "UPDATE console_sessions SET ended_at = ?2 WHERE id_hash = ?1 AND ended_at IS NULL",
        params![hash, now],
    )
    .map_err(sql)?;
    Ok(())
}

/// Ends a session (logout), with its audit event.
pub fn logout(store: &mut Store, admin: &Admin, session: &str, now: i64) -> Result<(), Error> {
    let hash = session_hash(session);
    store.write(|tx| {
        end(tx, &hash, now)?;
        tx.audit(
            now,
            &format!("console:{}", admin.name),
            AuditAction::AdminLogout,
            None,
            serde_json::json!({"admin": admin.name}),
        )
    })
}

/// Makes `cert_sha256` (serial `serial`) admin `name`'s second factor in
/// place of TOTP, ending their sessions; one transaction with its audit
/// event. Returns the serial of the certificate it replaces, if any (the
/// caller revokes it).
pub fn set_certificate(
    store: &mut Store,
    name: &str,
    serial: &str,
    cert_sha256: &str,
    actor: &str,
    now: i64,
) -> Result<Option<String>, Error> {
    store.migrate(COMPONENT, migrations())?;
    store.write(|tx| {
        let row = tx
            .query_row(
                "SELECT id, cert_serial FROM console_admins WHERE name = ?1",
                [name],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?)),
            )
            .optional()
            .map_err(sql)?;
        let Some((id, old)) = row else {
            return Err(invalid(
                "name",
                format!("no console admin {name:?} (see `kxca admin list`)"),
            ));
        };
        tx.execute(
            "UPDATE console_admins SET factor = 'certificate', cert_serial = ?2, cert_sha256 = ?3 WHERE id = ?1",
            params![id, serial, cert_sha256],
        )
        .map_err(sql)?;
        tx.execute(
            "UPDATE console_sessions SET ended_at = ?2 WHERE admin_id = ?1 AND ended_at IS NULL",
            params![id, now],
        )
        .map_err(sql)?;
        tx.audit(
            now,
            actor,
            AuditAction::AdminCertificate,
            Some(serial),
            serde_json::json!({"admin": name, "sha256": cert_sha256, "replaces": old}),
        )?;
        Ok(old)
    })
}

/// Whether admin `name` exists (before a certificate is issued for them).
pub fn exists(store: &mut Store, name: &str) -> Result<bool, Error> {
    store.migrate(COMPONENT, migrations())?;
    store.read(|s| {
        s.query_row(
            "SELECT EXISTS(SELECT 1 FROM console_admins WHERE name = ?1)",
            [name],
            |r| r.get(0),
        )
        .map_err(sql)
    })
}

/// The otpauth URI as a QR code for a terminal (two rows of modules per
/// line), for `kxca admin add` to show the new admin's authenticator app.
pub fn qr_for_terminal(uri: &str) -> Result<String, Error> {
    let code = qrcode::QrCode::new(uri.as_bytes()).map_err(|e| Error::Encoding {
        what: "otpauth QR code".to_string(),
        message: e.to_string(),
    })?;
    Ok(code
        .render::<qrcode::render::unicode::Dense1x2>()
        .dark_color(qrcode::render::unicode::Dense1x2::Light)
        .light_color(qrcode::render::unicode::Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

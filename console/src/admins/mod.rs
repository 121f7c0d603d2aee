//! Console admin accounts and their sessions: the `console_admins` and
//! `console_sessions` tables (component "console"). Passwords are Argon2id
//! PHC strings; TOTP secrets are stored sealed with the console key (never
//! in clear, see `key.rs`); a session is known by the SHA-256 of its random
//! id, so a copy of the database opens no session.

use kxca_ca::store::{Migration, Snapshot};
use kxca_ca::{AuditAction, Error, Store};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use crate::key::ConsoleKey;

mod lifecycle;
mod login;
mod password;
mod session;

pub use lifecycle::*;
pub use login::*;
pub use password::*;
pub use session::*;

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
        description: "console admins' last login, key check; login failures by client address",
        sql: r#"
ALTER TABLE console_admins ADD COLUMN last_login INTEGER;
ALTER TABLE console_admins ADD COLUMN totp_key_check TEXT;
CREATE TABLE console_login_failures (
    id  INTEGER PRIMARY KEY,
    ip  TEXT NOT NULL,
    at  INTEGER NOT NULL
);
CREATE INDEX console_login_failures_ip_at ON console_login_failures (ip, at);
"#,
    },
    Migration {
        version: 3,
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
    let password = new_password(name)?;
    let phc = hash_password(password.expose())?;
    let mut secret = [0u8; 20];
    crate::key::random("TOTP secret", &mut secret)?;
    let (nonce, sealed) = key.seal_totp(&secret)?;
    let check = key.check_value();
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
            "INSERT INTO console_admins (name, role, password_phc, totp_nonce, totp_sealed, totp_key_check, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![name, role.as_str(), phc, &nonce[..], &sealed[..], check, now],
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
    /// The second factor: `totp` or `certificate` (`kxca admin cert`).
    pub factor: String,
    /// The serial of their client certificate, when the factor is one.
    pub cert_serial: Option<String>,
    /// Failed logins since the last success.
    pub failures: i64,
    /// Locked until, Unix seconds.
    pub locked_until: Option<i64>,
    /// The last successful login, Unix seconds.
    pub last_login: Option<i64>,
    /// Whether the TOTP secret was sealed with another console key than
    /// `key` (a restore without the key): `None` when not known.
    pub totp_key_matches: Option<bool>,
}

/// Every admin, by name; `key` (when given) is compared with the key each
/// TOTP secret was sealed with.
pub fn list(conn: &Snapshot<'_>, key: Option<&ConsoleKey>) -> Result<Vec<AdminRow>, Error> {
    let current = key.map(ConsoleKey::check_value);
    let mut stmt = conn
        .prepare("SELECT name, role, failures, locked_until, last_login, totp_key_check, factor, cert_serial FROM console_admins ORDER BY name")
        .map_err(sql)?;
    let rows = stmt
        .query_map([], |r| {
            let role: String = r.get(1)?;
            let check: Option<String> = r.get(5)?;
            Ok(AdminRow {
                name: r.get(0)?,
                role: Role::parse(&role).unwrap_or(Role::Auditor),
                factor: r.get(6)?,
                cert_serial: r.get(7)?,
                failures: r.get(2)?,
                locked_until: r.get(3)?,
                last_login: r.get(4)?,
                totp_key_matches: match (&current, check) {
                    (Some(c), Some(s)) => Some(*c == s),
                    _ => None,
                },
            })
        })
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    Ok(rows)
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

/// What `kxca doctor` reports about the console in a home's store, as
/// `(kind, subject, detail)`: admins whose TOTP secret cannot open because
/// the console key is missing (`secret_missing`) or is another key than the
/// one that sealed it (`console_key_mismatch`), e.g. after a restore
/// without `console/console.key`. Reads only: the store is taken as is.
pub fn doctor(
    store: &Store,
    home: &kxca_ca::Home,
) -> Result<Vec<(&'static str, String, String)>, Error> {
    let rows: Vec<(String, Option<String>)> = store.read(|s| {
        let table: Option<String> = s
            .query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'console_admins'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)?;
        let Some(table) = table else {
            return Ok(Vec::new());
        };
        let column = if table.contains("totp_key_check") {
            "totp_key_check"
        } else {
            "NULL"
        };
        let mut stmt = s
            .prepare(&format!(
                "SELECT name, {column} FROM console_admins ORDER BY name"
            ))
            .map_err(sql)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql)?;
        Ok(rows)
    })?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let path = crate::key::path(home);
    let mut out = Vec::new();
    match ConsoleKey::load(home) {
        Ok(None) => out.push((
            "secret_missing",
            "admin console key".to_string(),
            format!(
                "{} does not exist and {} admin(s) have TOTP secrets sealed with it: bring it back from the officers' backup before starting kxca daemon, or give every admin a new TOTP secret with `kxca admin reset-totp NAME` (docs/CONSOLE.md)",
                path.display(),
                rows.len()
            ),
        )),
        Err(e) => out.push(("console_key_unusable", "admin console key".to_string(), e.to_string())),
        Ok(Some(key)) => {
            let current = key.check_value();
            for (name, check) in rows {
                if check.is_some_and(|c| c != current) {
                    out.push((
                        "console_key_mismatch",
                        format!("console admin {name}"),
                        format!(
                            "the TOTP secret was sealed with another console key than {} (restored without it?): no code can match; run `kxca admin reset-totp {name}`, or bring the old key back",
                            path.display()
                        ),
                    ));
                }
            }
        }
    }
    Ok(out)
}

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
    #[cfg(test)]
    VERIFIES.with(|n| n.set(n.get() + 1));
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    parsed.algorithm.as_str() == "argon2id"
        && Argon2::default()
            .verify_password(typed.as_bytes(), &parsed)
            .is_ok()
}

#[cfg(test)]
thread_local! {
    /// Argon2 verifications on this thread: the tests count them instead
    /// of timing logins (a timed assertion fails on a loaded machine).
    static VERIFIES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The console's password rule, in one place: `kxca admin add` and
/// `reset-password` check their generated passwords against it and the
/// console's password change page checks what the admin typed.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Argon2 over a longer input is work an attacker could make us do.
pub const MAX_PASSWORD_CHARS: usize = 256;

/// Why a password breaks the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordRule {
    /// Fewer than [`MIN_PASSWORD_CHARS`] characters.
    TooShort,
    /// More than [`MAX_PASSWORD_CHARS`] characters.
    TooLong,
    /// The admin's name, or contains it.
    ContainsName,
}

impl PasswordRule {
    /// The rule as the console shows it.
    pub fn ja(self) -> String {
        match self {
            PasswordRule::TooShort => {
                format!("パスワードは{MIN_PASSWORD_CHARS}文字以上にしてください。")
            }
            PasswordRule::TooLong => {
                format!("パスワードは{MAX_PASSWORD_CHARS}文字以内にしてください。")
            }
            PasswordRule::ContainsName => {
                "パスワードに管理者名を含めることはできません。".to_string()
            }
        }
    }

    /// The rule in English, for the CLI.
    pub fn en(self) -> String {
        match self {
            PasswordRule::TooShort => format!("at least {MIN_PASSWORD_CHARS} characters"),
            PasswordRule::TooLong => format!("at most {MAX_PASSWORD_CHARS} characters"),
            PasswordRule::ContainsName => "must not contain the admin's name".to_string(),
        }
    }
}

/// Checks `password` for admin `name` against the rule.
pub fn password_policy(name: &str, password: &str) -> Result<(), PasswordRule> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(PasswordRule::TooShort);
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(PasswordRule::TooLong);
    }
    if !name.is_empty() && password.to_lowercase().contains(&name.to_lowercase()) {
        return Err(PasswordRule::ContainsName);
    }
    Ok(())
}

/// A generated password, checked against the same rule as a typed one.
fn new_password(name: &str) -> Result<kxca_ca::Password, Error> {
    let password = kxca_ca::generate_password();
    password_policy(name, password.expose()).map_err(|rule| {
        invalid(
            "password",
            format!("the generated password breaks the rule ({})", rule.en()),
        )
    })?;
    Ok(password)
}

/// A PHC string of a password nobody knows, made once: a login for an
/// unknown name verifies against it, so its answer takes as long as a known
/// name's and the time does not tell which names exist.
fn dummy_phc() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut raw = [0u8; 24];
        let _ = crate::key::random("dummy password", &mut raw);
        hash_password(&hex::encode(raw)).unwrap_or_default()
    })
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

/// Why a login was refused (the page says only that it failed, or that the
/// account is locked; the audit event says which).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefused {
    /// No such admin, wrong password or wrong code.
    Wrong,
    /// Locked after repeated failures.
    Locked,
    /// Too many failures from this client address: nothing was checked.
    TooMany,
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

/// Failed logins from `client` within the window.
fn client_failures(
    store: &Store,
    config: &ConsoleConfig,
    client: &str,
    now: i64,
) -> Result<i64, Error> {
    let since = now - config.ip_window_minutes as i64 * 60;
    store.read(|s| {
        s.query_row(
            "SELECT COUNT(*) FROM console_login_failures WHERE ip = ?1 AND at > ?2",
            params![client, since],
            |r| r.get(0),
        )
        .map_err(sql)
    })
}

/// Records one failed login from `client` in `tx` (the transaction of its
/// audit event); the failure that reaches the limit writes the limit's
/// own event. Rows older than the window are dropped on the way.
fn count_client_failure(
    tx: &Tx<'_>,
    config: &ConsoleConfig,
    client: &str,
    before: i64,
    now: i64,
) -> Result<(), Error> {
    let since = now - config.ip_window_minutes as i64 * 60;
    tx.execute("DELETE FROM console_login_failures WHERE at <= ?1", [since])
        .map_err(sql)?;
    tx.execute(
        "INSERT INTO console_login_failures (ip, at) VALUES (?1, ?2)",
        params![client, now],
    )
    .map_err(sql)?;
    if before + 1 == i64::from(config.ip_max_failures) {
        tx.audit(
            now,
            &format!("console-client:{client}"),
            AuditAction::AdminLoginLimited,
            None,
            serde_json::json!({
                "client": client,
                "failures": before + 1,
                "window_minutes": config.ip_window_minutes,
            }),
        )?;
    }
    Ok(())
}

/// Counts one failed check of admin `id`'s password or code: the lockout
/// counter, its audit events, and the client's failure. Returns whether
/// the account is now locked.
#[allow(clippy::too_many_arguments)]
fn count_failure(
    store: &mut Store,
    config: &ConsoleConfig,
    id: i64,
    name: &str,
    failures: i64,
    why: &str,
    client: &str,
    client_before: i64,
    now: i64,
) -> Result<bool, Error> {
    let actor = format!("console:{name}");
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
            serde_json::json!({"admin": name, "why": why, "failures": failures, "client": client}),
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
        count_client_failure(tx, config, client, client_before, now)
    })?;
    Ok(lock)
}

/// The stored admin a login or password change checks.
struct Stored {
    id: i64,
    role: String,
    phc: String,
    nonce: Vec<u8>,
    sealed: Vec<u8>,
    key_check: Option<String>,
    failures: i64,
    locked_until: Option<i64>,
    last_step: Option<i64>,
    /// `totp` or `certificate`.
    factor: String,
    cert_serial: Option<String>,
    cert_sha256: Option<String>,
}

fn stored(store: &Store, name: &str) -> Result<Option<Stored>, Error> {
    store.read(|s| {
        s.query_row(
            "SELECT id, role, password_phc, totp_nonce, totp_sealed, totp_key_check, failures, locked_until, last_step, factor, cert_serial, cert_sha256 FROM console_admins WHERE name = ?1",
            [name],
            |r| {
                Ok(Stored {
                    id: r.get(0)?,
                    role: r.get(1)?,
                    phc: r.get(2)?,
                    nonce: r.get(3)?,
                    sealed: r.get(4)?,
                    key_check: r.get(5)?,
                    failures: r.get(6)?,
                    locked_until: r.get(7)?,
                    last_step: r.get(8)?,
                    factor: r.get(9)?,
                    cert_serial: r.get(10)?,
                    cert_sha256: r.get(11)?,
                })
            },
        )
        .optional()
        .map_err(sql)
    })
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

/// Checks a login from `client` (the connection's peer address): the
/// password and the admin's second factor — a TOTP code, or (factor
/// `certificate`) the client certificate of the TLS connection,
/// `client_cert` being its SHA-256 as rustls verified it. A success opens a session and returns its id (the
/// cookie's value; only its hash is stored); a failure counts towards the
/// account's lockout and the client's limit (an unknown name counts for
/// the client too). Every outcome is an audit event, committed with the
/// counters it changes, except the refusals while a client is over its
/// limit: the event is written once when the limit is reached, so a flood
/// of attempts cannot flood the audit record.
#[allow(clippy::too_many_arguments)]
pub fn login(
    store: &mut Store,
    key: &ConsoleKey,
    config: &ConsoleConfig,
    name: &str,
    password: &str,
    code: &str,
    client_cert: Option<&str>,
    client: std::net::IpAddr,
    now: i64,
) -> Result<Result<(Admin, String), LoginRefused>, Error> {
    let client = client.to_string();
    let before = client_failures(store, config, &client, now)?;
    if before >= i64::from(config.ip_max_failures) {
        tracing::warn!(%client, "console login refused: too many failures from this client");
        return Ok(Err(LoginRefused::TooMany));
    }
    let actor = format!("console:{name}");
    let Some(row) = stored(store, name)? else {
        // Argon2 verifies against a hash nobody knows: an unknown name
        // answers in the time a known one does.
        let _ = verify_password(password, dummy_phc());
        store.write(|tx| {
            tx.audit(
                now,
                &actor,
                AuditAction::AdminLoginFailed,
                None,
                serde_json::json!({"admin": name, "why": "unknown admin", "client": client}),
            )?;
            count_client_failure(tx, config, &client, before, now)
        })?;
        return Ok(Err(LoginRefused::Wrong));
    };
    if row.locked_until.is_some_and(|t| t > now) {
        // The same work as any other attempt, so a locked account's answer
        // is not told apart by its time.
        let _ = verify_password(password, &row.phc);
        store.write(|tx| {
            tx.audit(
                now,
                &actor,
                AuditAction::AdminLoginFailed,
                None,
                serde_json::json!({"admin": name, "why": "locked", "client": client}),
            )?;
            count_client_failure(tx, config, &client, before, now)
        })?;
        return Ok(Err(LoginRefused::Locked));
    }
    let secret = key.open_totp(&row.nonce, &row.sealed)?;
    let key_matches = row
        .key_check
        .as_ref()
        .is_none_or(|c| *c == key.check_value());
    if !key_matches {
        // Sealed under a console key this home no longer has: the secret
        // opens to noise and no code can match (docs/CONSOLE.md).
        tracing::error!(admin = %name, "console: this admin's TOTP secret was sealed with another console key; run `kxca admin reset-totp {name}`");
    }
    let by_certificate = row.factor == "certificate";
    let mut why = "wrong password or code";
    let step = if !verify_password(password, &row.phc) {
        None
    } else if by_certificate {
        let state = match &row.cert_serial {
            Some(serial) => store.read(|s| {
                s.query_row(CERT_STATE, [serial], cert_state)
                    .optional()
                    .map_err(sql)
            })?,
            None => None,
        };
        match certificate_refusal(
            (row.cert_serial.as_deref(), row.cert_sha256.as_deref()),
            client_cert,
            state,
            now,
        ) {
            Some(w) => {
                why = w;
                None
            }
            // The TOTP step is not consumed: keep the last one.
            None => Some(row.last_step.unwrap_or(0)),
        }
    } else {
        totp(&secret)?
            .check(code.trim(), now as u64)
            .map(|s| s as i64)
            // A code used once is not taken again (RFC 6238 section 5.2).
            .filter(|s| row.last_step.is_none_or(|l| *s > l))
    };
    let Some(step) = step else {
        let lock = count_failure(
            store,
            config,
            row.id,
            name,
            row.failures,
            why,
            &client,
            before,
            now,
        )?;
        return Ok(Err(if lock {
            LoginRefused::Locked
        } else {
            LoginRefused::Wrong
        }));
    };
    let id = row.id;
    let mut raw = [0u8; 32];
    crate::key::random("session id", &mut raw)?;
    let session = hex::encode(raw);
    let role = Role::parse(&row.role).unwrap_or(Role::Auditor);
    store.write(|tx| {
        tx.execute(
            "UPDATE console_admins SET failures = 0, locked_until = NULL, last_step = ?2, last_login = ?3 WHERE id = ?1",
            params![id, step, now],
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
            row.cert_serial.as_deref().filter(|_| by_certificate),
            serde_json::json!({"admin": name, "role": role.as_str(), "client": client, "factor": row.factor}),
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

/// Why a password change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeRefused {
    /// The current password is wrong (counted towards the lockout).
    WrongCurrent,
    /// The account is locked.
    Locked,
    /// The two new passwords differ.
    Mismatch,
    /// The new password is the current one.
    Unchanged,
    /// The new password breaks the rule.
    Rule(PasswordRule),
}

impl ChangeRefused {
    /// The refusal as the console shows it.
    pub fn ja(self) -> String {
        match self {
            ChangeRefused::WrongCurrent => "現在のパスワードが正しくありません。".to_string(),
            ChangeRefused::Locked => "失敗が続いたため、このアカウントはロックされました。セキュリティ責任者に連絡してください。".to_string(),
            ChangeRefused::Mismatch => "新しいパスワードが確認欄と一致しません。".to_string(),
            ChangeRefused::Unchanged => "新しいパスワードが現在のパスワードと同じです。".to_string(),
            ChangeRefused::Rule(r) => r.ja(),
        }
    }
}

/// The logged-in `admin` changes their own password: the current one
/// checked, the new one against the rule; every other session of theirs
/// ended. One transaction with its audit event. A wrong current password
/// counts towards the account's lockout, as a failed login does, so a
/// left-open session cannot be used to guess it.
#[allow(clippy::too_many_arguments)]
pub fn change_password(
    store: &mut Store,
    config: &ConsoleConfig,
    admin: &Admin,
    session: &str,
    current: &str,
    new: &str,
    confirm: &str,
    client: std::net::IpAddr,
    now: i64,
) -> Result<Result<usize, ChangeRefused>, Error> {
    let Some(row) = stored(store, &admin.name)? else {
        return Err(invalid(
            "admin",
            format!("admin {:?} no longer exists", admin.name),
        ));
    };
    if row.locked_until.is_some_and(|t| t > now) {
        return Ok(Err(ChangeRefused::Locked));
    }
    if !verify_password(current, &row.phc) {
        let client = client.to_string();
        let before = client_failures(store, config, &client, now)?;
        let lock = count_failure(
            store,
            config,
            row.id,
            &admin.name,
            row.failures,
            "wrong current password on the password change page",
            &client,
            before,
            now,
        )?;
        return Ok(Err(if lock {
            ChangeRefused::Locked
        } else {
            ChangeRefused::WrongCurrent
        }));
    }
    if new != confirm {
        return Ok(Err(ChangeRefused::Mismatch));
    }
    if new == current {
        return Ok(Err(ChangeRefused::Unchanged));
    }
    if let Err(rule) = password_policy(&admin.name, new) {
        return Ok(Err(ChangeRefused::Rule(rule)));
    }
    let phc = hash_password(new)?;
    let keep = session_hash(session);
    let id = row.id;
    let ended = store.write(|tx| {
        tx.execute(
            "UPDATE console_admins SET password_phc = ?2, failures = 0 WHERE id = ?1",
            params![id, phc],
        )
        .map_err(sql)?;
        let ended = tx
            .execute(
                "UPDATE console_sessions SET ended_at = ?3 WHERE admin_id = ?1 AND id_hash != ?2 AND ended_at IS NULL",
                params![id, keep, now],
            )
            .map_err(sql)?;
        tx.audit(
            now,
            &format!("console:{}", admin.name),
            AuditAction::AdminPasswordChange,
            None,
            serde_json::json!({"admin": admin.name, "other_sessions_ended": ended}),
        )?;
        Ok(ended)
    })?;
    Ok(Ok(ended))
}

/// The id of admin `name` in `tx`, or an error naming the name and where
/// to see the names.
fn admin_id(tx: &Tx<'_>, name: &str) -> Result<i64, Error> {
    tx.query_row(
        "SELECT id FROM console_admins WHERE name = ?1",
        [name],
        |r| r.get(0),
    )
    .optional()
    .map_err(sql)?
    .ok_or_else(|| {
        invalid(
            "name",
            format!("no console admin named {name:?} (see `kxca admin list`)"),
        )
    })
}

fn end_all(tx: &Tx<'_>, id: i64, now: i64) -> Result<usize, Error> {
    tx.execute(
        "UPDATE console_sessions SET ended_at = ?2 WHERE admin_id = ?1 AND ended_at IS NULL",
        params![id, now],
    )
    .map_err(sql)
}

/// Removes admin `name` (`kxca admin remove`): their sessions end at once
/// and the account is gone; the audit record keeps their name. One
/// transaction with its audit event. Returns the sessions ended.
pub fn remove(store: &mut Store, name: &str, actor: &str, now: i64) -> Result<usize, Error> {
    store.write(|tx| {
        let id = admin_id(tx, name)?;
        let ended = end_all(tx, id, now)?;
        // The rows go: a removed admin keeps no password hash or sealed
        // secret, and a name used again is a new account.
        tx.execute("DELETE FROM console_sessions WHERE admin_id = ?1", [id])
            .map_err(sql)?;
        tx.execute("DELETE FROM console_admins WHERE id = ?1", [id])
            .map_err(sql)?;
        tx.audit(
            now,
            actor,
            AuditAction::AdminRemove,
            None,
            serde_json::json!({"admin": name, "sessions_ended": ended}),
        )?;
        Ok(ended)
    })
}

/// Unlocks admin `name` (`kxca admin unlock`): the failure count back to
/// zero. One transaction with its audit event. Returns whether it was
/// locked.
pub fn unlock(store: &mut Store, name: &str, actor: &str, now: i64) -> Result<bool, Error> {
    store.write(|tx| {
        let id = admin_id(tx, name)?;
        let was_locked: bool = tx
            .query_row(
                "SELECT COALESCE(locked_until > ?2, 0) FROM console_admins WHERE id = ?1",
                params![id, now],
                |r| r.get(0),
            )
            .map_err(sql)?;
        tx.execute(
            "UPDATE console_admins SET failures = 0, locked_until = NULL WHERE id = ?1",
            [id],
        )
        .map_err(sql)?;
        tx.audit(
            now,
            actor,
            AuditAction::AdminUnlock,
            None,
            serde_json::json!({"admin": name, "was_locked": was_locked}),
        )?;
        Ok(was_locked)
    })
}

/// A password or TOTP secret an officer reset, handed back once.
#[derive(Debug, Serialize)]
pub struct Reset {
    /// The admin's name.
    pub name: String,
    /// The new password (`reset-password`), shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The new otpauth URI (`reset-totp`), shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otpauth: Option<String>,
    /// Sessions of the admin ended.
    pub sessions_ended: usize,
}

/// Gives admin `name` a new generated password (`kxca admin reset-password`):
/// every session of theirs ended, the lock lifted. One transaction with its
/// audit event.
pub fn reset_password(
    store: &mut Store,
    name: &str,
    actor: &str,
    now: i64,
) -> Result<Reset, Error> {
    let password = new_password(name)?;
    let phc = hash_password(password.expose())?;
    let ended = store.write(|tx| {
        let id = admin_id(tx, name)?;
        tx.execute(
            "UPDATE console_admins SET password_phc = ?2, failures = 0, locked_until = NULL WHERE id = ?1",
            params![id, phc],
        )
        .map_err(sql)?;
        let ended = end_all(tx, id, now)?;
        tx.audit(
            now,
            actor,
            AuditAction::AdminResetPassword,
            None,
            serde_json::json!({"admin": name, "sessions_ended": ended}),
        )?;
        Ok(ended)
    })?;
    Ok(Reset {
        name: name.to_string(),
        password: Some(password.expose().to_string()),
        otpauth: None,
        sessions_ended: ended,
    })
}

/// Gives admin `name` a new TOTP secret sealed with the current console
/// key (`kxca admin reset-totp`, also the way back after a restore without
/// the key): every session of theirs ended, the used-code memory cleared.
/// One transaction with its audit event.
pub fn reset_totp(
    store: &mut Store,
    key: &ConsoleKey,
    issuer: &str,
    name: &str,
    actor: &str,
    now: i64,
) -> Result<Reset, Error> {
    let mut secret = [0u8; 20];
    crate::key::random("TOTP secret", &mut secret)?;
    let (nonce, sealed) = key.seal_totp(&secret)?;
    let check = key.check_value();
    let ended = store.write(|tx| {
        let id = admin_id(tx, name)?;
        tx.execute(
            // TOTP becomes their factor again: a client certificate they had
            // no longer opens anything (revoke it with `kxca revoke`).
            "UPDATE console_admins SET totp_nonce = ?2, totp_sealed = ?3, totp_key_check = ?4, last_step = NULL, factor = 'totp', cert_serial = NULL, cert_sha256 = NULL WHERE id = ?1",
            params![id, &nonce[..], &sealed[..], check],
        )
        .map_err(sql)?;
        let ended = end_all(tx, id, now)?;
        tx.audit(
            now,
            actor,
            AuditAction::AdminResetTotp,
            None,
            serde_json::json!({"admin": name, "sessions_ended": ended}),
        )?;
        Ok(ended)
    })?;
    Ok(Reset {
        name: name.to_string(),
        password: None,
        otpauth: Some(otpauth_uri(issuer, name, &secret)),
        sessions_ended: ended,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An unknown name and a locked account cost the one Argon2
    /// verification a known name costs, so the time of the answer does not
    /// tell which names exist.
    #[test]
    fn every_login_outcome_costs_one_argon2_verification() {
        let dir = tempfile::tempdir().unwrap();
        let home = kxca_ca::Home::new(dir.path());
        let key = ConsoleKey::load_or_create(&home).unwrap();
        let mut store = Store::open(&dir.path().join("kxca.db"), true).unwrap();
        store.migrate(COMPONENT, migrations()).unwrap();
        let config = ConsoleConfig {
            max_failures: 2,
            ..ConsoleConfig::default()
        };
        let admin = add(&mut store, &key, "kxca", "hana", Role::Admin, "test", 0).unwrap();
        let client: std::net::IpAddr = [127, 0, 0, 1].into();
        let mut attempt = |name: &str, password: &str| {
            let before = VERIFIES.with(|n| n.get());
            let out = login(
                &mut store, &key, &config, name, password, "000000", None, client, 10,
            )
            .unwrap();
            (out.is_ok(), VERIFIES.with(|n| n.get()) - before)
        };
        assert_eq!(
            attempt("nobody", "guess-password"),
            (false, 1),
            "unknown name"
        );
        assert_eq!(
            attempt("hana", "guess-password"),
            (false, 1),
            "wrong password"
        );
        assert_eq!(
            attempt("hana", &admin.password),
            (false, 1),
            "right password, wrong code"
        );
        // Two failures lock hana: the right password is still verified.
        assert_eq!(attempt("hana", &admin.password), (false, 1), "locked");
    }
}

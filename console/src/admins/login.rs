//! Login: password plus second factor (TOTP or the recorded client
//! certificate), the per-account lockout and the per-client limit.

use kxca_ca::store::Tx;
use kxca_ca::{AuditAction, Error, Store};
use rusqlite::{params, OptionalExtension};

use super::*;
use crate::key::ConsoleKey;
use crate::ConsoleConfig;

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
pub(super) fn client_failures(
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
pub(super) fn count_client_failure(
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
pub(super) fn count_failure(
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
pub(super) struct Stored {
    pub(super) id: i64,
    pub(super) role: String,
    pub(super) phc: String,
    pub(super) nonce: Vec<u8>,
    pub(super) sealed: Vec<u8>,
    pub(super) key_check: Option<String>,
    pub(super) failures: i64,
    pub(super) locked_until: Option<i64>,
    pub(super) last_step: Option<i64>,
    /// `totp` or `certificate`.
    pub(super) factor: String,
    pub(super) cert_serial: Option<String>,
    pub(super) cert_sha256: Option<String>,
}

pub(super) fn stored(store: &Store, name: &str) -> Result<Option<Stored>, Error> {
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
pub(super) const CERT_STATE: &str = "SELECT c.state, c.not_after, r.certificate IS NOT NULL FROM certificates c LEFT JOIN revocations r ON r.certificate = c.id WHERE c.serial = ?1";

pub(super) fn certificate_refusal(
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

pub(super) fn cert_state(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, i64, bool)> {
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
            let before = super::password::VERIFIES.with(|n| n.get());
            let out = login(
                &mut store, &key, &config, name, password, "000000", None, client, 10,
            )
            .unwrap();
            (
                out.is_ok(),
                super::password::VERIFIES.with(|n| n.get()) - before,
            )
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

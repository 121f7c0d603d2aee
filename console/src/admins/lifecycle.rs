//! The officers' changes to admin accounts: remove, unlock, new password,
//! new TOTP secret, the client-certificate factor.

use kxca_ca::store::Tx;
use kxca_ca::{AuditAction, Error, Store};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::*;
use crate::key::ConsoleKey;

/// The id of admin `name` in `tx`, or an error naming the name and where
/// to see the names.
pub(super) fn admin_id(tx: &Tx<'_>, name: &str) -> Result<i64, Error> {
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

pub(super) fn end_all(tx: &Tx<'_>, id: i64, now: i64) -> Result<usize, Error> {
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

/// Makes `cert_sha256` (serial `serial`) admin `name`'s second factor in
/// place of TOTP, ending their sessions; one transaction with its audit
/// event, which also revokes (superseded) the certificate it replaces.
/// Returns that certificate's serial when it was revoked here.
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
        // The certificate it replaces stops opening sessions at once (the
        // row names the new one); revoking it in the same transaction says
        // so to OCSP and the CRL too, with no window where it is unbound
        // but still valid.
        let mut revoked = None;
        if let Some(old) = old.filter(|o| o != serial) {
            match kxca_ca::store::revocations::revoke(
                tx,
                &old,
                kxca_ca::RevocationReason::Superseded,
                actor,
                now,
            ) {
                Ok(_) => revoked = Some(old),
                // An officer revoked it already, or it never was issued.
                Err(Error::AlreadyRevoked { .. })
                | Err(Error::NotIssued { .. })
                | Err(Error::UnknownSerial { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(revoked)
    })
}

//! Sessions: known by the SHA-256 of their random id; idle and absolute
//! expiry; logout.

use kxca_ca::store::Tx;
use kxca_ca::{AuditAction, Error, Store};
use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};

use super::*;
use crate::ConsoleConfig;

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

pub(super) fn end(tx: &Tx<'_>, hash: &str, now: i64) -> Result<(), Error> {
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

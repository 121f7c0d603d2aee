//! Admin passwords: Argon2id hashing and verification, the password rule
//! (one place), and the password change.

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use kxca_ca::{AuditAction, Error, Store};
use rusqlite::params;

use super::*;
use crate::ConsoleConfig;

pub(super) fn hash_password(password: &str) -> Result<String, Error> {
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

pub(super) fn verify_password(typed: &str, phc: &str) -> bool {
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
    pub(super) static VERIFIES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
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
pub(super) fn new_password(name: &str) -> Result<kxca_ca::Password, Error> {
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
pub(super) fn dummy_phc() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut raw = [0u8; 24];
        let _ = crate::key::random("dummy password", &mut raw);
        hash_password(&hex::encode(raw)).unwrap_or_default()
    })
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

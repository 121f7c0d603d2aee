//! The two delivery mails. Mail 1 (certificate ready, pickup URL, no
//! secret) and mail 2 (the two initial passwords) are queued in the
//! transaction that approves, resets or renews; mail 2's outbox body holds
//! placeholders, never a secret. When the sender has claimed mail 2 it
//! generates and hashes a new pickup code and a new KX password
//! ([`prepare_secrets`], outside any transaction: Argon2id is slow), then
//! stores both hashes in one short transaction ([`store_secrets`]) that
//! re-checks the claim; the filled body lives only in memory until SMTP
//! has it. A resend (after a
//! failed attempt or a crash) mints again, and the older values stop
//! working.

use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version};
use kxca_ca::enrolment::{self, EnrolmentId};
use kxca_ca::store::{Snapshot, Tx};
use rusqlite::{params, OptionalExtension};
use zeroize::Zeroizing;

use super::policy::{self, Templates};
use super::register::Account;
use crate::error::sql;
use crate::outbox::{self, NewMail, OutboxKind, OutboxMail};

/// Letters and digits a person reads off a mail without confusing them
/// (no 0/O/o, 1/l/I, 2/Z/z, 5/S/s, 8/B), all the KX client accepts.
pub const KX_ALPHABET: &[u8] = b"ACDEFGHJKLMNPQRTUVWXYabcdefghijkmnpqrtuvwxy34679";

/// What the delivery mails need besides the account.
pub struct DeliveryContext<'a> {
    /// The mail templates.
    pub templates: &'a Templates,
    /// The union's name.
    pub union_name: &'a str,
    /// The public role's base URL + `/pickup`.
    pub pickup_url: &'a str,
    /// The domain of the Message-IDs.
    pub message_id_domain: &'a str,
    /// `[kx_password] length`.
    pub kx_password_length: usize,
}

/// Which delivery mails to queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mails {
    /// Mail 1 and mail 2: a new pickup (approval, reset).
    Both,
    /// Mail 2 alone, for the `nth` renewal of a pickup (new code, same URL).
    SecretsOnly {
        /// How many mail 2 this pickup had before: its idempotency key.
        nth: i64,
    },
}

/// Queues the delivery mails for `enrolment` of `account` in `tx`, and
/// records the enrolment as the account's current one. The idempotency
/// keys name the enrolment (and renewal): queuing twice queues once.
pub fn queue(
    tx: &Tx<'_>,
    account: &Account,
    enrolment: EnrolmentId,
    mails: Mails,
    ctx: &DeliveryContext<'_>,
    now: i64,
) -> Result<usize, kxca_ca::Error> {
    tx.execute(
        "UPDATE accounts SET enrolment_id = ?2, updated_at = ?3 WHERE id = ?1",
        params![account.id, enrolment.0, now],
    )
    .map_err(sql)?;
    let vars = [
        ("union_name", ctx.union_name),
        ("office_name", account.office_name.as_str()),
        ("contact_name", account.contact_name.as_str()),
        ("certificate_id", account.certificate_id.as_str()),
        ("pickup_url", ctx.pickup_url),
    ];
    let mut queued = 0;
    if mails == Mails::Both {
        enqueue_ready(
            tx,
            account,
            format!("certificate-ready:{}", enrolment.0),
            ctx,
            now,
        )?;
        queued += 1;
    }
    let key = match mails {
        Mails::Both => format!("initial-passwords:{}", enrolment.0),
        Mails::SecretsOnly { nth } => format!("initial-passwords:{}:renewal:{nth}", enrolment.0),
    };
    let secrets = ctx
        .templates
        .get(policy::INITIAL_PASSWORDS)?
        .render(&vars[..4])?;
    let mail2 = outbox::enqueue(
        tx,
        &NewMail {
            idempotency_key: key,
            kind: OutboxKind::InitialPasswords,
            to: account.secrets_address().to_string(),
            subject: secrets.subject,
            body: secrets.body,
            in_reply_to: None,
            references: Vec::new(),
            attachments: Vec::new(),
        },
        ctx.message_id_domain,
        now,
    )?;
    tx.execute(
        "INSERT OR IGNORE INTO account_deliveries (outbox_id, account_id, enrolment_id, kx_length) VALUES (?1, ?2, ?3, ?4)",
        params![mail2, account.id, enrolment.0, ctx.kx_password_length as i64],
    )
    .map_err(sql)?;
    Ok(queued + 1)
}

/// Queues mail 1 (certificate ready: the pickup URL, no secret) for
/// `account` under `idempotency_key`.
pub(crate) fn enqueue_ready(
    tx: &Tx<'_>,
    account: &Account,
    idempotency_key: String,
    ctx: &DeliveryContext<'_>,
    now: i64,
) -> Result<i64, kxca_ca::Error> {
    let vars = [
        ("union_name", ctx.union_name),
        ("office_name", account.office_name.as_str()),
        ("contact_name", account.contact_name.as_str()),
        ("certificate_id", account.certificate_id.as_str()),
        ("pickup_url", ctx.pickup_url),
    ];
    let ready = ctx
        .templates
        .get(policy::CERTIFICATE_READY)?
        .render(&vars)?;
    outbox::enqueue(
        tx,
        &NewMail {
            idempotency_key,
            kind: OutboxKind::CertificateReady,
            to: account.email1.clone(),
            subject: ready.subject,
            body: ready.body,
            in_reply_to: None,
            references: Vec::new(),
            attachments: Vec::new(),
        },
        ctx.message_id_domain,
        now,
    )
}

/// A KX initial password: `length` characters of [`KX_ALPHABET`] from the
/// system CSPRNG (rejection sampling, no modulo bias), at least one letter
/// and one digit.
pub fn kx_password(length: usize) -> Result<Zeroizing<String>, kxca_ca::Error> {
    let limit = 256 - 256 % KX_ALPHABET.len();
    loop {
        let mut out = Zeroizing::new(String::with_capacity(length));
        let mut buf = Zeroizing::new([0u8; 32]);
        while out.len() < length {
            getrandom::fill(&mut buf[..]).map_err(|e| kxca_ca::Error::Random {
                what: "KX password".to_string(),
                message: e.to_string(),
            })?;
            for &b in buf.iter() {
                if (b as usize) < limit && out.len() < length {
                    out.push(KX_ALPHABET[b as usize % KX_ALPHABET.len()] as char);
                }
            }
        }
        if out.bytes().any(|b| b.is_ascii_digit()) && out.bytes().any(|b| b.is_ascii_alphabetic()) {
            return Ok(out);
        }
    }
}

/// The Argon2id PHC string of a password (OWASP's parameters: 19 MiB,
/// 2 passes, 1 lane), with a 16-byte salt from the CSPRNG.
pub fn phc(password: &str) -> Result<String, kxca_ca::Error> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| kxca_ca::Error::Random {
        what: "Argon2 salt".to_string(),
        message: e.to_string(),
    })?;
    let params = Params::new(19 * 1024, 2, 1, None).map_err(|e| kxca_ca::Error::Encoding {
        what: "Argon2 parameters".to_string(),
        message: e.to_string(),
    })?;
    let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|e| kxca_ca::Error::Encoding {
            what: "Argon2id hash".to_string(),
            message: e.to_string(),
        })?;
    Ok(hash.to_string())
}

/// Mail 2's secrets, generated and hashed before any transaction: the
/// Argon2id time (twice the policy's cost) is not spent holding the
/// store's write lock, which the public role's pickups and the daemon's
/// signing wait for. They work only once [`store_secrets`] has written
/// their hashes; dropping them wipes the clear values.
pub(crate) struct PreparedSecrets {
    code: enrolment::PreparedCode,
    kx: Zeroizing<String>,
    kx_phc: String,
}

/// The KX password length of mail 2 `mail` (its delivery row), read from
/// a snapshot so the secrets can be prepared before the write lock.
pub(crate) fn kx_length(conn: &Snapshot<'_>, mail: &OutboxMail) -> Result<usize, kxca_ca::Error> {
    let len: Option<i64> = conn
        .query_row(
            "SELECT kx_length FROM account_deliveries WHERE outbox_id = ?1",
            [mail.id],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql)?;
    len.map(|l| l as usize).ok_or_else(|| no_delivery_row(mail))
}

fn no_delivery_row(mail: &OutboxMail) -> kxca_ca::Error {
    kxca_ca::Error::InvalidField {
        field: "account_deliveries".to_string(),
        message: format!(
            "outbox #{} is a mail 2 with no delivery row: not sent",
            mail.id
        ),
    }
}

/// Generates and hashes a pickup code and a KX password of `kx_length`.
pub(crate) fn prepare_secrets(
    pickup: &enrolment::PickupPolicy,
    kx_length: usize,
) -> Result<PreparedSecrets, kxca_ca::Error> {
    let code = enrolment::prepare_code(pickup)?;
    let kx = kx_password(kx_length)?;
    let kx_phc = phc(&kx)?;
    Ok(PreparedSecrets { code, kx, kx_phc })
}

/// Stores the hashes of `secrets` for mail 2 `mail` in `tx` (the caller
/// has checked that its claim still holds) and returns the filled body,
/// which exists only in memory. The enrolment must still be waiting: a
/// newer reset or a pickup since the claim makes this fail and the mail
/// must not go out. The previous code and KX password stop working here.
pub(crate) fn store_secrets(
    tx: &Tx<'_>,
    mail: &OutboxMail,
    secrets: PreparedSecrets,
    pickup: &enrolment::PickupPolicy,
    now: i64,
    actor: &str,
) -> Result<Zeroizing<String>, kxca_ca::Error> {
    let row: Option<(i64, i64)> = tx
        .query_row(
            "SELECT account_id, enrolment_id FROM account_deliveries WHERE outbox_id = ?1",
            [mail.id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(sql)?;
    let Some((account_id, enrolment_id)) = row else {
        return Err(no_delivery_row(mail));
    };
    let PreparedSecrets { code, kx, kx_phc } = secrets;
    let code = enrolment::store_code(tx, EnrolmentId(enrolment_id), code, pickup, now)?;
    tx.execute(
        "UPDATE accounts SET kx_password_phc = ?2, kx_password_at = ?3, updated_at = ?3 WHERE id = ?1",
        params![account_id, kx_phc, now],
    )
    .map_err(sql)?;
    tx.execute(
        "UPDATE account_deliveries SET minted_at = ?2, mints = mints + 1 WHERE outbox_id = ?1",
        params![mail.id, now],
    )
    .map_err(sql)?;
    tx.audit(now,
        actor,
        kxca_ca::AuditAction::AccountSecretsMinted,
        None,
        serde_json::json!({ "outbox_id": mail.id, "account_id": account_id, "enrolment_id": enrolment_id, "attempt": mail.attempts }),
    )?;
    Ok(policy::fill_secrets(&mail.body, &code, &kx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kx_passwords_fit_the_kx_rule() {
        for len in [8, 12, 16] {
            for _ in 0..200 {
                let p = kx_password(len).unwrap();
                assert_eq!(p.len(), len);
                assert!(p.bytes().all(|b| KX_ALPHABET.contains(&b)));
                assert!(p.bytes().any(|b| b.is_ascii_digit()));
                assert!(p.bytes().any(|b| b.is_ascii_alphabetic()));
            }
        }
    }

    #[test]
    fn phc_is_argon2id_and_verifies() {
        use argon2::{PasswordHash, PasswordVerifier};
        let s = phc("Abc123def456").unwrap();
        assert!(s.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{s}");
        assert!(!s.contains("Abc123def456"));
        let parsed = PasswordHash::new(&s).unwrap();
        assert!(Argon2::default()
            .verify_password(b"Abc123def456", &parsed)
            .is_ok());
        assert!(Argon2::default()
            .verify_password(b"Abc123def457", &parsed)
            .is_err());
    }
}

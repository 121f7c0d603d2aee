//! The account register: one row per office contact an admin approved,
//! with the certificate id its profile gives it, its state, and the
//! Argon2id hash of its KX initial password (for the KX server's import,
//! never the password). Certificates issued to an account are found by its
//! certificate id in the CA's `certificates` table, so the CA stays the one
//! record of what was issued and revoked.
//!
//! Every state change here (approval, rejection, reset, revocation, renewal,
//! reminders) is one store transaction that also writes its outbox rows and
//! audit event. The admin console calls these functions; the CLI is a face.

pub mod approve;
pub mod delivery;
pub mod export;
pub mod lifecycle;
pub mod policy;
pub mod register;
pub mod reminders;

pub use approve::{approve, decisions, progress, reject, Approval, Context, Decision, RowOutcome};
pub use delivery::{kx_password, KX_ALPHABET};
pub use export::{export, ExportFormat};
pub use lifecycle::{renew_pickup, reset, revoke, RevokeTarget};
pub use policy::{ProvisioningPolicy, Templates};
pub use register::{Account, AccountRegister, AccountState, CertificateSummary};

use kxca_ca::store::Migration;

/// The schema, applied as component "accounts".
pub fn migrations() -> &'static [Migration] {
    MIGRATIONS
}

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "accounts, decisions on application rows, mail 2 deliveries",
    sql: r#"
CREATE TABLE accounts (
    id                 INTEGER PRIMARY KEY,
    certificate_id     TEXT NOT NULL UNIQUE,
    profile            TEXT NOT NULL,
    centre             TEXT NOT NULL,
    union_code         TEXT NOT NULL,
    union_name         TEXT NOT NULL,
    branch_code        TEXT NOT NULL,
    branch_name        TEXT NOT NULL,
    contract_unit      TEXT NOT NULL,
    office_code        TEXT NOT NULL,
    office_name        TEXT NOT NULL,
    contact_code       TEXT NOT NULL,
    contact_name       TEXT NOT NULL,
    email1             TEXT NOT NULL,
    email2             TEXT NOT NULL,
    sharoushi          INTEGER NOT NULL,
    -- Where the office applied from: told when the account is revoked.
    applicant_email    TEXT,
    state              TEXT NOT NULL CHECK (state IN ('active', 'revoked')),
    -- Argon2id PHC string of the KX initial password; NULL until mail 2 is sent.
    kx_password_phc    TEXT,
    kx_password_at     INTEGER,
    -- The pickup (kxca_ca::enrolment) opened last for this account.
    enrolment_id       INTEGER,
    application_id     INTEGER NOT NULL,
    application_row    INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    revoked_at         INTEGER,
    revoke_reason      TEXT
);
CREATE UNIQUE INDEX accounts_contact ON accounts(union_code, branch_code, office_code, contact_code);
CREATE INDEX accounts_by_updated ON accounts(updated_at);

-- What an admin decided about one application row: once per row.
CREATE TABLE application_decisions (
    application_id  INTEGER NOT NULL,
    row             INTEGER NOT NULL,
    decision        TEXT NOT NULL CHECK (decision IN ('approved', 'rejected')),
    account_id      INTEGER REFERENCES accounts(id),
    reason          TEXT,
    actor           TEXT NOT NULL,
    decided_at      INTEGER NOT NULL,
    PRIMARY KEY (application_id, row)
);

-- Mail 2 rows of the outbox: which account and pickup the sender mints
-- the secrets for when it sends the mail (the outbox body has none).
CREATE TABLE account_deliveries (
    outbox_id      INTEGER PRIMARY KEY,
    account_id     INTEGER NOT NULL REFERENCES accounts(id),
    enrolment_id   INTEGER NOT NULL,
    kx_length      INTEGER NOT NULL,
    minted_at      INTEGER,
    mints          INTEGER NOT NULL DEFAULT 0
);
"#,
}];

/// What every provisioning step reads from the CA home: the policy, the
/// mail templates, the union's name, the pickup URL and the Message-ID
/// domain. Loaded once per command or pass; a broken file names itself.
#[derive(Debug, Clone)]
pub struct Setup {
    /// `policies/provisioning.toml`.
    pub policy: ProvisioningPolicy,
    /// The mail templates of `policies/mail/`.
    pub templates: Templates,
    /// The union's name (`[union] name`), in every mail.
    pub union_name: String,
    /// Mail 1's link: `[publication] pickup_url`.
    pub pickup_url: String,
    /// The domain of the Message-IDs (the SMTP From address's).
    pub message_id_domain: String,
}

impl Setup {
    /// Reads the policy and templates of `ca`'s home and its configuration.
    ///
    /// `mail` is the home's `[mail]`: its SMTP From address gives the
    /// Message-ID domain (`kxca.invalid` without one).
    pub fn load(
        ca: &kxca_ca::Ca,
        mail: Option<&crate::MailConfig>,
    ) -> Result<Setup, kxca_ca::Error> {
        let policies = ca.home().policies();
        let config = ca.config();
        let message_id_domain = mail
            .and_then(|m| m.smtp.as_ref())
            .and_then(|s| s.from.rsplit_once('@').map(|(_, d)| d.to_string()))
            .unwrap_or_else(|| "kxca.invalid".to_string());
        Ok(Setup {
            policy: ProvisioningPolicy::load(&policies)?,
            templates: Templates::load(&policies)?,
            union_name: config.union.name.clone(),
            pickup_url: config.publication.pickup_url(),
            message_id_domain,
        })
    }

    /// What the delivery mails need, borrowed from this setup.
    pub fn delivery(&self) -> delivery::DeliveryContext<'_> {
        delivery::DeliveryContext {
            templates: &self.templates,
            union_name: &self.union_name,
            pickup_url: &self.pickup_url,
            message_id_domain: &self.message_id_domain,
            kx_password_length: self.policy.kx_password.length,
        }
    }
}

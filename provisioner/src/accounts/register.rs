//! Reading the register: accounts with their certificates, searching, and
//! the intake validator's view of them ([`AccountRegister`]).

use std::collections::HashMap;

use kxca_ca::store::{certificates, Snapshot};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use crate::error::sql;
use crate::intake::{ExistingAccounts, ExistingContact, OfficeRegister};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
/// An account's state.
pub enum AccountState {
    /// Approved; its contact may hold a certificate.
    Active,
    /// Revoked (the contact or the office left): no certificate, no pickup.
    Revoked,
}

impl AccountState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountState::Active => "active",
            AccountState::Revoked => "revoked",
        }
    }
    fn parse(s: &str) -> Option<AccountState> {
        match s {
            "active" => Some(AccountState::Active),
            "revoked" => Some(AccountState::Revoked),
            _ => None,
        }
    }
}

/// One certificate of an account, from the CA's store.
#[derive(Debug, Clone, Serialize)]
pub struct CertificateSummary {
    /// Serial number, hex.
    pub serial: String,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// `issued`, `pending`, `failed`, or `revoked`.
    pub state: String,
    /// The RFC 5280 reason, when revoked.
    pub revocation_reason: Option<String>,
}

/// An office contact's account.
#[derive(Debug, Clone, Serialize)]
pub struct Account {
    /// Row id.
    pub id: i64,
    /// The certificate id (CN) the profile's template gave this contact.
    pub certificate_id: String,
    /// The certificate profile.
    pub profile: String,
    /// 担当センターコード.
    pub centre: String,
    /// 組合コード.
    pub union_code: String,
    /// 組合名.
    pub union_name: String,
    /// 支部コード.
    pub branch_code: String,
    /// 支部名.
    pub branch_name: String,
    /// 契約単位コード.
    pub contract_unit: String,
    /// 事業所コード (empty on the union's own accounts).
    pub office_code: String,
    /// 事業所名.
    pub office_name: String,
    /// 担当者用コード.
    pub contact_code: String,
    /// 担当者名.
    pub contact_name: String,
    /// メールアドレス1: mail 1, and the certificate's SAN.
    pub email1: String,
    /// メールアドレス2: mail 2 when given.
    pub email2: String,
    /// A 社労士's account.
    pub sharoushi: bool,
    /// The address the application came from: told when the account is revoked.
    pub applicant_email: Option<String>,
    /// Active or revoked.
    pub state: AccountState,
    /// The valid certificate (issued, not revoked, newest), if any.
    pub current_serial: Option<String>,
    /// Every certificate ever issued to this certificate id, oldest first.
    pub certificates: Vec<CertificateSummary>,
    /// The KX initial password's Argon2id PHC string (never the password).
    #[serde(skip)]
    pub kx_password_phc: Option<String>,
    /// When the KX initial password was last minted (mail 2 sent).
    pub kx_password_at: Option<i64>,
    /// The pickup opened last (kxca_ca::enrolment).
    pub enrolment_id: Option<i64>,
    /// The application it was approved from.
    pub application_id: i64,
    /// Its row there.
    pub application_row: u32,
    /// Approved at.
    pub created_at: i64,
    /// Last changed at (what the KX export's `--since` compares).
    pub updated_at: i64,
    /// Revoked at.
    pub revoked_at: Option<i64>,
    /// The RFC 5280 reason of the revocation.
    pub revoke_reason: Option<String>,
}

impl Account {
    /// The holder the certificate is issued to (mail 1's address in the SAN).
    pub fn holder(&self) -> kxca_ca::Holder {
        kxca_ca::Holder {
            centre: self.centre.clone(),
            union_code: self.union_code.clone(),
            branch_code: self.branch_code.clone(),
            contract_unit: self.contract_unit.clone(),
            office_code: self.office_code.clone(),
            contact_code: self.contact_code.clone(),
            office_name: self.office_name.clone(),
            contact_name: self.contact_name.clone(),
            email: self.email1.clone(),
        }
    }

    /// Where mail 2 goes: メールアドレス2 when given, else メールアドレス1.
    pub fn secrets_address(&self) -> &str {
        if self.email2.is_empty() {
            &self.email1
        } else {
            &self.email2
        }
    }
}

const COLUMNS: &str = "id, certificate_id, profile, centre, union_code, union_name, branch_code, branch_name, contract_unit, office_code, office_name, contact_code, contact_name, email1, email2, sharoushi, applicant_email, state, kx_password_phc, kx_password_at, enrolment_id, application_id, application_row, created_at, updated_at, revoked_at, revoke_reason";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    let state: String = r.get(17)?;
    let state = AccountState::parse(&state).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            17,
            rusqlite::types::Type::Text,
            format!("accounts.state: unknown value '{state}'").into(),
        )
    })?;
    Ok(Account {
        id: r.get(0)?,
        certificate_id: r.get(1)?,
        profile: r.get(2)?,
        centre: r.get(3)?,
        union_code: r.get(4)?,
        union_name: r.get(5)?,
        branch_code: r.get(6)?,
        branch_name: r.get(7)?,
        contract_unit: r.get(8)?,
        office_code: r.get(9)?,
        office_name: r.get(10)?,
        contact_code: r.get(11)?,
        contact_name: r.get(12)?,
        email1: r.get(13)?,
        email2: r.get(14)?,
        sharoushi: r.get(15)?,
        applicant_email: r.get(16)?,
        state,
        kx_password_phc: r.get(18)?,
        kx_password_at: r.get(19)?,
        enrolment_id: r.get(20)?,
        application_id: r.get(21)?,
        application_row: r.get(22)?,
        created_at: r.get(23)?,
        updated_at: r.get(24)?,
        revoked_at: r.get(25)?,
        revoke_reason: r.get(26)?,
        current_serial: None,
        certificates: Vec::new(),
    })
}

fn with_certificates(conn: &Snapshot<'_>, mut a: Account) -> Result<Account, kxca_ca::Error> {
    let certs = certificates::by_certificate_id(conn, &a.certificate_id)?;
    a.certificates = certs
        .iter()
        .map(|c| CertificateSummary {
            serial: c.serial.clone(),
            not_before: c.not_before,
            not_after: c.not_after,
            state: if c.revocation.is_some() {
                "revoked".to_string()
            } else {
                c.state.as_str().to_string()
            },
            revocation_reason: c.revocation.as_ref().map(|r| r.reason.clone()),
        })
        .collect();
    a.current_serial = certs
        .iter()
        .rev()
        .find(|c| c.state == kxca_ca::CertificateState::Issued && c.revocation.is_none())
        .map(|c| c.serial.clone());
    Ok(a)
}

/// The account with this certificate id.
pub fn by_certificate_id(
    conn: &Snapshot<'_>,
    certificate_id: &str,
) -> Result<Option<Account>, kxca_ca::Error> {
    let a = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM accounts WHERE certificate_id = ?1"),
            [certificate_id],
            row,
        )
        .optional()
        .map_err(sql)?;
    a.map(|a| with_certificates(conn, a)).transpose()
}

/// The account with this row id.
pub fn by_id(conn: &Snapshot<'_>, id: i64) -> Result<Option<Account>, kxca_ca::Error> {
    let a = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM accounts WHERE id = ?1"),
            [id],
            row,
        )
        .optional()
        .map_err(sql)?;
    a.map(|a| with_certificates(conn, a)).transpose()
}

/// The active accounts of an office.
pub fn of_office(
    conn: &Snapshot<'_>,
    union_code: &str,
    branch_code: &str,
    office_code: &str,
) -> Result<Vec<Account>, kxca_ca::Error> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {COLUMNS} FROM accounts WHERE union_code = ?1 AND branch_code = ?2 AND office_code = ?3 AND state = 'active' ORDER BY id"
        ))
        .map_err(sql)?;
    let rows = stmt
        .query_map(params![union_code, branch_code, office_code], row)
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    rows.into_iter()
        .map(|a| with_certificates(conn, a))
        .collect()
}

/// Accounts whose office code, office name, contact name or certificate id
/// contains `query` (all when None), oldest first.
pub fn search(
    conn: &Snapshot<'_>,
    query: Option<&str>,
    limit: i64,
) -> Result<Vec<Account>, kxca_ca::Error> {
    let pattern = query.map(|q| {
        let escaped = q
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("%{escaped}%")
    });
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {COLUMNS} FROM accounts
             WHERE ?1 IS NULL
                OR office_code LIKE ?1 ESCAPE '\\' OR office_name LIKE ?1 ESCAPE '\\'
                OR contact_name LIKE ?1 ESCAPE '\\' OR certificate_id LIKE ?1 ESCAPE '\\'
                OR replace(contact_name, ' ', '') LIKE replace(?1, ' ', '') ESCAPE '\\'
             ORDER BY id LIMIT ?2"
        ))
        .map_err(sql)?;
    let rows = stmt
        .query_map(params![pattern, limit], row)
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    rows.into_iter()
        .map(|a| with_certificates(conn, a))
        .collect()
}

/// One page of [`search`]'s matches, newest account first.
pub fn search_page(
    conn: &Snapshot<'_>,
    query: Option<&str>,
    req: &kxca_ca::store::paging::PageRequest,
) -> Result<kxca_ca::store::paging::Page<Account>, kxca_ca::Error> {
    let pattern = query.map(|q| {
        let escaped = q
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("%{escaped}%")
    });
    let page = kxca_ca::store::paging::page(
        req,
        |a: &Account| a.id,
        |k| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM accounts
                     WHERE (?1 IS NULL
                        OR office_code LIKE ?1 ESCAPE '\\' OR office_name LIKE ?1 ESCAPE '\\'
                        OR contact_name LIKE ?1 ESCAPE '\\' OR certificate_id LIKE ?1 ESCAPE '\\'
                        OR replace(contact_name, ' ', '') LIKE replace(?1, ' ', '') ESCAPE '\\')
                       AND id {} ?2 ORDER BY id {} LIMIT ?3",
                    k.op, k.order
                ))
                .map_err(sql)?;
            let rows = stmt
                .query_map(params![pattern, k.key, k.limit], row)
                .map_err(sql)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql)?;
            Ok(rows)
        },
    )?;
    // Certificates only for the rows shown, not for the probe reads.
    let items = page
        .items
        .into_iter()
        .map(|a| with_certificates(conn, a))
        .collect::<Result<_, _>>()?;
    Ok(kxca_ca::store::paging::Page { items, ..page })
}

/// Accounts changed since `since` (all when None), for the KX export.
pub fn changed_since(
    conn: &Snapshot<'_>,
    since: Option<i64>,
) -> Result<Vec<Account>, kxca_ca::Error> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {COLUMNS} FROM accounts WHERE ?1 IS NULL OR updated_at >= ?1 ORDER BY id"
        ))
        .map_err(sql)?;
    let rows = stmt
        .query_map([since], row)
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    rows.into_iter()
        .map(|a| with_certificates(conn, a))
        .collect()
}

/// The register as the intake validator sees it: the active contacts of
/// each office (duplicates, one account per office, 社労士 with the
/// office's own contact), and the office register when the policy uses it.
#[derive(Debug, Clone, Default)]
pub struct AccountRegister {
    contacts: HashMap<(String, String, String), Vec<ExistingContact>>,
    offices: Option<OfficeRegister>,
}

impl AccountRegister {
    /// Reads the active accounts (creating the tables if needed); with
    /// `offices`, office codes are also checked against that register.
    pub fn load(
        store: &mut kxca_ca::Store,
        offices: Option<OfficeRegister>,
    ) -> Result<AccountRegister, kxca_ca::Error> {
        store.migrate("accounts", super::migrations())?;
        let contacts = store.read(|c| {
            let mut stmt = c
                .prepare("SELECT union_code, branch_code, office_code, contact_code, sharoushi FROM accounts WHERE state = 'active'")
                .map_err(sql)?;
            let mut map: HashMap<(String, String, String), Vec<ExistingContact>> = HashMap::new();
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        (r.get(0)?, r.get(1)?, r.get(2)?),
                        ExistingContact {
                            contact_code: r.get(3)?,
                            sharoushi: r.get(4)?,
                        },
                    ))
                })
                .map_err(sql)?;
            for r in rows {
                let (k, v) = r.map_err(sql)?;
                map.entry(k).or_default().push(v);
            }
            Ok(map)
        })?;
        Ok(AccountRegister { contacts, offices })
    }
}

impl ExistingAccounts for AccountRegister {
    fn contacts(
        &self,
        union_code: &str,
        branch_code: &str,
        office_code: &str,
    ) -> Vec<ExistingContact> {
        self.contacts
            .get(&(
                union_code.to_string(),
                branch_code.to_string(),
                office_code.to_string(),
            ))
            .cloned()
            .unwrap_or_default()
    }

    fn office_registered(
        &self,
        union_code: &str,
        branch_code: &str,
        office_code: &str,
    ) -> Option<bool> {
        self.offices
            .as_ref()
            .map(|o| o.contains(union_code, branch_code, office_code))
    }
}

/// Active accounts whose current certificate ends at or before `until`,
/// soonest first, with that end (the console's "expiring" dashboard; the
/// reminders mail the same accounts on their own schedule).
pub fn expiring(conn: &Snapshot<'_>, until: i64) -> Result<Vec<(Account, i64)>, kxca_ca::Error> {
    let mut out: Vec<(Account, i64)> = search(conn, None, i64::MAX)?
        .into_iter()
        .filter(|a| a.state == AccountState::Active)
        .filter_map(|a| {
            let end = a
                .certificates
                .iter()
                .find(|c| a.current_serial.as_deref() == Some(c.serial.as_str()))?
                .not_after;
            (end <= until).then_some((a, end))
        })
        .collect();
    out.sort_by_key(|(_, end)| *end);
    Ok(out)
}

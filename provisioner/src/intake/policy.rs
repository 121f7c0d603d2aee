//! The intake policy file (`policies/intake.toml`): every rule the form
//! validator applies, so that the union reviews them instead of code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kxca_ca::rules::{ContractUnitRule, IntakeRules};
use serde::Deserialize;

use super::normalize;

/// The validated intake policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntakePolicy {
    /// `[limits]`: bounds on a form (file size, rows, cells) before and while it is read.
    pub limits: Limits,
    /// Limits on the worker process that parses each file and mail.
    #[serde(default)]
    pub sandbox: crate::sandbox::SandboxLimits,
    /// The text this policy was parsed from: the parsing worker gets the
    /// policy over its pipe, not a path into the home.
    #[serde(skip)]
    pub(crate) source: String,
    /// `[columns]`: where each field is in the form, by its title.
    pub columns: Columns,
    /// `[centres]`: the centre codes accepted.
    pub centres: Centres,
    /// `[union]`: the union's code and name as forms must give them.
    pub union: Union,
    /// `[branches]`: the branch codes and names.
    pub branches: Branches,
    /// `[contract_unit]`: how the contract unit code is made and checked.
    #[serde(default)]
    pub contract_unit: ContractUnit,
    /// `[office]`: office code widths and the office register.
    pub office: Office,
    /// `[own_rows]`: how the union's own rows (not an office) are recognised.
    pub own_rows: OwnRows,
    /// `[contact]`: the contact code's width.
    pub contact: Contact,
    /// `[sharoushi]`: how a 社労士's row is recognised.
    pub sharoushi: Sharoushi,
    /// `[names]`: the longest office and contact names.
    pub names: Names,
    /// `[email]`: how the two address columns are checked.
    #[serde(default)]
    pub email: Email,
    /// `[passwords]`: what to do with passwords typed into the form.
    #[serde(default)]
    pub passwords: Passwords,
    /// `[replies]`: the answers' limits (loops, per-sender rate).
    #[serde(default)]
    pub replies: Replies,
    /// The rules issuance shares (codes, contract unit, own rows, names),
    /// read from the same text by `kxca-ca`, so that both apply them alike.
    #[serde(skip)]
    pub rules: IntakeRules,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_file_bytes: u64,
    pub max_decompressed_bytes: u64,
    pub max_compression_ratio: u64,
    pub max_rows: u32,
}

/// One column of the form: its title and the other titles accepted for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    pub title: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// A form without a required column is not an application form.
    #[serde(default = "yes")]
    pub required: bool,
}

fn yes() -> bool {
    true
}

/// The 15 columns of the form.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Columns {
    pub no: ColumnSpec,
    pub centre: ColumnSpec,
    pub contract_unit: ColumnSpec,
    pub union_code: ColumnSpec,
    pub branch_code: ColumnSpec,
    pub office_code: ColumnSpec,
    pub contact_code: ColumnSpec,
    pub email1: ColumnSpec,
    pub union_name: ColumnSpec,
    pub branch_name: ColumnSpec,
    pub office_name: ColumnSpec,
    pub contact_name: ColumnSpec,
    pub password_ca: ColumnSpec,
    pub password_kx: ColumnSpec,
    pub email2: ColumnSpec,
}

/// The form's columns, in the order of `Columns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// The form's own row number.
    No,
    /// センター.
    Centre,
    /// 契約単位コード.
    ContractUnit,
    /// 組合コード.
    UnionCode,
    /// 支部コード.
    BranchCode,
    /// 事業所コード.
    OfficeCode,
    /// 担当者コード.
    ContactCode,
    /// The first e-mail address.
    Email1,
    /// 組合名.
    UnionName,
    /// 支部名.
    BranchName,
    /// 事業所名.
    OfficeName,
    /// 担当者名.
    ContactName,
    /// The CA password column (never read into the report).
    PasswordCa,
    /// The KX password column (never read into the report).
    PasswordKx,
    /// The confirmation e-mail address.
    Email2,
}

impl Field {
    /// Every field, in column-index order.
    pub const ALL: [Field; 15] = [
        Field::No,
        Field::Centre,
        Field::ContractUnit,
        Field::UnionCode,
        Field::BranchCode,
        Field::OfficeCode,
        Field::ContactCode,
        Field::Email1,
        Field::UnionName,
        Field::BranchName,
        Field::OfficeName,
        Field::ContactName,
        Field::PasswordCa,
        Field::PasswordKx,
        Field::Email2,
    ];

    /// The field's index in [`Field::ALL`] and in a row's values.
    pub fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn is_password(self) -> bool {
        matches!(self, Field::PasswordCa | Field::PasswordKx)
    }
}

impl Columns {
    pub fn spec(&self, f: Field) -> &ColumnSpec {
        match f {
            Field::No => &self.no,
            Field::Centre => &self.centre,
            Field::ContractUnit => &self.contract_unit,
            Field::UnionCode => &self.union_code,
            Field::BranchCode => &self.branch_code,
            Field::OfficeCode => &self.office_code,
            Field::ContactCode => &self.contact_code,
            Field::Email1 => &self.email1,
            Field::UnionName => &self.union_name,
            Field::BranchName => &self.branch_name,
            Field::OfficeName => &self.office_name,
            Field::ContactName => &self.contact_name,
            Field::PasswordCa => &self.password_ca,
            Field::PasswordKx => &self.password_kx,
            Field::Email2 => &self.email2,
        }
    }

    /// The canonical title of a column, as findings name it.
    pub fn title(&self, f: Field) -> &str {
        &self.spec(f).title
    }

    /// The 15 canonical titles in form order: what a generated form (test
    /// fixtures, benches) writes so that it follows the policy, not a copy.
    pub fn titles(&self) -> [&str; 15] {
        Field::ALL.map(|f| self.title(f))
    }

    /// Which column a header cell's text names, if any.
    pub fn field_of(&self, header_text: &str) -> Option<Field> {
        let key = normalize::title_key(header_text);
        if key.is_empty() {
            return None;
        }
        Field::ALL.into_iter().find(|f| {
            let s = self.spec(*f);
            normalize::title_key(&s.title) == key
                || s.aliases.iter().any(|a| normalize::title_key(a) == key)
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Centres {
    pub codes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Union {
    pub code: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Branches {
    pub width: usize,
    /// Branch code → branch name.
    pub names: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractUnit {
    #[serde(default)]
    pub rule: ContractUnitRule,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Office {
    /// Fixed width (zero-padded) once the union has fixed one.
    #[serde(default)]
    pub width: Option<usize>,
    #[serde(default = "one")]
    pub min_digits: usize,
    #[serde(default = "ten")]
    pub max_digits: usize,
    #[serde(default)]
    pub use_register: bool,
    /// "union-branch-office" keys allowed more than one account.
    #[serde(default)]
    pub multiple_accounts: Vec<String>,
}

fn one() -> usize {
    1
}
fn ten() -> usize {
    10
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnRows {
    pub branches: Vec<String>,
    #[serde(default)]
    pub office_names: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    pub width: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sharoushi {
    /// Inclusive ranges of contact codes, as fixed-width strings.
    #[serde(default)]
    pub contact_code_ranges: Vec<[String; 2]>,
    #[serde(default)]
    pub words: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Names {
    pub max_chars: usize,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Email {
    #[serde(default)]
    pub legacy_carrier_domains: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Passwords {
    #[serde(default)]
    pub handling: PasswordHandling,
}

/// Which received mail is answered (see `crate::loops`). Mail from
/// programs (Auto-Submitted, delivery reports, the null sender) is never
/// answered whatever this says: RFC 3834 and RFC 3464 leave no choice.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Replies {
    /// Automatic answers one sender address gets per hour at most; the
    /// mail beyond is recorded, not answered.
    pub max_per_sender_per_hour: u32,
    /// `Precedence` values whose mail is not answered.
    pub no_reply_precedence: Vec<String>,
    /// Local parts of mail-system senders that are never answered.
    pub no_reply_senders: Vec<String>,
    /// Whether mail that came through a mailing list (`List-Id`) is left
    /// unanswered.
    pub no_reply_list_mail: bool,
}

impl Default for Replies {
    fn default() -> Self {
        Replies {
            max_per_sender_per_hour: 10,
            no_reply_precedence: vec!["bulk".into(), "junk".into(), "list".into()],
            no_reply_senders: vec![
                "mailer-daemon".into(),
                "postmaster".into(),
                "noreply".into(),
                "no-reply".into(),
            ],
            no_reply_list_mail: true,
        }
    }
}

/// What to do with the two password columns. kxca generates passwords
/// itself; the typed ones are never stored or logged in any case.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PasswordHandling {
    /// Say nothing about a typed password.
    #[default]
    Ignore,
    /// Warn the applicant that a typed password is not used.
    Warn,
    /// Refuse the row.
    Reject,
}

/// A policy file that cannot be used, naming the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy file could not be read.
    #[error("{path}: {message}")]
    Read {
        /// The policy file.
        path: PathBuf,
        /// What the system said.
        message: String,
    },
    /// The policy file is not a valid policy.
    #[error("{path}: {message}")]
    Invalid {
        /// The policy file.
        path: PathBuf,
        /// The key at fault (with its line) and what is wrong.
        message: String,
    },
}

/// The policy shipped with kxca, for checks run outside a home.
pub const SHIPPED: &str = include_str!("../../../policies/intake.toml");

impl IntakePolicy {
    /// Reads and validates a policy file.
    pub fn load(path: &Path) -> Result<IntakePolicy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        IntakePolicy::parse(&text, path)
    }

    /// The policy in force: `explicit` (a file named on the command
    /// line), else the home's `policies/intake.toml`, else the shipped
    /// one; checked against the certificate profiles issuance will use
    /// (the home's `policies/profiles/`, else `shipped_profiles`), so that
    /// a row intake accepts is issuable. One choice for `kxca intake`,
    /// `kxca offices` and the daemon's mail pass.
    pub fn in_force(
        home: Option<&kxca_ca::Home>,
        explicit: Option<&Path>,
        shipped_profiles: &[kxca_ca::Profile],
    ) -> Result<IntakePolicy, crate::Error> {
        let home_policy = home
            .map(|h| h.policies().join("intake.toml"))
            .filter(|p| p.exists());
        let policy = match (explicit, home_policy) {
            (Some(p), _) => IntakePolicy::load(p)?,
            (None, Some(p)) => IntakePolicy::load(&p)?,
            (None, None) => {
                if let Some(h) = home.filter(|h| h.config().exists()) {
                    let path = h.policies().join("intake.toml");
                    tracing::warn!(path = %path.display(), "no intake policy in the home; using the shipped one");
                }
                IntakePolicy::shipped()
            }
        };
        match home
            .map(|h| h.policies())
            .filter(|p| p.join("profiles").is_dir())
        {
            Some(dir) => {
                let profiles = kxca_ca::Profiles::load(&dir)?;
                let list: Vec<&kxca_ca::Profile> = profiles
                    .names()
                    .filter_map(|n| profiles.get(n).ok())
                    .collect();
                policy.agree_with(&list)?;
            }
            None => policy.agree_with(&shipped_profiles.iter().collect::<Vec<_>>())?,
        }
        Ok(policy)
    }

    /// The policy shipped with kxca (`policies/intake.toml`).
    pub fn shipped() -> IntakePolicy {
        // The shipped file is checked by a unit test; failing here is a build defect.
        IntakePolicy::parse(SHIPPED, Path::new("policies/intake.toml"))
            .expect("shipped intake policy is valid")
    }

    /// Parses policy text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<IntakePolicy, PolicyError> {
        let invalid = |message: String| PolicyError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let mut p: IntakePolicy =
            toml::from_str(text).map_err(|e| invalid(e.to_string().trim().replace('\n', " ")))?;
        if p.office.min_digits == 0 || p.office.min_digits > p.office.max_digits {
            return Err(invalid(
                "[office] min_digits must be between 1 and max_digits".into(),
            ));
        }
        if p.branches
            .names
            .keys()
            .any(|k| k.len() != p.branches.width || !is_digits(k))
        {
            return Err(invalid(format!(
                "[branches] every code must be {} digits",
                p.branches.width
            )));
        }
        for [lo, hi] in &p.sharoushi.contact_code_ranges {
            if lo.len() != p.contact.width
                || hi.len() != p.contact.width
                || !is_digits(lo)
                || !is_digits(hi)
                || lo > hi
            {
                return Err(invalid(format!(
                    "[sharoushi] contact_code_ranges: [\"{lo}\", \"{hi}\"] is not a range of {}-digit codes",
                    p.contact.width
                )));
            }
        }
        p.rules = IntakeRules::parse(text, path).map_err(|e| invalid(e.to_string()))?;
        if p.limits.max_rows == 0 {
            return Err(invalid("[limits] max_rows must be at least 1".into()));
        }
        p.sandbox.validate().map_err(invalid)?;
        p.source = text.to_string();
        p.centres.codes = p
            .centres
            .codes
            .iter()
            .map(|c| normalize::code_text(c).to_ascii_uppercase())
            .collect();
        p.email.legacy_carrier_domains = p
            .email
            .legacy_carrier_domains
            .iter()
            .map(|d| d.trim().to_ascii_lowercase())
            .collect();
        Ok(p)
    }

    /// Checks that every profile accepts exactly what this policy accepts
    /// (code widths, centres, name length); the error names both files.
    pub fn agree_with(&self, profiles: &[&kxca_ca::Profile]) -> Result<(), kxca_ca::Error> {
        profiles.iter().try_for_each(|p| self.rules.agree_with(p))
    }

    /// Whether the office has been agreed more than one account.
    pub fn allows_multiple_accounts(&self, union: &str, branch: &str, office: &str) -> bool {
        let key = format!("{union}-{branch}-{office}");
        self.office
            .multiple_accounts
            .iter()
            .any(|k| k.trim() == key)
    }
}

pub(crate) fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_policy_loads() {
        let p = IntakePolicy::shipped();
        assert_eq!(p.union.code, "26276");
        assert_eq!(p.branches.names.get("00").map(String::as_str), Some("本部"));
        assert_eq!(p.columns.field_of("メールアドレス１"), Some(Field::Email1));
        assert_eq!(p.columns.field_of(" No． "), Some(Field::No));
    }

    const PROFILE: &str = include_str!("../../../policies/profiles/office-client.toml");

    /// A home whose policies are the shipped ones, with `intake` edited.
    fn home_with(intake: &str) -> (tempfile::TempDir, kxca_ca::Home) {
        let dir = tempfile::tempdir().unwrap();
        let home = kxca_ca::Home::new(dir.path());
        std::fs::create_dir_all(home.policies().join("profiles")).unwrap();
        std::fs::write(home.policies().join("intake.toml"), intake).unwrap();
        std::fs::write(home.policies().join("profiles/office-client.toml"), PROFILE).unwrap();
        (dir, home)
    }

    #[test]
    fn the_policy_in_force_is_explicit_then_the_homes_then_shipped() {
        let shipped =
            [kxca_ca::Profile::parse(PROFILE, Path::new("policies/office-client.toml")).unwrap()];
        let none = IntakePolicy::in_force(None, None, &shipped).unwrap();
        assert_eq!(none.replies.max_per_sender_per_hour, 10);
        let (_d, home) = home_with(&SHIPPED.replace(
            "max_per_sender_per_hour = 10",
            "max_per_sender_per_hour = 3",
        ));
        let homes = IntakePolicy::in_force(Some(&home), None, &shipped).unwrap();
        assert_eq!(homes.replies.max_per_sender_per_hour, 3);
        let explicit = home.root().join("explicit.toml");
        std::fs::write(
            &explicit,
            SHIPPED.replace(
                "max_per_sender_per_hour = 10",
                "max_per_sender_per_hour = 7",
            ),
        )
        .unwrap();
        let chosen = IntakePolicy::in_force(Some(&home), Some(&explicit), &shipped).unwrap();
        assert_eq!(chosen.replies.max_per_sender_per_hour, 7);
    }

    #[test]
    fn a_home_policy_the_homes_profile_disagrees_with_is_refused() {
        let (_d, home) = home_with(&SHIPPED.replace("max_digits = 10", "max_digits = 9"));
        let e = IntakePolicy::in_force(Some(&home), None, &[]).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("intake.toml") && text.contains("office-client.toml"),
            "{text}"
        );
    }

    #[test]
    fn typo_is_an_error_with_its_line() {
        let text = SHIPPED.replace("[names]\nmax_chars", "[names]\nmax_char");
        let e = IntakePolicy::parse(&text, Path::new("x.toml")).unwrap_err();
        assert!(e.to_string().contains("max_char"), "{e}");
    }
}

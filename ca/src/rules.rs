//! The domain rules an office contact's row follows, whichever way it
//! arrives: the intake validator (`kxca-provisioner`) and issuance
//! ([`crate::Holder::check`]) both call the functions here, so that a row
//! intake calls valid is issuable and a holder issuance refuses is refused
//! at intake too. The values come from `policies/intake.toml`; a profile's
//! `[codes]` and `[names]` must agree with them, which [`IntakeRules::agree_with`]
//! checks whenever both are loaded.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use unicode_normalization::UnicodeNormalization;

use crate::profile::{CodeName, CodePattern, Profile};
use crate::Error;

/// The intake policy shipped with kxca, used when a home has none.
pub const SHIPPED_INTAKE: &str = include_str!("../../policies/intake.toml");

// ---- text as clerks type it ----

/// Characters that are invisible in Excel and never meant: zero-width
/// spaces and joiners, word joiner, BOM, soft hyphen.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}'
    )
}

/// Spaces a clerk may type: ASCII, ideographic (U+3000), no-break.
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || c == '\u{3000}' || c == '\u{00A0}'
}

/// Removes invisible characters and trims spaces at both ends.
pub fn trim(s: &str) -> String {
    let cleaned: String = s.chars().filter(|c| !is_invisible(*c)).collect();
    cleaned.trim_matches(is_space).to_string()
}

/// A code or e-mail address: NFKC (full-width ０-９ Ａ-Ｚ ＠ become ASCII),
/// invisible characters removed, spaces trimmed.
pub fn code_text(s: &str) -> String {
    let n: String = s.nfkc().collect();
    trim(&n)
}

/// A name: NFC, invisible characters removed, trimmed, and each run of
/// spaces folded into one (an ideographic space if the run held one).
pub fn name_text(s: &str) -> String {
    let n: String = trim(s).nfc().collect();
    let mut out = String::with_capacity(n.len());
    let mut run: Option<char> = None;
    for c in n.chars() {
        if is_space(c) {
            run = Some(match run {
                Some('\u{3000}') => '\u{3000}',
                _ if c == '\u{3000}' => '\u{3000}',
                _ => ' ',
            });
        } else {
            if let Some(sp) = run.take() {
                out.push(sp);
            }
            out.push(c);
        }
    }
    out
}

/// An address as stored and put in a certificate: [`code_text`], with the
/// domain in lower case (the local part is the owner's business).
pub fn email_text(s: &str) -> String {
    let t = code_text(s);
    match t.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", domain.to_ascii_lowercase()),
        None => t,
    }
}

// ---- e-mail ----

/// Why an address cannot be sent to or put in a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailProblem {
    /// It holds a character outside ASCII.
    NonAscii,
    /// It is not local@domain with a dotted domain whose top label has a letter.
    Invalid,
    /// Two dots in a row.
    ConsecutiveDots,
    /// A dot at the start or end of the local part or the domain.
    DotAtEdge,
}

impl EmailProblem {
    /// The intake finding code (its Japanese message is in the provisioner's table).
    pub fn code(self) -> &'static str {
        match self {
            EmailProblem::NonAscii => "email_non_ascii",
            EmailProblem::Invalid => "email_invalid",
            EmailProblem::ConsecutiveDots => "email_consecutive_dots",
            EmailProblem::DotAtEdge => "email_dot_at_edge",
        }
    }

    /// Every problem, for tables that must cover them all.
    pub const ALL: [EmailProblem; 4] = [
        EmailProblem::NonAscii,
        EmailProblem::Invalid,
        EmailProblem::ConsecutiveDots,
        EmailProblem::DotAtEdge,
    ];

    fn describe(self) -> &'static str {
        match self {
            EmailProblem::NonAscii => "only ASCII characters are allowed",
            EmailProblem::Invalid => {
                "not a plain address like taro@example.jp (one '@', allowed characters, a domain whose last label has a letter)"
            }
            EmailProblem::ConsecutiveDots => "two dots in a row",
            EmailProblem::DotAtEdge => "a dot at the start or end of a part",
        }
    }
}

/// Whether an address can be sent to and put in a certificate as an
/// IA5String rfc822Name: plain ASCII dot-atoms only, since Japanese MTAs
/// and the KX server accept nothing else, and a domain whose last label
/// holds a letter (a numeric "TLD" is a typo for an IP or a truncation).
pub fn email_problem(addr: &str) -> Option<EmailProblem> {
    use EmailProblem::*;
    if !addr.is_ascii() {
        return Some(NonAscii);
    }
    let mut parts = addr.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return Some(Invalid);
    };
    if local.is_empty() || domain.is_empty() || addr.len() > 254 || local.len() > 64 {
        return Some(Invalid);
    }
    if addr.contains("..") {
        return Some(ConsecutiveDots);
    }
    if local.starts_with('.')
        || local.ends_with('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
    {
        return Some(DotAtEdge);
    }
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c);
    if !local.chars().all(atext) {
        return Some(Invalid);
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    let tld_ok = labels
        .last()
        .is_some_and(|t| t.chars().any(|c| c.is_ascii_alphabetic()));
    if labels.len() < 2 || !labels.iter().all(label_ok) || !tld_ok || domain.len() > 253 {
        return Some(Invalid);
    }
    None
}

/// [`email_problem`] as a message naming the address, for issuance errors.
pub fn check_email(addr: &str) -> Result<(), String> {
    match email_problem(addr) {
        None => Ok(()),
        Some(p) => Err(format!(
            "{addr:?} is not an e-mail address: {}",
            p.describe()
        )),
    }
}

// ---- names ----

/// Why an office or contact name (after [`name_text`]) cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameProblem {
    /// Longer than the profile's `name_max_chars`.
    TooLong,
    /// It holds a control character.
    ControlCharacters,
}

impl NameProblem {
    /// The intake finding code.
    pub fn code(self) -> &'static str {
        match self {
            NameProblem::TooLong => "name_too_long",
            NameProblem::ControlCharacters => "name_control_characters",
        }
    }
}

/// Checks a non-empty name against the policy's length limit.
pub fn name_problem(name: &str, max_chars: usize) -> Option<NameProblem> {
    if name.chars().count() > max_chars {
        return Some(NameProblem::TooLong);
    }
    if name.chars().any(char::is_control) {
        return Some(NameProblem::ControlCharacters);
    }
    None
}

// ---- contract unit ----

/// How the contract unit code (契約単位コード) is made from the other codes:
/// `[contract_unit] rule` in `policies/intake.toml`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub enum ContractUnitRule {
    /// The contract unit code is the union code followed by the branch code.
    #[default]
    #[serde(rename = "union_code+branch_code")]
    UnionPlusBranch,
}

impl ContractUnitRule {
    /// The contract unit code the rule expects.
    pub fn expected(self, union_code: &str, branch_code: &str) -> String {
        match self {
            ContractUnitRule::UnionPlusBranch => format!("{union_code}{branch_code}"),
        }
    }

    /// Its width, given the union code's and the branch code's.
    pub fn width(self, union_width: usize, branch_width: usize) -> usize {
        match self {
            ContractUnitRule::UnionPlusBranch => union_width + branch_width,
        }
    }

    /// The words for messages.
    pub fn describe(self) -> &'static str {
        match self {
            ContractUnitRule::UnionPlusBranch => "the union code followed by the branch code",
        }
    }
}

// ---- the shared part of intake.toml ----

// Only the keys issuance shares; the provisioner's parser reads the whole
// file and rejects unknown keys, so this one tolerates the rest.
#[derive(Deserialize)]
struct IntakeFile {
    centres: CentresSection,
    union: UnionSection,
    branches: BranchesSection,
    #[serde(default)]
    contract_unit: ContractUnitSection,
    office: OfficeSection,
    own_rows: OwnRowsSection,
    contact: ContactSection,
    names: NamesSection,
}
#[derive(Deserialize)]
struct CentresSection {
    codes: Vec<String>,
}
#[derive(Deserialize)]
struct UnionSection {
    code: String,
}
#[derive(Deserialize)]
struct BranchesSection {
    width: usize,
    names: std::collections::BTreeMap<String, String>,
}
#[derive(Deserialize, Default)]
struct ContractUnitSection {
    #[serde(default)]
    rule: ContractUnitRule,
}
#[derive(Deserialize)]
struct OfficeSection {
    #[serde(default)]
    width: Option<usize>,
    #[serde(default = "one")]
    min_digits: usize,
    #[serde(default = "ten")]
    max_digits: usize,
}
fn one() -> usize {
    1
}
fn ten() -> usize {
    10
}
#[derive(Deserialize)]
struct OwnRowsSection {
    branches: Vec<String>,
    #[serde(default)]
    office_names: Vec<String>,
}
#[derive(Deserialize)]
struct ContactSection {
    width: usize,
}
#[derive(Deserialize)]
struct NamesSection {
    max_chars: usize,
}

/// What `policies/intake.toml` says about a contact's codes, names and
/// address that issuance must follow too.
#[derive(Debug, Clone, Default)]
pub struct IntakeRules {
    /// The file the rules were read from, for messages.
    pub path: PathBuf,
    /// Allowed centre codes, upper case.
    pub centres: Vec<String>,
    /// The union code every office code starts with.
    pub union_code: String,
    /// Digits of a branch code.
    pub branch_width: usize,
    /// Known branch codes.
    pub branches: BTreeSet<String>,
    /// How a contract unit code is made from the union and branch codes.
    pub contract_unit: ContractUnitRule,
    /// Digits of an office code, when fixed.
    pub office_width: Option<usize>,
    /// Fewest digits of an office code.
    pub office_min_digits: usize,
    /// Most digits of an office code.
    pub office_max_digits: usize,
    /// Branch codes of the union's own row (not an office).
    pub own_row_branches: Vec<String>,
    /// Office names of the union's own row.
    pub own_row_office_names: Vec<String>,
    /// Digits of a contact code.
    pub contact_width: usize,
    /// Most characters an office or contact name may have.
    pub name_max_chars: usize,
}

impl IntakeRules {
    /// Reads the shared rules from intake policy text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<IntakeRules, Error> {
        let f: IntakeFile = toml::from_str(text).map_err(|e| Error::Policy {
            path: path.to_path_buf(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        Ok(IntakeRules {
            path: path.to_path_buf(),
            centres: f
                .centres
                .codes
                .iter()
                .map(|c| code_text(c).to_ascii_uppercase())
                .collect(),
            union_code: f.union.code,
            branch_width: f.branches.width,
            branches: f.branches.names.into_keys().collect(),
            contract_unit: f.contract_unit.rule,
            office_width: f.office.width,
            office_min_digits: f.office.min_digits,
            office_max_digits: f.office.max_digits,
            own_row_branches: f.own_rows.branches,
            own_row_office_names: f.own_rows.office_names,
            contact_width: f.contact.width,
            name_max_chars: f.names.max_chars,
        })
    }

    /// The rules of `<policies>/intake.toml`, or of the shipped policy when
    /// the home has none (homes made before intake existed).
    pub fn load(policies: &Path) -> Result<IntakeRules, Error> {
        let path = policies.join("intake.toml");
        match std::fs::read_to_string(&path) {
            Ok(text) => IntakeRules::parse(&text, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(path = %path.display(), "no intake policy in the home; using the shipped one");
                IntakeRules::parse(SHIPPED_INTAKE, Path::new("policies/intake.toml (shipped)"))
            }
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// The digit widths (min, max) intake accepts for a code, and the key
    /// of intake.toml that sets them. `None` for the centre, which is a
    /// list of codes rather than a width.
    pub fn digits(&self, name: CodeName) -> Option<(usize, usize, &'static str)> {
        let uw = self.union_code.len();
        Some(match name {
            CodeName::Centre => return None,
            CodeName::UnionCode => (uw, uw, "[union] code"),
            CodeName::BranchCode => (self.branch_width, self.branch_width, "[branches] width"),
            CodeName::ContractUnit => {
                let w = self.contract_unit.width(uw, self.branch_width);
                (w, w, "[contract_unit] rule")
            }
            CodeName::OfficeCode => match self.office_width {
                Some(w) => (w, w, "[office] width"),
                None => (
                    self.office_min_digits,
                    self.office_max_digits,
                    "[office] min_digits/max_digits",
                ),
            },
            CodeName::ContactCode => (self.contact_width, self.contact_width, "[contact] width"),
        })
    }

    /// Whether a row is one of the union's own accounts, the only rows
    /// whose office code (and office name) may be blank.
    pub fn is_own_row(
        &self,
        branch_code: &str,
        office_code_blank: bool,
        office_name: &str,
    ) -> bool {
        let key = |s: &str| -> String {
            s.nfkc()
                .filter(|c| !c.is_whitespace() && *c != '\u{3000}')
                .collect()
        };
        office_code_blank
            && self.own_row_branches.iter().any(|b| b == branch_code)
            && (office_name.is_empty()
                || self
                    .own_row_office_names
                    .iter()
                    .any(|n| key(n) == key(office_name)))
    }

    /// Checks that a profile accepts exactly what this policy accepts: the
    /// same digit widths for every code, every allowed centre code, the
    /// same name length, and a blank office code where own rows allow one.
    /// The error names both files and both keys.
    pub fn agree_with(&self, profile: &Profile) -> Result<(), Error> {
        let disagree =
            |intake_key: String, profile_key: String, detail: String| Error::PolicyDisagreement {
                intake: self.path.clone(),
                intake_key,
                profile: profile.path.clone(),
                profile_key,
                detail,
            };
        for (name, rule) in &profile.codes {
            let pkey = format!("[codes] {}", name.as_str());
            match self.digits(*name) {
                Some((min, max, ikey)) => {
                    if rule.pattern != CodePattern::Digits || rule.min != min || rule.max != max {
                        return Err(disagree(
                            ikey.to_string(),
                            pkey,
                            format!(
                                "intake accepts {min} to {max} digits, the profile {} {} to {} characters",
                                match rule.pattern {
                                    CodePattern::Digits => "digits,",
                                    CodePattern::Alnum => "letters and digits,",
                                },
                                rule.min,
                                rule.max
                            ),
                        ));
                    }
                }
                None => {
                    if let Some(c) = self.centres.iter().find(|c| rule.check(c).is_err()) {
                        return Err(disagree(
                            "[centres] codes".to_string(),
                            pkey,
                            format!(
                                "centre code {c:?} is allowed by intake but not by the profile"
                            ),
                        ));
                    }
                }
            }
        }
        let office_optional = profile
            .codes
            .get(&CodeName::OfficeCode)
            .is_some_and(|r| r.optional);
        if !self.own_row_branches.is_empty() && !office_optional {
            return Err(disagree(
                "[own_rows] branches".to_string(),
                "[codes] office_code".to_string(),
                "intake allows a blank office code on the union's own rows; the profile needs optional = true".to_string(),
            ));
        }
        if self.name_max_chars != profile.name_max_chars {
            return Err(disagree(
                "[names] max_chars".to_string(),
                "[names] max_chars".to_string(),
                format!(
                    "intake allows {} characters, the profile {}",
                    self.name_max_chars, profile.name_max_chars
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_rules() {
        use EmailProblem::*;
        assert_eq!(email_problem("taro@example.co.jp"), None);
        assert_eq!(email_problem("taro@xn--r8jz45g.jp"), None);
        assert_eq!(email_problem("taro..x@example.jp"), Some(ConsecutiveDots));
        assert_eq!(email_problem(".taro@example.jp"), Some(DotAtEdge));
        assert_eq!(email_problem("taro.@example.jp"), Some(DotAtEdge));
        assert_eq!(email_problem("taro@example.jp."), Some(DotAtEdge));
        assert_eq!(email_problem("太郎@example.jp"), Some(NonAscii));
        assert_eq!(email_problem("taro@@example.jp"), Some(Invalid));
        assert_eq!(email_problem("taro example.jp"), Some(Invalid));
        assert_eq!(email_problem("taro@localhost"), Some(Invalid));
        assert_eq!(email_problem("ta ro@example.jp"), Some(Invalid));
        assert_eq!(email_problem("taro@example.123"), Some(Invalid));
        assert_eq!(email_problem("a@-x.jp"), Some(Invalid));
    }

    #[test]
    fn shipped_rules_agree_with_the_shipped_profile() {
        let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let rules = IntakeRules::load(&policies).unwrap();
        let profile = Profile::load(&policies.join("profiles/office-client.toml")).unwrap();
        rules.agree_with(&profile).unwrap();
        assert_eq!(
            rules.digits(CodeName::ContractUnit),
            Some((7, 7, "[contract_unit] rule"))
        );
    }

    #[test]
    fn a_width_set_twice_differently_names_both_files_and_keys() {
        let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let text = SHIPPED_INTAKE.replace("[contact]\nwidth = 3", "[contact]\nwidth = 4");
        assert_ne!(text, SHIPPED_INTAKE);
        let rules = IntakeRules::parse(&text, Path::new("home/policies/intake.toml")).unwrap();
        let profile = Profile::load(&policies.join("profiles/office-client.toml")).unwrap();
        let e = rules.agree_with(&profile).unwrap_err().to_string();
        for part in [
            "home/policies/intake.toml",
            "[contact] width",
            "office-client.toml",
            "[codes] contact_code",
        ] {
            assert!(e.contains(part), "{part} missing from: {e}");
        }
    }
}

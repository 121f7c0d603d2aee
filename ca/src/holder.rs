use serde::{Deserialize, Serialize};

use crate::profile::{CodeName, Profile};
use crate::rules::{self, IntakeRules, NameProblem};
use crate::Error;

/// The office contact a certificate is issued to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holder {
    /// 担当センターコード, e.g. JC
    pub centre: String,
    /// 組合コード, e.g. 26276
    pub union_code: String,
    /// 支部コード, e.g. 00
    pub branch_code: String,
    /// 契約単位コード, e.g. 2627600
    pub contract_unit: String,
    /// 事業所コード; empty on the union's own accounts
    #[serde(default)]
    pub office_code: String,
    /// 担当者用コード, e.g. 001
    pub contact_code: String,
    /// 事業所名
    pub office_name: String,
    /// 担当者名
    pub contact_name: String,
    /// The contact's e-mail address (SAN rfc822Name)
    pub email: String,
}

impl Holder {
    /// One of the holder's codes (union, branch, office, contact) by name.
    pub fn code(&self, name: CodeName) -> &str {
        match name {
            CodeName::Centre => &self.centre,
            CodeName::UnionCode => &self.union_code,
            CodeName::BranchCode => &self.branch_code,
            CodeName::ContractUnit => &self.contract_unit,
            CodeName::OfficeCode => &self.office_code,
            CodeName::ContactCode => &self.contact_code,
        }
    }

    /// The holder as intake would have read it from a form: codes and the
    /// address NFKC-normalised and trimmed (full-width digits typed by a
    /// clerk become ASCII), the centre code in upper case, names trimmed
    /// with their spaces folded. Issuance checks and stores this.
    pub fn normalized(&self) -> Holder {
        Holder {
            centre: rules::code_text(&self.centre).to_ascii_uppercase(),
            union_code: rules::code_text(&self.union_code),
            branch_code: rules::code_text(&self.branch_code),
            contract_unit: rules::code_text(&self.contract_unit),
            office_code: rules::code_text(&self.office_code),
            contact_code: rules::code_text(&self.contact_code),
            office_name: rules::name_text(&self.office_name),
            contact_name: rules::name_text(&self.contact_name),
            email: rules::email_text(&self.email),
        }
    }

    /// Checks a [`Holder::normalized`] holder against a profile and the
    /// intake policy's rules, the same rules the intake validator applies
    /// to a form's row. The error names the field.
    pub fn check(&self, profile: &Profile, rules: &IntakeRules) -> Result<(), Error> {
        for (name, rule) in &profile.codes {
            rule.check(self.code(*name))
                .map_err(|m| Error::field(name.as_str(), m))?;
        }
        if !rules.centres.contains(&self.centre) {
            return Err(Error::field(
                "centre",
                format!(
                    "{:?} is not one of the centres in {} [centres] codes ({})",
                    self.centre,
                    rules.path.display(),
                    rules.centres.join(", ")
                ),
            ));
        }
        if self.union_code != rules.union_code {
            return Err(Error::field(
                "union_code",
                format!(
                    "{:?} is not this union's code {:?} ({} [union] code)",
                    self.union_code,
                    rules.union_code,
                    rules.path.display()
                ),
            ));
        }
        if !rules.branches.contains(&self.branch_code) {
            return Err(Error::field(
                "branch_code",
                format!(
                    "{:?} is not a branch in {} [branches] names",
                    self.branch_code,
                    rules.path.display()
                ),
            ));
        }
        let expected = rules
            .contract_unit
            .expected(&self.union_code, &self.branch_code);
        if self.contract_unit != expected {
            return Err(Error::field(
                "contract_unit",
                format!(
                    "{:?} must be {} ({expected:?})",
                    self.contract_unit,
                    rules.contract_unit.describe()
                ),
            ));
        }
        let own_row = rules.is_own_row(
            &self.branch_code,
            self.office_code.is_empty(),
            &self.office_name,
        );
        if self.office_code.is_empty() && !own_row {
            return Err(Error::field(
                "office_code",
                format!(
                    "is required (blank only on the union's own accounts, {} [own_rows])",
                    rules.path.display()
                ),
            ));
        }
        for (field, value) in [
            ("office_name", &self.office_name),
            ("contact_name", &self.contact_name),
        ] {
            if value.is_empty() {
                if field == "office_name" && own_row {
                    continue;
                }
                return Err(Error::field(field, "is required"));
            }
            match rules::name_problem(value, rules.name_max_chars) {
                None => {}
                Some(NameProblem::TooLong) => {
                    return Err(Error::field(
                        field,
                        format!(
                            "is {} characters; at most {} allowed",
                            value.chars().count(),
                            rules.name_max_chars
                        ),
                    ))
                }
                Some(NameProblem::ControlCharacters) => {
                    return Err(Error::field(field, "contains control characters"))
                }
            }
        }
        if self.email.is_empty() {
            return Err(Error::field("email", "is required"));
        }
        rules::check_email(&self.email).map_err(|m| Error::field("email", m))?;
        Ok(())
    }
}

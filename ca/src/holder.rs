use serde::{Deserialize, Serialize};

use crate::profile::{CodeName, Profile};
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

    /// Checks the holder against a profile. The error names the field.
    pub fn check(&self, profile: &Profile) -> Result<(), Error> {
        for (name, rule) in &profile.codes {
            rule.check(self.code(*name))
                .map_err(|m| Error::field(name.as_str(), m))?;
        }
        let expected = format!("{}{}", self.union_code, self.branch_code);
        if self.contract_unit != expected {
            return Err(Error::field(
                "contract_unit",
                format!(
                    "{:?} must be the union code followed by the branch code ({expected:?})",
                    self.contract_unit
                ),
            ));
        }
        for (field, value) in [
            ("office_name", &self.office_name),
            ("contact_name", &self.contact_name),
        ] {
            let n = value.chars().count();
            if value.trim().is_empty() {
                return Err(Error::field(field, "is required"));
            }
            if n > profile.name_max_chars {
                return Err(Error::field(
                    field,
                    format!(
                        "is {n} characters; at most {} allowed",
                        profile.name_max_chars
                    ),
                ));
            }
            if value.chars().any(|c| c.is_control()) {
                return Err(Error::field(field, "contains control characters"));
            }
        }
        check_email(&self.email).map_err(|m| Error::field("email", m))?;
        Ok(())
    }
}

/// A deliberately strict check for an address we will send mail to and put
/// in a certificate as an IA5String rfc822Name.
pub fn check_email(email: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{email:?} is not an e-mail address: {why}"));
    if !email.is_ascii() {
        return bad("only ASCII characters are allowed");
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return bad("no '@'");
    };
    if local.is_empty() || local.len() > 64 {
        return bad("the part before '@' is empty or too long");
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return bad("dots at the start or end, or two dots in a row");
    }
    let local_ok = local
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b));
    if !local_ok {
        return bad("the part before '@' contains a character not allowed");
    }
    if domain.len() > 253 || !domain.contains('.') {
        return bad("the domain must be a full name like example.jp");
    }
    for label in domain.split('.') {
        if label.is_empty()
            || label.len() > 63
            || label.starts_with('-')
            || label.ends_with('-')
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return bad("the domain is not a valid host name");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_email;

    #[test]
    fn email_rules() {
        assert!(check_email("taro.yamada@example.co.jp").is_ok());
        for bad in [
            "taro",
            "a..b@example.jp",
            ".a@example.jp",
            "a.@example.jp",
            "山田@example.jp",
            "a@localhost",
            "a@-x.jp",
            "a b@example.jp",
        ] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
    }
}

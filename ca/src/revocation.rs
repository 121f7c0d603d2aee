use std::fmt;
use std::str::FromStr;

use crate::Error;

/// RFC 5280 CRLReason (5.3.1). Value 7 is unused; removeFromCRL (8) is for
/// delta CRLs and cannot be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevocationReason {
    /// No reason given.
    Unspecified = 0,
    /// The holder's private key was exposed.
    KeyCompromise = 1,
    /// The CA's key was exposed.
    CaCompromise = 2,
    /// The holder left the office or the office changed.
    AffiliationChanged = 3,
    /// Replaced by a new certificate.
    Superseded = 4,
    /// The office or contact no longer needs it.
    CessationOfOperation = 5,
    /// Suspended; refused by kxca (see README).
    CertificateHold = 6,
    /// The holder may no longer use it.
    PrivilegeWithdrawn = 9,
    /// An attribute authority's key was exposed (listed for completeness).
    AaCompromise = 10,
}

const ALL: [(RevocationReason, &str); 9] = [
    (RevocationReason::Unspecified, "unspecified"),
    (RevocationReason::KeyCompromise, "keyCompromise"),
    (RevocationReason::CaCompromise, "cACompromise"),
    (RevocationReason::AffiliationChanged, "affiliationChanged"),
    (RevocationReason::Superseded, "superseded"),
    (
        RevocationReason::CessationOfOperation,
        "cessationOfOperation",
    ),
    (RevocationReason::CertificateHold, "certificateHold"),
    (RevocationReason::PrivilegeWithdrawn, "privilegeWithdrawn"),
    (RevocationReason::AaCompromise, "aACompromise"),
];

impl RevocationReason {
    /// The CRLReason code (RFC 5280 5.3.1).
    pub fn code(self) -> u8 {
        self as u8
    }
    pub(crate) fn from_code(code: i64) -> Option<Self> {
        ALL.iter()
            .find(|(r, _)| r.code() as i64 == code)
            .map(|(r, _)| *r)
    }
    /// The name as RFC 5280 spells it, as `kxca revoke --reason` takes it.
    pub fn name(self) -> &'static str {
        ALL.iter()
            .find(|(r, _)| *r == self)
            .map(|(_, n)| *n)
            .unwrap_or("unspecified")
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RevocationReason {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let norm = |x: &str| x.to_ascii_lowercase().replace(['-', '_'], "");
        let want = norm(s);
        ALL.iter()
            .find(|(_, n)| norm(n) == want)
            .map(|(r, _)| *r)
            .ok_or_else(|| Error::UnknownReason(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parse_names() {
        assert_eq!(
            "keyCompromise".parse::<RevocationReason>().unwrap(),
            RevocationReason::KeyCompromise
        );
        assert_eq!(
            "key-compromise".parse::<RevocationReason>().unwrap(),
            RevocationReason::KeyCompromise
        );
        assert_eq!("superseded".parse::<RevocationReason>().unwrap().code(), 4);
        assert!("removeFromCRL".parse::<RevocationReason>().is_err());
    }
}

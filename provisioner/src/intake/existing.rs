//! What the validator needs to know about accounts that already exist.

/// A contact already registered for an office.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingContact {
    /// 担当者コード.
    pub contact_code: String,
    /// Whether the account is a 社労士's.
    pub sharoushi: bool,
}

/// Accounts and offices known before this form: the validator asks for the
/// contacts of an office (duplicates, one account per office, 社労士) and,
/// when the policy uses an office register, whether an office is in it.
pub trait ExistingAccounts {
    /// Contacts already registered for (union, branch, office).
    fn contacts(
        &self,
        union_code: &str,
        branch_code: &str,
        office_code: &str,
    ) -> Vec<ExistingContact>;

    /// `Some(true/false)` when an office register is available; `None` when not.
    fn office_registered(
        &self,
        _union_code: &str,
        _branch_code: &str,
        _office_code: &str,
    ) -> Option<bool> {
        None
    }
}

/// No accounts yet, no office register.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoExistingAccounts;

impl ExistingAccounts for NoExistingAccounts {
    fn contacts(&self, _: &str, _: &str, _: &str) -> Vec<ExistingContact> {
        Vec::new()
    }
}

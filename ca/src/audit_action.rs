//! The vocabulary of audit actions. Every `store::audit::append` goes through
//! this enum so a typo cannot create a new action. The strings are part of the
//! stored events and of the Merkle leaves (docs/AUDIT.md): they must never
//! change, only be added to. Reading back keeps `action` as text, because old
//! rows (or rows written by a newer version) may hold an action not listed here.

/// One kind of audited event; `as_str` is the stored, hashed name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    CaInit,
    CertificatePrepare,
    CertificateSignFailed,
    CertificateIssue,
    CertificateDeliverFailed,
    CertificateAbandoned,
    CertificateRevoke,
    CrlSign,
    OcspResponderCertificate,
    ConfigChanged,
    KeyGenerate,
    YubikeySetup,
    YubikeyGenerate,
    YubikeyChangePin,
    YubikeyChangePuk,
    YubikeyUnblockPin,
    YubikeyAttest,
    IntakeMail,
    IntakeMailDuplicate,
    IntakeMailRejected,
    IntakeApplication,
    OfficesImport,
    OutboxSent,
    OutboxFailed,
    OutboxDeliveryReport,
    /// `kxca backup`: a backup was taken (docs/BACKUP.md).
    StoreBackup,
    /// `kxca restore`: this store was restored from a backup.
    StoreRestore,
}

impl AuditAction {
    pub const ALL: &'static [AuditAction] = &[
        AuditAction::CaInit,
        AuditAction::CertificatePrepare,
        AuditAction::CertificateSignFailed,
        AuditAction::CertificateIssue,
        AuditAction::CertificateDeliverFailed,
        AuditAction::CertificateAbandoned,
        AuditAction::CertificateRevoke,
        AuditAction::CrlSign,
        AuditAction::OcspResponderCertificate,
        AuditAction::ConfigChanged,
        AuditAction::KeyGenerate,
        AuditAction::YubikeySetup,
        AuditAction::YubikeyGenerate,
        AuditAction::YubikeyChangePin,
        AuditAction::YubikeyChangePuk,
        AuditAction::YubikeyUnblockPin,
        AuditAction::YubikeyAttest,
        AuditAction::IntakeMail,
        AuditAction::IntakeMailDuplicate,
        AuditAction::IntakeMailRejected,
        AuditAction::IntakeApplication,
        AuditAction::OfficesImport,
        AuditAction::OutboxSent,
        AuditAction::OutboxFailed,
        AuditAction::OutboxDeliveryReport,
        AuditAction::StoreBackup,
        AuditAction::StoreRestore,
    ];

    /// The stored name (hashed into the leaf: never change an existing one).
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::CaInit => "ca.init",
            AuditAction::CertificatePrepare => "certificate.prepare",
            AuditAction::CertificateSignFailed => "certificate.sign_failed",
            AuditAction::CertificateIssue => "certificate.issue",
            AuditAction::CertificateDeliverFailed => "certificate.deliver_failed",
            AuditAction::CertificateAbandoned => "certificate.abandoned",
            AuditAction::CertificateRevoke => "certificate.revoke",
            AuditAction::CrlSign => "crl.sign",
            AuditAction::OcspResponderCertificate => "ocsp.responder_certificate",
            AuditAction::ConfigChanged => "config.changed",
            AuditAction::KeyGenerate => "key.generate",
            AuditAction::YubikeySetup => "yubikey.setup",
            AuditAction::YubikeyGenerate => "yubikey.generate",
            AuditAction::YubikeyChangePin => "yubikey.change_pin",
            AuditAction::YubikeyChangePuk => "yubikey.change_puk",
            AuditAction::YubikeyUnblockPin => "yubikey.unblock_pin",
            AuditAction::YubikeyAttest => "yubikey.attest",
            AuditAction::IntakeMail => "intake.mail",
            AuditAction::IntakeMailDuplicate => "intake.mail_duplicate",
            AuditAction::IntakeMailRejected => "intake.mail_rejected",
            AuditAction::IntakeApplication => "intake.application",
            AuditAction::OfficesImport => "offices.import",
            AuditAction::OutboxSent => "outbox.sent",
            AuditAction::OutboxFailed => "outbox.failed",
            AuditAction::OutboxDeliveryReport => "outbox.delivery_report",
            AuditAction::StoreBackup => "store.backup",
            AuditAction::StoreRestore => "store.restore",
        }
    }

    /// The action with this stored name, if it is one this version knows.
    pub fn parse(s: &str) -> Option<AuditAction> {
        AuditAction::ALL.iter().copied().find(|a| a.as_str() == s)
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::AuditAction;

    // The strings are in stored events and Merkle leaves: pin them so a
    // rename of a variant's string fails here, not in a customer's verify.
    #[test]
    fn stored_names_are_pinned_and_distinct() {
        let names: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(
            names,
            [
                "ca.init",
                "certificate.prepare",
                "certificate.sign_failed",
                "certificate.issue",
                "certificate.deliver_failed",
                "certificate.abandoned",
                "certificate.revoke",
                "crl.sign",
                "ocsp.responder_certificate",
                "config.changed",
                "key.generate",
                "yubikey.setup",
                "yubikey.generate",
                "yubikey.change_pin",
                "yubikey.change_puk",
                "yubikey.unblock_pin",
                "yubikey.attest",
                "intake.mail",
                "intake.mail_duplicate",
                "intake.mail_rejected",
                "intake.application",
                "offices.import",
                "outbox.sent",
                "outbox.failed",
                "outbox.delivery_report",
                "store.backup",
                "store.restore",
            ]
        );
        for a in AuditAction::ALL {
            assert_eq!(AuditAction::parse(a.as_str()), Some(*a));
        }
        assert_eq!(AuditAction::parse("certificate.unknown"), None);
    }
}

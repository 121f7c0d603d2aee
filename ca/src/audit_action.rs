//! The vocabulary of audit actions. Every `store::audit::append` goes through
//! this enum so a typo cannot create a new action. The strings are part of the
//! stored events and of the Merkle leaves (docs/AUDIT.md): they must never
//! change, only be added to. Reading back keeps `action` as text, because old
//! rows (or rows written by a newer version) may hold an action not listed here.

/// One kind of audited event; `as_str` is the stored, hashed name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// A CA home was created (root and issuing CA signed).
    CaInit,
    /// A certificate's row was reserved, before its signature.
    CertificatePrepare,
    /// Signing a reserved certificate failed; the row is left `failed`.
    CertificateSignFailed,
    /// A certificate was signed and its PKCS#12 written.
    CertificateIssue,
    /// A signed certificate's PKCS#12 could not be delivered; the row is left `failed`.
    CertificateDeliverFailed,
    /// A row left `pending` by a dead process was resolved.
    CertificateAbandoned,
    /// A certificate was revoked.
    CertificateRevoke,
    /// A CRL was signed and stored.
    CrlSign,
    /// An OCSP responder certificate was issued or renewed.
    OcspResponderCertificate,
    /// kxca.toml or a policy file differs from the last one recorded.
    ConfigChanged,
    /// A CA key was generated on a PKCS#11 token.
    KeyGenerate,
    /// A YubiKey was set up for a CA key (PIN, PUK, management key).
    YubikeySetup,
    /// A CA key was generated on a YubiKey.
    YubikeyGenerate,
    /// A YubiKey's PIN was changed.
    YubikeyChangePin,
    /// A YubiKey's PUK was changed.
    YubikeyChangePuk,
    /// A YubiKey's blocked PIN was reset with the PUK.
    YubikeyUnblockPin,
    /// A YubiKey attestation of a CA key was taken.
    YubikeyAttest,
    /// A signup mail was read and recorded.
    IntakeMail,
    /// A mail already recorded was seen again and skipped.
    IntakeMailDuplicate,
    /// A mail that could not be read was rejected (moved aside, sender told).
    IntakeMailRejected,
    /// An application form from a mail was checked and queued.
    IntakeApplication,
    /// The office register was imported from CSV.
    OfficesImport,
    /// An outbox mail was accepted by the SMTP server.
    OutboxSent,
    /// An outbox mail failed for good (attempts used up or refused).
    OutboxFailed,
    /// A delivery report (a bounce) of kxca's own mail was matched to its outbox mail.
    OutboxDeliveryReport,
    /// An application row was approved: an account and its pickup created.
    AccountApprove,
    /// Application rows were rejected; the applicant was told why.
    ApplicationReject,
    /// Mail 2 was claimed for sending: a pickup code and a KX password minted (hashes stored).
    AccountSecretsMinted,
    /// An account was reset: a new pickup superseding its certificate.
    AccountReset,
    /// An account (or a whole office's) was revoked with its certificates.
    AccountRevoke,
    /// A locked or expired pickup was renewed and a new mail 2 queued.
    AccountRenewPickup,
    /// An expiry reminder was queued for a certificate and threshold.
    AccountExpiryReminder,
    /// The account feed for the KX server was exported.
    AccountExport,
    /// An office contact may pick up a certificate (approval or reset).
    EnrolmentOpen,
    /// An enrolment was replaced by a newer one or withdrawn.
    EnrolmentCancel,
    /// A pickup code was minted (its hash stored; the code itself never).
    EnrolmentCode,
    /// An admin reopened a locked or expired pickup.
    EnrolmentRenew,
    /// A wrong pickup code was typed (a try counted).
    PickupWrongCode,
    /// The pickup locked after the policy's wrong tries.
    PickupLocked,
    /// A right code was typed: the public key went to the daemon.
    PickupRequest,
    /// A pickup request was given up before it was signed.
    PickupAbandoned,
    /// The daemon could not sign a pickup request.
    PickupFailed,
    /// A pickup request was signed (with any superseded certificate revoked).
    PickupIssued,
    /// A security officer enrolled with their passphrase (hash not recorded).
    OfficerEnrol,
    /// An officer's approval of a ceremony, counted after their passphrase verified.
    CeremonyApprove,
    /// One state change of a ceremony: a rollover, links, a reset list.
    CeremonyStep,
    /// A ceremony ended: its transcript, with every fingerprint.
    CeremonyRun,
    /// An issuing CA revoked at its root (compromise).
    AuthorityRevoke,
    /// An issuing CA retired after its final CRL; its key destroyed or archived.
    AuthorityRetire,
    /// `kxca backup`: a backup was taken (docs/BACKUP.md).
    StoreBackup,
    /// `kxca restore`: this store was restored from a backup.
    StoreRestore,
    /// A console admin account was created (`kxca admin add`).
    AdminAdd,
    /// A console admin logged in (password and TOTP).
    AdminLogin,
    /// A console login was refused (wrong name, password or code, or locked).
    AdminLoginFailed,
    /// A console admin account was locked after repeated failures.
    AdminLocked,
    /// A console admin logged out.
    AdminLogout,
    /// A console admin downloaded an application's stored file.
    AdminDownload,
    /// A console admin account was removed (`kxca admin remove`); its sessions ended.
    AdminRemove,
    /// A locked console admin account was unlocked (`kxca admin unlock`).
    AdminUnlock,
    /// A console admin's password was replaced by an officer (`kxca admin reset-password`).
    AdminResetPassword,
    /// A console admin's TOTP secret was replaced (`kxca admin reset-totp`).
    AdminResetTotp,
    /// A console admin changed their own password on the console.
    AdminPasswordChange,
    /// Console logins from one client address refused: too many failures.
    AdminLoginLimited,
    /// A client certificate became a console admin's second factor (`kxca admin cert`).
    AdminCertificate,
    /// A console session was ended because its admin's client certificate
    /// no longer stands (revoked, expired, not presented).
    AdminCertificateRefused,
    /// The console's TLS server certificate was issued (`kxca admin tls-cert`).
    ConsoleTlsCertificate,
    /// A failed outbox mail was put back in the queue by an admin.
    OutboxRetry,
    /// Mail 1 (the pickup URL) was queued again for an account's pickup.
    AccountResendMail1,
}

impl AuditAction {
    /// Every action, in the order of the pinned-names test.
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
        AuditAction::AccountApprove,
        AuditAction::ApplicationReject,
        AuditAction::AccountSecretsMinted,
        AuditAction::AccountReset,
        AuditAction::AccountRevoke,
        AuditAction::AccountRenewPickup,
        AuditAction::AccountExpiryReminder,
        AuditAction::AccountExport,
        AuditAction::EnrolmentOpen,
        AuditAction::EnrolmentCancel,
        AuditAction::EnrolmentCode,
        AuditAction::EnrolmentRenew,
        AuditAction::PickupWrongCode,
        AuditAction::PickupLocked,
        AuditAction::PickupRequest,
        AuditAction::PickupAbandoned,
        AuditAction::PickupFailed,
        AuditAction::PickupIssued,
        AuditAction::OfficerEnrol,
        AuditAction::CeremonyApprove,
        AuditAction::CeremonyStep,
        AuditAction::CeremonyRun,
        AuditAction::AuthorityRevoke,
        AuditAction::AuthorityRetire,
        AuditAction::StoreBackup,
        AuditAction::StoreRestore,
        AuditAction::AdminAdd,
        AuditAction::AdminLogin,
        AuditAction::AdminLoginFailed,
        AuditAction::AdminLocked,
        AuditAction::AdminLogout,
        AuditAction::AdminDownload,
        AuditAction::AdminRemove,
        AuditAction::AdminUnlock,
        AuditAction::AdminResetPassword,
        AuditAction::AdminResetTotp,
        AuditAction::AdminPasswordChange,
        AuditAction::AdminLoginLimited,
        AuditAction::AdminCertificate,
        AuditAction::AdminCertificateRefused,
        AuditAction::ConsoleTlsCertificate,
        AuditAction::OutboxRetry,
        AuditAction::AccountResendMail1,
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
            AuditAction::AccountApprove => "account.approve",
            AuditAction::ApplicationReject => "application.reject",
            AuditAction::AccountSecretsMinted => "account.secrets_minted",
            AuditAction::AccountReset => "account.reset",
            AuditAction::AccountRevoke => "account.revoke",
            AuditAction::AccountRenewPickup => "account.renew_pickup",
            AuditAction::AccountExpiryReminder => "account.expiry_reminder",
            AuditAction::AccountExport => "account.export",
            AuditAction::EnrolmentOpen => "enrolment.open",
            AuditAction::EnrolmentCancel => "enrolment.cancel",
            AuditAction::EnrolmentCode => "enrolment.code",
            AuditAction::EnrolmentRenew => "enrolment.renew",
            AuditAction::PickupWrongCode => "pickup.wrong_code",
            AuditAction::PickupLocked => "pickup.locked",
            AuditAction::PickupRequest => "pickup.request",
            AuditAction::PickupAbandoned => "pickup.abandoned",
            AuditAction::PickupFailed => "pickup.failed",
            AuditAction::PickupIssued => "pickup.issued",
            AuditAction::OfficerEnrol => "officer.enrol",
            AuditAction::CeremonyApprove => "ceremony.approve",
            AuditAction::CeremonyStep => "ceremony.step",
            AuditAction::CeremonyRun => "ceremony.run",
            AuditAction::AuthorityRevoke => "authority.revoke",
            AuditAction::AuthorityRetire => "authority.retire",
            AuditAction::StoreBackup => "store.backup",
            AuditAction::StoreRestore => "store.restore",
            AuditAction::AdminAdd => "admin.add",
            AuditAction::AdminLogin => "admin.login",
            AuditAction::AdminLoginFailed => "admin.login_failed",
            AuditAction::AdminLocked => "admin.locked",
            AuditAction::AdminLogout => "admin.logout",
            AuditAction::AdminDownload => "admin.download",
            AuditAction::AdminRemove => "admin.remove",
            AuditAction::AdminUnlock => "admin.unlock",
            AuditAction::AdminResetPassword => "admin.reset_password",
            AuditAction::AdminResetTotp => "admin.reset_totp",
            AuditAction::AdminPasswordChange => "admin.password_change",
            AuditAction::AdminLoginLimited => "admin.login_limited",
            AuditAction::AdminCertificate => "admin.certificate",
            AuditAction::AdminCertificateRefused => "admin.certificate_refused",
            AuditAction::ConsoleTlsCertificate => "console.tls_certificate",
            AuditAction::OutboxRetry => "outbox.retry",
            AuditAction::AccountResendMail1 => "account.resend_mail1",
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
                "account.approve",
                "application.reject",
                "account.secrets_minted",
                "account.reset",
                "account.revoke",
                "account.renew_pickup",
                "account.expiry_reminder",
                "account.export",
                "enrolment.open",
                "enrolment.cancel",
                "enrolment.code",
                "enrolment.renew",
                "pickup.wrong_code",
                "pickup.locked",
                "pickup.request",
                "pickup.abandoned",
                "pickup.failed",
                "pickup.issued",
                "officer.enrol",
                "ceremony.approve",
                "ceremony.step",
                "ceremony.run",
                "authority.revoke",
                "authority.retire",
                "store.backup",
                "store.restore",
                "admin.add",
                "admin.login",
                "admin.login_failed",
                "admin.locked",
                "admin.logout",
                "admin.download",
                "admin.remove",
                "admin.unlock",
                "admin.reset_password",
                "admin.reset_totp",
                "admin.password_change",
                "admin.login_limited",
                "admin.certificate",
                "admin.certificate_refused",
                "console.tls_certificate",
                "outbox.retry",
                "account.resend_mail1",
            ]
        );
        for a in AuditAction::ALL {
            assert_eq!(AuditAction::parse(a.as_str()), Some(*a));
        }
        assert_eq!(AuditAction::parse("certificate.unknown"), None);
    }
}

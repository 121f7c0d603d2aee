//! The policy files shipped with kxca. `kxca init` installs them into the
//! home, where the security officers review them and kxca reads them.

use std::path::PathBuf;

const SHIPPED: &[(&str, &str)] = &[
    (
        "profiles/office-client.toml",
        include_str!("../policies/profiles/office-client.toml"),
    ),
    ("intake.toml", include_str!("../policies/intake.toml")),
    ("pickup.toml", include_str!("../policies/pickup.toml")),
    (
        "provisioning.toml",
        include_str!("../policies/provisioning.toml"),
    ),
    (
        "mail/certificate-ready.toml",
        include_str!("../policies/mail/certificate-ready.toml"),
    ),
    (
        "mail/initial-passwords.toml",
        include_str!("../policies/mail/initial-passwords.toml"),
    ),
    (
        "mail/row-rejected.toml",
        include_str!("../policies/mail/row-rejected.toml"),
    ),
    (
        "mail/account-revoked.toml",
        include_str!("../policies/mail/account-revoked.toml"),
    ),
    (
        "mail/expiry-reminder.toml",
        include_str!("../policies/mail/expiry-reminder.toml"),
    ),
    ("ceremony.toml", include_str!("../policies/ceremony.toml")),
    (
        "console-server.toml",
        include_str!("../policies/console-server.toml"),
    ),
    (
        "console-admin.toml",
        include_str!("../policies/console-admin.toml"),
    ),
];

pub fn shipped() -> Vec<(PathBuf, String)> {
    SHIPPED
        .iter()
        .map(|(p, t)| (PathBuf::from(p), t.to_string()))
        .collect()
}

/// The shipped certificate profiles, for checks run outside a home.
pub fn shipped_profiles() -> Result<Vec<kxca_ca::Profile>, kxca_ca::Error> {
    SHIPPED
        .iter()
        .filter(|(p, _)| p.starts_with("profiles/"))
        .map(|(p, t)| kxca_ca::Profile::parse(t, &PathBuf::from("policies").join(p)))
        .collect()
}

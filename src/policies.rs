//! The policy files shipped with kxca. `kxca init` installs them into the
//! home, where the security officers review them and kxca reads them.

use std::path::PathBuf;

const SHIPPED: &[(&str, &str)] = &[
    (
        "profiles/office-client.toml",
        include_str!("../policies/profiles/office-client.toml"),
    ),
    ("intake.toml", include_str!("../policies/intake.toml")),
];

pub fn shipped() -> Vec<(PathBuf, String)> {
    SHIPPED
        .iter()
        .map(|(p, t)| (PathBuf::from(p), t.to_string()))
        .collect()
}

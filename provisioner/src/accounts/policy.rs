//! `policies/provisioning.toml` and the mail templates `policies/mail/*.toml`:
//! what the union reviews about delivery, read from the home (else the
//! shipped copies), checked when loaded so a broken file names itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The validated provisioning policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisioningPolicy {
    /// `[kx_password]`.
    pub kx_password: KxPassword,
    #[serde(default)]
    /// `[form_passwords]`.
    pub form_passwords: FormPasswords,
    /// `[reminders]`.
    pub reminders: Reminders,
    #[serde(skip)]
    /// The file it was read from.
    /// Where it was read from (or the shipped name).
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// `[kx_password]`: the KX initial password kxca generates.
pub struct KxPassword {
    /// 8..=16 letters and digits (the KX client's rule).
    pub length: usize,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
/// `[form_passwords]`: whether passwords typed in the form are used (never).
pub struct FormPasswords {
    #[serde(rename = "use", default)]
    /// `use`: must stay false.
    pub use_typed: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// `[reminders]`: expiry reminder thresholds.
pub struct Reminders {
    /// Days before notAfter, each 1..=365, no repeats.
    pub days_before_expiry: Vec<u32>,
}

/// The shipped `policies/provisioning.toml`.
pub const SHIPPED_POLICY: &str = include_str!("../../../policies/provisioning.toml");

/// The mail templates, by file stem, with the placeholders each may use.
pub const TEMPLATES: &[(&str, &str, &[&str])] = &[
    (
        CERTIFICATE_READY,
        include_str!("../../../policies/mail/certificate-ready.toml"),
        &[
            "union_name",
            "office_name",
            "contact_name",
            "certificate_id",
            "pickup_url",
        ],
    ),
    (
        INITIAL_PASSWORDS,
        include_str!("../../../policies/mail/initial-passwords.toml"),
        &[
            "union_name",
            "office_name",
            "contact_name",
            "certificate_id",
            PICKUP_PASSWORD,
            KX_PASSWORD,
        ],
    ),
    (
        ROW_REJECTED,
        include_str!("../../../policies/mail/row-rejected.toml"),
        &["union_name", "file_name", "rows", "reason"],
    ),
    (
        ACCOUNT_REVOKED,
        include_str!("../../../policies/mail/account-revoked.toml"),
        &[
            "union_name",
            "office_name",
            "contact_name",
            "certificate_id",
            "reason",
        ],
    ),
    (
        EXPIRY_REMINDER,
        include_str!("../../../policies/mail/expiry-reminder.toml"),
        &[
            "union_name",
            "office_name",
            "contact_name",
            "certificate_id",
            "days",
            "not_after",
        ],
    ),
];

/// Mail 1.
pub const CERTIFICATE_READY: &str = "certificate-ready";
/// Mail 2.
pub const INITIAL_PASSWORDS: &str = "initial-passwords";
/// Rows rejected, to the applicant.
pub const ROW_REJECTED: &str = "row-rejected";
/// A revocation, to the contact and the office.
pub const ACCOUNT_REVOKED: &str = "account-revoked";
/// A certificate expires soon.
pub const EXPIRY_REMINDER: &str = "expiry-reminder";
/// Filled in by the sender when mail 2 goes out, never before.
pub const PICKUP_PASSWORD: &str = "pickup_password";
/// Filled in by the sender when mail 2 goes out, never before.
pub const KX_PASSWORD: &str = "kx_password";

fn policy_err(path: &Path, message: impl Into<String>) -> kxca_ca::Error {
    kxca_ca::Error::Policy {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl ProvisioningPolicy {
    /// Parses and checks the policy; errors name `path` and the key.
    pub fn parse(text: &str, path: &Path) -> Result<ProvisioningPolicy, kxca_ca::Error> {
        let mut p: ProvisioningPolicy =
            toml::from_str(text).map_err(|e| policy_err(path, e.to_string()))?;
        p.path = path.to_path_buf();
        if !(8..=16).contains(&p.kx_password.length) {
            return Err(policy_err(
                path,
                format!(
                    "[kx_password] length = {}: the KX client takes 8 to 16 letters and digits",
                    p.kx_password.length
                ),
            ));
        }
        if p.form_passwords.use_typed {
            return Err(policy_err(
                path,
                "[form_passwords] use = true is not supported: intake never keeps a typed password, kxca generates both",
            ));
        }
        let days = &p.reminders.days_before_expiry;
        if days.iter().any(|d| *d == 0 || *d > 365) {
            return Err(policy_err(
                path,
                "[reminders] days_before_expiry: each must be 1 to 365",
            ));
        }
        let mut sorted = days.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != days.len() {
            return Err(policy_err(
                path,
                "[reminders] days_before_expiry lists a day twice",
            ));
        }
        Ok(p)
    }

    /// The home's `policies/provisioning.toml`, else the shipped one.
    pub fn load(policies: &Path) -> Result<ProvisioningPolicy, kxca_ca::Error> {
        let path = policies.join("provisioning.toml");
        match std::fs::read_to_string(&path) {
            Ok(text) => ProvisioningPolicy::parse(&text, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ProvisioningPolicy::parse(
                SHIPPED_POLICY,
                Path::new("policies/provisioning.toml (shipped)"),
            ),
            Err(e) => Err(policy_err(&path, e.to_string())),
        }
    }
}

/// One mail's wording.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateFile {
    subject: String,
    body: String,
    /// Named phrases a placeholder takes its value from (the revocation
    /// reasons of `account-revoked`).
    #[serde(default)]
    reasons: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
/// One mail's wording, checked.
pub struct Template {
    /// The file stem.
    pub name: &'static str,
    /// Where it was read from (or the shipped name).
    pub path: PathBuf,
    subject: String,
    body: String,
    reasons: BTreeMap<String, String>,
    allowed: &'static [&'static str],
}

/// A rendered mail: subject and body, UTF-8.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The subject, UTF-8.
    pub subject: String,
    /// The body, UTF-8 plain text.
    pub body: String,
}

/// Every template, loaded and checked.
#[derive(Debug, Clone)]
pub struct Templates {
    by_name: BTreeMap<&'static str, Template>,
}

impl Templates {
    /// `policies/mail/<name>.toml` from the home when present, else the
    /// shipped text; every placeholder is checked against what that mail
    /// may use, and mail 2 must carry both secrets on their labelled lines.
    pub fn load(policies: &Path) -> Result<Templates, kxca_ca::Error> {
        let mut by_name = BTreeMap::new();
        for (name, shipped, allowed) in TEMPLATES {
            let path = policies.join("mail").join(format!("{name}.toml"));
            let (text, shown) = match std::fs::read_to_string(&path) {
                Ok(t) => (t, path.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
                    shipped.to_string(),
                    PathBuf::from(format!("policies/mail/{name}.toml (shipped)")),
                ),
                Err(e) => return Err(policy_err(&path, e.to_string())),
            };
            let file: TemplateFile =
                toml::from_str(&text).map_err(|e| policy_err(&shown, e.to_string()))?;
            let t = Template {
                name,
                path: shown.clone(),
                subject: file.subject.trim().to_string(),
                body: file.body.trim_start_matches('\n').to_string(),
                reasons: file.reasons,
                allowed,
            };
            for (part, text) in [("subject", &t.subject), ("body", &t.body)] {
                for p in
                    placeholders(text).map_err(|m| policy_err(&shown, format!("{part}: {m}")))?
                {
                    if !allowed.contains(&p.as_str()) {
                        return Err(policy_err(
                            &shown,
                            format!(
                                "{part}: unknown placeholder {{{p}}} (this mail may use: {})",
                                allowed.join(", ")
                            ),
                        ));
                    }
                }
            }
            if *name == ACCOUNT_REVOKED && !t.reasons.contains_key("unspecified") {
                return Err(policy_err(
                    &shown,
                    "[reasons] needs an `unspecified` entry (used for any reason not listed)",
                ));
            }
            if *name != ACCOUNT_REVOKED && !t.reasons.is_empty() {
                return Err(policy_err(
                    &shown,
                    "[reasons] belongs to account-revoked.toml only",
                ));
            }
            if *name == INITIAL_PASSWORDS {
                for (label, p) in [
                    ("認証局へ初回ログイン用のパスワード：", PICKUP_PASSWORD),
                    ("KXサーバへ初回ログイン時のパスワード：", KX_PASSWORD),
                ] {
                    let line = format!("{label}{{{p}}}");
                    if !t.body.lines().any(|l| l.trim() == line) {
                        return Err(policy_err(
                            &shown,
                            format!("body: needs the line {line:?} on its own (the contact copies the value after the full-width colon)"),
                        ));
                    }
                }
                if placeholders(&t.subject)
                    .unwrap_or_default()
                    .iter()
                    .any(|p| p == PICKUP_PASSWORD || p == KX_PASSWORD)
                {
                    return Err(policy_err(
                        &shown,
                        "subject: a password never goes in a subject",
                    ));
                }
            }
            by_name.insert(*name, t);
        }
        Ok(Templates { by_name })
    }

    /// The template named `name` (a file stem of [`TEMPLATES`]).
    pub fn get(&self, name: &str) -> Result<&Template, kxca_ca::Error> {
        self.by_name
            .get(name)
            .ok_or_else(|| policy_err(Path::new("policies/mail"), format!("no template {name:?}")))
    }

    /// The names of every template loaded.
    pub fn names(&self) -> impl Iterator<Item = &&'static str> {
        self.by_name.keys()
    }
}

impl Template {
    /// The `[reasons]` phrase for `key` (an RFC 5280 reason name), else the
    /// `unspecified` one, else the key itself.
    pub fn reason<'a>(&'a self, key: &'a str) -> &'a str {
        self.reasons
            .get(key)
            .or_else(|| self.reasons.get("unspecified"))
            .map_or(key, String::as_str)
    }

    /// Fills every placeholder from `vars`; the secrets of mail 2 stay as
    /// placeholders (the sender fills them). A value missing from `vars`
    /// is an error naming the template.
    pub fn render(&self, vars: &[(&str, &str)]) -> Result<Rendered, kxca_ca::Error> {
        let fill = |text: &str| -> Result<String, kxca_ca::Error> {
            substitute(text, |name| {
                if name == PICKUP_PASSWORD || name == KX_PASSWORD {
                    return Some(format!("{{{name}}}"));
                }
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            })
            .map_err(|m| policy_err(&self.path, m))
        };
        let _ = self.allowed;
        Ok(Rendered {
            subject: fill(&self.subject)?,
            body: fill(&self.body)?,
        })
    }
}

/// The names between single braces; `{{` and `}}` are literal braces.
fn placeholders(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    substitute(text, |name| {
        out.push(name.to_string());
        Some(String::new())
    })?;
    Ok(out)
}

fn substitute(text: &str, mut value: impl FnMut(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len() + 64);
    let mut rest = text;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let c = rest.as_bytes()[i];
        let after = &rest[i + 1..];
        if after.as_bytes().first() == Some(&c) {
            out.push(c as char);
            rest = &after[1..];
            continue;
        }
        if c == b'}' {
            return Err("a lone '}' (write '}}' for a brace)".into());
        }
        let end = after
            .find('}')
            .ok_or_else(|| "a '{' without its '}' (write '{{' for a brace)".to_string())?;
        let name = &after[..end];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return Err(format!("{{{name}}} is not a placeholder name"));
        }
        match value(name) {
            Some(v) => out.push_str(&v),
            None => return Err(format!("no value for {{{name}}}")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Fills mail 2's two secrets into its queued body (held in memory only).
/// The intermediate string holds the pickup password too, so both are
/// wiped on drop, not only the result.
pub fn fill_secrets(
    body: &str,
    pickup_password: &str,
    kx_password: &str,
) -> zeroize::Zeroizing<String> {
    let half = zeroize::Zeroizing::new(body.replacen(
        &format!("{{{PICKUP_PASSWORD}}}"),
        pickup_password,
        1,
    ));
    zeroize::Zeroizing::new(half.replacen(&format!("{{{KX_PASSWORD}}}"), kx_password, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every shipped template renders with the values its mail is given, in
    // Japanese, with no placeholder left but mail 2's two secrets.
    #[test]
    fn every_shipped_template_renders() {
        let dir = tempfile::tempdir().unwrap();
        let t = Templates::load(dir.path()).unwrap();
        let names: Vec<&str> = t.names().copied().collect();
        assert_eq!(names.len(), TEMPLATES.len());
        for (name, _, allowed) in TEMPLATES {
            let vars: Vec<(&str, String)> =
                allowed.iter().map(|a| (*a, format!("<{a}>"))).collect();
            let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = t.get(name).unwrap().render(&vars).unwrap();
            assert!(r.subject.contains("<union_name>"), "{name}: {}", r.subject);
            assert!(!r.subject.contains('{'), "{name}: {}", r.subject);
            assert!(
                r.body
                    .chars()
                    .any(|c| ('\u{3040}'..='\u{30ff}').contains(&c)),
                "{name}"
            );
            if *name == INITIAL_PASSWORDS {
                let filled = fill_secrets(&r.body, "PICK-UP", "Kx12345678");
                assert!(
                    filled.contains("\n認証局へ初回ログイン用のパスワード：PICK-UP\n"),
                    "{}",
                    filled.as_str()
                );
                assert!(
                    filled.contains("\nKXサーバへ初回ログイン時のパスワード：Kx12345678\n"),
                    "{}",
                    filled.as_str()
                );
            } else {
                assert!(!r.body.contains('{'), "{name}: {}", r.body);
            }
            if *name == ACCOUNT_REVOKED {
                let t = t.get(name).unwrap();
                assert!(t.reason("cessationOfOperation").contains("終了"));
                assert_eq!(t.reason("aACompromise"), t.reason("unspecified"));
            }
            if *name == CERTIFICATE_READY {
                assert!(r.body.contains("<pickup_url>") && r.body.contains("Windows"));
                for label in [
                    "認証局へ初回ログイン用のパスワード：",
                    "KXサーバへ初回ログイン時のパスワード：",
                ] {
                    assert!(
                        !r.body.contains(label),
                        "mail 1 has no value after a password label"
                    );
                }
            }
        }
    }

    #[test]
    fn a_template_with_an_unknown_placeholder_or_without_a_secret_line_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("mail")).unwrap();
        let file = dir.path().join("mail/certificate-ready.toml");
        std::fs::write(&file, "subject = \"x\"\nbody = \"{password}\"\n").unwrap();
        let err = Templates::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("certificate-ready.toml") && err.contains("{password}"),
            "{err}"
        );
        std::fs::remove_file(&file).unwrap();
        std::fs::write(
            dir.path().join("mail/initial-passwords.toml"),
            "subject = \"x\"\nbody = \"認証局へ初回ログイン用のパスワード：{pickup_password} KXサーバへ初回ログイン時のパスワード：{kx_password}\"\n",
        )
        .unwrap();
        let err = Templates::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("initial-passwords.toml") && err.contains("on its own"),
            "{err}"
        );
    }

    #[test]
    fn policy_bounds_name_the_key() {
        let p = Path::new("provisioning.toml");
        let bad = SHIPPED_POLICY.replace("length = 12", "length = 20");
        let err = ProvisioningPolicy::parse(&bad, p).unwrap_err().to_string();
        assert!(err.contains("[kx_password] length = 20"), "{err}");
        let bad = SHIPPED_POLICY.replace("use = false", "use = true");
        let err = ProvisioningPolicy::parse(&bad, p).unwrap_err().to_string();
        assert!(err.contains("[form_passwords]"), "{err}");
        assert!(
            !ProvisioningPolicy::parse(SHIPPED_POLICY, p)
                .unwrap()
                .form_passwords
                .use_typed
        );
    }
}

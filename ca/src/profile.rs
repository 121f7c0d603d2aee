use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kxca_hsm::KeyAlgorithm;
use serde::Deserialize;

use crate::{Error, Pkcs12Profile};

/// A certificate profile, loaded from `policies/profiles/<name>.toml`.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The profile's name, as `kxca issue --profile` takes it.
    pub name: String,
    /// What the profile is for, for the officers reviewing it.
    pub description: String,
    /// The file it was read from, for messages.
    pub path: PathBuf,
    /// The key algorithm used when the request names none.
    pub default_key: KeyAlgorithm,
    /// The key algorithms a request may ask for.
    pub allowed_keys: Vec<KeyAlgorithm>,
    /// Days from notBefore to notAfter.
    pub validity_days: u32,
    /// How far notBefore is set back, so a clock slightly behind still accepts the certificate.
    pub backdate_minutes: u32,
    /// C= of the subject.
    pub country: String,
    /// The holder codes put in OU=, in order.
    pub organizational_units: Vec<CodeName>,
    /// How the certificate ID (the `certificate_id` column, and the CN) is built from the holder's codes.
    pub certificate_id: IdTemplate,
    /// The extensions every certificate of the profile carries.
    pub extensions: ExtensionsSpec,
    /// The width and pattern of each holder code.
    pub codes: BTreeMap<CodeName, CodeRule>,
    /// Most characters an office or contact name may have.
    pub name_max_chars: usize,
    /// How the PKCS#12 is encrypted unless the request says otherwise.
    pub pkcs12_default: Pkcs12Profile,
    /// PBKDF2 iterations of the PKCS#12 encryption.
    pub pkcs12_iterations: u32,
}

/// The codes of an office contact that profiles can refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeName {
    /// The centre code.
    Centre,
    /// The union code.
    UnionCode,
    /// The branch code.
    BranchCode,
    /// The contract unit code (union code + branch).
    ContractUnit,
    /// The office code.
    OfficeCode,
    /// The contact code within the office.
    ContactCode,
}

impl CodeName {
    /// The code's name as policies and forms spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            CodeName::Centre => "centre",
            CodeName::UnionCode => "union_code",
            CodeName::BranchCode => "branch_code",
            CodeName::ContractUnit => "contract_unit",
            CodeName::OfficeCode => "office_code",
            CodeName::ContactCode => "contact_code",
        }
    }
    fn parse(s: &str) -> Option<CodeName> {
        [
            CodeName::Centre,
            CodeName::UnionCode,
            CodeName::BranchCode,
            CodeName::ContractUnit,
            CodeName::OfficeCode,
            CodeName::ContactCode,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodePattern {
    Digits,
    Alnum,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeRule {
    pub pattern: CodePattern,
    pub min: usize,
    pub max: usize,
    #[serde(default)]
    pub optional: bool,
}

impl CodeRule {
    /// Checks a code; the message says what is wrong, in English.
    pub fn check(&self, value: &str) -> Result<(), String> {
        if value.is_empty() {
            return if self.optional {
                Ok(())
            } else {
                Err("is required".to_string())
            };
        }
        let ok_chars = match self.pattern {
            CodePattern::Digits => value.bytes().all(|b| b.is_ascii_digit()),
            CodePattern::Alnum => value.bytes().all(|b| b.is_ascii_alphanumeric()),
        };
        if !ok_chars {
            let what = match self.pattern {
                CodePattern::Digits => "digits 0-9",
                CodePattern::Alnum => "ASCII letters and digits",
            };
            return Err(format!("{value:?} must contain only {what}"));
        }
        let n = value.len();
        if n < self.min || n > self.max {
            return Err(if self.min == self.max {
                format!("{value:?} must be exactly {} characters", self.min)
            } else {
                format!("{value:?} must be {} to {} characters", self.min, self.max)
            });
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct ExtensionsSpec {
    pub key_usage_digital_signature: bool,
    pub key_usage_key_encipherment: bool,
    pub key_usage_critical: bool,
    pub eku_client_auth: bool,
    pub eku_email_protection: bool,
    pub crl_distribution_point: bool,
    pub authority_info_access: bool,
    pub email_in_subject_alt_name: bool,
}

/// The certificate id template, e.g. `TI{contract_unit}{office_code:10}{contact_code}`.
#[derive(Debug, Clone)]
pub struct IdTemplate {
    pub source: String,
    parts: Vec<IdPart>,
}

#[derive(Debug, Clone)]
enum IdPart {
    Literal(String),
    Code {
        name: CodeName,
        width: Option<usize>,
    },
}

impl IdTemplate {
    fn parse(source: &str) -> Result<IdTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(IdPart::Literal(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("unclosed '{{' in {source:?}"))?
                + open;
            let inner = &rest[open + 1..close];
            let (name, width) = match inner.split_once(':') {
                Some((n, w)) => (
                    n,
                    Some(
                        w.parse::<usize>()
                            .map_err(|_| format!("width {w:?} in {{{inner}}} is not a number"))?,
                    ),
                ),
                None => (inner, None),
            };
            let name = CodeName::parse(name).ok_or_else(|| {
                format!("unknown code {name:?} in template (use centre, union_code, branch_code, contract_unit, office_code, contact_code)")
            })?;
            parts.push(IdPart::Code { name, width });
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            if rest.contains('}') {
                return Err(format!("stray '}}' in {source:?}"));
            }
            parts.push(IdPart::Literal(rest.to_string()));
        }
        for p in &parts {
            if let IdPart::Literal(l) = p {
                if !l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                    return Err(format!(
                        "literal {l:?} must be ASCII letters, digits or '-'"
                    ));
                }
            }
        }
        Ok(IdTemplate {
            source: source.to_string(),
            parts,
        })
    }

    /// Builds the id from the codes.
    pub fn render(&self, code: impl Fn(CodeName) -> String) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                IdPart::Literal(l) => out.push_str(l),
                IdPart::Code { name, width } => {
                    let v = code(*name);
                    match width {
                        Some(w) if v.len() > *w => {
                            return Err(format!(
                                "{} {v:?} is longer than the {w} digits the certificate id template allows",
                                name.as_str()
                            ))
                        }
                        Some(w) => out.push_str(&format!("{v:0>w$}", w = *w)),
                        None => out.push_str(&v),
                    }
                }
            }
        }
        Ok(out)
    }
}

// ---- the TOML file ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    name: String,
    #[serde(default)]
    description: String,
    key: KeySection,
    validity: ValiditySection,
    subject: SubjectSection,
    certificate_id: IdSection,
    extensions: ExtSection,
    codes: BTreeMap<String, CodeRule>,
    names: NamesSection,
    pkcs12: P12Section,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeySection {
    default: String,
    allowed: Vec<String>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValiditySection {
    days: u32,
    #[serde(default)]
    backdate_minutes: u32,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubjectSection {
    country: String,
    organizational_units: Vec<CodeName>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdSection {
    template: String,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtSection {
    key_usage: Vec<String>,
    key_usage_critical: bool,
    extended_key_usage: Vec<String>,
    crl_distribution_point: bool,
    authority_info_access: bool,
    email_in_subject_alt_name: bool,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamesSection {
    max_chars: usize,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct P12Section {
    default: String,
    iterations: u32,
}

impl Profile {
    /// Loads and checks one profile file.
    pub fn load(path: &Path) -> Result<Profile, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Profile::parse(&text, path)
    }

    /// Parses and checks profile text; `path` names it in errors and must
    /// end in `<name>.toml`.
    pub fn parse(text: &str, path: &Path) -> Result<Profile, Error> {
        let bad = |message: String| Error::Policy {
            path: path.to_path_buf(),
            message,
        };
        let f: ProfileFile =
            toml::from_str(text).map_err(|e| bad(e.to_string().trim().replace('\n', " ")))?;
        let parse_alg = |s: &String| {
            s.parse::<KeyAlgorithm>()
                .map_err(|e| bad(format!("key: {e}")))
        };
        let default_key = parse_alg(&f.key.default)?;
        let allowed_keys = f
            .key
            .allowed
            .iter()
            .map(parse_alg)
            .collect::<Result<Vec<_>, _>>()?;
        if !allowed_keys.contains(&default_key) {
            return Err(bad(format!(
                "key.default {default_key} is not in key.allowed"
            )));
        }
        if f.validity.days == 0 || f.validity.days > 3650 {
            return Err(bad(format!(
                "validity.days {} must be 1 to 3650",
                f.validity.days
            )));
        }
        // A certificate valid from before its issuer would be refused by
        // clients; a day covers any reasonable clock skew.
        if f.validity.backdate_minutes > 1_440 {
            return Err(bad(format!(
                "validity.backdate_minutes {} must be 0 to 1440",
                f.validity.backdate_minutes
            )));
        }
        if f.names.max_chars == 0 || f.names.max_chars > 64 {
            return Err(bad(format!(
                "names.max_chars {} must be 1 to 64 (X.520 upper bound)",
                f.names.max_chars
            )));
        }
        if f.subject.country.len() != 2
            || !f.subject.country.bytes().all(|b| b.is_ascii_uppercase())
        {
            return Err(bad(format!(
                "subject.country {:?} must be a two-letter ISO 3166 code",
                f.subject.country
            )));
        }
        let certificate_id = IdTemplate::parse(&f.certificate_id.template)
            .map_err(|m| bad(format!("certificate_id.template: {m}")))?;
        let mut ext = ExtensionsSpec {
            key_usage_digital_signature: false,
            key_usage_key_encipherment: false,
            key_usage_critical: f.extensions.key_usage_critical,
            eku_client_auth: false,
            eku_email_protection: false,
            crl_distribution_point: f.extensions.crl_distribution_point,
            authority_info_access: f.extensions.authority_info_access,
            email_in_subject_alt_name: f.extensions.email_in_subject_alt_name,
        };
        for ku in &f.extensions.key_usage {
            match ku.as_str() {
                "digitalSignature" => ext.key_usage_digital_signature = true,
                "keyEncipherment" => ext.key_usage_key_encipherment = true,
                other => {
                    return Err(bad(format!(
                        "extensions.key_usage: {other:?} is not allowed for an end-entity (digitalSignature, keyEncipherment)"
                    )))
                }
            }
        }
        if f.extensions.key_usage.is_empty() {
            return Err(bad("extensions.key_usage must not be empty".to_string()));
        }
        for eku in &f.extensions.extended_key_usage {
            match eku.as_str() {
                "clientAuth" => ext.eku_client_auth = true,
                "emailProtection" => ext.eku_email_protection = true,
                other => return Err(bad(format!("extensions.extended_key_usage: unknown {other:?} (clientAuth, emailProtection)"))),
            }
        }
        let mut codes = BTreeMap::new();
        for (k, rule) in f.codes {
            let name =
                CodeName::parse(&k).ok_or_else(|| bad(format!("codes.{k}: unknown code")))?;
            if rule.min == 0 || rule.min > rule.max || rule.max > 64 {
                return Err(bad(format!(
                    "codes.{k}: min {} / max {} must satisfy 1 <= min <= max <= 64",
                    rule.min, rule.max
                )));
            }
            codes.insert(name, rule);
        }
        for needed in [
            CodeName::UnionCode,
            CodeName::BranchCode,
            CodeName::ContractUnit,
            CodeName::OfficeCode,
            CodeName::ContactCode,
            CodeName::Centre,
        ] {
            if !codes.contains_key(&needed) {
                return Err(bad(format!("codes.{} is missing", needed.as_str())));
            }
        }
        let pkcs12_default = f
            .pkcs12
            .default
            .parse::<Pkcs12Profile>()
            .map_err(|m| bad(format!("pkcs12.default: {m}")))?;
        if f.pkcs12.iterations < 2048 || f.pkcs12.iterations > 10_000_000 {
            return Err(bad(format!(
                "pkcs12.iterations {} must be 2048 to 10000000",
                f.pkcs12.iterations
            )));
        }
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if stem != f.name {
            return Err(bad(format!(
                "name {:?} must match the file name {stem:?}",
                f.name
            )));
        }
        Ok(Profile {
            name: f.name,
            description: f.description,
            path: path.to_path_buf(),
            default_key,
            allowed_keys,
            validity_days: f.validity.days,
            backdate_minutes: f.validity.backdate_minutes,
            country: f.subject.country,
            organizational_units: f.subject.organizational_units,
            certificate_id,
            extensions: ext,
            codes,
            name_max_chars: f.names.max_chars,
            pkcs12_default,
            pkcs12_iterations: f.pkcs12.iterations,
        })
    }
}

/// All profiles in a policy directory, by name, with the intake rules
/// that issuance shares with intake.
#[derive(Debug, Clone)]
pub struct Profiles {
    by_name: BTreeMap<String, Profile>,
    rules: crate::rules::IntakeRules,
}

impl Profiles {
    /// Loads every `*.toml` in `dir/profiles` and `dir/intake.toml`'s
    /// shared rules. One bad file, or a profile that disagrees with the
    /// intake policy, fails the load.
    pub fn load(policies: &Path) -> Result<Profiles, Error> {
        let rules = crate::rules::IntakeRules::load(policies)?;
        let dir = policies.join("profiles");
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut by_name = BTreeMap::new();
        // An entry that cannot be listed fails the load rather than a
        // profile silently going missing.
        let mut paths: Vec<PathBuf> = entries
            .map(|e| e.map(|e| e.path()).map_err(|e| Error::io(&dir, e)))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        for p in paths {
            let profile = Profile::load(&p)?;
            rules.agree_with(&profile)?;
            by_name.insert(profile.name.clone(), profile);
        }
        Ok(Profiles { by_name, rules })
    }

    /// The intake policy's rules every holder is checked against.
    pub fn rules(&self) -> &crate::rules::IntakeRules {
        &self.rules
    }

    /// The profile of that name, or an error listing the known ones.
    pub fn get(&self, name: &str) -> Result<&Profile, Error> {
        self.by_name.get(name).ok_or_else(|| Error::UnknownProfile {
            name: name.to_string(),
            known: self.by_name.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    /// The names of every loaded profile.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(|s| s.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_renders_with_padding() {
        let t = IdTemplate::parse("TI{contract_unit}{office_code:10}{contact_code}").unwrap();
        let id = t
            .render(|c| match c {
                CodeName::ContractUnit => "2627600".into(),
                CodeName::OfficeCode => "123".into(),
                CodeName::ContactCode => "001".into(),
                _ => String::new(),
            })
            .unwrap();
        assert_eq!(id, "TI26276000000000123001");
        assert!(IdTemplate::parse("TI{nope}").is_err());
        assert!(IdTemplate::parse("TI{office_code").is_err());
        assert!(IdTemplate::parse("T I{office_code}").is_err());
    }

    #[test]
    fn shipped_profile_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let p = Profiles::load(&dir).unwrap();
        let oc = p.get("office-client").unwrap();
        assert_eq!(oc.validity_days, 1095);
        assert_eq!(oc.default_key, KeyAlgorithm::Rsa2048);
        assert!(p.get("nope").is_err());
    }
}

use std::path::{Path, PathBuf};

use kxca_hsm::{KeyRef, SecretSource};
use serde::{Deserialize, Serialize};

use crate::Error;

/// `kxca.toml`: what this CA is and where its keys live.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A production CA refuses `soft` keys.
    #[serde(default)]
    pub production: bool,
    /// `[union]`: who the CA belongs to.
    pub union: UnionConfig,
    /// `[ca]`: the CA keys, their secret and the CA certificates' names and lifetimes.
    pub ca: CaConfig,
    /// `[publication]`: the URLs written into issued certificates.
    pub publication: PublicationConfig,
    /// `[crl]`: CRL lifetime.
    #[serde(default)]
    pub crl: CrlConfig,
    /// `[yubikey]`: PIN/touch policies and management key of YubiKey CA keys.
    #[serde(default)]
    pub yubikey: kxca_hsm::YubiKeyOptions,
    /// How PKCS#11 modules are loaded and shared (`pkcs11:` keys).
    #[serde(default)]
    pub pkcs11: kxca_hsm::Pkcs11Options,
    /// The OCSP responder's policy (`kxca serve`).
    #[serde(default)]
    pub ocsp: crate::ocsp::OcspConfig,
    /// `[serve]`, the listener of `kxca serve`: owned by kxca-responder
    /// (`ServeConfig`), kept here as written. The kxca binary parses and
    /// checks it with the whole file (src/config.rs) before any command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serve: Option<toml::Table>,
    /// `[mail]`, the signup mailbox and outbound mail: owned by
    /// kxca-provisioner (`MailConfig`), kept here as written, like `serve`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<toml::Table>,
    /// `[console]`, the admin console's listener in `kxca daemon`: owned
    /// by kxca-console (`ConsoleConfig`), kept here as written, like `serve`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<toml::Table>,
    /// `[audit]`: the key that signs checkpoints of the audit record.
    #[serde(default)]
    pub audit: crate::audit_log::AuditConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnionConfig {
    /// e.g. 全国設計事務所健康保険組合; goes in O= as UTF8String.
    pub name: String,
    /// e.g. 26276
    pub code: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaConfig {
    /// The keys `kxca init` makes or opens for the first root and issuing
    /// CA. Only a seed: from then on the store records each authority's key
    /// (ceremonies add authorities with new keys and do not rewrite this
    /// file); after init these two are only checked against the
    /// production rules, never used to find a CA key.
    pub root_key: String,
    pub issuing_key: String,
    /// Environment variable holding the key passphrase or PIN.
    #[serde(default)]
    pub key_secret_env: Option<String>,
    /// File holding the key passphrase or PIN (first line).
    #[serde(default)]
    pub key_secret_file: Option<PathBuf>,
    pub root_common_name: String,
    pub issuing_common_name: String,
    /// Days of validity of the root and issuing CA certificates.
    #[serde(default = "default_root_days")]
    pub root_validity_days: u32,
    #[serde(default = "default_issuing_days")]
    pub issuing_validity_days: u32,
}

fn default_root_days() -> u32 {
    7305
}
fn default_issuing_days() -> u32 {
    3652
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicationConfig {
    /// The CRL distribution point URL put in issued certificates.
    pub crl_url: String,
    /// The OCSP responder URL put in AIA.
    pub ocsp_url: String,
    /// The caIssuers URL put in AIA.
    pub ca_issuers_url: String,
    /// The pickup page of the public role that mail 1 links to (e.g.
    /// `https://kx-ca.example.jp/pickup`). Unset: the origin of `ocsp_url`
    /// (the same `kxca serve`) + `/pickup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pickup_url: Option<String>,
}

impl PublicationConfig {
    /// Where mail 1 sends the contact: `pickup_url`, else the origin of
    /// `ocsp_url` + `/pickup`.
    pub fn pickup_url(&self) -> String {
        if let Some(url) = &self.pickup_url {
            return url.clone();
        }
        let url = &self.ocsp_url;
        let origin = match url.find("://") {
            Some(i) => match url[i + 3..].find('/') {
                Some(j) => &url[..i + 3 + j],
                None => url.as_str(),
            },
            None => url.trim_end_matches('/'),
        };
        format!("{origin}/pickup")
    }
}

impl PublicationConfig {
    /// The CRL URL of one issuing CA: the configured URL names the first
    /// (`.../crl/issuing-1.crl`); after a rollover each CA keeps its own
    /// file name, so their CRLs stay distinct.
    pub fn crl_url_for(&self, authority: &str) -> String {
        if authority == FIRST_ISSUING {
            return self.crl_url.clone();
        }
        replace_file_stem(&self.crl_url, authority)
    }

    /// As [`PublicationConfig::crl_url_for`], for the caIssuers URL.
    pub fn ca_issuers_url_for(&self, authority: &str) -> String {
        if authority == FIRST_ISSUING {
            return self.ca_issuers_url.clone();
        }
        replace_file_stem(&self.ca_issuers_url, authority)
    }
}

/// The issuing CA `kxca init` makes: its certificates carry the URLs as
/// configured, whatever file names they use.
const FIRST_ISSUING: &str = "issuing-1";

/// `http://h/crl/issuing-1.crl` with stem `issuing-2` is
/// `http://h/crl/issuing-2.crl`; a URL without a file extension is kept.
fn replace_file_stem(url: &str, stem: &str) -> String {
    match url.rfind('/') {
        Some(slash) => {
            let file = &url[slash + 1..];
            match file.rfind('.') {
                Some(dot) if dot > 0 => format!("{}{stem}{}", &url[..=slash], &file[dot..]),
                _ => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrlConfig {
    /// Hours between thisUpdate and nextUpdate.
    #[serde(default = "default_crl_hours")]
    pub validity_hours: u32,
}

impl Default for CrlConfig {
    fn default() -> Self {
        CrlConfig {
            validity_hours: default_crl_hours(),
        }
    }
}

fn default_crl_hours() -> u32 {
    168
}

impl Config {
    /// Reads and checks kxca.toml; a missing file is a home not initialised.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NotInitialized {
                    path: path.parent().unwrap_or(path).to_path_buf(),
                }
            } else {
                Error::io(path, e)
            }
        })?;
        let config: Config = toml::from_str(&text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    pub(crate) fn to_toml(&self) -> String {
        // Serialising plain structs of strings and numbers cannot fail.
        toml::to_string_pretty(self).unwrap_or_default()
    }

    fn validate(&self, path: &Path) -> Result<(), Error> {
        let bad = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        for (role, key) in [
            ("root", &self.ca.root_key),
            ("issuing", &self.ca.issuing_key),
        ] {
            let key_ref: KeyRef = key
                .parse()
                .map_err(|e: kxca_hsm::Error| bad(format!("ca.{role}_key: {e}")))?;
            if self.production && key_ref.is_soft() {
                return Err(Error::SoftKeyInProduction {
                    path: path.to_path_buf(),
                    role: role.to_string(),
                    key_ref: key.clone(),
                });
            }
        }
        if self.ca.key_secret_env.is_some() == self.ca.key_secret_file.is_some() {
            return Err(bad(
                "ca: set exactly one of key_secret_env or key_secret_file".to_string(),
            ));
        }
        for (field, url) in [
            ("publication.crl_url", &self.publication.crl_url),
            ("publication.ocsp_url", &self.publication.ocsp_url),
            (
                "publication.ca_issuers_url",
                &self.publication.ca_issuers_url,
            ),
        ] {
            if !(url.starts_with("http://") && url.is_ascii() && url.len() > 7) {
                // RFC 5280 4.2.1.13: CRL DPs and AIA are fetched over plain HTTP.
                return Err(bad(format!("{field}: {url:?} must be an http:// URL")));
            }
        }
        if let Some(url) = &self.publication.pickup_url {
            // A link in a mail: it must open in a browser as written.
            let ok = (url.starts_with("https://") || url.starts_with("http://"))
                && url.len() <= 1024
                && !url.bytes().any(|b| b <= b' ' || b == b'"' || b >= 0x7f);
            if !ok {
                return Err(bad(format!(
                    "publication.pickup_url: {url:?} must be an http(s):// URL without spaces"
                )));
            }
        }
        if self.union.name.trim().is_empty() {
            return Err(bad("union.name is empty".to_string()));
        }
        if let Some(key) = &self.audit.key {
            let key_ref: KeyRef = key
                .parse()
                .map_err(|e: kxca_hsm::Error| bad(format!("audit.key: {e}")))?;
            if self.production && key_ref.is_soft() {
                return Err(Error::SoftKeyInProduction {
                    path: path.to_path_buf(),
                    role: "audit".to_string(),
                    key_ref: key.clone(),
                });
            }
        }
        if self.audit.key_secret_env.is_some() && self.audit.key_secret_file.is_some() {
            return Err(bad(
                "audit: set at most one of key_secret_env or key_secret_file".to_string(),
            ));
        }
        self.check_bounds().map_err(bad)
    }

    /// Every value that ends up inside something the CA signs has bounds, so
    /// a typo cannot make kxca sign a malformed or absurd structure (a CRL
    /// whose nextUpdate overflows GeneralizedTime, a 100-year certificate).
    /// The bounds are listed in README.md, "Configuration bounds".
    fn check_bounds(&self) -> Result<(), String> {
        fn within(key: &str, value: u64, min: u64, max: u64) -> Result<(), String> {
            if value < min || value > max {
                return Err(format!("{key} = {value} is out of range ({min} to {max})"));
            }
            Ok(())
        }
        let ca = &self.ca;
        within(
            "ca.root_validity_days",
            ca.root_validity_days.into(),
            365,
            10_958,
        )?;
        within(
            "ca.issuing_validity_days",
            ca.issuing_validity_days.into(),
            30,
            ca.root_validity_days.into(),
        )?;
        within(
            "crl.validity_hours",
            self.crl.validity_hours.into(),
            1,
            8_760,
        )?;
        let o = &self.ocsp;
        within(
            "ocsp.responder_cert_days",
            o.responder_cert_days.into(),
            1,
            366,
        )?;
        within(
            "ocsp.responder_renew_days",
            o.responder_renew_days.into(),
            0,
            u64::from(o.responder_cert_days).saturating_sub(1),
        )?;
        within(
            "ocsp.response_validity_hours",
            o.response_validity_hours.into(),
            2,
            24 * 31,
        )?;
        within(
            "ocsp.refresh_hours",
            o.refresh_hours.into(),
            1,
            u64::from(o.response_validity_hours).saturating_sub(1),
        )?;
        within(
            "ocsp.crl_refresh_before_hours",
            o.crl_refresh_before_hours.into(),
            0,
            u64::from(self.crl.validity_hours).saturating_sub(1),
        )?;
        within(
            "ocsp.max_request_bytes",
            o.max_request_bytes as u64,
            64,
            1 << 20,
        )?;
        within(
            "ocsp.max_certificates_per_request",
            o.max_certificates_per_request as u64,
            1,
            1_000,
        )?;
        // Checkpoints are signed, not signed content; a day between them
        // is the most an outside party should wait.
        within(
            "audit.checkpoint_interval_secs",
            self.audit.checkpoint_interval_secs,
            1,
            86_400,
        )?;
        // X.520 upper bounds (RFC 5280 appendix A.1): ub-common-name and
        // ub-organization-name are 64 characters.
        for (key, value) in [
            ("union.name", &self.union.name),
            ("ca.root_common_name", &ca.root_common_name),
            ("ca.issuing_common_name", &ca.issuing_common_name),
        ] {
            let n = value.chars().count();
            if n == 0 || n > 64 || value.chars().any(char::is_control) {
                return Err(format!(
                    "{key} must be 1 to 64 characters without control characters (has {n})"
                ));
            }
        }
        for (key, url) in [
            ("publication.crl_url", &self.publication.crl_url),
            ("publication.ocsp_url", &self.publication.ocsp_url),
            (
                "publication.ca_issuers_url",
                &self.publication.ca_issuers_url,
            ),
        ] {
            // IA5String in the certificate; a space or control character
            // would make a URI no client can fetch.
            if url.len() > 1024 || url.bytes().any(|b| b <= b' ' || b == 0x7f) {
                return Err(format!(
                    "{key} must be at most 1024 characters without spaces or control characters"
                ));
            }
        }
        Ok(())
    }

    /// Where the CA key secret comes from.
    pub fn key_secret(&self) -> SecretSource {
        match (&self.ca.key_secret_env, &self.ca.key_secret_file) {
            (_, Some(file)) => SecretSource::File(file.clone()),
            (Some(env), None) => SecretSource::Env(env.clone()),
            (None, None) => SecretSource::Env("KXCA_KEY_PASSPHRASE".to_string()),
        }
    }

    /// Backend settings for opening CA keys, with this CA's production
    /// rule applied (a YubiKey on factory defaults is refused).
    // `..Default::default()` keeps this compiling as backends add sections.
    #[allow(clippy::needless_update)]
    pub fn backend_options(&self) -> kxca_hsm::BackendOptions {
        let mut options = kxca_hsm::BackendOptions {
            pkcs11: self.pkcs11.clone(),
            yubikey: self.yubikey.clone(),
            ..Default::default()
        };
        options.yubikey.production = self.production;
        options
    }

    /// The parsed key reference of the root or issuing CA key.
    pub fn key_ref(&self, role: crate::AuthorityRole) -> Result<KeyRef, Error> {
        let s = match role {
            crate::AuthorityRole::Root => &self.ca.root_key,
            crate::AuthorityRole::Issuing => &self.ca.issuing_key,
        };
        Ok(s.parse()?)
    }
}

#[cfg(test)]
mod publication_tests {
    use super::replace_file_stem;

    #[test]
    fn each_issuing_ca_gets_its_own_file_name() {
        assert_eq!(
            replace_file_stem("http://h:8080/crl/issuing-1.crl", "issuing-2"),
            "http://h:8080/crl/issuing-2.crl"
        );
        assert_eq!(
            replace_file_stem("https://h/ca/issuing-1.cer", "issuing-3"),
            "https://h/ca/issuing-3.cer"
        );
        // No file extension: nothing to replace.
        assert_eq!(replace_file_stem("http://h/crl", "x"), "http://h/crl");
    }
}

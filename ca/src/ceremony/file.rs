//! The ceremony file: a small TOML file under the home that says what one
//! ceremony creates or signs, with which key, profile and validity, and
//! where each output goes. Unknown keys are errors: a misspelt field must
//! not be silently left out of a CA certificate.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
/// What a ceremony makes or signs: the file's `type`.
pub enum Kind {
    /// Generate a CA key and write its public key.
    Key,
    /// A new root (self-signed) and link certificates both ways with the current root.
    Root,
    /// A new issuing CA from the current root: the issuing-CA rollover.
    Intermediate,
    /// One link (cross) certificate: one authority's key certified by another.
    Cross,
    /// A CRL signed in a ceremony: the root's, or an issuing CA's final CRL before its key is retired.
    Crl,
    /// An issuing CA's key is compromised: revoke it at the root and roll to a new key.
    Compromise,
}

impl Kind {
    /// The `type` value in a ceremony file.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Key => "key",
            Kind::Root => "root",
            Kind::Intermediate => "intermediate",
            Kind::Cross => "cross",
            Kind::Crl => "crl",
            Kind::Compromise => "compromise",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// A ceremony file, as parsed (unknown keys refused).
pub struct CeremonyFile {
    #[serde(rename = "type")]
    /// root, intermediate, cross, crl, compromise or key.
    pub kind: Kind,
    #[serde(default)]
    /// Free text for the officers and the transcript.
    pub description: String,
    /// The new key (key, root, intermediate, compromise).
    pub key: Option<KeySection>,
    /// The new CA certificate (root, intermediate, compromise).
    pub certificate: Option<CertificateSection>,
    /// Which authority's key is certified by which (cross).
    pub link: Option<LinkSection>,
    /// The CRL to sign (crl).
    pub crl: Option<CrlSection>,
    /// The compromised issuing CA (compromise).
    pub compromise: Option<CompromiseSection>,
    /// Where the results go.
    pub outputs: Outputs,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySection {
    /// `soft:/path`, `pkcs11:token=...;object=...` or `yubikey:serial=...;slot=...`.
    #[serde(rename = "ref")]
    pub key_ref: String,
    /// ecdsa-p256, rsa-2048 or rsa-3072.
    pub algorithm: String,
    /// Create the key in this ceremony (it must not exist yet); false: the
    /// key was made before (`kxca key generate`, `kxca yubikey generate`).
    #[serde(default)]
    pub generate: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateSection {
    /// The authority's name in the store, the CRL and CA-certificate file
    /// names and URLs: e.g. issuing-2, root-2.
    pub name: String,
    pub common_name: String,
    pub validity_days: u32,
    /// RFC 3339; default: when the ceremony runs.
    pub not_before: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSection {
    /// The authority whose key signs.
    pub issuer: String,
    /// The authority whose key and name are certified.
    pub subject: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
/// What happens to a retired CA's key.
pub enum Retire {
    /// The key is kept offline (the location is recorded).
    Archive,
    /// The key is destroyed (soft keys: the file is overwritten and removed).
    Destroy,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrlSection {
    pub authority: String,
    /// Days until nextUpdate (default: the configured CRL lifetime). A final
    /// CRL is valid until the authority's own notAfter.
    pub next_update_days: Option<u32>,
    /// The last CRL of an issuing CA: refused while a certificate it issued
    /// is still live; its key is then retired.
    #[serde(default, rename = "final")]
    pub final_crl: bool,
    /// With `final`: what happens to the key.
    pub retire: Option<Retire>,
    /// With `retire = "archive"`: where the key is kept.
    pub archive_location: Option<String>,
}

fn default_reason() -> String {
    "keyCompromise".to_string()
}
fn default_root_crl_days() -> u32 {
    30
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompromiseSection {
    /// The issuing CA whose key is compromised.
    pub authority: String,
    #[serde(default = "default_reason")]
    pub reason: String,
    /// nextUpdate of the root CRL that revokes it.
    #[serde(default = "default_root_crl_days")]
    pub root_crl_days: u32,
}

/// Where each result goes, relative to the home (or absolute). None may
/// exist yet: a ceremony never overwrites.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outputs {
    /// The transcript: every step and fingerprint.
    pub transcript: PathBuf,
    /// The new CA certificate or the link certificate (PEM).
    pub certificate: Option<PathBuf>,
    /// The new key's public key (PEM), type key.
    pub public_key: Option<PathBuf>,
    /// The CRL (PEM): crl, and the root CRL of a compromise.
    pub crl: Option<PathBuf>,
    /// Root rollover: the new root's key certified by the old root (NewWithOld).
    pub link_new_by_old: Option<PathBuf>,
    /// Root rollover: the old root's key certified by the new root (OldWithNew).
    pub link_old_by_new: Option<PathBuf>,
    /// Compromise: the live certificates under the compromised CA (JSON lines).
    pub reset_list: Option<PathBuf>,
}

impl CeremonyFile {
    /// Reads and parses a ceremony file; a syntax error or unknown key names the file.
    pub fn load(path: &Path) -> Result<CeremonyFile, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        toml::from_str(&text).map_err(|e| Error::Ceremony {
            path: path.to_path_buf(),
            message: e.to_string().trim().replace('\n', " "),
        })
    }
}

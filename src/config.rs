//! `kxca.toml` whole: each crate owns its sections and the binary puts them
//! together. The CA's sections are `kxca_ca::Config` (which keeps the
//! others as written, unparsed), `[serve]` is kxca-responder's
//! `ServeConfig`, `[mail]` kxca-provisioner's `MailConfig`.
//!
//! Loaded once, before any command runs (`cli::run`), so that every
//! section's check runs for every command: a typo in `[mail]` stops
//! `kxca list` too, naming the file and the key, instead of surfacing
//! only when the daemon's mail pass starts.

use std::path::Path;

use kxca_ca::{Error, Home};
use kxca_provisioner::MailConfig;
use kxca_responder::ServeConfig;
use serde::de::IgnoredAny;
use serde::Deserialize;

/// Every section of kxca.toml, each under the type of the crate that owns
/// it. Refuses a section nobody owns.
// The CA's fields are only named, so that the file's sections are listed
// in one place; their values are kxca_ca::Config's to read.
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sections {
    // The CA's sections: `kxca_ca::Config::load` parses and checks them,
    // and reports the ones missing.
    #[serde(default)]
    production: IgnoredAny,
    #[serde(default)]
    union: IgnoredAny,
    #[serde(default)]
    ca: IgnoredAny,
    #[serde(default)]
    publication: IgnoredAny,
    #[serde(default)]
    crl: IgnoredAny,
    #[serde(default)]
    yubikey: IgnoredAny,
    #[serde(default)]
    pkcs11: IgnoredAny,
    #[serde(default)]
    ocsp: IgnoredAny,
    #[serde(default)]
    serve: ServeConfig,
    #[serde(default)]
    mail: Option<MailConfig>,
    #[serde(default)]
    audit: IgnoredAny,
    #[serde(default)]
    console: Option<kxca_console::ConsoleConfig>,
}

/// kxca.toml, parsed and checked, each section by its owner.
#[derive(Debug, Clone)]
pub struct KxcaToml {
    /// The CA's sections (union, keys, publication, CRL, OCSP, audit).
    pub ca: kxca_ca::Config,
    /// The listener of `kxca serve`.
    pub serve: ServeConfig,
    /// The signup mailbox and outbound mail; `None`: no mail.
    pub mail: Option<MailConfig>,
    /// The admin console's listener in `kxca daemon`; `None`: no console.
    pub console: Option<kxca_console::ConsoleConfig>,
}

impl KxcaToml {
    /// Reads and checks every section of the file at `path`. Errors name
    /// the file and the key, in the words each section's check uses.
    pub fn load(path: &Path) -> Result<KxcaToml, Error> {
        let bad = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        // The CA's loader first: it reports a missing file as a home not
        // initialised, a section nobody owns, and the CA's own keys.
        let ca = kxca_ca::Config::load(path)?;
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        // The whole text again, not the CA's opaque copies of [serve] and
        // [mail]: toml's errors then give the line of the bad key.
        let sections: Sections =
            toml::from_str(&text).map_err(|e| bad(e.to_string().trim().replace('\n', " ")))?;
        let Sections {
            serve,
            mail,
            console,
            ..
        } = sections;
        serve.check().map_err(bad)?;
        if let Some(mail) = &mail {
            mail.check().map_err(|e| bad(e.to_string()))?;
        }
        if let Some(console) = &console {
            console.check().map_err(bad)?;
        }
        Ok(KxcaToml {
            ca,
            serve,
            mail,
            console,
        })
    }

    /// The home's kxca.toml, loaded; `None` when the home has none yet
    /// (each command then says so in its own words).
    pub fn of_home(home: &Home) -> Result<Option<KxcaToml>, Error> {
        if !home.config().exists() {
            return Ok(None);
        }
        KxcaToml::load(&home.config()).map(Some)
    }

    /// The loaded kxca.toml of a command that cannot run without one.
    pub fn required(config: Option<KxcaToml>, home: &Home) -> Result<KxcaToml, Error> {
        config.ok_or_else(|| Error::NotInitialized {
            path: home.root().to_path_buf(),
        })
    }

    /// `[serve]` as `kxca init` writes it: the defaults, spelled out so an
    /// officer reviewing the file sees what the listener does.
    pub fn init_serve_section() -> Option<toml::Table> {
        toml::Table::try_from(ServeConfig::default()).ok()
    }
}

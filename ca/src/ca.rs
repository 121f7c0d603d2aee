use std::fs;
use std::path::{Path, PathBuf};

use kxca_hsm::{KeyAlgorithm, KeyRef, SecretSource, Signer};
use serde_json::json;
use x509_cert::ext::pkix::KeyUsages;
use zeroize::Zeroizing;

use crate::clock::rfc3339;
use crate::config::{CaConfig, CrlConfig, PublicationConfig, UnionConfig};
use crate::crl::{self, CrlInput, CrlOutput, RevokedEntry};
use crate::store::certificates::{self, CertificateRecord, InsertError, NewCertificate};
use crate::store::{audit, authorities, crls, revocations};
use crate::x509::{self, oids, DnAttr, TbsCertificate};
use crate::{
    generate_password, pkcs12, Authority, AuthorityRole, Clock, Config, Error, Holder, Home,
    Password, Pkcs12Profile, Profiles, RevocationReason, Serial, Store,
};

/// How to create a new CA home.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The union's name, for O= of every certificate.
    pub union_name: String,
    /// The union's code, as office codes start with it.
    pub union_code: String,
    /// Algorithm of the root and issuing CA keys.
    pub ca_key_algorithm: KeyAlgorithm,
    /// Key references; `None` means a soft key under `<home>/keys/`.
    pub root_key: Option<String>,
    /// See `root_key`.
    pub issuing_key: Option<String>,
    /// Where the key passphrase (soft) or PIN (token) comes from.
    pub key_secret: SecretSource,
    /// OCSP responder key reference; `None`: a soft key under `<home>/ocsp/`
    /// (refused when `production`).
    pub responder_key: Option<String>,
    /// The responder key's own passphrase or PIN, never the CA keys'. `None`
    /// (not in production): a random passphrase in `<home>/ocsp/`.
    pub responder_key_secret: Option<SecretSource>,
    /// Audit checkpoint key reference; `None`: a soft key under
    /// `<home>/audit/` (in production: no checkpoints until one is set).
    pub audit_key: Option<String>,
    /// The audit key's own passphrase or PIN; `None` (not in production):
    /// a random passphrase in `<home>/audit/`.
    pub audit_key_secret: Option<SecretSource>,
    /// Base URL of `kxca serve`, used for the CRL DP and AIA URLs.
    pub base_url: String,
    /// Refuse soft keys and shared secrets (a production appliance).
    pub production: bool,
    /// Policy files to install under `<home>/policies`, as (relative path, contents).
    pub policies: Vec<(PathBuf, String)>,
    /// CN of the root CA certificate.
    pub root_common_name: String,
    /// CN of the issuing CA certificate.
    pub issuing_common_name: String,
    /// `[serve]` and `[mail]`, the sections other crates own, written into
    /// kxca.toml as given: the kxca binary renders them from its root type
    /// (src/config.rs). `None`: the section is left out.
    pub serve: Option<toml::Table>,
    /// See `serve`.
    pub mail: Option<toml::Table>,
}

/// A request for one office contact's certificate.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    /// The certificate profile (a file under policies/profiles).
    pub profile: String,
    /// Who the certificate is for: office, contact, e-mail, codes.
    pub holder: Holder,
    /// `None`: the profile's default.
    pub key_algorithm: Option<KeyAlgorithm>,
    /// `None`: the profile's default.
    pub pkcs12: Option<Pkcs12Profile>,
}

/// The result of issuance: the certificate and its PKCS#12. The password is
/// set only when kxca generated it. Both secrets are wiped on drop.
pub struct IssuedCertificate {
    /// The stored row of the new certificate.
    pub record: CertificateRecord,
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// The PKCS#12 file's bytes (key, certificate, chain), wiped on drop.
    pub pkcs12: Zeroizing<Vec<u8>>,
    /// How the PKCS#12 was encrypted.
    pub pkcs12_profile: Pkcs12Profile,
    /// The PKCS#12 password kxca generated, to be shown once; `None` when one was given.
    pub generated_password: Option<Password>,
    /// Where the PKCS#12 was written ([`Ca::issue_to`]); `None` when it
    /// was only returned in memory ([`Ca::issue`]).
    pub pkcs12_path: Option<PathBuf>,
}

/// Where issuance hands over the PKCS#12.
#[derive(Clone, Copy)]
enum Delivery<'a> {
    /// Returned to the caller only.
    Memory,
    /// Written to this file, or to `<home>/issued/<id>-<serial>.p12`,
    /// before the certificate is recorded as issued.
    File(Option<&'a Path>),
}

/// Whose key a certificate certifies.
#[derive(Clone, Copy)]
enum SubjectKey<'a> {
    /// A key pair kxca generates now and packages in the PKCS#12.
    Generate,
    /// A public key generated elsewhere (the public role, at pickup): no
    /// PKCS#12 here. `certificate_id` is what the enrolment was opened for;
    /// the profile's template must give the same.
    Public {
        spki: &'a [u8],
        certificate_id: &'a str,
    },
}

/// Steps run in the transaction that records a certificate as issued,
/// given its serial (hex): if they fail, it is not issued.
type Finish<'a> = &'a mut dyn FnMut(&crate::store::Tx<'_>, &str) -> Result<(), Error>;

/// Checks that a public key given for signing is a well-formed key of
/// `algorithm` (the daemon signs what the public role recorded).
fn check_public_key(spki: &[u8], algorithm: KeyAlgorithm) -> Result<(), Error> {
    use pkcs8::DecodePublicKey;
    let bad = |m: String| Error::field("public_key", m);
    match algorithm {
        KeyAlgorithm::EcdsaP256 => {
            p256::PublicKey::from_public_key_der(spki)
                .map_err(|e| bad(format!("not a P-256 public key: {e}")))?;
        }
        KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 => {
            use rsa::traits::PublicKeyParts;
            let k = rsa::RsaPublicKey::from_public_key_der(spki)
                .map_err(|e| bad(format!("not an RSA public key: {e}")))?;
            let bits = k.size() * 8;
            let want = if algorithm == KeyAlgorithm::Rsa2048 {
                2048
            } else {
                3072
            };
            if bits != want {
                return Err(bad(format!("RSA key of {bits} bits, {algorithm} expected")));
            }
        }
    }
    Ok(())
}

/// A PKCS#12 destination checked before signing: the directory exists and
/// is writable (a temporary file is already open in it) and the file does
/// not exist yet.
struct Destination {
    path: PathBuf,
    tmp: tempfile::NamedTempFile,
}

impl Destination {
    /// `create_dir`: create the directory if missing (kxca's own
    /// `issued/`); an operator's `--out` in a missing directory is more
    /// likely a typo than a wish for new directories, so it is refused.
    fn prepare(path: &Path, create_dir: bool) -> Result<Destination, Error> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if create_dir {
            fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        } else if !dir.is_dir() {
            return Err(Error::io(
                &dir,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "directory for the PKCS#12 does not exist",
                ),
            ));
        }
        if fs::symlink_metadata(path).is_ok() {
            return Err(Error::io(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "already exists; refusing to overwrite",
                ),
            ));
        }
        // tempfile creates it 0600: a PKCS#12 holds a private key.
        let tmp = tempfile::Builder::new()
            .prefix(".kxca-")
            .suffix(".p12.tmp")
            .tempfile_in(&dir)
            .map_err(|e| Error::io(&dir, e))?;
        Ok(Destination {
            path: path.to_path_buf(),
            tmp,
        })
    }

    /// Writes, syncs and moves the file into place, never over an existing one.
    fn write(self, bytes: &[u8]) -> Result<PathBuf, Error> {
        use std::io::Write;
        let Destination { path, mut tmp } = self;
        if crate::fault::active("pkcs12-write") {
            return Err(Error::io(
                &path,
                std::io::Error::other("injected write fault (KXCA_TEST_FAULT)"),
            ));
        }
        tmp.write_all(bytes)
            .and_then(|_| tmp.as_file().sync_all())
            .map_err(|e| Error::io(&path, e))?;
        tmp.persist_noclobber(&path)
            .map_err(|e| Error::io(&path, e.error))?;
        Ok(path)
    }
}

/// An open CA: its home, config, policies and store.
pub struct Ca {
    home: Home,
    config: Config,
    profiles: Profiles,
    store: Store,
    clock: Clock,
    /// The issuing signer, opened on first use: unlocking a key (scrypt for
    /// soft keys, a login for tokens) is far costlier than a signature.
    issuing_signer: Option<(i64, Box<dyn Signer>)>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("home", &self.home)
            .finish_non_exhaustive()
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    // Write-then-rename so a reader (nginx, the KX server) never sees half a
    // file; the temporary name is unique, so two processes writing the same
    // file never rename each other's half-written copy away.
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".kxca-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    der::pem::encode_string(label, der::pem::LineEnding::LF, der).unwrap_or_default()
}

struct Built {
    der: Vec<u8>,
    not_before: i64,
    not_after: i64,
}

/// Signs a TBS with `signer` and checks the signature before returning.
pub(crate) fn sign_checked(signer: &dyn Signer, tbs: &[u8]) -> Result<Vec<u8>, Error> {
    let sig = signer.sign(tbs)?;
    kxca_hsm::verify(signer.algorithm(), signer.public_key_der(), tbs, &sig)?;
    Ok(sig)
}

fn ca_certificate(
    signer: &dyn Signer,
    issuer: Option<(&[u8], &[u8])>,
    subject_key: &dyn Signer,
    subject: &[DnAttr<'_>],
    path_len: u8,
    not_before: i64,
    days: u32,
) -> Result<Built, Error> {
    let not_after = not_before + i64::from(days) * 86_400;
    let subject = x509::name(subject)?;
    let ski = x509::key_id(subject_key.public_key_der())?;
    let (issuer_name, aki) = match issuer {
        Some((name_der, key_id)) => (
            der::Decode::from_der(name_der).map_err(|e| Error::encoding("issuer", e))?,
            key_id.to_vec(),
        ),
        None => (subject.clone(), ski.clone()),
    };
    let mut extensions = vec![
        x509::basic_constraints(true, Some(path_len))?,
        x509::key_usage(&[KeyUsages::KeyCertSign, KeyUsages::CRLSign], true)?,
        x509::subject_key_id(&ski)?,
    ];
    if issuer.is_some() {
        extensions.push(x509::authority_key_id(&aki)?);
    }
    let tbs = TbsCertificate {
        version: 2,
        serial_number: x509::serial_number(Serial::random().as_bytes())?,
        signature: signer.algorithm().signature_algorithm(),
        issuer: issuer_name,
        validity: x509::validity(not_before, not_after)?,
        subject,
        subject_public_key_info: x509::spki(subject_key.public_key_der())?,
        extensions,
    };
    let tbs = x509::enc("CA TBS", &tbs)?;
    let sig = sign_checked(signer, &tbs)?;
    Ok(Built {
        der: x509::assemble(&tbs, signer.algorithm().signature_algorithm(), &sig)?,
        not_before,
        not_after,
    })
}

/// The responder key reference and its secret source for a new home. In
/// production both must be given (a token key with its own PIN); otherwise
/// the defaults are a soft key and a random passphrase under `<home>/ocsp/`,
/// apart from `<home>/keys/` so that the public role can be given the one
/// directory and not the other.
fn responder_setup(home: &Home, o: &InitOptions) -> Result<(String, SecretSource), Error> {
    let bad = |message: &str| Error::Config {
        path: home.config(),
        message: message.to_string(),
    };
    if o.production && (o.responder_key.is_none() || o.responder_key_secret.is_none()) {
        return Err(bad(
            "production: give the OCSP responder key on its own token and its own PIN \
             (--responder-key pkcs11:token=...;object=... and --responder-key-secret-file or \
             --responder-key-secret-env)",
        ));
    }
    let dir = home.root().join("ocsp");
    let key = match &o.responder_key {
        Some(k) => k.clone(),
        None => format!("soft:{}", dir.join("responder.p8").display()),
    };
    let secret = match &o.responder_key_secret {
        Some(s) => s.clone(),
        None => {
            fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                    .map_err(|e| Error::io(&dir, e))?;
            }
            // The responder key signs only OCSP answers for days at a time
            // and must unlock unattended: a random passphrase kept beside
            // it, readable by kxca only, is what its secret is worth.
            let path = dir.join("responder.secret");
            let mut options = fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut f = options.open(&path).map_err(|e| Error::io(&path, e))?;
            let pass = generate_password();
            std::io::Write::write_all(&mut f, format!("{}\n", pass.expose()).as_bytes())
                .map_err(|e| Error::io(&path, e))?;
            SecretSource::File(path)
        }
    };
    Ok((key, secret))
}

impl Ca {
    /// Creates a CA home: config, policies, database, keys and the two-tier
    /// hierarchy. On failure removes what it created.
    pub fn init(home: Home, options: InitOptions, actor: &str, clock: Clock) -> Result<Ca, Error> {
        if home.config().exists() {
            return Err(Error::AlreadyInitialized {
                path: home.root().to_path_buf(),
            });
        }
        let existed = home.root().exists()
            && fs::read_dir(home.root())
                .map(|mut d| d.next().is_some())
                .unwrap_or(true);
        if existed {
            return Err(Error::AlreadyInitialized {
                path: home.root().to_path_buf(),
            });
        }
        // Before anything is written: a missing secret would otherwise leave
        // a half-made home behind, and a relative secret file in kxca.toml
        // would break every command run from another directory.
        let mut options = options;
        options.key_secret = options.key_secret.absolute()?;
        options.key_secret.check()?;
        match Self::init_inner(&home, options, actor, clock) {
            Ok(ca) => Ok(ca),
            Err(e) => {
                // Only ever removes a directory this call found empty or absent.
                let _ = fs::remove_dir_all(home.root());
                Err(e)
            }
        }
    }

    fn init_inner(home: &Home, o: InitOptions, actor: &str, clock: Clock) -> Result<Ca, Error> {
        for dir in [
            home.root().to_path_buf(),
            home.keys(),
            home.policies(),
            home.ca_dir(),
            home.crl_dir(),
            home.issued_dir(),
        ] {
            fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // The root holds kxca.db (personal data): owner only, like
            // the keys and the issued PKCS#12s.
            for dir in [home.root().to_path_buf(), home.keys(), home.issued_dir()] {
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                    .map_err(|e| Error::io(&dir, e))?;
            }
        }
        for (rel, text) in &o.policies {
            let path = home.policies().join(rel);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        }
        let soft = |name: &str| format!("soft:{}", home.keys().join(name).display());
        let base = o.base_url.trim_end_matches('/').to_string();
        let (key_secret_env, key_secret_file) = match &o.key_secret {
            SecretSource::Env(n) => (Some(n.clone()), None),
            SecretSource::File(p) => (None, Some(p.clone())),
        };
        let (responder_key, responder_secret) = responder_setup(home, &o)?;
        let (responder_key_secret_env, responder_key_secret_file) = match responder_secret {
            SecretSource::Env(n) => (Some(n), None),
            SecretSource::File(p) => (None, Some(p)),
        };
        let config = Config {
            production: o.production,
            union: UnionConfig {
                name: o.union_name.clone(),
                code: o.union_code.clone(),
            },
            ca: CaConfig {
                root_key: o.root_key.clone().unwrap_or_else(|| soft("root.p8")),
                issuing_key: o
                    .issuing_key
                    .clone()
                    .unwrap_or_else(|| soft("issuing-1.p8")),
                key_secret_env,
                key_secret_file,
                root_common_name: o.root_common_name.clone(),
                issuing_common_name: o.issuing_common_name.clone(),
                root_validity_days: 7305,
                issuing_validity_days: 3652,
            },
            publication: PublicationConfig {
                crl_url: format!("{base}/crl/issuing-1.crl"),
                ocsp_url: format!("{base}/ocsp"),
                ca_issuers_url: format!("{base}/ca/issuing-1.cer"),
                pickup_url: None,
            },
            crl: CrlConfig::default(),
            yubikey: Default::default(),
            pkcs11: Default::default(),
            ocsp: crate::ocsp::OcspConfig {
                responder_key: Some(responder_key),
                responder_key_secret_env,
                responder_key_secret_file,
                ..Default::default()
            },
            serve: o.serve.clone(),
            mail: o.mail.clone(),
            console: None,
            audit: crate::audit_log::init_config(home, &o)?,
        };
        let header =
            "# kxca configuration. Written by `kxca init`; reviewed by the security officers.\n\n";
        fs::write(home.config(), format!("{header}{}", config.to_toml()))
            .map_err(|e| Error::io(home.config(), e))?;
        // Load it back: the file on disk is what counts (and production rules apply).
        let config = Config::load(&home.config())?;
        // Before any key is made: a production home whose responder would
        // share the CA keys' PIN or token is refused with nothing created.
        crate::ocsp::responder_key::responder_secret_checked(
            &config,
            home,
            config.ocsp.responder_key.as_deref().unwrap_or_default(),
        )?;
        let profiles = Profiles::load(&home.policies())?;
        let secret = config.key_secret();
        let root_ref = config.key_ref(AuthorityRole::Root)?;
        let issuing_ref = config.key_ref(AuthorityRole::Issuing)?;
        let backend = config.backend_options();
        let open_or_generate = |r: &KeyRef| -> Result<Box<dyn Signer>, Error> {
            let algorithm = o.ca_key_algorithm;
            Ok(match r {
                KeyRef::Soft { .. } => kxca_hsm::generate_with(r, algorithm, &secret, &backend)?,
                // A key made earlier in a ceremony (`kxca key generate`) is
                // used as it is; a missing one is created on the token.
                KeyRef::Pkcs11 { .. } => match kxca_hsm::open_with(r, &secret, &backend) {
                    Err(kxca_hsm::Error::TokenKeyMissing { .. }) => {
                        kxca_hsm::generate_with(r, algorithm, &secret, &backend)?
                    }
                    other => other?,
                },
                _ => kxca_hsm::open_with(r, &secret, &backend)?,
            })
        };
        let root_key = open_or_generate(&root_ref)?;
        let issuing_key = open_or_generate(&issuing_ref)?;

        let now = clock.now();
        let union = o.union_name.as_str();
        let root = ca_certificate(
            root_key.as_ref(),
            None,
            root_key.as_ref(),
            &[
                DnAttr::Country("JP"),
                DnAttr::Organization(union),
                DnAttr::CommonName(&config.ca.root_common_name),
            ],
            1,
            now,
            config.ca.root_validity_days,
        )?;
        let root_subject = x509::subject_der(&root.der)?;
        let root_key_id = x509::key_id(root_key.public_key_der())?;
        let issuing = ca_certificate(
            root_key.as_ref(),
            Some((&root_subject, &root_key_id)),
            issuing_key.as_ref(),
            &[
                DnAttr::Country("JP"),
                DnAttr::Organization(union),
                DnAttr::CommonName(&config.ca.issuing_common_name),
            ],
            0,
            now,
            config.ca.issuing_validity_days,
        )?;
        let issuing_subject = x509::subject_der(&issuing.der)?;
        let issuing_key_id = x509::key_id(issuing_key.public_key_der())?;

        let mut store = Store::open(&home.database(), true)?;
        store.write(|tx| {
            let root_id = authorities::insert(
                tx,
                &authorities::NewAuthority {
                    name: "root",
                    role: AuthorityRole::Root,
                    parent_id: None,
                    key_ref: &config.ca.root_key,
                    certificate: &root.der,
                    subject_der: &root_subject,
                    spki: root_key.public_key_der(),
                    key_id: &root_key_id,
                    not_before: root.not_before,
                    not_after: root.not_after,
                },
                now,
            )?;
            authorities::insert(
                tx,
                &authorities::NewAuthority {
                    name: "issuing-1",
                    role: AuthorityRole::Issuing,
                    parent_id: Some(root_id),
                    key_ref: &config.ca.issuing_key,
                    certificate: &issuing.der,
                    subject_der: &issuing_subject,
                    spki: issuing_key.public_key_der(),
                    key_id: &issuing_key_id,
                    not_before: issuing.not_before,
                    not_after: issuing.not_after,
                },
                now,
            )?;
            audit::append(
                tx,
                now,
                actor,
                crate::AuditAction::CaInit,
                None,
                json!({
                    "union": union,
                    "root_key": config.ca.root_key,
                    "issuing_key": config.ca.issuing_key,
                    "algorithm": o.ca_key_algorithm.name(),
                    "production": config.production,
                }),
            )
        })?;
        // The first responder certificate, so that `kxca serve` answers
        // right after init, before `kxca daemon` has ever run.
        let issuing_authority = store.read(|c| authorities::active(c, AuthorityRole::Issuing))?;
        let (responder, responder_ref) =
            crate::ocsp::responder_key::open_responder_key(&config, home, true)?;
        crate::ocsp::responder_cert::issue_and_record(
            &mut store,
            &issuing_authority,
            issuing_key.as_ref(),
            responder.as_ref(),
            &responder_ref,
            union,
            &config.ocsp,
            now,
            actor,
        )?;
        write_file(
            &home.ca_dir().join("root.pem"),
            pem("CERTIFICATE", &root.der).as_bytes(),
        )?;
        write_file(&home.ca_dir().join("root.cer"), &root.der)?;
        write_file(
            &home.ca_dir().join("issuing-1.pem"),
            pem("CERTIFICATE", &issuing.der).as_bytes(),
        )?;
        write_file(&home.ca_dir().join("issuing-1.cer"), &issuing.der)?;
        let _ = profiles;
        if config.audit.key.is_some() {
            // The audit key (and a soft key's secret), and the public key
            // published for outside parties from the start.
            crate::audit_log::init_key(&config, home)?;
        }
        Ca::open(home.clone(), clock)
    }

    /// Opens an existing home. Does not touch any key. Rows a crashed
    /// issuance left pending are resolved first ([`Ca::resolve_abandoned`]).
    pub fn open(home: Home, clock: Clock) -> Result<Ca, Error> {
        let mut ca = Self::open_as_is(home, clock)?;
        // A store that cannot be written (a read-only copy given to an
        // auditor) must still open for reading; doctor lists what is left.
        if let Err(e) = ca.resolve_abandoned("kxca-recovery") {
            tracing::warn!(error = %e, "could not resolve abandoned pending certificates");
        }
        Ok(ca)
    }

    /// Opens an existing home without changing anything (`kxca doctor`).
    pub fn open_as_is(home: Home, clock: Clock) -> Result<Ca, Error> {
        let config = Config::load(&home.config())?;
        let profiles = Profiles::load(&home.policies())?;
        let store = Store::open(&home.database(), false)?;
        Ok(Ca {
            home,
            config,
            profiles,
            store,
            clock,
            issuing_signer: None,
        })
    }

    /// The home directory this CA was opened from.
    pub fn home(&self) -> &Home {
        &self.home
    }
    /// kxca.toml's CA sections.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The certificate profiles read at open.
    pub fn profiles(&self) -> &Profiles {
        &self.profiles
    }
    /// The store, for reads.
    pub fn store(&self) -> &Store {
        &self.store
    }
    /// The store, for state changes.
    pub fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }
    /// The clock every timestamp of this CA comes from (fixed in tests).
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The active authority of a role.
    pub fn authority(&self, role: AuthorityRole) -> Result<Authority, Error> {
        self.store.read(|c| authorities::active(c, role))
    }

    /// Every authority the store knows, current and previous.
    pub fn authorities(&self) -> Result<Vec<Authority>, Error> {
        self.store.read(authorities::all)
    }

    /// Opens the signer of an authority, checking it matches the stored certificate.
    pub fn signer(&self, authority: &Authority) -> Result<Box<dyn Signer>, Error> {
        let key_ref: KeyRef = authority.key_ref.parse()?;
        if self.config.production && key_ref.is_soft() {
            return Err(Error::SoftKeyInProduction {
                path: self.home.config(),
                role: authority.role.as_str().to_string(),
                key_ref: authority.key_ref.clone(),
            });
        }
        let signer = kxca_hsm::open_with(
            &key_ref,
            &self.config.key_secret(),
            &self.config.backend_options(),
        )?;
        if signer.public_key_der() != authority.spki.as_slice() {
            return Err(Error::Config {
                path: self.home.config(),
                message: format!(
                    "key {} does not match the public key of CA certificate {:?}",
                    authority.key_ref, authority.name
                ),
            });
        }
        Ok(signer)
    }

    /// Issues one office contact's certificate and packages it with its new key.
    ///
    /// `password`: the PKCS#12 password chosen by the operator, or `None` to
    /// generate one (returned in `generated_password`).
    ///
    /// The PKCS#12 is only returned: the caller is its holder. Use
    /// [`Ca::issue_to`] to have it written before the certificate counts as
    /// issued.
    pub fn issue(
        &mut self,
        request: &IssueRequest,
        password: Option<Password>,
        actor: &str,
    ) -> Result<IssuedCertificate, Error> {
        self.issue_delivering(
            request,
            password,
            actor,
            Delivery::Memory,
            SubjectKey::Generate,
            None,
        )
    }

    /// Issues a certificate for a public key generated elsewhere (the
    /// public role's pickup), through the same gate as [`Ca::issue`]: the
    /// holder's rules, the profile, the record-then-sign order, the audit.
    /// `certificate_id` must be what the profile's template gives the
    /// holder. `finish` runs in the transaction that records the
    /// certificate as issued; if it fails, the certificate is `failed`.
    /// Returns the serial (hex).
    pub(crate) fn issue_for_public_key(
        &mut self,
        request: &IssueRequest,
        spki: &[u8],
        certificate_id: &str,
        actor: &str,
        finish: Finish<'_>,
    ) -> Result<String, Error> {
        let issued = self.issue_delivering(
            request,
            None,
            actor,
            Delivery::Memory,
            SubjectKey::Public {
                spki,
                certificate_id,
            },
            Some(finish),
        )?;
        Ok(issued.record.serial)
    }

    /// As [`Ca::issue`], writing the PKCS#12 to `out` (default
    /// `<home>/issued/<id>-<serial>.p12`). The destination is checked before
    /// signing, and the file is in place before the certificate is recorded
    /// as issued: a failure in between leaves the certificate `failed`,
    /// never good without a holder.
    pub fn issue_to(
        &mut self,
        request: &IssueRequest,
        password: Option<Password>,
        actor: &str,
        out: Option<&Path>,
    ) -> Result<IssuedCertificate, Error> {
        self.issue_delivering(
            request,
            password,
            actor,
            Delivery::File(out),
            SubjectKey::Generate,
            None,
        )
    }

    fn issue_delivering(
        &mut self,
        request: &IssueRequest,
        password: Option<Password>,
        actor: &str,
        delivery: Delivery<'_>,
        subject_key: SubjectKey<'_>,
        finish: Option<Finish<'_>>,
    ) -> Result<IssuedCertificate, Error> {
        let profile = self.profiles.get(&request.profile)?.clone();
        // The one gate: the rules the intake validator applies to a row.
        let request = &IssueRequest {
            holder: request.holder.normalized(),
            ..request.clone()
        };
        request.holder.check(&profile, self.profiles.rules())?;
        let algorithm = request.key_algorithm.unwrap_or(profile.default_key);
        if !profile.allowed_keys.contains(&algorithm) {
            return Err(Error::field(
                "key",
                format!(
                    "{algorithm} is not allowed by profile {} (allowed: {})",
                    profile.name,
                    profile
                        .allowed_keys
                        .iter()
                        .map(|a| a.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let certificate_id = profile
            .certificate_id
            .render(|c| request.holder.code(c).to_string())
            .map_err(|m| Error::field("certificate_id", m))?;
        if let SubjectKey::Public {
            spki,
            certificate_id: expected,
        } = subject_key
        {
            if expected != certificate_id {
                return Err(Error::field(
                    "certificate_id",
                    format!(
                        "{expected:?} was enrolled, but profile {} gives this holder {certificate_id:?}",
                        profile.name
                    ),
                ));
            }
            check_public_key(spki, algorithm)?;
        }
        let issuer = self.authority(AuthorityRole::Issuing)?;
        // The issuer's own root: after a root rollover the active root may
        // not be the one above the active issuing CA yet.
        let root = match issuer.parent_id {
            Some(id) => self.store.read(|c| authorities::by_id(c, id))?,
            None => self.authority(AuthorityRole::Root)?,
        };
        let signer = match self.issuing_signer.take() {
            Some((id, s)) if id == issuer.id => s,
            _ => self.signer(&issuer)?,
        };
        let result = self.issue_with(
            request,
            password,
            actor,
            &profile,
            algorithm,
            &certificate_id,
            &issuer,
            &root,
            signer.as_ref(),
            delivery,
            subject_key,
            finish,
        );
        self.issuing_signer = Some((issuer.id, signer));
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn issue_with(
        &mut self,
        request: &IssueRequest,
        password: Option<Password>,
        actor: &str,
        profile: &crate::Profile,
        algorithm: KeyAlgorithm,
        certificate_id: &str,
        issuer: &Authority,
        root: &Authority,
        signer: &dyn Signer,
        delivery: Delivery<'_>,
        subject_key: SubjectKey<'_>,
        finish: Option<Finish<'_>>,
    ) -> Result<IssuedCertificate, Error> {
        let certificate_id = certificate_id.to_string();
        let p12_profile = request.pkcs12.unwrap_or(profile.pkcs12_default);

        let union_name = self.config.union.name.clone();
        let mut subject_attrs = vec![
            DnAttr::Country(&profile.country),
            DnAttr::Organization(&union_name),
        ];
        let ous: Vec<String> = profile
            .organizational_units
            .iter()
            .map(|c| request.holder.code(*c).to_string())
            .collect();
        for ou in &ous {
            if !ou.is_empty() {
                subject_attrs.push(DnAttr::OrganizationalUnit(ou));
            }
        }
        subject_attrs.push(DnAttr::CommonName(&certificate_id));
        let subject = x509::name(&subject_attrs)?;
        let subject_text = format!(
            "C={}, O={}, {}CN={}",
            profile.country,
            union_name,
            ous.iter()
                .filter(|o| !o.is_empty())
                .map(|o| format!("OU={o}, "))
                .collect::<String>(),
            certificate_id
        );

        let key = match subject_key {
            SubjectKey::Generate => Some(kxca_hsm::EphemeralKey::generate(algorithm)?),
            SubjectKey::Public { .. } => None,
        };
        let spki: &[u8] = match (&key, subject_key) {
            (Some(k), _) => k.public_key_der(),
            (None, SubjectKey::Public { spki, .. }) => spki,
            (None, SubjectKey::Generate) => &[],
        };
        let now = self.clock.now();
        let not_before = now - i64::from(profile.backdate_minutes) * 60;
        let not_after =
            (not_before + i64::from(profile.validity_days) * 86_400).min(issuer.not_after);

        let ext = &profile.extensions;
        let mut extensions = vec![x509::basic_constraints(false, None)?];
        let mut ku = Vec::new();
        if ext.key_usage_digital_signature {
            ku.push(KeyUsages::DigitalSignature);
        }
        if ext.key_usage_key_encipherment {
            ku.push(KeyUsages::KeyEncipherment);
        }
        extensions.push(x509::key_usage(&ku, ext.key_usage_critical)?);
        let mut eku = Vec::new();
        if ext.eku_client_auth {
            eku.push(oids::KP_CLIENT_AUTH);
        }
        if ext.eku_email_protection {
            eku.push(oids::KP_EMAIL_PROTECTION);
        }
        if !eku.is_empty() {
            extensions.push(x509::extended_key_usage(eku)?);
        }
        extensions.push(x509::subject_key_id(&x509::key_id(spki)?)?);
        extensions.push(x509::authority_key_id(&issuer.key_id)?);
        if ext.crl_distribution_point {
            extensions.push(x509::crl_distribution_point(
                &self.config.publication.crl_url_for(&issuer.name),
            )?);
        }
        if ext.authority_info_access {
            extensions.push(x509::authority_info_access(
                &self.config.publication.ocsp_url,
                &self.config.publication.ca_issuers_url_for(&issuer.name),
            )?);
        }
        if ext.email_in_subject_alt_name {
            extensions.push(x509::subject_alt_name_email(&request.holder.email)?);
        }
        let issuer_name: der::asn1::Any =
            der::Decode::from_der(&issuer.subject_der).map_err(|e| Error::encoding("issuer", e))?;

        // Record before signing; draw a new serial on the (astronomically rare) collision.
        let owner = certificates::process_owner();
        let mut attempt = 0;
        let (row_id, serial, tbs, destination) = loop {
            attempt += 1;
            let serial = Serial::random();
            let tbs = TbsCertificate {
                version: 2,
                serial_number: x509::serial_number(serial.as_bytes())?,
                signature: signer.algorithm().signature_algorithm(),
                issuer: issuer_name.clone(),
                validity: x509::validity(not_before, not_after)?,
                subject: subject.clone(),
                subject_public_key_info: x509::spki(spki)?,
                extensions: extensions.clone(),
            };
            let tbs = x509::enc("TBS certificate", &tbs)?;
            let serial_hex = serial.to_hex();
            let destination = match delivery {
                Delivery::Memory => None,
                Delivery::File(out) => {
                    let path = out.map(Path::to_path_buf).unwrap_or_else(|| {
                        self.home
                            .issued_dir()
                            .join(format!("{certificate_id}-{}.p12", &serial_hex[..8]))
                    });
                    Some(Destination::prepare(&path, out.is_none())?)
                }
            };
            let pkcs12_path = destination
                .as_ref()
                .map(|d| d.path.to_string_lossy().into_owned());
            let new = NewCertificate {
                serial: &serial_hex,
                authority_id: issuer.id,
                profile: &profile.name,
                certificate_id: &certificate_id,
                subject: &subject_text,
                email: &request.holder.email,
                holder: &request.holder,
                key_algorithm: algorithm.name(),
                not_before,
                not_after,
                tbs: &tbs,
                owner: &owner,
                pkcs12_path: pkcs12_path.as_deref(),
            };
            let result = self.store.write(|tx| match certificates::insert_pending(tx, &new, now) {
                Ok(id) => {
                    audit::append(
                        tx,
                        now,
                        actor,
                        crate::AuditAction::CertificatePrepare,
                        Some(&serial_hex),
                        json!({"certificate_id": certificate_id, "profile": profile.name, "email": request.holder.email}),
                    )?;
                    Ok(Some(id))
                }
                Err(InsertError::SerialCollision) => Ok(None),
                Err(InsertError::Other(e)) => Err(e),
            })?;
            match result {
                Some(id) => break (id, serial, tbs, destination),
                None if attempt < 5 => continue,
                None => {
                    return Err(Error::Database {
                        path: self.store.path().to_path_buf(),
                        message: "five serial number collisions in a row; is the RNG broken?"
                            .to_string(),
                    })
                }
            }
        };
        let serial_hex = serial.to_hex();
        // Widens the windows a crash can hit, for the kill -9 test.
        let slow = || {
            if crate::fault::active("issue-slow") {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        };
        slow();
        let signature = match sign_checked(signer, &tbs) {
            Ok(s) => s,
            Err(e) => {
                let reason = e.to_string();
                self.store.write(|tx| {
                    certificates::mark_failed(tx, row_id)?;
                    audit::append(
                        tx,
                        self.clock.now(),
                        actor,
                        crate::AuditAction::CertificateSignFailed,
                        Some(&serial_hex),
                        json!({"error": reason}),
                    )
                })?;
                return Err(e);
            }
        };
        // From here the certificate is signed: any failure before it is
        // recorded as issued marks it failed. It never left this process,
        // so nobody holds it, and OCSP never calls a failed row good.
        let delivered = (|| -> Result<_, Error> {
            let der = x509::assemble(&tbs, signer.algorithm().signature_algorithm(), &signature)?;
            // Parse back as a last structural check before the certificate leaves.
            <x509_cert::Certificate as der::Decode>::from_der(&der)
                .map_err(|e| Error::encoding("issued certificate", e))?;
            let (password, generated) = match password {
                Some(p) => (p, false),
                None => (generate_password(), true),
            };
            let chain: [&[u8]; 3] = [&der, &issuer.certificate, &root.certificate];
            // A public key from elsewhere: its holder packages the PKCS#12.
            let p12 = match &key {
                Some(key) => pkcs12::package(
                    key.pkcs8_der(),
                    &chain,
                    &certificate_id,
                    &password,
                    p12_profile,
                    profile.pkcs12_iterations,
                )?,
                None => Zeroizing::new(Vec::new()),
            };
            let path = destination.map(|d| d.write(&p12)).transpose()?;
            Ok((der, p12, password, generated, path))
        })();
        drop(key);
        let (der, p12, password, generated, pkcs12_path) = match delivered {
            Ok(d) => d,
            Err(e) => {
                self.mark_failed_after_signing(row_id, &serial_hex, actor, &e)?;
                return Err(e);
            }
        };

        slow();
        let issued_at = self.clock.now();
        let pkcs12_detail =
            matches!(subject_key, SubjectKey::Generate).then(|| p12_profile.to_string());
        let recorded = self.store.write(|tx| {
            certificates::mark_issued(tx, row_id, &der, issued_at)?;
            audit::append(
                tx,
                issued_at,
                actor,
                crate::AuditAction::CertificateIssue,
                Some(&serial_hex),
                json!({"certificate_id": certificate_id, "not_after": rfc3339(not_after), "pkcs12": pkcs12_detail, "key": algorithm.name()}),
            )?;
            match finish {
                Some(f) => f(tx, &serial_hex),
                None => Ok(()),
            }
        });
        if let Err(e) = recorded {
            // Not issued: the file must not outlive the record.
            if let Some(path) = &pkcs12_path {
                let _ = fs::remove_file(path);
            }
            self.mark_failed_after_signing(row_id, &serial_hex, actor, &e)?;
            return Err(e);
        }
        let record = self
            .store
            .read(|c| certificates::by_serial(c, &serial_hex))?
            .ok_or_else(|| Error::UnknownSerial {
                serial: serial_hex.clone(),
            })?;
        tracing::info!(serial = %serial_hex, certificate_id = %certificate_id, "certificate issued");
        Ok(IssuedCertificate {
            record,
            der,
            pkcs12: p12,
            pkcs12_profile: p12_profile,
            generated_password: if generated { Some(password) } else { None },
            pkcs12_path,
        })
    }

    fn mark_failed_after_signing(
        &mut self,
        row_id: i64,
        serial_hex: &str,
        actor: &str,
        error: &Error,
    ) -> Result<(), Error> {
        let reason = error.to_string();
        let now = self.clock.now();
        self.store.write(|tx| {
            certificates::mark_failed(tx, row_id)?;
            audit::append(
                tx,
                now,
                actor,
                crate::AuditAction::CertificateDeliverFailed,
                Some(serial_hex),
                json!({"error": reason}),
            )
        })
    }

    /// Marks `failed` every pending row whose issuing process is gone (killed
    /// or crashed between recording and finishing), with an audit event, and
    /// removes the PKCS#12 such a process may have left, unless another live
    /// row owns that path. Returns how many rows were resolved.
    pub fn resolve_abandoned(&mut self, actor: &str) -> Result<usize, Error> {
        let stale: Vec<_> = self
            .store
            .read(certificates::pending)?
            .into_iter()
            .filter(|row| !certificates::owner_alive(row.owner.as_deref()))
            .collect();
        for row in &stale {
            let now = self.clock.now();
            let remove = self.store.write(|tx| {
                certificates::mark_failed(tx, row.id)?;
                let remove = match &row.pkcs12_path {
                    Some(p) => {
                        Path::new(p).exists() && certificates::others_with_path(tx, p, row.id)? == 0
                    }
                    None => false,
                };
                audit::append(
                    tx,
                    now,
                    actor,
                    crate::AuditAction::CertificateAbandoned,
                    Some(&row.serial),
                    json!({
                        "certificate_id": row.certificate_id,
                        "owner": row.owner,
                        "pkcs12_removed": if remove { row.pkcs12_path.clone() } else { None },
                    }),
                )?;
                Ok(remove)
            })?;
            if let (true, Some(p)) = (remove, &row.pkcs12_path) {
                fs::remove_file(p).map_err(|e| Error::io(p, e))?;
            }
            tracing::warn!(serial = %row.serial, "pending certificate of a process that is gone marked failed");
        }
        Ok(stale.len())
    }

    /// Revokes an issued certificate. Unknown, unissued or already revoked
    /// serials are errors that change nothing.
    pub fn revoke(
        &mut self,
        serial: &Serial,
        reason: RevocationReason,
        actor: &str,
    ) -> Result<CertificateRecord, Error> {
        let serial_hex = serial.to_hex();
        let now = self.clock.now();
        self.store
            .write(|tx| revocations::revoke(tx, &serial_hex, reason, actor, now))?;
        tracing::info!(serial = %serial_hex, reason = %reason, "certificate revoked");
        self.store
            .read(|c| certificates::by_serial(c, &serial_hex))?
            .ok_or(Error::UnknownSerial { serial: serial_hex })
    }

    /// Signs a new CRL for the active issuing CA, stores it and writes
    /// `<home>/crl/<name>.crl` (DER) and `.pem`.
    pub fn generate_crl(&mut self, actor: &str) -> Result<(Authority, CrlOutput), Error> {
        let issuer = self.authority(AuthorityRole::Issuing)?;
        let signer = self.signer(&issuer)?;
        self.generate_crl_with(&issuer, signer.as_ref(), actor)
    }

    /// As [`Ca::generate_crl`], for a given authority and an already open signer
    /// (the revocation service keeps its signer open).
    pub fn generate_crl_with(
        &mut self,
        issuer: &Authority,
        signer: &dyn Signer,
        actor: &str,
    ) -> Result<(Authority, CrlOutput), Error> {
        let hours = i64::from(self.config.crl.validity_hours);
        // The CRL is signed outside any write transaction (a YubiKey waiting
        // for a touch must not hold the database lock); the insert then
        // checks that its number is still the next one and, if another
        // writer took it meanwhile, the CRL is rebuilt and signed again.
        const ATTEMPTS: u32 = 50;
        let mut attempt = 0;
        let out = loop {
            attempt += 1;
            let now = self.clock.now();
            let (number, entries) = self.store.read(|tx| {
                let number = crls::next_number(tx, issuer.id)?;
                // RFC 5280 3.3: a revoked certificate stays listed until a
                // CRL issued after its expiry has carried it once; the
                // previous CRL's thisUpdate tells which have not been.
                let keep_after = crls::latest_this_update(tx, issuer.id)?
                    .unwrap_or(i64::MIN)
                    .min(now);
                let mut entries = Vec::new();
                revocations::for_each_revoked(tx, issuer.id, keep_after, |serial, at, reason| {
                    entries.push(RevokedEntry {
                        serial: hex::decode(serial)
                            .map_err(|e| Error::encoding("stored serial", e))?,
                        revoked_at: at,
                        reason,
                    });
                    Ok(())
                })?;
                Ok((number, entries))
            })?;
            let input = CrlInput {
                issuer_der: &issuer.subject_der,
                authority_key_id: &issuer.key_id,
                number: number as u64,
                this_update: now,
                next_update: now + hours * 3600,
                signature_algorithm: signer.algorithm().signature_algorithm(),
            };
            let mut out = crl::build(&input, entries, |tbs| {
                if crate::fault::active("crl-slow-sign") {
                    std::thread::sleep(std::time::Duration::from_secs(3));
                }
                sign_checked(signer, tbs)
            })?;
            if crate::fault::active("crl-corrupt") {
                if let Some(last) = out.der.last_mut() {
                    *last ^= 0x01;
                }
            }
            crl::check(
                &out.der,
                &input,
                out.entries,
                signer.algorithm(),
                &issuer.spki,
            )?;
            let stored = self.store.write(|tx| {
                if crls::next_number(tx, issuer.id)? != number {
                    return Ok(false);
                }
                crls::insert(
                    tx,
                    issuer.id,
                    number,
                    out.this_update,
                    out.next_update,
                    out.entries as i64,
                    &out.der,
                )?;
                audit::append(
                    tx,
                    now,
                    actor,
                    crate::AuditAction::CrlSign,
                    None,
                    json!({"authority": issuer.name, "number": number, "entries": out.entries}),
                )?;
                Ok(true)
            })?;
            if stored {
                break out;
            }
            if attempt >= ATTEMPTS {
                return Err(Error::Database {
                    path: self.store.path().to_path_buf(),
                    message: format!(
                        "CRL number {number} of {} was taken by another writer {ATTEMPTS} times in a row",
                        issuer.name
                    ),
                });
            }
        };
        self.write_crl_files(issuer)?;
        tracing::info!(authority = %issuer.name, number = out.number, entries = out.entries, "CRL signed");
        Ok((issuer.clone(), out))
    }

    /// As `write_crl_files`, for CRLs a ceremony signs (a root's, a final one).
    pub(crate) fn write_crl_files_for(&self, issuer: &Authority) -> Result<(), Error> {
        self.write_crl_files(issuer)
    }

    /// Writes the newest stored CRL of `issuer` to `<home>/crl/`. Writers
    /// take turns on a lock file and always write the newest CRL in the
    /// store, so a slower process never puts an older CRL over a newer one.
    fn write_crl_files(&self, issuer: &Authority) -> Result<(), Error> {
        let dir = self.home.crl_dir();
        let lock_path = dir.join(".lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        lock.lock().map_err(|e| Error::io(&lock_path, e))?;
        let Some(latest) = self.store.read(|c| crls::latest(c, issuer.id))? else {
            return Ok(());
        };
        write_file(&dir.join(format!("{}.crl", issuer.name)), &latest.der)?;
        write_file(
            &dir.join(format!("{}.pem", issuer.name)),
            pem("X509 CRL", &latest.der).as_bytes(),
        )?;
        // The lock is released when `lock` is dropped.
        Ok(())
    }

    /// The stored record of one certificate, revoked or not.
    pub fn certificate(&self, serial: &Serial) -> Result<CertificateRecord, Error> {
        self.store
            .read(|c| certificates::by_serial(c, &serial.to_hex()))?
            .ok_or_else(|| Error::UnknownSerial {
                serial: serial.to_hex(),
            })
    }

    /// The newest `limit` certificates, for `kxca list`.
    pub fn certificates(&self, limit: i64) -> Result<Vec<CertificateRecord>, Error> {
        self.store.read(|c| certificates::list(c, limit))
    }

    /// The newest `limit` audit events, for `kxca audit`.
    pub fn audit(&self, limit: i64) -> Result<Vec<audit::AuditEvent>, Error> {
        self.store.read(|c| audit::list(c, limit))
    }
}

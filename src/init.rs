//! `kxca init`: a new CA home (config, policies, database, root and
//! issuing CA, the OCSP responder's key and first certificate).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use kxca_ca::{Ca, Clock, Home, InitOptions};
use kxca_hsm::{KeyAlgorithm, SecretSource};

use crate::config::KxcaToml;

#[derive(Args, Debug)]
pub struct InitArgs {
    #[arg(long, default_value = "全国設計事務所健康保険組合")]
    pub union_name: String,
    #[arg(long, default_value = "26276")]
    pub union_code: String,
    /// Algorithm of the CA keys: ecdsa-p256, rsa-2048 or rsa-3072.
    #[arg(long, default_value = "ecdsa-p256")]
    pub ca_key_algorithm: String,
    /// Root CA key reference (default: a soft key in <home>/keys).
    #[arg(long)]
    pub root_key: Option<String>,
    /// Issuing CA key reference (default: a soft key in <home>/keys).
    #[arg(long)]
    pub issuing_key: Option<String>,
    /// Environment variable holding the key passphrase or PIN.
    #[arg(
        long,
        default_value = "KXCA_KEY_PASSPHRASE",
        conflicts_with = "key_secret_file"
    )]
    pub key_secret_env: String,
    /// File holding the key passphrase or PIN (first line).
    #[arg(long)]
    pub key_secret_file: Option<PathBuf>,
    /// OCSP responder key reference (default: a soft key in <home>/ocsp;
    /// required with --production: a key on its own token).
    #[arg(long)]
    pub responder_key: Option<String>,
    /// Environment variable holding the responder key's own passphrase or PIN.
    #[arg(long, conflicts_with = "responder_key_secret_file")]
    pub responder_key_secret_env: Option<String>,
    /// File holding the responder key's own passphrase or PIN (default: a
    /// random passphrase in <home>/ocsp; required with --production).
    #[arg(long)]
    pub responder_key_secret_file: Option<PathBuf>,
    /// Audit checkpoint key reference (ECDSA P-256; default: a soft key in
    /// <home>/audit; with --production: a key on a token, see docs/AUDIT.md).
    #[arg(long)]
    pub audit_key: Option<String>,
    /// Environment variable holding the audit key's own passphrase or PIN.
    #[arg(long, conflicts_with = "audit_key_secret_file")]
    pub audit_key_secret_env: Option<String>,
    /// File holding the audit key's own passphrase or PIN.
    #[arg(long)]
    pub audit_key_secret_file: Option<PathBuf>,
    /// Base URL of the publication service (CRL DP, OCSP, caIssuers).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub base_url: String,
    /// Refuse soft keys (production appliance).
    #[arg(long)]
    pub production: bool,
    #[arg(long, default_value = "KX Root CA")]
    pub root_name: String,
    #[arg(long, default_value = "KX Issuing CA 1")]
    pub issuing_name: String,
}

pub fn run(home: Home, args: &InitArgs, actor: &str) -> Result<()> {
    let ca = Ca::init(home, init_options(args)?, actor, Clock::system()).map_err(init_error)?;
    let h = ca.home();
    append_console_section(&h.config())?;
    // The file as every later command reads it, each section by its owner.
    KxcaToml::load(&h.config())?;
    println!("Initialized kxca home {}", h.root().display());
    println!("  config:      {}", h.config().display());
    println!("  root CA:     {}", h.ca_dir().join("root.pem").display());
    println!(
        "  issuing CA:  {}",
        h.ca_dir().join("issuing-1.pem").display()
    );
    println!("  policies:    {}", h.policies().display());
    if let Some(responder) = &ca.config().ocsp.responder_key {
        println!("  OCSP responder key: {responder} (certified by the issuing CA)");
    }
    println!("Next: kxca issue --help");
    println!(
        "      the admin console: uncomment [console] in kxca.toml, then kxca admin add NAME --role admin"
    );
    println!("      kxca daemon (signs CRLs and OCSP answers) and kxca serve (answers them)");
    Ok(())
}

/// `[console]`, written commented out with its defaults spelled out. Off
/// until an officer turns it on: a fixed port opened by every home's daemon
/// would collide where several homes run on one machine (staging, tests),
/// a listener serving personal data should be a decision someone made, and
/// it is useless before `kxca admin add` anyway. Uncommented as is, it
/// listens on 127.0.0.1 only (the console refuses any other address).
pub(crate) fn append_console_section(config: &Path) -> Result<()> {
    let defaults = toml::Table::try_from(kxca_console::ConsoleConfig::default())
        .context("rendering the [console] defaults")?;
    let body = toml::to_string(&defaults).context("rendering the [console] defaults")?;
    let mut text = String::from(
        "\n# The union admins' web console, served by `kxca daemon` (docs/CONSOLE.md).\n\
         # Off until uncommented; loopback only (reach it through an SSH tunnel).\n\
         # Add the first admin with: kxca admin add NAME --role admin\n\
         # [console]\n",
    );
    for line in body.lines() {
        text.push_str(&format!("# {line}\n"));
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(config)
        .with_context(|| format!("{}", config.display()))?;
    std::io::Write::write_all(&mut f, text.as_bytes())
        .with_context(|| format!("{}", config.display()))?;
    Ok(())
}

/// A newcomer's likely first mistake, no passphrase: say how to give one.
fn init_error(e: kxca_ca::Error) -> anyhow::Error {
    use kxca_hsm::Error as H;
    let demo = "for a first look without any setup, run `kxca demo`";
    match e {
        kxca_ca::Error::Key(H::SecretEnvMissing { name }) => anyhow::anyhow!(
            "kxca init needs the CA key passphrase: environment variable {name} is not set; \
             set it (or name another with --key-secret-env VAR) or give a file with \
             --key-secret-file FILE; {demo}"
        ),
        kxca_ca::Error::Key(h @ (H::SecretFile { .. } | H::SecretEmpty { .. })) => {
            anyhow::anyhow!("kxca init needs the CA key passphrase: {h}; {demo}")
        }
        e => e.into(),
    }
}

/// A path as given on the command line, made absolute: kxca.toml is read
/// from other directories (and by the systemd units).
fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("{}", p.display()))
}

pub fn init_options(args: &InitArgs) -> Result<InitOptions> {
    let key_secret = match &args.key_secret_file {
        Some(p) => SecretSource::File(absolute(p)?),
        None => SecretSource::Env(args.key_secret_env.clone()),
    };
    Ok(InitOptions {
        union_name: args.union_name.clone(),
        union_code: args.union_code.clone(),
        ca_key_algorithm: args.ca_key_algorithm.parse::<KeyAlgorithm>()?,
        root_key: args.root_key.clone(),
        issuing_key: args.issuing_key.clone(),
        key_secret,
        responder_key: args.responder_key.clone(),
        responder_key_secret: match (
            &args.responder_key_secret_env,
            &args.responder_key_secret_file,
        ) {
            (_, Some(p)) => Some(SecretSource::File(absolute(p)?)),
            (Some(n), None) => Some(SecretSource::Env(n.clone())),
            (None, None) => None,
        },
        audit_key: args.audit_key.clone(),
        audit_key_secret: match (&args.audit_key_secret_env, &args.audit_key_secret_file) {
            (_, Some(p)) => Some(SecretSource::File(absolute(p)?)),
            (Some(n), None) => Some(SecretSource::Env(n.clone())),
            (None, None) => None,
        },
        base_url: args.base_url.clone(),
        production: args.production,
        policies: crate::policies::shipped(),
        root_common_name: args.root_name.clone(),
        issuing_common_name: args.issuing_name.clone(),
        // The sections other crates own, rendered by the root type that
        // reads the file back (src/config.rs).
        serve: KxcaToml::init_serve_section(),
        mail: None,
    })
}

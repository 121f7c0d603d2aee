//! `kxca key`: security officers create and inspect CA keys on tokens.
//!
//! The PIN comes from an environment variable or a file, never argv. With
//! an initialised home, the `[pkcs11]` settings and the PIN source of its
//! `kxca.toml` apply unless overridden, and each generated key is audited.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use kxca_ca::{Clock, Config, Home, Store};
use kxca_hsm::{BackendOptions, KeyAlgorithm, KeyRef, SecretSource, TokenKeyInfo};

use crate::output::table;

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Generate a CA key pair on a token (refuses an existing label).
    Generate {
        /// Where: pkcs11:token=<token label>;object=<key label>[;id=<hex>]
        #[arg(long = "ref")]
        key_ref: String,
        /// p256, rsa2048 or rsa3072.
        #[arg(long, default_value = "p256")]
        algorithm: String,
        #[command(flatten)]
        token: TokenArgs,
        #[arg(long)]
        json: bool,
    },
    /// List the private keys on the module's tokens, with SPKI fingerprints.
    List {
        /// Only the token with this label.
        #[arg(long)]
        token: Option<String>,
        #[command(flatten)]
        options: TokenArgs,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// Environment variable holding the token's user PIN
    /// (default: the home's key_secret_env, else KXCA_KEY_PASSPHRASE).
    #[arg(long, conflicts_with = "key_secret_file")]
    pub key_secret_env: Option<String>,
    /// File holding the user PIN (first line).
    #[arg(long)]
    pub key_secret_file: Option<PathBuf>,
    /// The PKCS#11 module (default: the home's [pkcs11] module_path).
    #[arg(long)]
    pub module_path: Option<PathBuf>,
}

struct TokenContext {
    config: Option<Config>,
    secret: SecretSource,
    backend: BackendOptions,
}

fn context(home: &Option<PathBuf>, args: &TokenArgs) -> Result<TokenContext> {
    let config = match home {
        Some(h) if Home::new(h).config().exists() => Some(Config::load(&Home::new(h).config())?),
        _ => None,
    };
    let secret = match (&args.key_secret_env, &args.key_secret_file, &config) {
        (Some(env), _, _) => SecretSource::Env(env.clone()),
        (_, Some(file), _) => SecretSource::File(file.clone()),
        (None, None, Some(c)) => c.key_secret(),
        (None, None, None) => SecretSource::Env("KXCA_KEY_PASSPHRASE".to_string()),
    };
    let mut backend = config
        .as_ref()
        .map(Config::backend_options)
        .unwrap_or_default();
    if let Some(p) = &args.module_path {
        backend.pkcs11.module_path = p.clone();
    }
    Ok(TokenContext {
        config,
        secret,
        backend,
    })
}

pub fn run(home: &Option<PathBuf>, actor: &str, command: KeyCommand) -> Result<()> {
    match command {
        KeyCommand::Generate {
            key_ref,
            algorithm,
            token,
            json,
        } => {
            let parsed: KeyRef = key_ref.parse()?;
            if !matches!(parsed, KeyRef::Pkcs11 { .. }) {
                bail!("--ref {key_ref:?}: kxca key generate makes pkcs11: keys (soft keys are made by kxca init)");
            }
            let algorithm: KeyAlgorithm = algorithm.parse()?;
            let cx = context(home, &token)?;
            let signer = kxca_hsm::generate_with(&parsed, algorithm, &cx.secret, &cx.backend)
                .with_context(|| format!("generating {key_ref}"))?;
            let fingerprint = kxca_hsm::spki_fingerprint(signer.public_key_der());
            if let (Some(h), Some(_)) = (home, &cx.config) {
                audit(h, actor, &key_ref, algorithm, &fingerprint)?;
            }
            if json {
                let v = serde_json::json!({
                    "ref": key_ref,
                    "algorithm": algorithm.name(),
                    "spki_sha256": fingerprint,
                });
                println!("{v}");
            } else {
                println!("Generated {algorithm} key {key_ref}");
                println!("  public key SHA-256: {fingerprint}");
            }
        }
        KeyCommand::List {
            token,
            options,
            json,
        } => {
            let cx = context(home, &options)?;
            let pin = cx.secret.read()?;
            let keys = kxca_hsm::list_keys(&cx.backend.pkcs11.module_path, token.as_deref(), &pin)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                print_table(&keys);
            }
        }
    }
    Ok(())
}

fn print_table(keys: &[TokenKeyInfo]) {
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            vec![
                k.token.clone(),
                k.label.clone(),
                k.id.clone(),
                k.algorithm.clone(),
                k.spki_sha256.clone(),
                if k.extractable || !k.sensitive || !k.other_uses.is_empty() {
                    format!(
                        "NOT CA-GRADE: extractable={} sensitive={} also {:?}",
                        k.extractable, k.sensitive, k.other_uses
                    )
                } else {
                    "sign only, non-extractable".to_string()
                },
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "TOKEN",
                "LABEL",
                "ID",
                "ALGORITHM",
                "SPKI SHA-256",
                "PROTECTION"
            ],
            &rows
        )
    );
}

/// Records the new key in the home's audit trail (the fingerprint ties
/// the ceremony's minutes to the certificate that will carry the key).
fn audit(
    home: &PathBuf,
    actor: &str,
    key_ref: &str,
    algorithm: KeyAlgorithm,
    fp: &str,
) -> Result<()> {
    let mut store = Store::open(&Home::new(home).database(), false)?;
    let at = Clock::system().now();
    store.write(|tx| {
        tx.audit(
            at,
            actor,
            kxca_ca::AuditAction::KeyGenerate,
            None,
            serde_json::json!({"ref": key_ref, "algorithm": algorithm.name(), "spki_sha256": fp}),
        )
    })?;
    Ok(())
}

//! `kxca yubikey ...`: the security officers' YubiKey procedures.
//!
//! PINs, PUKs and management keys come from environment variables or files
//! (never argv, which every user can read in the process list), or from a
//! prompt without echo when standard input is a terminal.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use kxca_ca::{Ca, Clock, Config, Home};
use kxca_hsm::yubikey::{officer, ManagementKeyStorage};
use kxca_hsm::{BackendOptions, KeyAlgorithm, KeyRef, SecretSource, SecretString};
use secrecy::ExposeSecret;

#[derive(Subcommand, Debug)]
pub enum YubiKeyCommand {
    /// List the YubiKeys pcscd can reach.
    List,
    /// PIN tries left, factory management key, and what the slots hold.
    Status(Device),
    /// Replace the factory PIN, PUK and management key of a new device.
    Setup(SetupArgs),
    /// Generate a CA key pair in a slot (never replaces an existing key).
    Generate(GenerateArgs),
    /// Change the PIN (current: KXCA_YUBIKEY_PIN, new: KXCA_YUBIKEY_NEW_PIN).
    ChangePin(ChangeArgs),
    /// Change the PUK (current: KXCA_YUBIKEY_PUK, new: KXCA_YUBIKEY_NEW_PUK).
    ChangePuk(ChangeArgs),
    /// Set a new PIN with the PUK, also when the PIN is blocked.
    UnblockPin(ChangeArgs),
    /// Fetch and verify the attestation of the key in a slot, and save it.
    Attest(AttestArgs),
}

#[derive(Args, Debug)]
pub struct Device {
    /// The device's serial number (default: the only one present).
    #[arg(long)]
    pub serial: Option<u32>,
}

#[derive(Args, Debug)]
pub struct SetupArgs {
    #[command(flatten)]
    pub device: Device,
    /// Print the new management key once for the officers' safe instead of
    /// storing it PIN-protected on the device.
    #[arg(long)]
    pub print_management_key: bool,
    /// File with the current management key, when it is not the factory one.
    #[arg(long)]
    pub management_key_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub device: Device,
    /// PIV slot: 9c (digital signature, the default), 9a, 9d, 9e or 82..95.
    #[arg(long, default_value = "9c")]
    pub slot: String,
    /// ecdsa-p256 (default) or rsa-2048 (where the device supports it).
    #[arg(long, default_value = "ecdsa-p256")]
    pub algorithm: String,
    /// Write the public key (PEM) here.
    #[arg(long)]
    pub public_key_out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ChangeArgs {
    #[command(flatten)]
    pub device: Device,
}

#[derive(Args, Debug)]
pub struct AttestArgs {
    #[command(flatten)]
    pub device: Device,
    #[arg(long, default_value = "9c")]
    pub slot: String,
    /// Directory for the attestation certificates (default: <home>/yubikey).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Reads a secret from `$NAME`, else `$NAME_FILE` (a path), else a prompt.
fn secret(name: &str, prompt: &str) -> Result<SecretString> {
    if std::env::var_os(name).is_some() {
        return Ok(SecretSource::Env(name.to_string()).read()?);
    }
    if let Some(path) = std::env::var_os(format!("{name}_FILE")) {
        return Ok(SecretSource::File(PathBuf::from(path)).read()?);
    }
    if std::io::stdin().is_terminal() {
        return prompt_no_echo(prompt);
    }
    bail!("{prompt}: set {name} or {name}_FILE (secrets are never taken from the command line)")
}

fn optional_secret(name: &str) -> Result<Option<SecretString>> {
    if std::env::var_os(name).is_some() || std::env::var_os(format!("{name}_FILE")).is_some() {
        return secret(name, name).map(Some);
    }
    Ok(None)
}

pub(crate) fn prompt_no_echo(prompt: &str) -> Result<SecretString> {
    let stty = |arg: &str| {
        std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status()
    };
    eprint!("{prompt}: ");
    std::io::stderr().flush().ok();
    stty("-echo").context("turning off terminal echo")?;
    let mut line = String::new();
    let read = std::io::stdin().read_line(&mut line);
    let _ = stty("echo");
    eprintln!();
    read.context("reading the secret")?;
    let value = SecretString::from(line.trim_end_matches(['\r', '\n']).to_string());
    zeroize::Zeroize::zeroize(&mut line);
    Ok(value)
}

fn options(home: &Option<PathBuf>) -> Result<BackendOptions> {
    match home {
        Some(dir) if Home::new(dir).config().exists() => {
            Ok(Config::load(&Home::new(dir).config())?.backend_options())
        }
        _ => Ok(BackendOptions::default()),
    }
}

/// Appends an officer action to the audit trail of the CA at `home`, when
/// there is one (a device is often set up before `kxca init`). No secret
/// goes in `detail`.
fn record(
    home: &Option<PathBuf>,
    actor: &str,
    action: kxca_ca::AuditAction,
    detail: serde_json::Value,
) -> Result<()> {
    let Some(dir) = home else { return Ok(()) };
    let home = Home::new(dir);
    if !home.config().exists() {
        return Ok(());
    }
    let clock = Clock::system();
    let now = clock.now();
    let mut ca = Ca::open(home, clock)?;
    ca.store_mut()
        .write(|tx| tx.audit(now, actor, action, None, detail))?;
    Ok(())
}

pub fn run(command: YubiKeyCommand, home: &Option<PathBuf>, actor: &str) -> Result<()> {
    match command {
        YubiKeyCommand::List => {
            let devices = officer::list()?;
            if devices.is_empty() {
                println!("No YubiKey found (is it plugged in, and is pcscd running?)");
            }
            for d in devices {
                println!("{}\tfirmware {}\t{}", d.serial, d.version, d.reader);
            }
        }
        YubiKeyCommand::Status(d) => {
            let s = officer::status(d.serial)?;
            println!("YubiKey serial {} firmware {}", s.serial, s.version);
            println!("  PIN tries left:          {}", s.pin_retries);
            println!(
                "  factory management key:  {}",
                if s.factory_management_key {
                    "YES (run kxca yubikey setup)"
                } else {
                    "no"
                }
            );
            for slot in s.slots {
                match (slot.algorithm, slot.subject) {
                    (Some(a), Some(subj)) => println!("  slot {}: {a} ({subj})", slot.slot),
                    (None, Some(subj)) => println!("  slot {}: certificate {subj}", slot.slot),
                    _ => println!("  slot {}: empty", slot.slot),
                }
            }
        }
        YubiKeyCommand::Setup(a) => {
            let current_pin = optional_secret("KXCA_YUBIKEY_PIN")?
                .unwrap_or_else(|| SecretString::from("123456".to_string()));
            let current_puk = optional_secret("KXCA_YUBIKEY_PUK")?
                .unwrap_or_else(|| SecretString::from("12345678".to_string()));
            let new_pin = secret("KXCA_YUBIKEY_NEW_PIN", "New PIN (6-8 characters)")?;
            let new_puk = secret("KXCA_YUBIKEY_NEW_PUK", "New PUK (6-8 characters)")?;
            let current_management_key = match &a.management_key_file {
                Some(p) => Some(SecretSource::File(p.clone()).read()?),
                None => None,
            };
            let outcome = officer::setup(
                a.device.serial,
                &officer::Setup {
                    current_pin,
                    new_pin,
                    current_puk,
                    new_puk,
                    current_management_key,
                    storage: if a.print_management_key {
                        ManagementKeyStorage::Printed
                    } else {
                        ManagementKeyStorage::Protected
                    },
                },
            )?;
            record(
                home,
                actor,
                kxca_ca::AuditAction::YubikeySetup,
                serde_json::json!({
                    "serial": outcome.serial,
                    "management_key": if a.print_management_key { "printed" } else { "protected" },
                }),
            )?;
            println!(
                "YubiKey serial {}: PIN, PUK and management key replaced",
                outcome.serial
            );
            match outcome.printed_management_key {
                Some(key) => {
                    println!("Management key (shown once; put it in the officers' safe):");
                    println!("  {}", key.expose_secret());
                }
                None => println!("Management key: stored on the device, protected by the PIN"),
            }
        }
        YubiKeyCommand::Generate(a) => {
            let algorithm: KeyAlgorithm = a.algorithm.parse()?;
            let key_ref = KeyRef::YubiKey {
                serial: a.device.serial,
                slot: a.slot.to_ascii_lowercase(),
            };
            let pin = pin_source()?;
            let signer = kxca_hsm::generate_with(&key_ref, algorithm, &pin, &options(home)?)?;
            let pem = der::pem::encode_string(
                "PUBLIC KEY",
                der::pem::LineEnding::LF,
                signer.public_key_der(),
            )
            .context("encoding the public key")?;
            record(
                home,
                actor,
                kxca_ca::AuditAction::YubikeyGenerate,
                serde_json::json!({
                    "key": signer.key_ref().to_string(),
                    "algorithm": algorithm.name(),
                    "public_key": pem,
                }),
            )?;
            println!("Generated {algorithm} key {}", signer.key_ref());
            if let Some(path) = a.public_key_out {
                std::fs::write(&path, &pem)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("  public key: {}", path.display());
            } else {
                print!("{pem}");
            }
            println!("Next: kxca init --issuing-key '{}'", signer.key_ref());
        }
        YubiKeyCommand::ChangePin(a) => {
            let current = secret("KXCA_YUBIKEY_PIN", "Current PIN")?;
            let new = secret("KXCA_YUBIKEY_NEW_PIN", "New PIN")?;
            let serial = officer::change_pin(a.device.serial, &current, &new)?;
            record(
                home,
                actor,
                kxca_ca::AuditAction::YubikeyChangePin,
                serde_json::json!({ "serial": serial }),
            )?;
            println!("YubiKey serial {serial}: PIN changed");
        }
        YubiKeyCommand::ChangePuk(a) => {
            let current = secret("KXCA_YUBIKEY_PUK", "Current PUK")?;
            let new = secret("KXCA_YUBIKEY_NEW_PUK", "New PUK")?;
            let serial = officer::change_puk(a.device.serial, &current, &new)?;
            record(
                home,
                actor,
                kxca_ca::AuditAction::YubikeyChangePuk,
                serde_json::json!({ "serial": serial }),
            )?;
            println!("YubiKey serial {serial}: PUK changed");
        }
        YubiKeyCommand::UnblockPin(a) => {
            let puk = secret("KXCA_YUBIKEY_PUK", "PUK")?;
            let new = secret("KXCA_YUBIKEY_NEW_PIN", "New PIN")?;
            let serial = officer::unblock_pin(a.device.serial, &puk, &new)?;
            record(
                home,
                actor,
                kxca_ca::AuditAction::YubikeyUnblockPin,
                serde_json::json!({ "serial": serial }),
            )?;
            println!("YubiKey serial {serial}: PIN reset with the PUK");
        }
        YubiKeyCommand::Attest(a) => {
            let att = officer::attest(a.device.serial, &a.slot)?;
            let dir = match (a.out, home) {
                (Some(d), _) => d,
                (None, Some(h)) => h.join("yubikey"),
                (None, None) => bail!("pass --out DIR or --home DIR for the attestation files"),
            };
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for (name, der_bytes) in [
                (
                    format!("attest-{}-{}.pem", att.serial, att.slot),
                    &att.certificate,
                ),
                (
                    format!("attest-{}-f9.pem", att.serial),
                    &att.device_certificate,
                ),
            ] {
                let pem =
                    der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, der_bytes)
                        .context("encoding the attestation")?;
                let path = dir.join(name);
                std::fs::write(&path, pem)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("  {}", path.display());
            }
            let pem = |der_bytes: &[u8]| {
                der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, der_bytes)
                    .unwrap_or_default()
            };
            record(
                home,
                actor,
                kxca_ca::AuditAction::YubikeyAttest,
                serde_json::json!({
                    "serial": att.serial,
                    "slot": att.slot,
                    "attestation": pem(&att.certificate),
                    "device_certificate": pem(&att.device_certificate),
                }),
            )?;
            println!(
                "Attestation verified: the key in slot {} was generated on YubiKey serial {}",
                att.slot, att.serial
            );
            println!("Check the device certificate against Yubico's PIV attestation root on an offline machine.");
        }
    }
    Ok(())
}

/// The PIN for generation: `$KXCA_YUBIKEY_PIN` or `$KXCA_YUBIKEY_PIN_FILE`.
/// The backend reads it itself, so it is not prompted for.
fn pin_source() -> Result<SecretSource> {
    if std::env::var_os("KXCA_YUBIKEY_PIN").is_some() {
        return Ok(SecretSource::Env("KXCA_YUBIKEY_PIN".to_string()));
    }
    if let Some(p) = std::env::var_os("KXCA_YUBIKEY_PIN_FILE") {
        return Ok(SecretSource::File(PathBuf::from(p)));
    }
    bail!("PIN: set KXCA_YUBIKEY_PIN or KXCA_YUBIKEY_PIN_FILE (secrets are never taken from the command line)")
}

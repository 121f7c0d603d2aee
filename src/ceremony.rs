//! `kxca officer` and `kxca ceremony`: security officers enrol, check a
//! ceremony file, and run it under dual control (docs/CEREMONIES.md).
//!
//! Passphrases come from a terminal (no echo) or, for scripts, from files
//! named on the command line or `KXCA_OFFICER_PASSPHRASE(_FILE)`: never
//! from argv itself.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use kxca_ca::ceremony::{self, Approval, CeremonyPolicy};
use kxca_ca::{Ca, Clock, Home};
use kxca_hsm::{SecretSource, SecretString};
use kxca_provisioner::accounts::{lifecycle, Setup};
use kxca_provisioner::MailConfig;

use crate::yubikey::prompt_no_echo;

#[derive(Subcommand, Debug)]
pub enum OfficerCommand {
    /// Enrol a security officer listed in policies/ceremony.toml with their
    /// own passphrase (stored as an Argon2id hash).
    Add {
        name: String,
        /// Read the passphrase from this file (first line) instead of the
        /// terminal or KXCA_OFFICER_PASSPHRASE.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// Once enough officers are enrolled, a new one needs their
        /// approvals: NAME=PASSPHRASE_FILE (repeat), else asked on the terminal.
        #[arg(long = "approve", value_name = "NAME=FILE")]
        approvals: Vec<String>,
    },
    /// The officers of the policy and whether each is enrolled.
    List,
}

#[derive(Subcommand, Debug)]
pub enum CeremonyCommand {
    /// Validate a ceremony file completely; changes nothing.
    Check { file: PathBuf },
    /// Run a ceremony: the officers approve, every step is printed, the
    /// transcript goes to the audit log and a file.
    Run {
        file: PathBuf,
        /// An approval for scripts: NAME=PASSPHRASE_FILE (repeat for each
        /// officer). Without it the officers are asked on the terminal.
        #[arg(long = "approve", value_name = "NAME=FILE")]
        approvals: Vec<String>,
    },
}

fn officer_passphrase(file: &Option<PathBuf>, name: &str) -> Result<SecretString> {
    if let Some(path) = file {
        return Ok(SecretSource::File(path.clone()).read()?);
    }
    if std::env::var_os("KXCA_OFFICER_PASSPHRASE").is_some() {
        return Ok(SecretSource::Env("KXCA_OFFICER_PASSPHRASE".into()).read()?);
    }
    if let Some(path) = std::env::var_os("KXCA_OFFICER_PASSPHRASE_FILE") {
        return Ok(SecretSource::File(PathBuf::from(path)).read()?);
    }
    if std::io::stdin().is_terminal() {
        use secrecy::ExposeSecret;
        let first = prompt_no_echo(&format!("New passphrase for officer {name}"))?;
        let again = prompt_no_echo("The same passphrase again")?;
        if first.expose_secret() != again.expose_secret() {
            bail!("the two passphrases differ; nothing was enrolled");
        }
        return Ok(first);
    }
    bail!("officer {name}: give the passphrase on a terminal, with --passphrase-file, or in KXCA_OFFICER_PASSPHRASE(_FILE) (never on the command line)")
}

pub fn run_officer(home: Home, command: OfficerCommand, actor: &str) -> Result<()> {
    let mut ca = Ca::open(home, Clock::system())?;
    match command {
        OfficerCommand::Add {
            name,
            passphrase_file,
            approvals,
        } => {
            let policy = CeremonyPolicy::load(ca.home())?;
            let enrolled = ceremony::enrolled(ca.store())?
                .into_iter()
                .filter(|o| policy.officers.contains(o))
                .count();
            let approvals = if !approvals.is_empty() {
                approvals_from_args(&approvals)?
            } else if enrolled >= policy.required && std::io::stdin().is_terminal() {
                eprintln!(
                    "{enrolled} officers are enrolled: {} of them approve enrolling {name}",
                    policy.required
                );
                approvals_from_terminal(policy.required)?
            } else {
                Vec::new()
            };
            let pass = officer_passphrase(&passphrase_file, &name)?;
            let now = ca.clock().now();
            let home = ca.home().clone();
            let approvers =
                ceremony::enrol(ca.store_mut(), &home, &name, &pass, &approvals, actor, now)?;
            if approvers.is_empty() {
                println!("Officer {name} enrolled");
            } else {
                println!(
                    "Officer {name} enrolled, approved by {}",
                    approvers.join(", ")
                );
            }
        }
        OfficerCommand::List => {
            let policy = CeremonyPolicy::load(ca.home())?;
            let enrolled = ceremony::enrolled(ca.store())?;
            println!(
                "{} of {} officers must approve a ceremony ({})",
                policy.required,
                policy.officers.len(),
                policy.path.display()
            );
            for o in &policy.officers {
                let state = if enrolled.contains(o) {
                    "enrolled"
                } else {
                    "not enrolled"
                };
                println!("  {o:<20} {state}");
            }
        }
    }
    Ok(())
}

fn approvals_from_args(args: &[String]) -> Result<Vec<Approval>> {
    args.iter()
        .map(|a| {
            let (name, file) = a
                .split_once('=')
                .with_context(|| format!("--approve {a:?}: expected NAME=PASSPHRASE_FILE"))?;
            Ok(Approval {
                officer: name.to_string(),
                passphrase: SecretSource::File(PathBuf::from(file))
                    .read()
                    .with_context(|| format!("--approve {name}"))?,
            })
        })
        .collect()
}

fn approvals_from_terminal(required: usize) -> Result<Vec<Approval>> {
    if !std::io::stdin().is_terminal() {
        bail!("no approvals: run on a terminal where the officers type their names and passphrases, or give --approve NAME=PASSPHRASE_FILE for each");
    }
    let mut out = Vec::new();
    let stdin = std::io::stdin();
    for i in 1..=required {
        eprint!("Officer {i} of {required}, name: ");
        std::io::stderr().flush().ok();
        let mut name = String::new();
        stdin.lock().read_line(&mut name)?;
        let name = name.trim().to_string();
        let passphrase = prompt_no_echo(&format!("Passphrase of officer {name}"))?;
        out.push(Approval {
            officer: name,
            passphrase,
        });
    }
    Ok(out)
}

/// After a compromise: each live certificate of the compromised CA whose
/// contact has an account gets the reset flow (a new pickup superseding it,
/// mail 1 and mail 2); the others are named for the admin to reissue.
fn reset_accounts(
    ca: &mut Ca,
    reset: &[(String, String, String)],
    mail: Option<&MailConfig>,
    actor: &str,
) -> Result<()> {
    kxca_provisioner::migrate(ca.store_mut())?;
    let setup = match Setup::load(ca, mail) {
        Ok(s) => s,
        Err(e) => {
            println!(
                "Reset flow not started ({e}): reset each certificate of the reset list with kxca accounts reset"
            );
            return Ok(());
        }
    };
    let mut without = Vec::new();
    for (serial, certificate_id, _) in reset {
        let now = ca.clock().now();
        match lifecycle::reset(
            ca.store_mut(),
            certificate_id,
            &setup.delivery(),
            actor,
            now,
        ) {
            Ok(out) => println!(
                "  {certificate_id} ({serial}): reset, new pickup opened, {} mail(s) queued",
                out.mails_queued
            ),
            Err(e) => {
                println!("  {certificate_id} ({serial}): not reset: {e}");
                without.push(certificate_id.as_str());
            }
        }
    }
    if !without.is_empty() {
        println!(
            "{} certificate(s) had no active account to reset; issue their replacements by hand (kxca issue): {}",
            without.len(),
            without.join(", ")
        );
    }
    Ok(())
}

pub fn run_ceremony(
    home: Home,
    command: CeremonyCommand,
    mail: Option<&MailConfig>,
    actor: &str,
) -> Result<()> {
    let mut ca = Ca::open(home, Clock::system())?;
    match command {
        CeremonyCommand::Check { file } => {
            let checked = ceremony::check(&ca, &file)?;
            println!(
                "{}: type {}, sha256 {}: OK",
                file.display(),
                checked.spec.kind.as_str(),
                checked.sha256
            );
            println!("Steps of kxca ceremony run:");
            for (i, s) in checked.steps.iter().enumerate() {
                println!("  {}. {s}", i + 1);
            }
        }
        CeremonyCommand::Run { file, approvals } => {
            let checked = ceremony::check(&ca, &file)?;
            println!(
                "Ceremony {} (type {}, sha256 {})",
                file.display(),
                checked.spec.kind.as_str(),
                checked.sha256
            );
            for (i, s) in checked.steps.iter().enumerate() {
                println!("  {}. {s}", i + 1);
            }
            let policy = CeremonyPolicy::load(ca.home())?;
            let approvals = if approvals.is_empty() {
                approvals_from_terminal(policy.required)?
            } else {
                approvals_from_args(&approvals)?
            };
            let mut say = |line: &str| println!("{line}");
            let report = ceremony::run(&mut ca, checked, &approvals, actor, &mut say)?;
            println!(
                "Ceremony {} done; approved by {}",
                report.ceremony_id,
                report.officers.join(", ")
            );
            for o in &report.outputs {
                println!("  {}", o.display());
            }
            if !report.reset.is_empty() {
                println!(
                    "{} live certificate(s) of the compromised CA need replacing (reset list written):",
                    report.reset.len()
                );
                reset_accounts(&mut ca, &report.reset, mail, actor)?;
            }
        }
    }
    Ok(())
}

//! The command line: the clap tree and the dispatch to each command's
//! module. No command's logic lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use kxca_ca::Home;

use crate::config::KxcaToml;
use crate::init::InitArgs;
use crate::issue::IssueArgs;

#[derive(Parser, Debug)]
#[command(
    name = "kxca",
    version,
    about = "Certificate authority and identity provisioning for Kenpo eXpress"
)]
pub struct Cli {
    /// The kxca home directory (config, database, policies, keys).
    #[arg(long, env = "KXCA_HOME", global = true)]
    pub home: Option<PathBuf>,
    /// Who is acting, for the audit trail (default: the login name).
    #[arg(long, env = "KXCA_ACTOR", global = true)]
    pub actor: Option<String>,
    /// More log output on stderr (-v info, -vv debug; `serve` logs at info).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a CA home: config, policies, database, root and issuing CA.
    Init(InitArgs),
    /// Issue one office contact's client certificate as a PKCS#12 file.
    Issue(IssueArgs),
    /// Revoke a certificate.
    Revoke {
        /// Serial number in hex (as `kxca list` or `openssl x509 -serial` prints it).
        serial: String,
        /// RFC 5280 reason: unspecified, keyCompromise, affiliationChanged,
        /// superseded, cessationOfOperation, privilegeWithdrawn, ...
        #[arg(long, default_value = "unspecified")]
        reason: String,
    },
    /// Sign a CRL for the issuing CA and write it to <home>/crl/.
    Crl,
    /// List certificates in the store.
    List {
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 1000)]
        limit: i64,
    },
    /// Show one certificate.
    Show {
        serial: String,
        #[arg(long)]
        json: bool,
        /// Print the certificate as PEM.
        #[arg(long)]
        pem: bool,
    },
    /// Check the store for anything inconsistent (exit 1 when something is found).
    Doctor {
        #[arg(long)]
        json: bool,
    },
    /// Show the audit trail; `verify`, `export`, `checkpoint`: the signed record.
    #[command(args_conflicts_with_subcommands = true)]
    Audit {
        #[command(subcommand)]
        command: Option<crate::audit::AuditCommand>,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// YubiKey officer procedures: list, status, setup, generate, PIN and PUK, attest.
    #[command(subcommand)]
    Yubikey(crate::yubikey::YubiKeyCommand),
    /// Create and list CA keys on PKCS#11 tokens (security officers).
    Key {
        #[command(subcommand)]
        command: crate::key::KeyCommand,
    },
    /// Security officers: enrol one with their own passphrase, list them.
    Officer {
        #[command(subcommand)]
        command: crate::ceremony::OfficerCommand,
    },
    /// Key ceremonies under dual control: check or run a ceremony file.
    Ceremony {
        #[command(subcommand)]
        command: crate::ceremony::CeremonyCommand,
    },
    #[command(flatten)]
    Mail(crate::mail_cli::MailCommand),
    /// Application forms: check a file, or fetch the signup mailbox.
    Intake {
        #[command(subcommand)]
        command: crate::intake::IntakeCommand,
    },
    /// Office contacts' accounts: list, show, reset, revoke, renew a pickup,
    /// export for the KX server.
    Accounts {
        #[command(subcommand)]
        command: crate::accounts_cli::AccountsCommand,
    },
    /// The office register the intake policy may check office codes against.
    Offices {
        #[command(subcommand)]
        command: crate::intake::OfficesCommand,
    },
    /// The admin console's accounts: add (password + TOTP), list, remove,
    /// unlock, reset-password, reset-totp.
    Admin {
        #[command(subcommand)]
        command: crate::admin_cli::AdminCommand,
    },
    /// Certificate pickups as admins see them: state, tries, code expiry, serial.
    Pickups(crate::pickups::PickupsArgs),
    /// The public role: serve OCSP, CRLs, CA certificates, /healthz and
    /// /metrics from the store, holding no CA key.
    Serve(crate::serve::ServeArgs),
    /// The private role: sign CRLs and OCSP answers into the store, renew the
    /// responder certificate, run the mail intake schedule. Listens on no
    /// port, except the admin console's when kxca.toml has `[console]`.
    Daemon,
    /// Export pre-signed OCSP responses, CRLs and CA certificates for nginx or a CDN.
    Publish(crate::publish::PublishArgs),
    /// Back up the store (consistent, while the roles run) and the home's
    /// non-secret files into DIR, with a manifest of hashes. Never keys or secrets.
    Backup {
        /// A new or empty directory, outside the home.
        dir: PathBuf,
    },
    /// Verify a backup and restore it into a new home (never over an existing one).
    Restore {
        /// The directory `kxca backup` wrote.
        backup: PathBuf,
        /// The new home: a new or empty directory.
        #[arg(required_unless_present = "check")]
        new_home: Option<PathBuf>,
        /// Only check that the backup restores (everything a restore
        /// checks, on a throwaway copy); write no home.
        #[arg(long, conflicts_with = "new_home")]
        check: bool,
    },
    /// Demonstration: init a CA, issue two certificates, revoke one, sign a CRL.
    Demo {
        /// Where to put the demo CA (default: $KXCA_HOME, else a new temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

pub fn actor(cli_actor: &Option<String>) -> String {
    cli_actor
        .clone()
        .or_else(|| std::env::var("SUDO_USER").ok())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "kxca".to_string())
}

pub(crate) fn home(cli: &Option<PathBuf>) -> Result<Home> {
    match cli {
        // Absolute: `init` writes key paths under the home into kxca.toml.
        Some(p) => Ok(Home::new(
            std::path::absolute(p).with_context(|| format!("{}", p.display()))?,
        )),
        None => bail!("no kxca home: pass --home DIR or set KXCA_HOME"),
    }
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    let actor = actor(&cli.actor);
    // Every section checked before any command runs; `init` and `demo`
    // write the file instead, `restore` reads a backup's, not KXCA_HOME's.
    let config = match (&cli.command, &cli.home) {
        (Command::Init(_) | Command::Demo { .. } | Command::Restore { .. }, _) | (_, None) => None,
        (_, Some(dir)) => KxcaToml::of_home(&home(&Some(dir.clone()))?)?,
    };
    let mail = config.as_ref().and_then(|c| c.mail.clone());
    match cli.command {
        Command::Yubikey(c) => crate::yubikey::run(c, &cli.home, &actor)?,
        Command::Init(args) => crate::init::run(home(&cli.home)?, &args, &actor)?,
        Command::Issue(args) => crate::issue::run(home(&cli.home)?, &args, &actor)?,
        Command::Revoke { serial, reason } => {
            crate::certificates::revoke(home(&cli.home)?, &serial, &reason, &actor)?
        }
        Command::Crl => crate::certificates::crl(home(&cli.home)?, &actor)?,
        Command::List { json, limit } => crate::certificates::list(home(&cli.home)?, json, limit)?,
        Command::Show { serial, json, pem } => {
            crate::certificates::show(home(&cli.home)?, &serial, json, pem)?
        }
        Command::Audit {
            command: Some(command),
            ..
        } => return crate::audit::run(home(&cli.home)?, command),
        Command::Audit {
            command: None,
            json,
            limit,
        } => crate::audit::list(home(&cli.home)?, json, limit)?,
        Command::Doctor { json } => return crate::doctor::run(home(&cli.home)?, json),
        Command::Key { command } => crate::key::run(&cli.home, &actor, command)?,
        Command::Officer { command } => {
            crate::ceremony::run_officer(home(&cli.home)?, command, &actor)?
        }
        Command::Ceremony { command } => {
            crate::ceremony::run_ceremony(home(&cli.home)?, command, mail.as_ref(), &actor)?
        }
        Command::Intake { command } => {
            return crate::intake::run_intake(command, &cli.home, mail.as_ref(), &actor)
        }
        Command::Accounts { command } => {
            crate::accounts_cli::run(command, home(&cli.home)?, mail.as_ref(), &actor)?
        }
        Command::Offices { command } => {
            return crate::intake::run_offices(command, &cli.home, &actor)
        }
        Command::Mail(command) => {
            crate::mail_cli::run(command, home(&cli.home)?, mail.as_ref(), &actor)?
        }
        Command::Backup { dir } => crate::backup::take(home(&cli.home)?, &dir, &actor)?,
        Command::Restore {
            backup,
            new_home,
            check,
        } => match new_home {
            Some(new_home) if !check => crate::backup::restore(&backup, &new_home, &actor)?,
            _ => crate::backup::check(&backup, &actor)?,
        },
        Command::Demo { dir } => crate::demo::run(dir.or(cli.home), &actor)?,
        Command::Serve(args) => {
            let home = home(&cli.home)?;
            let config = KxcaToml::required(config, &home)?;
            crate::serve::run(home, config.serve, args)?
        }
        Command::Daemon => {
            let home = home(&cli.home)?;
            let config = KxcaToml::required(config, &home)?;
            crate::daemon::run(home, config, &actor)?
        }
        Command::Publish(args) => crate::publish::run(home(&cli.home)?, args, &actor)?,
        Command::Pickups(args) => crate::pickups::list(home(&cli.home)?, &args)?,
        Command::Admin { command } => {
            let home = home(&cli.home)?;
            let config = KxcaToml::required(config, &home)?;
            crate::admin_cli::run(
                home,
                command,
                &config.ca.union.name,
                config.console.is_some(),
                &actor,
            )?
        }
    }
    Ok(ExitCode::SUCCESS)
}

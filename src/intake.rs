//! `kxca intake ...` and `kxca offices ...`: application forms and the
//! office register.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use kxca_ca::{Clock, Home, Store};
use kxca_provisioner::accounts::AccountRegister;
use kxca_provisioner::intake::{
    self, offices, ExistingAccounts, IntakePolicy, NoExistingAccounts, OfficeRegister, Outcome,
};
use kxca_provisioner::MailConfig;

use crate::output::table;

#[derive(Subcommand, Debug)]
pub enum IntakeCommand {
    /// One pass over the signup mailbox ([mail] in kxca.toml): record each
    /// form as an application, queue and send the Japanese replies.
    Fetch {
        #[arg(long)]
        json: bool,
        /// Queue replies but do not send them now.
        #[arg(long)]
        no_send: bool,
    },
    /// Validate an application form (.xlsx, .xls, .ods) without changing
    /// anything. Exit status: 0 every row valid, 1 some row not, 2 not a form.
    Check {
        file: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Intake policy file (default: <home>/policies/intake.toml, else the shipped one).
        #[arg(long)]
        policy: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum OfficesCommand {
    /// Import offices from a CSV file (組合コード,支部コード,事業所コード,事業所名).
    Import { csv: PathBuf },
    /// List the registered offices.
    List {
        #[arg(long)]
        json: bool,
    },
}

/// The intake policy in force (`IntakePolicy::in_force`: an explicit
/// file, the home's, or the shipped one, checked against the profiles).
pub fn policy(home: &Option<PathBuf>, explicit: &Option<PathBuf>) -> Result<IntakePolicy> {
    let shipped = crate::policies::shipped_profiles()?;
    let home = home.as_ref().map(Home::new);
    Ok(IntakePolicy::in_force(
        home.as_ref(),
        explicit.as_deref(),
        &shipped,
    )?)
}

fn open_store(home: &Option<PathBuf>) -> Result<Store> {
    let Some(h) = home else {
        bail!("no kxca home: pass --home DIR or set KXCA_HOME");
    };
    let home = Home::new(h);
    if !home.config().exists() {
        bail!(
            "{} is not a kxca home (no kxca.toml): run `kxca init` first",
            home.root().display()
        );
    }
    Ok(Store::open(&home.database(), false)?)
}

/// `mail`: the home's `[mail]` (src/config.rs), for `fetch`.
pub fn run_intake(
    cmd: IntakeCommand,
    home: &Option<PathBuf>,
    mail: Option<&MailConfig>,
    actor: &str,
) -> Result<ExitCode> {
    match cmd {
        IntakeCommand::Fetch { json, no_send } => {
            let Some(h) = home else {
                bail!("no kxca home: pass --home DIR or set KXCA_HOME");
            };
            let policy = policy(home, &None)?;
            crate::mail_cli::fetch(Home::new(h), mail, policy, json, no_send, actor)?;
            Ok(ExitCode::SUCCESS)
        }
        IntakeCommand::Check {
            file,
            json,
            policy: p,
        } => {
            let policy = policy(home, &p)?;
            let register;
            let existing: &dyn ExistingAccounts = if policy.office.use_register {
                // Reading the registers only; the check writes nothing.
                let mut store =
                    open_store(home).context("the intake policy uses the office register")?;
                let offices = OfficeRegister::load(&mut store)?;
                register = AccountRegister::load(&mut store, Some(offices))?;
                &register
            } else if home
                .as_ref()
                .is_some_and(|h| Home::new(h).database().exists())
            {
                // In a home, rows are checked against its accounts as the
                // mail pass checks them.
                let mut store = open_store(home)?;
                register = AccountRegister::load(&mut store, None)?;
                &register
            } else {
                &NoExistingAccounts
            };
            check(&file, &policy, existing, json)
        }
    }
}

fn check(
    file: &Path,
    policy: &IntakePolicy,
    existing: &dyn ExistingAccounts,
    json: bool,
) -> Result<ExitCode> {
    // The file is parsed by a worker process with hard limits: a hostile
    // file ends as exit 2 and one line, never as this process's crash.
    let sandbox = kxca_provisioner::sandbox::Sandbox::current(policy.sandbox)
        .context("locating the kxca executable for the parsing worker")?;
    match intake::check_file_contained(file, policy, existing, &sandbox) {
        Ok(report) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&report.to_json())?);
            } else {
                print!("{}", report.to_text_ja());
            }
            tracing::info!(
                file = %report.file,
                sheet = %report.sheet,
                rows = report.rows.len(),
                "form checked"
            );
            Ok(ExitCode::from(report.outcome().exit_code()))
        }
        Err(e) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&e.to_json())?);
            } else {
                println!("{}", e.message_ja());
            }
            eprintln!("error: {e}");
            Ok(ExitCode::from(Outcome::NotAForm.exit_code()))
        }
    }
}

pub fn run_offices(cmd: OfficesCommand, home: &Option<PathBuf>, actor: &str) -> Result<ExitCode> {
    let mut store = open_store(home)?;
    match cmd {
        OfficesCommand::Import { csv } => {
            let policy = policy(home, &None)?;
            let n = offices::import_csv(&mut store, &csv, &policy, actor, Clock::system().now())?;
            println!("Imported {n} office(s) from {}", csv.display());
        }
        OfficesCommand::List { json } => {
            let list = offices::list(&mut store)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|o| {
                        vec![
                            o.union_code.clone(),
                            o.branch_code.clone(),
                            o.office_code.clone(),
                            o.name.clone(),
                        ]
                    })
                    .collect();
                print!("{}", table(&["UNION", "BRANCH", "OFFICE", "NAME"], &rows));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! `kxca admin add|list`: the console's admin accounts (officers' CLI).

use anyhow::{bail, Result};
use clap::Subcommand;
use kxca_ca::{Clock, Home, Store};
use kxca_console::admins;

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Create a console admin: prints a generated password (once) and the
    /// TOTP enrolment (otpauth URI and its QR code) for their authenticator app.
    Add {
        /// The login name (A-Z a-z 0-9 . _ - @).
        name: String,
        /// admin (applications, accounts), officer (+ ceremonies' status),
        /// auditor (read only).
        #[arg(long)]
        role: String,
        #[arg(long)]
        json: bool,
    },
    /// List the console admins (role, failed logins, lock).
    List {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(home: Home, command: AdminCommand, issuer: &str, actor: &str) -> Result<()> {
    if !home.config().exists() {
        bail!(
            "{} is not a kxca home (no kxca.toml): run `kxca init` first",
            home.root().display()
        );
    }
    let mut store = Store::open(&home.database(), false)?;
    store.migrate(admins::COMPONENT, admins::migrations())?;
    match command {
        AdminCommand::Add { name, role, json } => {
            let Some(role) = admins::Role::parse(&role) else {
                bail!("--role {role:?}: expected admin, officer or auditor");
            };
            let key = kxca_console::ConsoleKey::load_or_create(&home)?;
            let now = Clock::system().now();
            let new = admins::add(&mut store, &key, issuer, &name, role, actor, now)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&new)?);
            } else {
                println!("admin {} created (role {})", new.name, new.role.as_str());
                println!(
                    "password (shown once, hand it over in person): {}",
                    new.password
                );
                println!("TOTP: scan this QR code with an authenticator app, or enter the URI:");
                println!("{}", admins::qr_for_terminal(&new.otpauth)?);
                println!("{}", new.otpauth);
            }
        }
        AdminCommand::List { json } => {
            let rows = store.read(admins::list)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for r in rows {
                    println!(
                        "{:<24} {:<8} failures {} {}",
                        r.name,
                        r.role.as_str(),
                        r.failures,
                        r.locked_until
                            .map(|t| format!("locked until {}", kxca_ca::rfc3339(t)))
                            .unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(())
}

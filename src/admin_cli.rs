//! `kxca admin add|list|remove|unlock|reset-password|reset-totp`: the
//! console's admin accounts (officers' CLI). Each change is one transaction
//! with its audit event (kxca_console::admins).

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
    /// List the console admins (role, second factor, lock, last login,
    /// failed logins).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a console admin: their sessions end at once.
    Remove { name: String },
    /// Unlock an admin locked after repeated failed logins.
    Unlock { name: String },
    /// Give an admin a new generated password (shown once); their sessions end.
    ResetPassword {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Give an admin a new TOTP secret (QR code shown once); their sessions
    /// end. Also the way back after a restore without the console key.
    ResetTotp {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(
    home: Home,
    command: AdminCommand,
    issuer: &str,
    console_on: bool,
    actor: &str,
) -> Result<()> {
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
                if !console_on {
                    println!(
                        "The console is off in this home: uncomment the [console] section of {} and restart kxca daemon (docs/CONSOLE.md)",
                        home.config().display()
                    );
                }
            }
        }
        AdminCommand::List { json } => {
            let key = kxca_console::ConsoleKey::load(&home)?;
            let rows = store.read(|s| admins::list(s, key.as_ref()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let when =
                    |t: Option<i64>| t.map(kxca_ca::rfc3339).unwrap_or_else(|| "-".to_string());
                println!(
                    "{:<24} {:<8} {:<6} {:<20} {:<20} FAILURES",
                    "NAME", "ROLE", "FACTOR", "LOCKED UNTIL", "LAST LOGIN"
                );
                for r in rows {
                    let now = Clock::system().now();
                    println!(
                        "{:<24} {:<8} {:<6} {:<20} {:<20} {}{}",
                        r.name,
                        r.role.as_str(),
                        r.factor,
                        when(r.locked_until.filter(|t| *t > now)),
                        when(r.last_login),
                        r.failures,
                        if r.totp_key_matches == Some(false) {
                            format!("  (TOTP sealed with another console key: kxca admin reset-totp {})", r.name)
                        } else {
                            String::new()
                        }
                    );
                }
            }
        }
        AdminCommand::Remove { name } => {
            let now = Clock::system().now();
            let ended = admins::remove(&mut store, &name, actor, now)?;
            println!("admin {name} removed; {ended} session(s) ended");
        }
        AdminCommand::Unlock { name } => {
            let now = Clock::system().now();
            if admins::unlock(&mut store, &name, actor, now)? {
                println!("admin {name} unlocked");
            } else {
                println!("admin {name} was not locked; failed logins reset to 0");
            }
        }
        AdminCommand::ResetPassword { name, json } => {
            let now = Clock::system().now();
            let r = admins::reset_password(&mut store, &name, actor, now)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "admin {name}: new password; {} session(s) ended",
                    r.sessions_ended
                );
                println!(
                    "password (shown once, hand it over in person): {}",
                    r.password.as_deref().unwrap_or_default()
                );
            }
        }
        AdminCommand::ResetTotp { name, json } => {
            let key = kxca_console::ConsoleKey::load_or_create(&home)?;
            let now = Clock::system().now();
            let r = admins::reset_totp(&mut store, &key, issuer, &name, actor, now)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                let uri = r.otpauth.as_deref().unwrap_or_default();
                println!(
                    "admin {name}: new TOTP secret; {} session(s) ended",
                    r.sessions_ended
                );
                println!("TOTP: scan this QR code with an authenticator app (the old entry no longer works), or enter the URI:");
                println!("{}", admins::qr_for_terminal(uri)?);
                println!("{uri}");
            }
        }
    }
    Ok(())
}

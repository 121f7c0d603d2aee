//! `kxca admin add|list|remove|unlock|reset-password|reset-totp|cert|tls-cert`:
//! the console's admin accounts, their client certificates and the
//! console's TLS certificate (officers' CLI). Each change of an admin is one
//! transaction with its audit event (kxca_console::admins).

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use kxca_ca::console_cert::{ConsoleProfile, ConsoleSubject, ConsoleUsage};
use kxca_ca::{Ca, Clock, Home, Password, Pkcs12Profile, Store};
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
    /// Issue an admin's client certificate from kxca's CA (profile
    /// policies/console-admin.toml) as a PKCS#12, and make it their second
    /// factor instead of TOTP: they then log in over the console's TLS with
    /// their password and this certificate. A previous one is revoked.
    Cert {
        /// The admin's login name.
        name: String,
        /// Where to write the PKCS#12 (must not exist; mode 0600).
        #[arg(long)]
        out: PathBuf,
        /// The PKCS#12 password's file (first line; 8 to 16 letters and
        /// digits). Without it kxca asks on the terminal.
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// legacy (PBE-SHA1-3DES) for Windows older than 10 1709; default modern.
        #[arg(long, default_value = "modern")]
        pkcs12: String,
        #[arg(long)]
        json: bool,
    },
    /// Issue the console's TLS server certificate from kxca's CA (profile
    /// policies/console-server.toml): writes the chain and a 0600 key under
    /// <home>/console/tls/, replacing the previous ones (restart the daemon).
    TlsCert {
        /// A DNS name the admins' browsers use (repeatable).
        #[arg(long)]
        dns: Vec<String>,
        /// An IP address the admins' browsers use (repeatable).
        #[arg(long)]
        ip: Vec<IpAddr>,
        #[arg(long)]
        json: bool,
    },
}

fn pkcs12_password(file: &Option<PathBuf>) -> Result<Password> {
    match file {
        Some(path) => {
            let mut text = std::fs::read_to_string(path)
                .with_context(|| format!("--password-file {}", path.display()))?;
            let line = text.lines().next().unwrap_or("").to_string();
            zeroize::Zeroize::zeroize(&mut text);
            Password::from_operator(line)
                .with_context(|| format!("--password-file {}", path.display()))
        }
        None => {
            use secrecy::ExposeSecret;
            if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                bail!("no --password-file and no terminal to ask for the PKCS#12 password on");
            }
            let first =
                crate::yubikey::prompt_no_echo("PKCS#12 password (8 to 16 letters and digits)")?;
            let again = crate::yubikey::prompt_no_echo("the same password again")?;
            if first.expose_secret() != again.expose_secret() {
                bail!("the two passwords differ; nothing was issued");
            }
            Ok(Password::from_operator(first.expose_secret().to_string())?)
        }
    }
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
        AdminCommand::Cert {
            name,
            out,
            password_file,
            pkcs12,
            json,
        } => {
            if !admins::exists(&mut store, &name)? {
                bail!("no console admin {name:?} (see `kxca admin list`)");
            }
            if out.exists() {
                bail!(
                    "{}: exists already; kxca never overwrites a PKCS#12",
                    out.display()
                );
            }
            let p12_profile: Pkcs12Profile = pkcs12
                .parse()
                .map_err(|e: String| anyhow::anyhow!("--pkcs12: {e}"))?;
            let password = pkcs12_password(&password_file)?;
            drop(store);
            let mut ca = Ca::open(home.clone(), Clock::system())?;
            let profile = ConsoleProfile::load(&home.policies(), ConsoleUsage::Client)?;
            let cert = ca.issue_console_certificate(
                &profile,
                &ConsoleSubject::Admin { name: name.clone() },
                actor,
            )?;
            let mut chain: Vec<&[u8]> = vec![&cert.der];
            chain.extend(cert.chain.iter().map(Vec::as_slice));
            let p12 = kxca_ca::package_pkcs12(
                &cert.key_pkcs8,
                &chain,
                &format!("kxca console {name}"),
                &password,
                p12_profile,
                10_000,
            )?;
            crate::issue::write_private(&out, &p12)?;
            let sha = kxca_console::tls::fingerprint(&cert.der);
            let serial = cert.record.serial.clone();
            let now = Clock::system().now();
            // Bound to the admin and the previous one revoked in one
            // transaction.
            let revoked =
                admins::set_certificate(ca.store_mut(), &name, &serial, &sha, actor, now)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "admin": name,
                        "serial": serial,
                        "sha256": sha,
                        "not_after": kxca_ca::rfc3339(cert.record.not_after),
                        "pkcs12": out,
                        "revoked": revoked,
                    }))?
                );
            } else {
                println!(
                    "client certificate {serial} for {name} written to {} (valid until {}); {name} now logs in with their password and this certificate, over the console's TLS",
                    out.display(),
                    kxca_ca::rfc3339(cert.record.not_after)
                );
                if let Some(old) = revoked {
                    println!("their previous certificate {old} is revoked (superseded)");
                }
            }
        }
        AdminCommand::TlsCert { dns, ip, json } => {
            drop(store);
            let mut ca = Ca::open(home.clone(), Clock::system())?;
            let done = kxca_console::server_cert::install(&mut ca, &home, dns, ip, actor)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&done)?);
            } else {
                println!(
                    "console TLS certificate {} (valid until {}) written to {}, key to {}",
                    done.serial,
                    kxca_ca::rfc3339(done.not_after),
                    done.cert.display(),
                    done.key.display()
                );
                if let Some(old) = &done.superseded {
                    println!("the certificate it replaces, {old}, is revoked (superseded)");
                }
                println!("with [console.tls] in kxca.toml, restart `kxca daemon` to serve it");
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
                    "{:<24} {:<8} {:<11} {:<20} {:<20} FAILURES",
                    "NAME", "ROLE", "FACTOR", "LOCKED UNTIL", "LAST LOGIN"
                );
                for r in rows {
                    let now = Clock::system().now();
                    println!(
                        "{:<24} {:<8} {:<11} {:<20} {:<20} {}{}",
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

//! `kxca applications approve|reject` and `kxca accounts ...`: argument
//! handling and printing around kxca_provisioner::accounts, which the admin
//! console calls too.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use kxca_ca::{rfc3339, Ca, Clock, Home, RevocationReason};
use kxca_provisioner::accounts::{self, lifecycle, register, ExportFormat, RevokeTarget, Setup};
use kxca_provisioner::MailConfig;

use crate::output::table;

#[derive(Args, Debug)]
pub struct ApproveArgs {
    /// The application (`kxca applications list`).
    pub id: i64,
    /// Only these rows (spreadsheet row numbers, e.g. 2,3,7); default: every valid row.
    #[arg(long, value_delimiter = ',')]
    pub rows: Option<Vec<u32>>,
    /// The certificate profile the accounts get.
    #[arg(long, default_value = "office-client")]
    pub profile: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RejectArgs {
    pub id: i64,
    /// The rows to reject (e.g. 4,5).
    #[arg(long, value_delimiter = ',', required = true)]
    pub rows: Vec<u32>,
    /// Why, in Japanese: it is mailed to the applicant as written.
    #[arg(long)]
    pub reason: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum AccountsCommand {
    /// List accounts, optionally only those whose office code, office name,
    /// contact name or certificate id contains TEXT.
    List {
        text: Option<String>,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 1000)]
        limit: i64,
    },
    /// One account with its certificates.
    Show {
        certificate_id: String,
        #[arg(long)]
        json: bool,
    },
    /// A new certificate for a contact (forgotten password, new PC): a new
    /// pickup superseding the current certificate, mail 1 and mail 2 again.
    Reset {
        certificate_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a contact's certificate, or every account of an office; each
    /// contact and the office are told by mail.
    Revoke {
        #[arg(required_unless_present = "office", conflicts_with = "office")]
        certificate_id: Option<String>,
        /// Every active account with this office code.
        #[arg(long)]
        office: Option<String>,
        /// RFC 5280 reason: affiliationChanged, cessationOfOperation,
        /// keyCompromise, privilegeWithdrawn, superseded, unspecified.
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// Renew a locked or expired pickup and send a new mail 2.
    RenewPickup {
        certificate_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Send mail 1 (the pickup URL, no secret) again for the current pickup.
    ResendMail1 {
        certificate_id: String,
        #[arg(long)]
        json: bool,
    },
    /// The KX server's account feed (docs/KX-EXPORT.md).
    Export {
        /// `kx` (CSV) or `kx-json`.
        #[arg(long, default_value = "kx")]
        format: String,
        /// Only accounts changed at or after this time (RFC 3339 or Unix seconds).
        #[arg(long)]
        since: Option<String>,
        /// Write here instead of stdout (created 0600: it holds password hashes).
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

fn open(home: Home) -> Result<Ca> {
    let mut ca = Ca::open(home, Clock::system())?;
    kxca_provisioner::migrate(ca.store_mut())?;
    Ok(ca)
}

pub fn approve(
    mut ca: Ca,
    mail: Option<&MailConfig>,
    args: &ApproveArgs,
    actor: &str,
) -> Result<()> {
    let setup = Setup::load(&ca, mail)?;
    let intake = crate::intake::policy(&Some(ca.home().root().into()), &None)?;
    let profile = ca.profiles().get(&args.profile)?.clone();
    let now = ca.clock().now();
    let ctx = accounts::Context {
        profile: &profile,
        intake: &intake,
        delivery: setup.delivery(),
    };
    let out = accounts::approve(
        ca.store_mut(),
        args.id,
        args.rows.as_deref(),
        &ctx,
        actor,
        now,
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    for r in &out.approved {
        println!(
            "row {}: approved, account {}",
            r.row,
            r.certificate_id.as_deref().unwrap_or("-")
        );
    }
    for r in &out.refused {
        println!(
            "row {}: not approved: {}",
            r.row,
            r.reason.as_deref().unwrap_or("-")
        );
    }
    if !out.already_decided.is_empty() {
        println!(
            "already decided before: rows {}",
            out.already_decided
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    println!(
        "application #{}: {} approved, {} not approved, {} mail(s) queued (send with `kxca outbox send` or the daemon)",
        out.application_id,
        out.approved.len(),
        out.refused.len(),
        out.mails_queued
    );
    Ok(())
}

pub fn reject(mut ca: Ca, mail: Option<&MailConfig>, args: &RejectArgs, actor: &str) -> Result<()> {
    let setup = Setup::load(&ca, mail)?;
    let now = ca.clock().now();
    let out = accounts::reject(
        ca.store_mut(),
        args.id,
        &args.rows,
        &args.reason,
        &setup,
        actor,
        now,
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "application #{}: {} row(s) rejected, {} already decided, {} mail(s) queued",
            out.application_id,
            out.refused.len(),
            out.already_decided.len(),
            out.mails_queued
        );
    }
    Ok(())
}

fn parse_time(text: &str) -> Result<i64> {
    if let Ok(n) = text.parse::<i64>() {
        return Ok(n);
    }
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .with_context(|| {
            format!("--since {text:?}: not RFC 3339 (2026-12-01T00:00:00Z) or Unix seconds")
        })?;
    Ok(t.unix_timestamp())
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub fn run(
    command: AccountsCommand,
    home: Home,
    mail: Option<&MailConfig>,
    actor: &str,
) -> Result<()> {
    let mut ca = open(home)?;
    let now = ca.clock().now();
    match command {
        AccountsCommand::List { text, json, limit } => {
            let list = ca
                .store()
                .read(|c| register::search(c, text.as_deref(), limit))?;
            if json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|a| {
                    vec![
                        a.certificate_id.clone(),
                        a.office_code.clone(),
                        a.office_name.clone(),
                        a.contact_name.clone(),
                        a.email1.clone(),
                        a.state.as_str().to_string(),
                        a.current_serial.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &[
                        "CERTIFICATE ID",
                        "OFFICE",
                        "OFFICE NAME",
                        "CONTACT",
                        "E-MAIL",
                        "STATE",
                        "SERIAL"
                    ],
                    &rows
                )
            );
        }
        AccountsCommand::Show {
            certificate_id,
            json,
        } => {
            let Some(a) = ca
                .store()
                .read(|c| register::by_certificate_id(c, &certificate_id))?
            else {
                bail!(
                    "no account with certificate id {certificate_id:?} (see `kxca accounts list`)"
                );
            };
            if json {
                return print_json(&a);
            }
            println!("certificate id: {}", a.certificate_id);
            println!("state:          {}", a.state.as_str());
            println!(
                "office:         {}-{}-{} {} (contract unit {}, centre {})",
                a.union_code,
                a.branch_code,
                a.office_code,
                a.office_name,
                a.contract_unit,
                a.centre
            );
            println!(
                "contact:        {} {}{}",
                a.contact_code,
                a.contact_name,
                if a.sharoushi { " (社労士)" } else { "" }
            );
            println!("e-mail 1:       {}", a.email1);
            println!(
                "e-mail 2:       {}",
                if a.email2.is_empty() { "-" } else { &a.email2 }
            );
            println!(
                "KX password:    {}",
                match a.kx_password_at {
                    Some(t) => format!("set {} (Argon2id hash only)", rfc3339(t)),
                    None => "not yet sent".to_string(),
                }
            );
            println!(
                "approved:       {} (application #{} row {})",
                rfc3339(a.created_at),
                a.application_id,
                a.application_row
            );
            if let (Some(at), Some(r)) = (a.revoked_at, &a.revoke_reason) {
                println!("revoked:        {} ({r})", rfc3339(at));
            }
            println!(
                "current serial: {}",
                a.current_serial.as_deref().unwrap_or("-")
            );
            for c in &a.certificates {
                println!(
                    "  {} {} until {}{}",
                    c.serial,
                    c.state,
                    rfc3339(c.not_after),
                    c.revocation_reason
                        .as_ref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                );
            }
        }
        AccountsCommand::Reset {
            certificate_id,
            json,
        } => {
            let setup = Setup::load(&ca, mail)?;
            let out = lifecycle::reset(
                ca.store_mut(),
                &certificate_id,
                &setup.delivery(),
                actor,
                now,
            )?;
            if json {
                return print_json(&out);
            }
            println!(
                "{}: new pickup opened{}, {} mail(s) queued",
                out.certificate_id,
                out.serials
                    .first()
                    .map(|s| format!(" (supersedes {s} when picked up)"))
                    .unwrap_or_default(),
                out.mails_queued
            );
        }
        AccountsCommand::Revoke {
            certificate_id,
            office,
            reason,
            json,
        } => {
            let reason: RevocationReason = reason.parse()?;
            let target = match (certificate_id, office) {
                (Some(id), None) => RevokeTarget::Contact(id),
                (None, Some(code)) => RevokeTarget::Office(code),
                _ => bail!("name a certificate id or --office OFFICE_CODE"),
            };
            let setup = Setup::load(&ca, mail)?;
            let out = lifecycle::revoke(ca.store_mut(), &target, reason, &setup, actor, now)?;
            if json {
                return print_json(&out);
            }
            for o in &out {
                println!(
                    "{}: revoked ({}), serials {}, {} mail(s) queued",
                    o.certificate_id,
                    reason.name(),
                    if o.serials.is_empty() {
                        "none".to_string()
                    } else {
                        o.serials.join(",")
                    },
                    o.mails_queued
                );
            }
            println!(
                "publish: the daemon signs the next CRL and OCSP answers; `kxca crl` now if needed"
            );
        }
        AccountsCommand::RenewPickup {
            certificate_id,
            json,
        } => {
            let setup = Setup::load(&ca, mail)?;
            let out = lifecycle::renew_pickup(
                ca.store_mut(),
                &certificate_id,
                &setup.delivery(),
                actor,
                now,
            )?;
            if json {
                return print_json(&out);
            }
            println!(
                "{}: pickup renewed, {} mail(s) queued (a new code is minted when mail 2 is sent)",
                out.certificate_id, out.mails_queued
            );
        }
        AccountsCommand::ResendMail1 {
            certificate_id,
            json,
        } => {
            let setup = Setup::load(&ca, mail)?;
            let out = lifecycle::resend_mail1(
                ca.store_mut(),
                &certificate_id,
                &setup.delivery(),
                actor,
                now,
            )?;
            if json {
                return print_json(&out);
            }
            println!("{}: mail 1 queued again", out.certificate_id);
        }
        AccountsCommand::Export {
            format,
            since,
            output,
        } => {
            let format: ExportFormat = format.parse().map_err(anyhow::Error::msg)?;
            let since = since.as_deref().map(parse_time).transpose()?;
            let text = accounts::export(ca.store_mut(), format, since, actor, now)?;
            match output {
                Some(path) => {
                    use std::io::Write;
                    use std::os::unix::fs::OpenOptionsExt;
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .mode(0o600)
                        .open(&path)
                        .with_context(|| format!("{}", path.display()))?;
                    f.write_all(text.as_bytes())
                        .with_context(|| format!("{}", path.display()))?;
                }
                None => print!("{text}"),
            }
        }
    }
    Ok(())
}

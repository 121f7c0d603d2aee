//! `kxca intake fetch`, `kxca applications`, `kxca outbox`: the mail side
//! of intake and the outbox, wired to the provisioner crate.

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use kxca_ca::{rfc3339, Ca, Clock, Home};
use kxca_provisioner::{applications, outbox, MailConfig};

use crate::output::table;

#[derive(Subcommand, Debug)]
pub enum MailCommand {
    /// The application queue.
    #[command(subcommand)]
    Applications(ApplicationsCommand),
    /// Outbound mail.
    #[command(subcommand)]
    Outbox(OutboxCommand),
}

#[derive(Subcommand, Debug)]
pub enum ApplicationsCommand {
    List {
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 1000)]
        limit: i64,
    },
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Approve rows (all valid rows, or those named): create the accounts,
    /// open their pickups and queue mail 1 and mail 2, in one transaction.
    Approve(crate::accounts_cli::ApproveArgs),
    /// Reject rows; the applicant is told why, in Japanese.
    Reject(crate::accounts_cli::RejectArgs),
}

#[derive(Subcommand, Debug)]
pub enum OutboxCommand {
    List {
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Send every due mail once.
    Send {
        #[arg(long)]
        json: bool,
    },
    /// Put a failed mail back in the queue for a new round of attempts.
    Retry {
        /// The mail's id (`kxca outbox list`).
        id: i64,
    },
}

fn open(home: Home) -> Result<Ca> {
    let mut ca = Ca::open(home, Clock::system())?;
    kxca_provisioner::migrate(ca.store_mut())?;
    Ok(ca)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(kxca_provisioner::pass::runtime()?)
}

/// `kxca intake fetch`: one pass, printed.
pub fn fetch(
    home: Home,
    mail: Option<&MailConfig>,
    policy: kxca_provisioner::intake::IntakePolicy,
    json: bool,
    no_send: bool,
    actor: &str,
) -> Result<()> {
    let pass = kxca_provisioner::pass::run(home, mail, policy, no_send, actor)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "fetch": pass.fetch, "send": pass.send })
            )?
        );
    } else {
        println!("{}", pass.describe().replace("; sent:", "\nsent:"));
    }
    Ok(())
}

/// `mail`: the home's `[mail]` (src/config.rs).
pub fn run(command: MailCommand, home: Home, mail: Option<&MailConfig>, actor: &str) -> Result<()> {
    match command {
        MailCommand::Applications(ApplicationsCommand::List { json, limit }) => {
            let ca = open(home)?;
            let apps = ca.store().read(|c| applications::list(c, limit))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&apps)?);
            } else {
                let rows: Vec<Vec<String>> = apps
                    .iter()
                    .map(|a| {
                        vec![
                            a.id.to_string(),
                            rfc3339(a.received_at),
                            a.sender.clone().unwrap_or_default(),
                            a.file_name.clone(),
                            a.status.as_str().to_string(),
                            format!("{}/{}/{}", a.rows_valid, a.rows_review, a.rows_invalid),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(
                        &[
                            "ID",
                            "RECEIVED",
                            "SENDER",
                            "FILE",
                            "STATUS",
                            "VALID/REVIEW/INVALID"
                        ],
                        &rows
                    )
                );
            }
        }
        MailCommand::Applications(ApplicationsCommand::Show { id, json }) => {
            let ca = open(home)?;
            let Some(app) = ca.store().read(|c| applications::get(c, id))? else {
                bail!("no application #{id} (see `kxca applications list`)");
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&app)?);
            } else {
                println!("application:  #{}", app.id);
                println!("received:     {}", rfc3339(app.received_at));
                println!("sender:       {}", app.sender.as_deref().unwrap_or("-"));
                println!("message-id:   {}", app.message_id);
                println!("file:         {} ({} bytes)", app.file_name, app.size);
                println!("sha-256:      {}", app.sha256);
                println!(
                    "format:       {} (stored: {})",
                    app.original_format.as_deref().unwrap_or("-"),
                    app.stored_format
                );
                println!("sheet:        {}", app.sheet);
                println!("status:       {}", app.status.as_str());
                let decided = ca
                    .store()
                    .read(|c| kxca_provisioner::accounts::decisions(c, id))?;
                for r in &app.rows {
                    let decision = decided.iter().find(|d| d.row == r.row).map(|d| {
                        format!(
                            " [{} by {} {}{}]",
                            d.decision,
                            d.actor,
                            rfc3339(d.decided_at),
                            d.certificate_id
                                .as_deref()
                                .or(d.reason.as_deref())
                                .map(|s| format!(": {s}"))
                                .unwrap_or_default()
                        )
                    });
                    println!(
                        "  row {} (No. {}): {} {}{}",
                        r.row,
                        r.no.as_deref().unwrap_or("-"),
                        r.status,
                        r.findings,
                        decision.unwrap_or_default()
                    );
                }
            }
        }
        MailCommand::Applications(ApplicationsCommand::Approve(args)) => {
            crate::accounts_cli::approve(open(home)?, mail, &args, actor)?
        }
        MailCommand::Applications(ApplicationsCommand::Reject(args)) => {
            crate::accounts_cli::reject(open(home)?, mail, &args, actor)?
        }
        MailCommand::Outbox(OutboxCommand::Retry { id }) => {
            let mut ca = open(home)?;
            let now = ca.clock().now();
            if !outbox::retry(ca.store_mut(), id, actor, now)? {
                anyhow::bail!(
                    "outbox mail {id} is not failed (see `kxca outbox list`): nothing to retry"
                );
            }
            println!("outbox mail {id} queued again; the daemon or `kxca outbox send` sends it");
        }
        MailCommand::Outbox(OutboxCommand::List { json, limit }) => {
            let ca = open(home)?;
            let mails = ca.store().read(|c| outbox::list(c, limit))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&mails)?);
            } else {
                let rows: Vec<Vec<String>> = mails
                    .iter()
                    .map(|m| {
                        vec![
                            m.id.to_string(),
                            m.kind.to_string(),
                            m.to.clone(),
                            m.state.as_str().to_string(),
                            m.attempts.to_string(),
                            m.last_error.clone().unwrap_or_default(),
                            m.delivery_failures
                                .iter()
                                .map(|f| {
                                    format!(
                                        "{} {} {}",
                                        f.recipient,
                                        f.action,
                                        f.status.as_deref().unwrap_or("")
                                    )
                                    .trim_end()
                                    .to_string()
                                })
                                .collect::<Vec<_>>()
                                .join(", "),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(
                        &[
                            "ID",
                            "KIND",
                            "TO",
                            "STATE",
                            "ATTEMPTS",
                            "LAST ERROR",
                            "BOUNCED"
                        ],
                        &rows
                    )
                );
            }
        }
        MailCommand::Outbox(OutboxCommand::Send { json }) => {
            let mut ca = open(home)?;
            let smtp = mail
                .and_then(|m| m.smtp.clone())
                .context("no [mail.smtp] section in kxca.toml (see provisioner/MAIL.md)")?;
            if let Some(source) = smtp.password_source().transpose()? {
                source.check().context("mail password")?;
            }
            // The pool inside the sender must be dropped within the runtime.
            let rt = runtime()?;
            let _in_runtime = rt.enter();
            let sender = outbox::Sender::new(&smtp)?.minting(
                kxca_ca::enrolment::PickupPolicy::load(&ca.home().policies())?,
            );
            let clock = ca.clock().clone();
            let summary = rt.block_on(outbox::run_once(ca.store_mut(), &sender, &clock, actor))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                println!(
                    "sent: {} sent, {} to retry, {} failed",
                    summary.sent, summary.retrying, summary.failed
                );
            }
        }
    }
    Ok(())
}

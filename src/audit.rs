//! `kxca audit verify | export | checkpoint`: the tamper-evident record
//! (kxca_ca::audit_log; formats in docs/AUDIT.md). `kxca audit` alone still
//! lists the trail.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use kxca_ca::audit_log::{self, Since};
use kxca_ca::{rfc3339, Ca, Clock, Config, Home, Store};

use crate::output::table;

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Recompute every leaf and the tree, check every checkpoint's signature
    /// and consistency; name the first event edited, deleted, inserted or
    /// reordered. Exits 1 on any finding.
    Verify {
        #[arg(long)]
        json: bool,
        /// The audit public key (PEM) to trust, e.g. a copy kept outside
        /// (default: the published <home>/crl/audit/audit-key.pem).
        #[arg(long)]
        key: Option<PathBuf>,
        /// A checkpoint file kept outside (repeatable): checked as well.
        #[arg(long)]
        checkpoint: Vec<PathBuf>,
    },
    /// Write events as JSON lines with inclusion proofs to the latest checkpoint.
    Export {
        /// First event: an event id, or an RFC 3339 time (events at or after it).
        #[arg(long)]
        since: String,
        /// Output file (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Sign a checkpoint now if the tree grew (the daemon does this on its own).
    Checkpoint,
}

pub fn run(home: Home, command: AuditCommand) -> Result<ExitCode> {
    let config = Config::load(&home.config())?;
    match command {
        AuditCommand::Verify {
            json,
            key,
            checkpoint,
        } => {
            let mut extra = Vec::new();
            for path in checkpoint {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading checkpoint {}", path.display()))?;
                extra.push((path.display().to_string(), text));
            }
            let store = Store::open(&home.database(), false)?;
            // Without a published key (a production home with no [audit]
            // key yet) the events are still checked; checkpoints cannot be.
            let report = match key {
                Some(path) => audit_log::verify(
                    &store,
                    &audit_log::origin(&config),
                    Some(&audit_log::read_public_key(&path)?),
                    &extra,
                )?,
                None => audit_log::verify_published(&store, &home, &config, &extra)?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for f in &report.findings {
                    println!("FAIL {}", f.message);
                }
                if report.ok {
                    println!(
                        "ok: {} events, {} checkpoints verified (latest covers {} events; {} not yet signed)",
                        report.events,
                        report.checkpoints,
                        report.latest_checkpoint.unwrap_or(0),
                        report.unsigned_events
                    );
                } else {
                    println!(
                        "audit record FAILED verification: {} finding(s)",
                        report.findings.len()
                    );
                }
            }
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        AuditCommand::Export { since, out } => {
            let since = parse_since(&since)?;
            let store = Store::open(&home.database(), false)?;
            let (n, size) = match &out {
                Some(path) => {
                    let mut f = std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    let r = audit_log::export(&store, since, &mut f)?;
                    f.flush()?;
                    r
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut lock = stdout.lock();
                    audit_log::export(&store, since, &mut lock)?
                }
            };
            eprintln!("exported {n} events with inclusion proofs to checkpoint {size}");
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Checkpoint => {
            let signer = audit_log::open_key(&config, &home, true)?;
            let mut store = Store::open(&home.database(), false)?;
            let now = Clock::system().now();
            match audit_log::checkpoint(&mut store, &home, &config, signer.as_ref(), now)? {
                Some(cp) => println!("checkpoint {} signed", cp.size),
                None => println!("no new events since the last checkpoint"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn parse_since(s: &str) -> Result<Since> {
    if let Ok(id) = s.parse::<i64>() {
        return Ok(Since::Id(id));
    }
    match time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        Ok(t) => Ok(Since::Time(t.unix_timestamp())),
        Err(_) => {
            bail!("--since {s:?}: give an event id or an RFC 3339 time (2026-01-31T00:00:00Z)")
        }
    }
}

/// The private role's part of the record: at start, a `config.changed`
/// event when kxca.toml or a policy changed; then a checkpoint signed every
/// `[audit] checkpoint_interval_secs` while the tree grows, until `stop`.
/// Returns `None` (after a warning) in production without an audit key.
pub fn start_checkpoints(
    home: &Home,
    config: &Config,
    actor: &str,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Option<impl FnOnce() -> Result<&'static str> + Send + 'static>> {
    let mut store = Store::open(&home.database(), false)?;
    let changed = audit_log::record_config(&mut store, home, actor, Clock::system().now())?;
    if !changed.is_empty() {
        tracing::info!(files = ?changed, "configuration or policy changed since the last start; recorded");
    }
    if config.production && config.audit.key.is_none() {
        tracing::warn!(
            "production: no [audit] key in kxca.toml: audit checkpoints are NOT signed \
             (see docs/AUDIT.md)"
        );
        return Ok(None);
    }
    let signer = audit_log::open_key(config, home, true)?;
    let home = home.clone();
    let every = std::time::Duration::from_secs(config.audit.checkpoint_interval_secs);
    let config = config.clone();
    Ok(Some(move || {
        let mut next = std::time::Instant::now();
        while !*stop.borrow() {
            if std::time::Instant::now() >= next {
                next += every;
                let now = Clock::system().now();
                match audit_log::checkpoint(&mut store, &home, &config, signer.as_ref(), now) {
                    Ok(Some(cp)) => tracing::info!(size = cp.size, "audit checkpoint signed"),
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %e, "audit checkpoint not signed"),
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        Ok("audit checkpoints")
    }))
}

/// `kxca audit` without a subcommand: the newest events, as a table or JSON.
pub fn list(home: Home, json: bool, limit: i64) -> Result<()> {
    let ca = Ca::open(home, Clock::system())?;
    let events = ca.audit(limit)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&events)?);
    } else {
        let rows: Vec<Vec<String>> = events
            .iter()
            .map(|e| {
                vec![
                    e.id.to_string(),
                    rfc3339(e.at),
                    e.actor.clone(),
                    e.action.clone(),
                    e.serial.clone().unwrap_or_default(),
                    e.detail.to_string(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(&["#", "AT", "ACTOR", "ACTION", "SERIAL", "DETAIL"], &rows)
        );
    }
    Ok(())
}

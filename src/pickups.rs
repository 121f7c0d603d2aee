//! `kxca pickups`: what admins see of the certificate pickups (issue 12):
//! each enrolment's state (waiting, locked, expired, used, cancelled,
//! issued), wrong tries, code expiry and resulting serial. A locked or
//! expired pickup is renewed through the accounts commands, which mint and
//! mail a new code. Reads the store only; opens no key.

use anyhow::Result;
use clap::Args;
use kxca_ca::enrolment::{self, EnrolmentState, Filter};
use kxca_ca::{rfc3339, Clock, Home, Store};

use crate::output::table;

#[derive(Args, Debug)]
pub struct PickupsArgs {
    /// Only this state: waiting, locked, expired, used, cancelled, issued.
    #[arg(long)]
    pub state: Option<String>,
    /// Only this certificate id.
    #[arg(long)]
    pub certificate_id: Option<String>,
    #[arg(long, default_value_t = 1000)]
    pub limit: i64,
    #[arg(long)]
    pub json: bool,
}

pub fn list(home: Home, args: &PickupsArgs) -> Result<()> {
    let state: Option<EnrolmentState> = args.state.as_deref().map(str::parse).transpose()?;
    let store = Store::open(&home.database(), false)?;
    let filter = Filter {
        state,
        certificate_id: args.certificate_id.clone(),
        limit: Some(args.limit),
    };
    let now = Clock::system().now();
    let rows = store.read(|s| enrolment::list(s, &filter, now))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let when = |t: Option<i64>| t.map(rfc3339).unwrap_or_else(|| "-".into());
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|e| {
            vec![
                e.id.to_string(),
                e.certificate_id.clone(),
                e.state.to_string(),
                e.tries.to_string(),
                when(e.code_expires_at),
                e.serial.clone().unwrap_or_else(|| "-".into()),
                e.supersedes.clone().unwrap_or_else(|| "-".into()),
                rfc3339(e.opened_at),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "ID",
                "CERTIFICATE ID",
                "STATE",
                "TRIES",
                "CODE EXPIRES",
                "SERIAL",
                "SUPERSEDES",
                "OPENED",
            ],
            &table_rows
        )
    );
    Ok(())
}

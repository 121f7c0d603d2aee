//! `kxca doctor`: lists what is inconsistent in a CA home; exit 1 when
//! anything is found, so a timer or monitoring check can alert on it.

use std::process::ExitCode;

use anyhow::Result;
use kxca_ca::{Ca, Clock, Home};

pub fn run(home: Home, json: bool) -> Result<ExitCode> {
    // As is: pending rows must be seen before any command resolves them.
    let ca = Ca::open_as_is(home, Clock::system())?;
    let mut findings = kxca_ca::doctor::inspect(&ca)?;
    // The console's own material: its key, against the admins' sealed secrets.
    for (kind, subject, detail) in kxca_console::admins::doctor(ca.store(), ca.home())? {
        findings.push(kxca_ca::doctor::Finding {
            kind,
            subject,
            detail,
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&findings)?);
    } else if findings.is_empty() {
        println!("No inconsistencies found in {}", ca.home().root().display());
    } else {
        for f in &findings {
            println!("{}: {}: {}", f.kind, f.subject, f.detail);
        }
        println!("{} finding(s)", findings.len());
    }
    Ok(if findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

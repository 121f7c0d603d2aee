//! `kxca`: the command line of the Kenpo eXpress certificate authority.
//! Parses arguments and hands off to the library crates.

mod accounts_cli;
mod admin_cli;
mod audit;
mod backup;
mod ceremony;
mod certificates;
mod cli;
mod config;
mod daemon;
mod demo;
mod doctor;
mod init;
mod intake;
mod issue;
mod key;
mod mail_cli;
mod mail_schedule;
mod output;
mod pickups;
mod policies;
mod publish;
mod serve;
mod supervise;
mod yubikey;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // The parsing worker (provisioner/src/sandbox): dispatched before any
    // argument parsing or logging, it reads one job on stdin.
    if std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(kxca_provisioner::sandbox::WORKER_ARG))
    {
        return kxca_provisioner::sandbox::worker_main();
    }
    let args = cli::Cli::parse();
    // A daemon's log is its record of what it did (requests, mail passes,
    // renewed responder certificates): `kxca serve` and `kxca daemon` start at info.
    let daemon = matches!(args.command, cli::Command::Serve(_) | cli::Command::Daemon);
    output::init_logging(args.verbose.max(u8::from(daemon)));
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", output::one_line(&e));
            ExitCode::from(1)
        }
    }
}

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use kxca_ca::{
    rfc3339, Ca, Clock, Holder, Home, InitOptions, IssueRequest, Password, Pkcs12Profile,
    RevocationReason, Serial,
};
use kxca_hsm::{KeyAlgorithm, SecretSource};

use crate::output::table;

#[derive(Parser, Debug)]
#[command(
    name = "kxca",
    version,
    about = "Certificate authority and identity provisioning for Kenpo eXpress"
)]
pub struct Cli {
    /// The kxca home directory (config, database, policies, keys).
    #[arg(long, env = "KXCA_HOME", global = true)]
    pub home: Option<PathBuf>,
    /// Who is acting, for the audit trail (default: the login name).
    #[arg(long, env = "KXCA_ACTOR", global = true)]
    pub actor: Option<String>,
    /// More log output on stderr (-v info, -vv debug; `serve` logs at info).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a CA home: config, policies, database, root and issuing CA.
    Init(InitArgs),
    /// Issue one office contact's client certificate as a PKCS#12 file.
    Issue(IssueArgs),
    /// Revoke a certificate.
    Revoke {
        /// Serial number in hex (as `kxca list` or `openssl x509 -serial` prints it).
        serial: String,
        /// RFC 5280 reason: unspecified, keyCompromise, affiliationChanged,
        /// superseded, cessationOfOperation, privilegeWithdrawn, ...
        #[arg(long, default_value = "unspecified")]
        reason: String,
    },
    /// Sign a CRL for the issuing CA and write it to <home>/crl/.
    Crl,
    /// List certificates in the store.
    List {
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 1000)]
        limit: i64,
    },
    /// Show one certificate.
    Show {
        serial: String,
        #[arg(long)]
        json: bool,
        /// Print the certificate as PEM.
        #[arg(long)]
        pem: bool,
    },
    /// Check the store for anything inconsistent (exit 1 when something is found).
    Doctor {
        #[arg(long)]
        json: bool,
    },
    /// Show the audit trail; `verify`, `export`, `checkpoint`: the signed record.
    #[command(args_conflicts_with_subcommands = true)]
    Audit {
        #[command(subcommand)]
        command: Option<crate::audit::AuditCommand>,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// YubiKey officer procedures: list, status, setup, generate, PIN and PUK, attest.
    #[command(subcommand)]
    Yubikey(crate::yubikey::YubiKeyCommand),
    /// Create and list CA keys on PKCS#11 tokens (security officers).
    Key {
        #[command(subcommand)]
        command: crate::key::KeyCommand,
    },
    #[command(flatten)]
    Mail(crate::mail_cli::MailCommand),
    /// Application forms: check a file, or fetch the signup mailbox.
    Intake {
        #[command(subcommand)]
        command: crate::intake::IntakeCommand,
    },
    /// The office register the intake policy may check office codes against.
    Offices {
        #[command(subcommand)]
        command: crate::intake::OfficesCommand,
    },
    /// The public role: serve OCSP, CRLs, CA certificates, /healthz and
    /// /metrics from the store, holding no CA key.
    Serve(crate::serve::ServeArgs),
    /// The private role: sign CRLs and OCSP answers into the store, renew the
    /// responder certificate, run the mail intake schedule. Listens on no port.
    Daemon,
    /// Export pre-signed OCSP responses, CRLs and CA certificates for nginx or a CDN.
    Publish(crate::publish::PublishArgs),
    /// Demonstration: init a CA, issue two certificates, revoke one, sign a CRL.
    Demo {
        /// Where to put the demo CA (default: $KXCA_HOME, else a new temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct InitArgs {
    #[arg(long, default_value = "全国設計事務所健康保険組合")]
    pub union_name: String,
    #[arg(long, default_value = "26276")]
    pub union_code: String,
    /// Algorithm of the CA keys: ecdsa-p256, rsa-2048 or rsa-3072.
    #[arg(long, default_value = "ecdsa-p256")]
    pub ca_key_algorithm: String,
    /// Root CA key reference (default: a soft key in <home>/keys).
    #[arg(long)]
    pub root_key: Option<String>,
    /// Issuing CA key reference (default: a soft key in <home>/keys).
    #[arg(long)]
    pub issuing_key: Option<String>,
    /// Environment variable holding the key passphrase or PIN.
    #[arg(
        long,
        default_value = "KXCA_KEY_PASSPHRASE",
        conflicts_with = "key_secret_file"
    )]
    pub key_secret_env: String,
    /// File holding the key passphrase or PIN (first line).
    #[arg(long)]
    pub key_secret_file: Option<PathBuf>,
    /// OCSP responder key reference (default: a soft key in <home>/ocsp;
    /// required with --production: a key on its own token).
    #[arg(long)]
    pub responder_key: Option<String>,
    /// Environment variable holding the responder key's own passphrase or PIN.
    #[arg(long, conflicts_with = "responder_key_secret_file")]
    pub responder_key_secret_env: Option<String>,
    /// File holding the responder key's own passphrase or PIN (default: a
    /// random passphrase in <home>/ocsp; required with --production).
    #[arg(long)]
    pub responder_key_secret_file: Option<PathBuf>,
    /// Audit checkpoint key reference (ECDSA P-256; default: a soft key in
    /// <home>/audit; with --production: a key on a token, see docs/AUDIT.md).
    #[arg(long)]
    pub audit_key: Option<String>,
    /// Environment variable holding the audit key's own passphrase or PIN.
    #[arg(long, conflicts_with = "audit_key_secret_file")]
    pub audit_key_secret_env: Option<String>,
    /// File holding the audit key's own passphrase or PIN.
    #[arg(long)]
    pub audit_key_secret_file: Option<PathBuf>,
    /// Base URL of the publication service (CRL DP, OCSP, caIssuers).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub base_url: String,
    /// Refuse soft keys (production appliance).
    #[arg(long)]
    pub production: bool,
    #[arg(long, default_value = "KX Root CA")]
    pub root_name: String,
    #[arg(long, default_value = "KX Issuing CA 1")]
    pub issuing_name: String,
}

#[derive(Args, Debug, Default)]
pub struct IssueArgs {
    /// Certificate profile (a file in <home>/policies/profiles).
    #[arg(long, default_value = "office-client")]
    pub profile: String,
    /// Read the holder from a TOML or JSON file instead of flags.
    #[arg(long)]
    pub from: Option<PathBuf>,
    #[arg(long)]
    pub centre: Option<String>,
    #[arg(long)]
    pub union_code: Option<String>,
    #[arg(long)]
    pub branch_code: Option<String>,
    #[arg(long)]
    pub contract_unit: Option<String>,
    #[arg(long)]
    pub office_code: Option<String>,
    #[arg(long)]
    pub contact_code: Option<String>,
    #[arg(long)]
    pub office_name: Option<String>,
    #[arg(long)]
    pub contact_name: Option<String>,
    #[arg(long)]
    pub email: Option<String>,
    /// Client key algorithm (default: the profile's).
    #[arg(long)]
    pub key: Option<String>,
    /// PKCS#12 compatibility: modern or legacy (default: the profile's).
    #[arg(long)]
    pub pkcs12: Option<String>,
    /// Where to write the PKCS#12 (default: <home>/issued/<id>-<serial>.p12).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Read the PKCS#12 password from this file instead of generating one.
    #[arg(long, conflicts_with = "password_stdin")]
    pub password_file: Option<PathBuf>,
    /// Read the PKCS#12 password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// Print the result as JSON (the generated password included).
    #[arg(long)]
    pub json: bool,
}

pub fn actor(cli_actor: &Option<String>) -> String {
    cli_actor
        .clone()
        .or_else(|| std::env::var("SUDO_USER").ok())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "kxca".to_string())
}

pub(crate) fn home(cli: &Option<PathBuf>) -> Result<Home> {
    match cli {
        Some(p) => Ok(Home::new(p)),
        None => bail!("no kxca home: pass --home DIR or set KXCA_HOME"),
    }
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    let actor = actor(&cli.actor);
    match cli.command {
        Command::Yubikey(c) => crate::yubikey::run(c, &cli.home, &actor)?,
        Command::Init(args) => {
            let home = home(&cli.home)?;
            let ca = Ca::init(home, init_options(&args)?, &actor, Clock::system())?;
            let h = ca.home();
            println!("Initialized kxca home {}", h.root().display());
            println!("  config:      {}", h.config().display());
            println!("  root CA:     {}", h.ca_dir().join("root.pem").display());
            println!(
                "  issuing CA:  {}",
                h.ca_dir().join("issuing-1.pem").display()
            );
            println!("  policies:    {}", h.policies().display());
            if let Some(responder) = &ca.config().ocsp.responder_key {
                println!("  OCSP responder key: {responder} (certified by the issuing CA)");
            }
            println!("Next: kxca issue --help");
            println!(
                "      kxca daemon (signs CRLs and OCSP answers) and kxca serve (answers them)"
            );
        }
        Command::Issue(args) => {
            let mut ca = Ca::open(home(&cli.home)?, Clock::system())?;
            issue(&mut ca, &args, &actor)?;
        }
        Command::Revoke { serial, reason } => {
            let serial: Serial = serial.parse()?;
            let reason: RevocationReason = reason.parse()?;
            let mut ca = Ca::open(home(&cli.home)?, Clock::system())?;
            let rec = ca.revoke(&serial, reason, &actor)?;
            println!(
                "Revoked {} ({}) reason {}",
                rec.serial, rec.certificate_id, reason
            );
            println!("Next: kxca daemon signs the new CRL and OCSP answers within seconds; without it, kxca crl");
        }
        Command::Crl => {
            let mut ca = Ca::open(home(&cli.home)?, Clock::system())?;
            let (authority, crl) = ca.generate_crl(&actor)?;
            let dir = ca.home().crl_dir();
            println!(
                "CRL #{} for {} with {} revoked certificate(s), next update {}",
                crl.number,
                authority.name,
                crl.entries,
                rfc3339(crl.next_update)
            );
            println!(
                "  {}",
                dir.join(format!("{}.crl", authority.name)).display()
            );
            println!(
                "  {}",
                dir.join(format!("{}.pem", authority.name)).display()
            );
        }
        Command::List { json, limit } => {
            let ca = Ca::open(home(&cli.home)?, Clock::system())?;
            let certs = ca.certificates(limit)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&certs)?);
            } else {
                let rows: Vec<Vec<String>> = certs
                    .iter()
                    .map(|c| {
                        vec![
                            c.serial.clone(),
                            c.certificate_id.clone(),
                            status(c),
                            rfc3339(c.not_after),
                            c.email.clone(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(
                        &["SERIAL", "CERTIFICATE ID", "STATUS", "NOT AFTER", "E-MAIL"],
                        &rows
                    )
                );
            }
        }
        Command::Show { serial, json, pem } => {
            let serial: Serial = serial.parse()?;
            let ca = Ca::open(home(&cli.home)?, Clock::system())?;
            let c = ca.certificate(&serial)?;
            if pem {
                let der = c.der.clone().context("certificate was never signed")?;
                print!(
                    "{}",
                    der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &der)?
                );
            } else if json {
                println!("{}", serde_json::to_string_pretty(&c)?);
            } else {
                println!("serial:          {}", c.serial);
                println!("certificate id:  {}", c.certificate_id);
                println!("subject:         {}", c.subject);
                println!("e-mail:          {}", c.email);
                println!(
                    "office:          {} ({})",
                    c.holder.office_name, c.holder.office_code
                );
                println!(
                    "contact:         {} ({})",
                    c.holder.contact_name, c.holder.contact_code
                );
                println!("profile:         {}", c.profile);
                println!("key:             {}", c.key_algorithm);
                println!("not before:      {}", rfc3339(c.not_before));
                println!("not after:       {}", rfc3339(c.not_after));
                println!("status:          {}", status(&c));
                if let Some(r) = &c.revocation {
                    println!(
                        "revoked at:      {} by {} ({})",
                        rfc3339(r.revoked_at),
                        r.actor,
                        r.reason
                    );
                }
            }
        }
        Command::Audit {
            command: Some(command),
            ..
        } => return crate::audit::run(home(&cli.home)?, command),
        Command::Audit {
            command: None,
            json,
            limit,
        } => {
            let ca = Ca::open(home(&cli.home)?, Clock::system())?;
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
        }
        Command::Doctor { json } => return crate::doctor::run(home(&cli.home)?, json),
        Command::Key { command } => crate::key::run(&cli.home, &actor, command)?,
        Command::Intake { command } => {
            return crate::intake::run_intake(command, &cli.home, &actor)
        }
        Command::Offices { command } => {
            return crate::intake::run_offices(command, &cli.home, &actor)
        }
        Command::Mail(command) => crate::mail_cli::run(command, home(&cli.home)?, &actor)?,
        Command::Demo { dir } => crate::demo::run(dir.or(cli.home), &actor)?,
        Command::Serve(args) => crate::serve::run(home(&cli.home)?, args)?,
        Command::Daemon => crate::daemon::run(home(&cli.home)?, &actor)?,
        Command::Publish(args) => crate::publish::run(home(&cli.home)?, args, &actor)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn status(c: &kxca_ca::CertificateRecord) -> String {
    match &c.revocation {
        Some(r) => format!("revoked ({})", r.reason),
        None => c.state.as_str().to_string(),
    }
}

/// A path as given on the command line, made absolute: kxca.toml is read
/// from other directories (and by the systemd units).
fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("{}", p.display()))
}

pub fn init_options(args: &InitArgs) -> Result<InitOptions> {
    let key_secret = match &args.key_secret_file {
        Some(p) => SecretSource::File(p.clone()),
        None => SecretSource::Env(args.key_secret_env.clone()),
    };
    Ok(InitOptions {
        union_name: args.union_name.clone(),
        union_code: args.union_code.clone(),
        ca_key_algorithm: args.ca_key_algorithm.parse::<KeyAlgorithm>()?,
        root_key: args.root_key.clone(),
        issuing_key: args.issuing_key.clone(),
        key_secret,
        responder_key: args.responder_key.clone(),
        responder_key_secret: match (
            &args.responder_key_secret_env,
            &args.responder_key_secret_file,
        ) {
            (_, Some(p)) => Some(SecretSource::File(absolute(p)?)),
            (Some(n), None) => Some(SecretSource::Env(n.clone())),
            (None, None) => None,
        },
        audit_key: args.audit_key.clone(),
        audit_key_secret: match (&args.audit_key_secret_env, &args.audit_key_secret_file) {
            (_, Some(p)) => Some(SecretSource::File(absolute(p)?)),
            (Some(n), None) => Some(SecretSource::Env(n.clone())),
            (None, None) => None,
        },
        base_url: args.base_url.clone(),
        production: args.production,
        policies: crate::policies::shipped(),
        root_common_name: args.root_name.clone(),
        issuing_common_name: args.issuing_name.clone(),
    })
}

fn holder_from(args: &IssueArgs) -> Result<Holder> {
    if let Some(path) = &args.from {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
        let is_json =
            path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
        let holder: Holder = if is_json {
            serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?
        } else {
            toml::from_str(&text).map_err(|e| {
                anyhow::anyhow!(
                    "{}: {}",
                    path.display(),
                    e.to_string().trim().replace('\n', " ")
                )
            })?
        };
        return Ok(holder);
    }
    let need = |v: &Option<String>, flag: &str| -> Result<String> {
        v.clone()
            .with_context(|| format!("missing --{flag} (or give --from FILE)"))
    };
    Ok(Holder {
        centre: need(&args.centre, "centre")?,
        union_code: need(&args.union_code, "union-code")?,
        branch_code: need(&args.branch_code, "branch-code")?,
        contract_unit: need(&args.contract_unit, "contract-unit")?,
        office_code: args.office_code.clone().unwrap_or_default(),
        contact_code: need(&args.contact_code, "contact-code")?,
        office_name: need(&args.office_name, "office-name")?,
        contact_name: need(&args.contact_name, "contact-name")?,
        email: need(&args.email, "email")?,
    })
}

fn read_password(args: &IssueArgs) -> Result<Option<Password>> {
    let mut text = String::new();
    if let Some(path) = &args.password_file {
        text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    } else if args.password_stdin {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the password from stdin")?;
    } else {
        return Ok(None);
    }
    let line = text.lines().next().unwrap_or("").to_string();
    zeroize::Zeroize::zeroize(&mut text);
    Ok(Some(Password::from_operator(line)?))
}

/// Writes a file only its owner can read (a PKCS#12 is a private key).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .with_context(|| format!("{}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("{}", path.display()))?;
    Ok(())
}

pub struct IssueOutcome {
    pub serial: String,
    pub certificate_id: String,
    pub p12_path: PathBuf,
    pub cert_pem_path: PathBuf,
    pub password: Option<zeroize::Zeroizing<String>>,
}

pub fn issue(ca: &mut Ca, args: &IssueArgs, actor: &str) -> Result<IssueOutcome> {
    let holder = holder_from(args)?;
    let key_algorithm = args
        .key
        .as_deref()
        .map(str::parse::<KeyAlgorithm>)
        .transpose()?;
    let pkcs12 = args
        .pkcs12
        .as_deref()
        .map(|s| {
            s.parse::<Pkcs12Profile>()
                .map_err(|m| anyhow::anyhow!("--pkcs12: {m}"))
        })
        .transpose()?;
    if let Some(out) = &args.out {
        if out.exists() {
            bail!("{}: already exists; refusing to overwrite", out.display());
        }
    }
    let password = read_password(args)?;
    let request = IssueRequest {
        profile: args.profile.clone(),
        holder,
        key_algorithm,
        pkcs12,
    };
    let issued = ca.issue_to(&request, password, actor, args.out.as_deref())?;
    let serial = issued.record.serial.clone();
    let path = issued
        .pkcs12_path
        .clone()
        .context("issuance wrote no PKCS#12")?;
    let cert_pem_path = path.with_extension("pem");
    // The certificate names its holder (name, e-mail): personal data.
    write_private(
        &cert_pem_path,
        der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &issued.der)?.as_bytes(),
    )?;
    let password = issued
        .generated_password
        .as_ref()
        .map(|p| zeroize::Zeroizing::new(p.expose().to_string()));
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "serial": serial,
                "certificate_id": issued.record.certificate_id,
                "pkcs12": path,
                "pkcs12_profile": issued.pkcs12_profile.to_string(),
                "certificate": cert_pem_path,
                "password": password.as_ref().map(|p| p.as_str()),
            })
        );
    } else {
        println!("Issued {} to {}", serial, issued.record.certificate_id);
        println!("  PKCS#12 ({}): {}", issued.pkcs12_profile, path.display());
        println!("  certificate:    {}", cert_pem_path.display());
        if let Some(p) = &password {
            println!(
                "  PKCS#12 password (shown once, not stored): {}",
                p.as_str()
            );
        }
    }
    Ok(IssueOutcome {
        serial,
        certificate_id: issued.record.certificate_id.clone(),
        p12_path: path,
        cert_pem_path,
        password,
    })
}

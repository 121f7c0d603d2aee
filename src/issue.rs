//! `kxca issue`: one office contact's client certificate as a PKCS#12
//! file, by the same `Ca::issue_to` the daemon's workflows use.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use kxca_ca::{Ca, Holder, IssueRequest, Password, Pkcs12Profile};
use kxca_hsm::KeyAlgorithm;

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

/// `kxca issue`: opens the CA and issues.
pub fn run(home: kxca_ca::Home, args: &IssueArgs, actor: &str) -> Result<()> {
    let mut ca = Ca::open(home, kxca_ca::Clock::system())?;
    issue(&mut ca, args, actor)?;
    Ok(())
}

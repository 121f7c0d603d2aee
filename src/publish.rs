//! `kxca publish DIR`: writes every pre-signed OCSP response as a file named
//! by its RFC 5019 GET path, plus the CRLs and CA certificates, so nginx or a
//! CDN can serve them (see docs/PUBLISH.md).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use kxca_ca::ocsp::Maintainer;
use kxca_ca::{Ca, Clock, Home};

#[derive(Args, Debug)]
pub struct PublishArgs {
    /// Directory to write into (created if missing): ocsp/, crl/, ca/.
    pub dir: PathBuf,
}

/// Write-then-rename, so a web server never serves half a file.
fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let tmp = path.with_extension("tmp~");
    fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

pub fn run(home: Home, args: PublishArgs) -> Result<()> {
    let ca = Ca::open(home, Clock::system())?;
    // Starting the maintainer signs whatever is missing or due, exactly as
    // `kxca serve` would, so the export is never staler than the service.
    let (engine, _maintainer) = Maintainer::start(ca)?;
    let mut responses = 0;
    for (get_path, cached) in engine.presigned_with_paths() {
        write(&args.dir.join("ocsp").join(&get_path), &cached.der)?;
        responses += 1;
    }
    let mut files = 0;
    for (url_path, p) in engine.published_all() {
        write(&args.dir.join(url_path.trim_start_matches('/')), &p.der)?;
        files += 1;
    }
    println!(
        "Published {responses} OCSP responses and {files} CRL/CA files to {}",
        args.dir.display()
    );
    Ok(())
}

//! `kxca publish DIR`: writes every pre-signed OCSP response as a file named
//! by its RFC 5019 GET path, plus the CRLs and CA certificates, so nginx or a
//! CDN can serve them (see docs/PUBLISH.md).
//!
//! DIR may hold other files (an index page, the operator's own): only the
//! files listed in DIR/.kxca-publish (the manifest of the previous publish)
//! are kxca's, and only those are removed when no longer published, e.g. the
//! response of a certificate that has since expired.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use kxca_ca::ocsp::Maintainer;
use kxca_ca::{Ca, Clock, Home};
use kxca_responder::Publisher;

#[derive(Args, Debug)]
pub struct PublishArgs {
    /// Directory to write into (created if missing): ocsp/, crl/, ca/.
    pub dir: PathBuf,
}

/// The file name of a response whose GET path ends in `/`.
const DIR_INDEX: &str = "index.der";

/// Which files the previous publish wrote, relative to DIR, one per line.
const MANIFEST: &str = ".kxca-publish";

/// Write-then-rename, so a web server never serves half a file.
fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp~", std::process::id()));
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// A manifest line names a file inside DIR, never `..` or an absolute path:
/// a tampered manifest must not make publish delete anything outside it.
fn owned(rel: &str) -> bool {
    !rel.is_empty()
        && Path::new(rel)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

fn previous(dir: &Path) -> Result<BTreeSet<String>> {
    match fs::read_to_string(dir.join(MANIFEST)) {
        Ok(text) => Ok(text
            .lines()
            .filter(|l| owned(l))
            .map(str::to_owned)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.join(MANIFEST).display())),
    }
}

/// Removes a stale file and the directories it leaves empty (GET paths
/// contain `/`, so responses sit in nested directories).
fn remove(dir: &Path, rel: &str) -> Result<bool> {
    let path = dir.join(rel);
    match fs::remove_file(&path) {
        Ok(()) => {}
        // Already gone (removed by hand, or by a run that stopped before
        // writing its manifest): nothing to do.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
    }
    let mut parent = path.parent();
    while let Some(p) = parent {
        if p == dir || fs::remove_dir(p).is_err() {
            break;
        }
        parent = p.parent();
    }
    Ok(true)
}

pub fn run(home: Home, args: PublishArgs, actor: &str) -> Result<()> {
    let audit_dir = kxca_ca::audit_log::publish_dir(&home);
    let ca = Ca::open(home.clone(), Clock::system())?;
    let clock = ca.clock().clone();
    // Starting the maintainer signs whatever is missing or due, exactly as
    // `kxca daemon` would, so the export is never staler than the service.
    drop(Maintainer::start(ca, actor)?);
    // What is exported is what `kxca serve` would answer: read back from
    // the store by the public role's reader.
    let (engine, _publisher) = Publisher::start(home, clock)?;
    let dir = &args.dir;
    let before = previous(dir)?;
    let mut now = BTreeSet::new();
    let mut responses = 0;
    for (get_path, cached) in engine.presigned_with_paths() {
        let rel = ocsp_file(&get_path);
        write(&dir.join(&rel), &cached.der)?;
        now.insert(rel);
        responses += 1;
    }
    let mut files = 0;
    for (url_path, p) in engine.published_all() {
        let rel = url_path.trim_start_matches('/').to_owned();
        write(&dir.join(&rel), &p.der)?;
        now.insert(rel);
        files += 1;
    }
    // Every signed checkpoint of the audit record (docs/AUDIT.md), as the
    // daemon published them under <home>/crl/audit/; the latest and the
    // key came with the CRLs above.
    for rel in kxca_ca::audit_log::published_files(&audit_dir)? {
        let bytes = std::fs::read(audit_dir.join(&rel))?;
        let rel = format!("audit/{rel}");
        write(&dir.join(&rel), &bytes)?;
        now.insert(rel);
        files += 1;
    }
    // New files first, then the stale ones go, then the manifest: a run
    // stopped half-way leaves every answer in place and the old manifest,
    // so the next run removes what this one did not.
    let mut removed = 0;
    for rel in before.difference(&now) {
        if remove(dir, rel)? {
            removed += 1;
        }
    }
    let mut manifest = String::new();
    for rel in &now {
        manifest.push_str(rel);
        manifest.push('\n');
    }
    write(&dir.join(MANIFEST), manifest.as_bytes())?;
    println!(
        "Published {responses} OCSP responses and {files} CRL, CA and audit files to {}; removed {removed} stale files",
        dir.display()
    );
    Ok(())
}

/// The file (relative to DIR) of an OCSP GET path. A base64 path may end in
/// `/` (about one response in 64): no file can have that name, so it
/// becomes the directory's index file, which the nginx snippet's `index`
/// directive serves for that URL. Base64 can hold `//` too: the file system
/// (and nginx's merge_slashes) read it as one `/`, so the manifest names
/// the file that way, or the next run would not recognise its own file.
fn ocsp_file(get_path: &str) -> String {
    let rel = if get_path.ends_with('/') {
        format!("ocsp/{get_path}{DIR_INDEX}")
    } else {
        format!("ocsp/{get_path}")
    };
    rel.split('/')
        .filter(|c| !c.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod ocsp_file_tests {
    use super::ocsp_file;

    #[test]
    fn slashes_in_base64_name_the_file_the_file_system_sees() {
        assert_eq!(ocsp_file("MFEw+a/b"), "ocsp/MFEw+a/b");
        assert_eq!(ocsp_file("MFEw/"), "ocsp/MFEw/index.der");
        assert_eq!(ocsp_file("MFEw//"), "ocsp/MFEw/index.der");
        assert_eq!(ocsp_file("MF//Ew/a"), "ocsp/MF/Ew/a");
    }
}

//! `kxca backup DIR` and `kxca restore BACKUP_DIR NEW_HOME`
//! (kxca_ca::backup; what is and is not backed up: docs/BACKUP.md).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kxca_ca::backup::{self, LeftOut};
use kxca_ca::{Clock, Home};

/// Below this many pages (4 KiB each: 16 MiB) a store copies in a blink;
/// above it, progress goes to stderr every tenth.
const PROGRESS_PAGES: u64 = 4096;

pub fn take(home: Home, dir: &Path, actor: &str) -> Result<()> {
    let dir = std::path::absolute(dir).with_context(|| format!("{}", dir.display()))?;
    let mut shown = 0;
    let mut progress = |copied: u64, total: u64| {
        if total < PROGRESS_PAGES || total == 0 {
            return;
        }
        let tenth = copied * 10 / total;
        if tenth > shown {
            shown = tenth;
            eprintln!("backup: store {}% ({copied} of {total} pages)", tenth * 10);
        }
    };
    let taken = backup::take(&home, &dir, actor, &Clock::system(), &mut progress)?;
    let m = &taken.manifest;
    println!(
        "Backup of {} written to {}",
        home.root().display(),
        dir.display()
    );
    println!(
        "  {} files, manifest {}; audit tree size {} (root {})",
        m.files.len(),
        dir.join(backup::MANIFEST).display(),
        m.audit.tree_size,
        m.audit.root
    );
    print_left_out(
        "NOT in the backup (key material and secrets): back each up as said:",
        &m.left_out,
    );
    println!(
        "Check that it restores: kxca restore {} --check (nothing is written)",
        dir.display()
    );
    Ok(())
}

/// `kxca restore BACKUP_DIR --check`: all of the restore's checks, nothing kept.
pub fn check(backup_dir: &Path, actor: &str) -> Result<()> {
    let m = backup::check(backup_dir, actor, &Clock::system())?;
    println!(
        "Backup {} of {} taken at {} (kxca {}) restores: {} files match the manifest, the store passes its integrity check, the audit record (tree size {}) verifies. Nothing was written.",
        backup_dir.display(),
        m.source_home.display(),
        m.created_at,
        m.kxca_version,
        m.files.len(),
        m.audit.tree_size
    );
    Ok(())
}

pub fn restore(backup_dir: &Path, new_home: &Path, actor: &str) -> Result<()> {
    let new_home: PathBuf =
        std::path::absolute(new_home).with_context(|| format!("{}", new_home.display()))?;
    let backup_dir: PathBuf =
        std::path::absolute(backup_dir).with_context(|| format!("{}", backup_dir.display()))?;
    let r = backup::restore(&backup_dir, &new_home, actor, &Clock::system())?;
    let m = &r.manifest;
    println!(
        "Restored the backup of {} taken at {} (kxca {}) into {}",
        m.source_home.display(),
        m.created_at,
        m.kxca_version,
        r.home.display()
    );
    println!(
        "  verified {} files and the store (audit tree size {}); moved {} path(s) in kxca.toml and {} row(s) of the store to the new home",
        m.files.len(),
        m.audit.tree_size,
        r.config_keys_moved.len(),
        r.rows_moved
    );
    print_left_out(
        "NOT in the backup: bring each back to where the new home expects it:",
        &r.bring_back,
    );
    println!(
        "Bring those back, then run `kxca --home {} doctor`: it lists any key or secret still missing. Start kxca daemon and kxca serve only when it lists none.",
        r.home.display()
    );
    Ok(())
}

fn print_left_out(heading: &str, left: &[LeftOut]) {
    if left.is_empty() {
        return;
    }
    println!("{heading}");
    for l in left {
        println!("  - {}: {}\n      {}", l.what, l.location, l.back_up);
    }
}

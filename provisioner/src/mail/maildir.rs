//! A Maildir an MTA delivers the signup mail to: each file in `new/` is
//! received, then renamed into `cur/` with the Seen flag. The rename comes
//! after the store commit, so a crash in between leaves the file in `new/`
//! and the next pass only finishes the rename. A rejected mail goes to the
//! Maildir++ folder `.kxca-rejected` instead; a mail whose reader failed
//! once stays in `new/` for the next pass.

use std::path::{Path, PathBuf};

use kxca_ca::{Clock, Store};

use super::{Destination, FetchSummary};

/// The Maildir++ folder rejected mail is moved to.
pub const REJECTED_FOLDER: &str = ".kxca-rejected";
use crate::receive::Receiver;
use crate::Error;

/// One pass over the Maildir at `dir`: every message in `new/` and
/// `cur/` not yet handled, recorded by `receiver`, then moved on.
pub fn fetch(
    dir: &Path,
    store: &mut Store,
    receiver: &Receiver<'_>,
    clock: &Clock,
) -> Result<FetchSummary, Error> {
    let err = |path: &Path, e: std::io::Error| Error::Maildir {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let new = dir.join("new");
    let cur = dir.join("cur");
    std::fs::create_dir_all(&cur).map_err(|e| err(&cur, e))?;
    let rejected = dir.join(REJECTED_FOLDER);
    for sub in ["cur", "new", "tmp"] {
        let d = rejected.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| err(&d, e))?;
    }
    // An entry that cannot be listed fails the pass: skipping it would
    // leave a mail unanswered with nothing said.
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&new)
        .map_err(|e| err(&new, e))?
        .map(|e| e.map(|e| e.path()).map_err(|e| err(&new, e)))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    // Maildir names start with the delivery time: oldest first.
    entries.sort();
    let mut summary = FetchSummary::default();
    for path in entries {
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        let unique = name.split(':').next().unwrap_or(&name).to_string();
        let size = std::fs::metadata(&path).map_err(|e| err(&path, e))?.len();
        let key = format!("maildir:{unique}");
        let outcome = if size as usize > receiver.limits.max_message_bytes {
            // Only the head is read, to tell whom to answer.
            let mut head = Vec::new();
            std::fs::File::open(&path)
                .and_then(|f| {
                    use std::io::Read;
                    f.take(64 * 1024).read_to_end(&mut head)
                })
                .map_err(|e| err(&path, e))?;
            receiver.reject_too_large(store, &key, size as usize, Some(&head), clock.now())?
        } else {
            let raw = std::fs::read(&path).map_err(|e| err(&path, e))?;
            receiver.receive(store, &key, &raw, clock.now())?
        };
        summary.count(&outcome);
        let folder = match Destination::of(&outcome) {
            Destination::Processed => &cur,
            Destination::Rejected => &rejected.join("cur"),
            Destination::Stay => continue,
        };
        let target = folder.join(format!("{unique}:2,S"));
        std::fs::rename(&path, &target).map_err(|e| err(&path, e))?;
    }
    Ok(summary)
}

//! Keys: a ceremony's new key, and a soft key destroyed at retirement.

use std::fs;
use std::path::Path;

use kxca_hsm::Signer;
use serde_json::json;

use super::run::{Ctx, Transcript};
use super::spki_sha256;
use crate::ca::pem;
use crate::store::audit;
use crate::{AuditAction, Error};

impl Ctx<'_> {
    pub(super) fn new_key(&mut self, t: &mut Transcript<'_>) -> Result<Box<dyn Signer>, Error> {
        let nk = self
            .checked
            .new_key
            .clone()
            .ok_or_else(|| Error::Ceremony {
                path: self.checked.file.clone(),
                message: "no [key] section".into(),
            })?;
        let config = self.ca.config();
        let secret = config.key_secret();
        let backend = config.backend_options();
        let signer = if nk.generate {
            let s = kxca_hsm::generate_with(&nk.key_ref, nk.algorithm, &secret, &backend)?;
            let now = self.ca.clock().now();
            let spki = spki_sha256(s.public_key_der());
            self.ca.store_mut().write(|tx| {
                audit::append(
                    tx,
                    now,
                    self.actor,
                    AuditAction::KeyGenerate,
                    None,
                    json!({"ceremony": self.ceremony_id, "key": nk.text, "algorithm": nk.algorithm.name(), "spki_sha256": spki}),
                )
            })?;
            t.line(format!("generated {} key {}", nk.algorithm, nk.text));
            s
        } else {
            t.line(format!("opened {} key {}", nk.algorithm, nk.text));
            kxca_hsm::open_with(&nk.key_ref, &secret, &backend)?
        };
        t.line(format!(
            "  public key SHA-256 (SPKI): {}",
            spki_sha256(signer.public_key_der())
        ));
        Ok(signer)
    }

    pub(super) fn key(&mut self, t: &mut Transcript<'_>) -> Result<(), Error> {
        let key = self.new_key(t)?;
        let pem_text = pem("PUBLIC KEY", key.public_key_der());
        self.output("public_key", pem_text.as_bytes(), t)
    }
}

/// Overwrites a soft key file before removing it: the encrypted key must
/// not stay readable in the file's old blocks by name.
pub(super) fn destroy_soft_key(path: &Path) -> Result<(), Error> {
    use std::io::Write;
    let len = fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(&vec![0u8; len as usize])
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(path, e))?;
    drop(f);
    fs::remove_file(path).map_err(|e| Error::io(path, e))
}

//! Creating a CA key pair on a token.

use crate::{Error, KeyAlgorithm, KeyRef, Pkcs11Options, SecretString};

use super::fault::describe;
use super::keys::label_taken;
use super::module::Module;
use super::pool::{discard, find_slot, open_session};
use super::template::ca_key_pair;
use super::uri::TokenKey;

/// Generates a key pair named by `key_ref` (which must give `object=`).
/// Refuses a label or id any object on the token already carries.
pub(crate) fn generate(
    key_ref: &KeyRef,
    algorithm: KeyAlgorithm,
    options: &Pkcs11Options,
    pin: &SecretString,
) -> Result<(), Error> {
    let key = TokenKey::from_ref(key_ref, options)?;
    let fail = |reason: String| Error::Pkcs11 {
        key: key.describe(),
        reason,
    };
    let Some(label) = key.object.clone() else {
        return Err(Error::InvalidKeyRef {
            reference: key_ref.to_string(),
            reason: "a new key needs object= (its label)".into(),
        });
    };
    let module = Module::load(&key.module_path)?;
    let loaded = module.read();
    let slot = find_slot(&loaded.ctx, &key.token)
        .map_err(|e| fail(describe(&e)))?
        .ok_or_else(|| fail("token not present".into()))?;
    let s = open_session(&loaded, slot, pin, true).map_err(|e| fail(describe(&e)))?;
    let result = (|| {
        if label_taken(&s.session, &key).map_err(|e| fail(describe(&e)))? {
            return Err(Error::TokenKeyExists {
                key: key.describe(),
            });
        }
        let id = match &key.id {
            Some(id) => id.clone(),
            None => {
                let mut id = vec![0u8; 8];
                getrandom::fill(&mut id).map_err(|e| Error::Generate(e.to_string()))?;
                id
            }
        };
        let t = ca_key_pair(algorithm, &label, &id);
        s.session
            .generate_key_pair(&t.mechanism, &t.public, &t.private)
            .map_err(|e| Error::Generate(format!("{}: {}", key.describe(), describe(&e))))?;
        tracing::info!(key = %key.describe(), %algorithm, "generated a key pair on the token");
        Ok(())
    })();
    discard(s, &loaded);
    result
}

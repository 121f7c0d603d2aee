//! Destroying a retired CA key pair on a token, at the end of its ceremony.

use cryptoki::object::{Attribute, ObjectClass};

use crate::{Error, KeyRef, Pkcs11Options, SecretString};

use super::fault::describe;
use super::keys::{find_private, public_key, Lookup};
use super::module::Module;
use super::pool::{discard, find_slot, open_session};
use super::uri::TokenKey;

/// Destroys the key pair named by `key_ref` (the private key and the public
/// key objects of the same label or id), only when its public key is
/// `expected_spki`: a reference that now names another key is refused with
/// nothing destroyed.
pub(crate) fn destroy(
    key_ref: &KeyRef,
    options: &Pkcs11Options,
    pin: &SecretString,
    expected_spki: &[u8],
) -> Result<(), Error> {
    let key = TokenKey::from_ref(key_ref, options)?;
    let fail = |reason: String| Error::Pkcs11 {
        key: key.describe(),
        reason,
    };
    let module = Module::load(&key.module_path)?;
    let loaded = module.read();
    let slot = find_slot(&loaded.ctx, &key.token)
        .map_err(|e| fail(describe(&e)))?
        .ok_or_else(|| fail("token not present".into()))?;
    let s = open_session(&loaded, slot, pin, true).map_err(|e| fail(describe(&e)))?;
    let result = (|| {
        let private = match find_private(&s.session, &key).map_err(|e| fail(describe(&e)))? {
            Lookup::Found(k) => k.handle,
            Lookup::Missing => {
                return Err(Error::TokenKeyMissing {
                    key: key.describe(),
                })
            }
            Lookup::Ambiguous(n) => {
                return Err(fail(format!(
                    "{n} private keys match; add id= to the reference"
                )))
            }
        };
        let (_, spki) = public_key(&s.session, private)
            .map_err(|e| fail(describe(&e)))?
            .map_err(fail)?;
        if spki != expected_spki {
            return Err(fail(
                "the key on the token is not the retired CA's key; nothing destroyed".into(),
            ));
        }
        let mut public = vec![Attribute::Class(ObjectClass::PUBLIC_KEY)];
        match (&key.id, &key.object) {
            (Some(id), _) => public.push(Attribute::Id(id.clone())),
            (None, Some(label)) => public.push(Attribute::Label(label.as_bytes().to_vec())),
            (None, None) => {}
        }
        let publics = if public.len() > 1 {
            s.session
                .find_objects(&public)
                .map_err(|e| fail(describe(&e)))?
        } else {
            Vec::new()
        };
        s.session
            .destroy_object(private)
            .map_err(|e| fail(format!("destroying the private key: {}", describe(&e))))?;
        for h in publics {
            s.session
                .destroy_object(h)
                .map_err(|e| fail(format!("destroying the public key: {}", describe(&e))))?;
        }
        tracing::info!(key = %key.describe(), "destroyed a retired key pair on the token");
        Ok(())
    })();
    discard(s, &loaded);
    result
}

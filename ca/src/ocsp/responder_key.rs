//! The delegated responder key: where it is, which secret opens it (its own,
//! never the CA keys'), and whether a certificate is for it. Both roles and
//! `kxca init` open it here; only the private role and `kxca init` create it.

use std::sync::Arc;

use kxca_hsm::{KeyRef, SecretSource, Signer};

use crate::{Config, Error, Home};

/// The responder key's reference text (the default is a soft key under
/// `<home>/keys`, kept for homes made before `kxca init` wrote one).
fn responder_ref_text(config: &Config, home: &Home) -> String {
    config
        .ocsp
        .responder_key
        .clone()
        .unwrap_or_else(|| format!("soft:{}", home.keys().join("ocsp-responder.p8").display()))
}

/// The responder key's secret source, with the production rules checked:
/// its own secret, not the CA keys', and its own token. `kxca init` checks
/// these before it creates any key.
pub fn responder_secret_checked(
    config: &Config,
    home: &Home,
    text: &str,
) -> Result<SecretSource, Error> {
    let bad = |message: String| Error::Config {
        path: home.config(),
        message,
    };
    let secret =
        match config
            .ocsp
            .responder_secret()
            .map_err(|e| bad(e.to_string()))?
        {
            Some(s) => s,
            None if config.production => return Err(bad(
                "production: set ocsp.responder_key_secret_env or ocsp.responder_key_secret_file \
                 (the responder key's own PIN, so that kxca serve never needs the CA keys' PIN)"
                    .into(),
            )),
            None => {
                tracing::warn!(
                    "[ocsp] has no responder_key_secret_env or responder_key_secret_file: the \
                 responder key is opened with the CA key secret (see docs/PUBLISH.md)"
                );
                config.key_secret()
            }
        };
    if config.production {
        if secret == config.key_secret() {
            return Err(bad(
                "production: the OCSP responder key's secret must not be the CA keys' secret \
                 (ocsp.responder_key_secret_* vs ca.key_secret_*)"
                    .into(),
            ));
        }
        let token = |r: &str| match r.parse::<KeyRef>() {
            Ok(KeyRef::Pkcs11 { attributes }) => attributes.get("token").cloned(),
            _ => None,
        };
        if let Some(mine) = token(text) {
            if [&config.ca.root_key, &config.ca.issuing_key]
                .iter()
                .any(|k| token(k).as_ref() == Some(&mine))
            {
                return Err(bad(format!(
                    "production: the OCSP responder key must be on its own token (with its own PIN), \
                     not on the CA keys' token {mine:?}"
                )));
            }
        }
    }
    Ok(secret)
}

/// Opens the delegated responder key with its own secret. `create`: a
/// missing key is made (the private role and `kxca init`); the public role
/// only opens, so it never writes key material.
pub fn open_responder_key(
    config: &Config,
    home: &Home,
    create: bool,
) -> Result<(Arc<dyn Signer>, String), Error> {
    let text = responder_ref_text(config, home);
    let bad = |message: String| Error::Config {
        path: home.config(),
        message,
    };
    let key_ref: KeyRef = text
        .parse()
        .map_err(|e: kxca_hsm::Error| bad(format!("ocsp.responder_key: {e}")))?;
    if config.production && key_ref.is_soft() {
        return Err(Error::SoftKeyInProduction {
            path: home.config(),
            role: "OCSP responder".into(),
            key_ref: text,
        });
    }
    let secret = responder_secret_checked(config, home, &text)?;
    let backend = config.backend_options();
    let signer = crate::delegated_key::open_or_create(
        &key_ref,
        &text,
        &secret,
        &backend,
        create,
        bad,
        "run `kxca daemon` (or `kxca init`), which creates and certifies the OCSP responder key",
    )?;
    Ok((Arc::from(signer), text))
}

/// Whether a certificate is for this key.
pub fn certifies(cert_der: &[u8], key: &dyn Signer) -> bool {
    use der::{Decode, Encode};
    x509_cert::Certificate::from_der(cert_der)
        .ok()
        .and_then(|c| c.tbs_certificate().subject_public_key_info().to_der().ok())
        .is_some_and(|spki| spki == key.public_key_der())
}

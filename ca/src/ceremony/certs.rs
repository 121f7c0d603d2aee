//! CA and link certificates made in a ceremony, Boulder's way: the
//! to-be-signed form is signed first by a throwaway key and linted; only
//! then does the CA key sign, and the real certificate must carry the very
//! same to-be-signed bytes.

use der::asn1::Any;
use der::{Decode, Encode};
use kxca_hsm::{BackendOptions, KeyRef, SecretSource, Signer};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, KeyUsages, SubjectKeyIdentifier,
};

use super::fingerprint;
use super::run::Transcript;
use crate::ca::sign_checked;
use crate::clock::rfc3339;
use crate::x509::{self, SignedEnvelope, TbsCertificate};
use crate::{generate_password, Error, Serial};

/// What the certificate must say, for the lint.
struct Expect<'a> {
    issuer: &'a [u8],
    issuer_key_id: &'a [u8],
    subject: &'a [u8],
    spki: &'a [u8],
    path_len: Option<u8>,
    not_before: i64,
    not_after: i64,
}

/// Builds, throwaway-signs, lints, signs and checks one CA certificate
/// (`path_len`: its pathLenConstraint). Returns the real certificate.
#[allow(clippy::too_many_arguments)]
pub(super) fn make(
    t: &mut Transcript<'_>,
    what: &str,
    signer: &dyn Signer,
    issuer_name: &[u8],
    issuer_key_id: &[u8],
    subject: &Any,
    spki_der: &[u8],
    path_len: Option<u8>,
    not_before: i64,
    not_after: i64,
) -> Result<Vec<u8>, Error> {
    let ski = x509::key_id(spki_der)?;
    let algorithm = signer.algorithm();
    let tbs = TbsCertificate {
        version: 2,
        serial_number: x509::serial_number(Serial::random().as_bytes())?,
        signature: algorithm.signature_algorithm(),
        issuer: Any::from_der(issuer_name).map_err(|e| Error::encoding("issuer", e))?,
        validity: x509::validity(not_before, not_after)?,
        subject: subject.clone(),
        subject_public_key_info: x509::spki(spki_der)?,
        extensions: vec![
            x509::basic_constraints(true, path_len)?,
            x509::key_usage(&[KeyUsages::KeyCertSign, KeyUsages::CRLSign], true)?,
            x509::subject_key_id(&ski)?,
            x509::authority_key_id(issuer_key_id)?,
        ],
    };
    let tbs = x509::enc("CA TBS", &tbs)?;
    let subject_der = x509::enc("subject", subject)?;
    let expect = Expect {
        issuer: issuer_name,
        issuer_key_id,
        subject: &subject_der,
        spki: spki_der,
        path_len,
        not_before,
        not_after,
    };
    t.line(format!(
        "{what}: to-be-signed form built, valid {} .. {}",
        rfc3339(not_before),
        rfc3339(not_after)
    ));

    // The throwaway: same algorithm as the CA key (so the same TBS bytes),
    // made in a private temporary directory and gone with it.
    let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let pass_path = dir.path().join("throwaway.secret");
    std::fs::write(&pass_path, generate_password().expose())
        .map_err(|e| Error::io(&pass_path, e))?;
    let throwaway = kxca_hsm::generate_with(
        &KeyRef::Soft {
            path: dir.path().join("throwaway.p8"),
        },
        algorithm,
        &SecretSource::File(pass_path),
        &BackendOptions::default(),
    )?;
    let sig = throwaway.sign(&tbs)?;
    let pre = x509::assemble(&tbs, algorithm.signature_algorithm(), &sig)?;
    drop(throwaway);
    drop(dir);
    lint(&pre, &expect).map_err(|m| Error::encoding(&format!("{what} (throwaway)"), m))?;
    t.line(format!("{what}: throwaway certificate linted clean"));

    let sig = sign_checked(signer, &tbs)?;
    let real = x509::assemble(&tbs, algorithm.signature_algorithm(), &sig)?;
    if tbs_of(&real)? != tbs_of(&pre)? {
        return Err(Error::encoding(
            what,
            "the signed certificate's to-be-signed bytes differ from the linted throwaway's",
        ));
    }
    lint(&real, &expect).map_err(|m| Error::encoding(what, m))?;
    let cert = x509_cert::Certificate::from_der(&real).map_err(|e| Error::encoding(what, e))?;
    t.line(format!(
        "{what}: signed; matches the throwaway; serial {}, subject key id {}, SHA-256 {}",
        hex::encode(cert.tbs_certificate().serial_number().as_bytes()),
        hex::encode(&ski),
        fingerprint(&real)
    ));
    Ok(real)
}

fn tbs_of(cert: &[u8]) -> Result<Vec<u8>, Error> {
    let env = SignedEnvelope::from_der(cert).map_err(|e| Error::encoding("certificate", e))?;
    env.tbs
        .to_der()
        .map_err(|e| Error::encoding("certificate", e))
}

/// The rules a CA or link certificate must meet (RFC 5280, and what
/// OpenSSL needs to build paths across a rollover: AKI and SKI, critical
/// basicConstraints CA:TRUE, critical keyUsage keyCertSign + cRLSign).
fn lint(der: &[u8], e: &Expect<'_>) -> Result<(), String> {
    let cert = x509_cert::Certificate::from_der(der).map_err(|e| format!("does not parse: {e}"))?;
    let tbs = cert.tbs_certificate();
    if tbs.version() != x509_cert::Version::V3 {
        return Err("not a v3 certificate".into());
    }
    let serial = tbs.serial_number().as_bytes();
    if serial.is_empty() || serial.len() > 20 || serial[0] & 0x80 != 0 {
        return Err("serial number must be positive and at most 20 octets".into());
    }
    if tbs.issuer().to_der().map_err(|e| e.to_string())? != e.issuer {
        return Err("issuer is not the signing CA's subject".into());
    }
    if tbs.subject().to_der().map_err(|e| e.to_string())? != e.subject {
        return Err("subject is not the intended name".into());
    }
    if tbs.subject().is_empty() {
        return Err("empty subject".into());
    }
    if tbs
        .subject_public_key_info()
        .to_der()
        .map_err(|e| e.to_string())?
        != e.spki
    {
        return Err("public key is not the intended key".into());
    }
    let unix = |t: x509_cert::time::Time| t.to_unix_duration().as_secs() as i64;
    let v = tbs.validity();
    if unix(v.not_before) != e.not_before || unix(v.not_after) != e.not_after {
        return Err("validity is not the intended one".into());
    }
    if e.not_after <= e.not_before {
        return Err("notAfter is not after notBefore".into());
    }
    if tbs.signature() != cert.signature_algorithm() {
        return Err("inner and outer signature algorithms differ".into());
    }
    let exts = tbs.extensions().ok_or("no extensions")?;
    let mut oids: Vec<_> = exts.iter().map(|x| x.extn_id).collect();
    oids.sort_by_key(|o| o.to_string());
    oids.dedup();
    if oids.len() != exts.len() {
        return Err("an extension appears twice".into());
    }
    match tbs
        .get_extension::<BasicConstraints>()
        .map_err(|e| format!("basicConstraints: {e}"))?
    {
        Some((true, bc)) if bc.ca && bc.path_len_constraint == e.path_len => {}
        _ => {
            return Err(
                "basicConstraints must be critical, CA:TRUE, with the intended pathLen".into(),
            )
        }
    }
    match tbs
        .get_extension::<KeyUsage>()
        .map_err(|e| format!("keyUsage: {e}"))?
    {
        Some((true, ku))
            if ku.0.contains(KeyUsages::KeyCertSign) && ku.0.contains(KeyUsages::CRLSign) => {}
        _ => return Err("keyUsage must be critical with keyCertSign and cRLSign".into()),
    }
    let ski = x509::key_id(e.spki).map_err(|e| e.to_string())?;
    match tbs
        .get_extension::<SubjectKeyIdentifier>()
        .map_err(|e| format!("subjectKeyIdentifier: {e}"))?
    {
        Some((false, s)) if s.0.as_bytes() == ski.as_slice() => {}
        _ => return Err("subjectKeyIdentifier missing, critical or not the key's".into()),
    }
    match tbs
        .get_extension::<AuthorityKeyIdentifier>()
        .map_err(|e| format!("authorityKeyIdentifier: {e}"))?
    {
        Some((false, a))
            if a.key_identifier.as_ref().map(|k| k.as_bytes()) == Some(e.issuer_key_id) => {}
        _ => return Err("authorityKeyIdentifier missing, critical or not the issuer's key".into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{lint, Expect};
    use crate::x509::{self, DnAttr, TbsCertificate};
    use crate::Serial;
    use kxca_hsm::{EphemeralKey, KeyAlgorithm};
    use x509_cert::ext::pkix::KeyUsages;
    use x509_cert::ext::Extension;

    /// A CA certificate with these extensions (its signature is not checked
    /// by the lint), and what the lint expects of it.
    fn lint_with(extensions: impl FnOnce(&[u8], &[u8]) -> Vec<Extension>) -> Result<(), String> {
        let subject_key = EphemeralKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let issuer_key = EphemeralKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let ski = x509::key_id(subject_key.public_key_der()).unwrap();
        let aki = x509::key_id(issuer_key.public_key_der()).unwrap();
        let issuer = x509::name(&[DnAttr::Country("JP"), DnAttr::CommonName("Root")]).unwrap();
        let subject = x509::name(&[DnAttr::Country("JP"), DnAttr::CommonName("Sub")]).unwrap();
        let alg = KeyAlgorithm::EcdsaP256.signature_algorithm();
        let tbs = TbsCertificate {
            version: 2,
            serial_number: x509::serial_number(Serial::random().as_bytes()).unwrap(),
            signature: alg.clone(),
            issuer: issuer.clone(),
            validity: x509::validity(1_800_000_000, 1_900_000_000).unwrap(),
            subject: subject.clone(),
            subject_public_key_info: x509::spki(subject_key.public_key_der()).unwrap(),
            extensions: extensions(&ski, &aki),
        };
        let tbs = x509::enc("tbs", &tbs).unwrap();
        let der = x509::assemble(&tbs, alg, &[0u8; 8]).unwrap();
        let issuer_der = x509::enc("issuer", &issuer).unwrap();
        let subject_der = x509::enc("subject", &subject).unwrap();
        lint(
            &der,
            &Expect {
                issuer: &issuer_der,
                issuer_key_id: &aki,
                subject: &subject_der,
                spki: subject_key.public_key_der(),
                path_len: Some(0),
                not_before: 1_800_000_000,
                not_after: 1_900_000_000,
            },
        )
    }

    /// Extensions made from (SKI, AKI).
    type Extensions = fn(&[u8], &[u8]) -> Vec<Extension>;

    fn ku() -> Extension {
        x509::key_usage(&[KeyUsages::KeyCertSign, KeyUsages::CRLSign], true).unwrap()
    }

    #[test]
    fn the_throwaway_lint_refuses_what_openssl_cannot_chain() {
        let good = |ski: &[u8], aki: &[u8]| {
            vec![
                x509::basic_constraints(true, Some(0)).unwrap(),
                ku(),
                x509::subject_key_id(ski).unwrap(),
                x509::authority_key_id(aki).unwrap(),
            ]
        };
        lint_with(good).unwrap();
        let cases: [(&str, Extensions); 5] = [
            ("authorityKeyIdentifier", |ski, _| {
                vec![
                    x509::basic_constraints(true, Some(0)).unwrap(),
                    ku(),
                    x509::subject_key_id(ski).unwrap(),
                ]
            }),
            ("subjectKeyIdentifier", |_, aki| {
                vec![
                    x509::basic_constraints(true, Some(0)).unwrap(),
                    ku(),
                    x509::authority_key_id(aki).unwrap(),
                ]
            }),
            ("basicConstraints", |ski, aki| {
                vec![
                    x509::basic_constraints(true, Some(1)).unwrap(),
                    ku(),
                    x509::subject_key_id(ski).unwrap(),
                    x509::authority_key_id(aki).unwrap(),
                ]
            }),
            ("keyUsage", |ski, aki| {
                vec![
                    x509::basic_constraints(true, Some(0)).unwrap(),
                    x509::key_usage(&[KeyUsages::KeyCertSign], true).unwrap(),
                    x509::subject_key_id(ski).unwrap(),
                    x509::authority_key_id(aki).unwrap(),
                ]
            }),
            ("twice", |ski, aki| {
                vec![
                    x509::basic_constraints(true, Some(0)).unwrap(),
                    ku(),
                    ku(),
                    x509::subject_key_id(ski).unwrap(),
                    x509::authority_key_id(aki).unwrap(),
                ]
            }),
        ];
        for (expected, exts) in cases {
            let err = lint_with(exts).unwrap_err();
            assert!(err.contains(expected), "{expected}: {err}");
        }
    }
}

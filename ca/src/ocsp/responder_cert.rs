//! The delegated OCSP responder certificate (RFC 6960 4.2.2.2): issued by
//! the CA whose certificates it answers for, EKU OCSPSigning, id-pkix-ocsp-nocheck,
//! valid for days, and renewed before it runs out.

use der::asn1::OctetString;
use kxca_hsm::Signer;
use x509_cert::ext::pkix::KeyUsages;
use x509_cert::ext::Extension;

use super::asn1;
use crate::x509::{self, DnAttr, TbsCertificate};
use crate::{Authority, Error, Serial};

/// A freshly signed responder certificate.
pub(crate) struct Issued {
    pub der: Vec<u8>,
    pub serial: Serial,
    pub not_before: i64,
    pub not_after: i64,
}

/// Signs a responder certificate for `responder` with the CA key `ca_signer`.
pub(crate) fn issue(
    issuer: &Authority,
    ca_signer: &dyn Signer,
    responder: &dyn Signer,
    union_name: &str,
    now: i64,
    days: u32,
) -> Result<Issued, Error> {
    // Backdated a little, like client certificates, for relying parties with slow clocks.
    let not_before = now - 300;
    let not_after = (now + i64::from(days) * 86_400).min(issuer.not_after);
    let cn = format!("KX OCSP Responder ({})", issuer.name);
    let subject = x509::name(&[
        DnAttr::Country("JP"),
        DnAttr::Organization(union_name),
        DnAttr::CommonName(&cn),
    ])?;
    let nocheck = Extension {
        extn_id: asn1::OCSP_NOCHECK,
        critical: false,
        // id-pkix-ocsp-nocheck's value is NULL.
        extn_value: OctetString::new(vec![0x05, 0x00])
            .map_err(|e| Error::encoding("ocsp-nocheck", e))?,
    };
    let extensions = vec![
        x509::basic_constraints(false, None)?,
        x509::key_usage(&[KeyUsages::DigitalSignature], true)?,
        x509::extended_key_usage(vec![asn1::KP_OCSP_SIGNING])?,
        nocheck,
        x509::subject_key_id(&x509::key_id(responder.public_key_der())?)?,
        x509::authority_key_id(&issuer.key_id)?,
    ];
    let serial = Serial::random();
    let tbs = TbsCertificate {
        version: 2,
        serial_number: x509::serial_number(serial.as_bytes())?,
        signature: ca_signer.algorithm().signature_algorithm(),
        issuer: der::Decode::from_der(&issuer.subject_der)
            .map_err(|e| Error::encoding("issuer", e))?,
        validity: x509::validity(not_before, not_after)?,
        subject,
        subject_public_key_info: x509::spki(responder.public_key_der())?,
        extensions,
    };
    let tbs = x509::enc("responder TBS", &tbs)?;
    let sig = crate::ca::sign_checked(ca_signer, &tbs)?;
    let der = x509::assemble(&tbs, ca_signer.algorithm().signature_algorithm(), &sig)?;
    Ok(Issued {
        der,
        serial,
        not_before,
        not_after,
    })
}

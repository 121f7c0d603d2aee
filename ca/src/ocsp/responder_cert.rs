//! The delegated OCSP responder certificate (RFC 6960 4.2.2.2): issued by
//! the CA whose certificates it answers for, EKU OCSPSigning, id-pkix-ocsp-nocheck,
//! valid for days, and renewed before it runs out.

use der::asn1::OctetString;
use kxca_hsm::Signer;
use x509_cert::ext::pkix::KeyUsages;
use x509_cert::ext::Extension;

use super::asn1;
use super::config::OcspConfig;
use super::store::{self as ostore};
use crate::store::audit;
use crate::x509::{self, DnAttr, TbsCertificate};
use crate::Store;
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

/// Has `ca_signer` certify the responder key for `a` (RFC 6960 delegated
/// responder) and records it, with its audit event, in one transaction.
/// The daemon's renewals and `kxca init` both come here.
#[allow(clippy::too_many_arguments)]
pub(crate) fn issue_and_record(
    store: &mut Store,
    a: &Authority,
    ca_signer: &dyn Signer,
    responder_key: &dyn Signer,
    key_ref: &str,
    union: &str,
    policy: &OcspConfig,
    now: i64,
    actor: &str,
) -> Result<ostore::ResponderCertRow, Error> {
    store.migrate("ocsp", ostore::MIGRATIONS)?;
    let issued = issue(
        a,
        ca_signer,
        responder_key,
        union,
        now,
        policy.responder_cert_days,
    )?;
    let serial = issued.serial.to_hex();
    let id = store.write(|tx| {
        let id = ostore::insert_responder_cert(
            tx,
            a.id,
            key_ref,
            &serial,
            &issued.der,
            issued.not_before,
            issued.not_after,
            now,
        )?;
        audit::append(
            tx,
            now,
            actor,
            crate::AuditAction::OcspResponderCertificate,
            Some(&serial),
            serde_json::json!({"authority": a.name, "key": key_ref, "not_after": crate::rfc3339(issued.not_after)}),
        )?;
        Ok(id)
    })?;
    tracing::info!(authority = %a.name, serial = %serial, "OCSP responder certificate issued");
    Ok(ostore::ResponderCertRow {
        id,
        key_ref: key_ref.to_string(),
        certificate: issued.der,
        not_after: issued.not_after,
    })
}

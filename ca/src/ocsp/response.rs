//! Building signed OCSP responses (RFC 6960 4.2, RFC 5019 profile).

use std::sync::Arc;
use std::time::Duration;

use der::asn1::{Any, BitString, GeneralizedTime, Null, OctetString};
use der::{Decode, Encode};
use kxca_hsm::Signer;
use x509_cert::ext::Extension;

use super::asn1::{
    self, BasicOcspResponse, CertId, CertStatus, Enumerated, OcspResponse, ResponderId,
    ResponseBytes, ResponseData, RevokedInfo, SingleResponse,
};
use crate::Error;

/// What the responder says about one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Issued by this CA and not revoked.
    Good,
    /// Revoked at a Unix time, with an RFC 5280 reason code.
    Revoked {
        /// revocationTime, Unix seconds.
        at: i64,
        /// The CRLReason code (RFC 5280 5.3.1).
        reason: u8,
    },
    /// Anything else: never issued here, pending, failed.
    Unknown,
}

impl Status {
    /// A short text form, stored beside pre-signed responses to tell
    /// whether they still say the right thing.
    pub fn fingerprint(&self) -> String {
        match self {
            Status::Good => "good".into(),
            Status::Revoked { at, reason } => format!("revoked:{at}:{reason}"),
            Status::Unknown => "unknown".into(),
        }
    }
    /// The status as OCSP names it (`good`, `revoked`, `unknown`), for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Status::Good => "good",
            Status::Revoked { .. } => "revoked",
            Status::Unknown => "unknown",
        }
    }
}

/// The delegated responder: its key, and its certificate for one issuing CA.
pub struct Credential {
    /// Row id in `ocsp_responder_certs`.
    pub id: i64,
    /// The responder key.
    pub signer: Arc<dyn Signer>,
    /// The responder certificate, DER, included in every response it signs.
    pub certificate: Vec<u8>,
    /// SHA-1 of the responder's subjectPublicKey (ResponderID byKey).
    pub key_hash: Vec<u8>,
    /// When the responder certificate expires, Unix seconds: no answer may outlive it.
    pub not_after: i64,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("id", &self.id)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

fn gtime(unix: i64) -> Result<GeneralizedTime, Error> {
    GeneralizedTime::from_unix_duration(Duration::from_secs(unix.max(0) as u64))
        .map_err(|e| Error::encoding("OCSP time", e))
}

/// Signs a successful response answering `answers`, valid from `this_update`
/// to `next_update`, echoing `nonce` (the extnValue bytes) when given.
pub fn sign(
    cred: &Credential,
    answers: &[(CertId, Status)],
    this_update: i64,
    next_update: i64,
    nonce: Option<&[u8]>,
) -> Result<Vec<u8>, Error> {
    let mut responses = Vec::with_capacity(answers.len());
    for (cert_id, status) in answers {
        let cert_status = match status {
            Status::Good => CertStatus::Good(Null),
            Status::Unknown => CertStatus::Unknown(Null),
            Status::Revoked { at, reason } => CertStatus::Revoked(RevokedInfo {
                revocation_time: gtime(*at)?,
                // RFC 5280 5.3.1: unspecified (0) is conveyed by leaving the reason out.
                revocation_reason: (*reason != 0).then_some(Enumerated(*reason)),
            }),
        };
        responses.push(SingleResponse {
            cert_id: cert_id.clone(),
            cert_status,
            this_update: gtime(this_update)?,
            next_update: Some(gtime(next_update)?),
            single_extensions: None,
        });
    }
    let response_extensions = match nonce {
        Some(value) => Some(vec![Extension {
            extn_id: asn1::OCSP_NONCE,
            critical: false,
            extn_value: OctetString::new(value).map_err(|e| Error::encoding("nonce", e))?,
        }]),
        None => None,
    };
    let data = ResponseData {
        version: 0,
        responder_id: ResponderId::ByKey(
            OctetString::new(cred.key_hash.clone()).map_err(|e| Error::encoding("key hash", e))?,
        ),
        produced_at: gtime(this_update)?,
        responses,
        response_extensions,
    };
    let tbs = data
        .to_der()
        .map_err(|e| Error::encoding("ResponseData", e))?;
    let signature = crate::ca::sign_checked(cred.signer.as_ref(), &tbs)?;
    let basic = BasicOcspResponse {
        tbs_response_data: Any::from_der(&tbs).map_err(|e| Error::encoding("ResponseData", e))?,
        signature_algorithm: cred.signer.algorithm().signature_algorithm(),
        signature: BitString::from_bytes(&signature)
            .map_err(|e| Error::encoding("signature", e))?,
        certs: Some(vec![Any::from_der(&cred.certificate)
            .map_err(|e| Error::encoding("responder certificate", e))?]),
    };
    let basic = basic
        .to_der()
        .map_err(|e| Error::encoding("BasicOCSPResponse", e))?;
    let mut der = OcspResponse {
        response_status: Enumerated(0),
        response_bytes: Some(ResponseBytes {
            response_type: asn1::OCSP_BASIC,
            response: OctetString::new(basic).map_err(|e| Error::encoding("response", e))?,
        }),
    }
    .to_der()
    .map_err(|e| Error::encoding("OCSPResponse", e))?;
    if crate::fault::active("ocsp-corrupt") {
        if let Some(last) = der.last_mut() {
            *last ^= 0x01;
        }
    }
    check(&der, cred, answers, this_update, next_update, nonce)?;
    Ok(der)
}

/// Parses a signed response back and checks it answers exactly `answers`
/// for the intended times, names this responder, and verifies with the key
/// of the responder certificate it carries, before anyone stores or sends it.
fn check(
    der: &[u8],
    cred: &Credential,
    answers: &[(CertId, Status)],
    this_update: i64,
    next_update: i64,
    nonce: Option<&[u8]>,
) -> Result<(), Error> {
    let bad = |m: String| Error::encoding("signed OCSP response", m);
    let response =
        OcspResponse::from_der(der).map_err(|e| bad(format!("does not parse back: {e}")))?;
    let bytes = response
        .response_bytes
        .filter(|b| response.response_status.0 == 0 && b.response_type == asn1::OCSP_BASIC)
        .ok_or_else(|| bad("not a successful basic response".to_string()))?;
    let basic = BasicOcspResponse::from_der(bytes.response.as_bytes())
        .map_err(|e| bad(format!("BasicOCSPResponse: {e}")))?;
    let signed = basic
        .tbs_response_data
        .to_der()
        .map_err(|e| bad(format!("ResponseData: {e}")))?;
    let data = ResponseData::from_der(&signed).map_err(|e| bad(format!("ResponseData: {e}")))?;
    let when = |t: &GeneralizedTime| t.to_unix_duration().as_secs() as i64;
    match &data.responder_id {
        ResponderId::ByKey(k) if k.as_bytes() == cred.key_hash.as_slice() => {}
        _ => {
            return Err(bad(
                "responderID is not this responder's key hash".to_string()
            ))
        }
    }
    if when(&data.produced_at) != this_update || data.responses.len() != answers.len() {
        return Err(bad(
            "producedAt or the number of answers is not as intended".to_string(),
        ));
    }
    for (single, (cert_id, status)) in data.responses.iter().zip(answers) {
        let same_status = match (&single.cert_status, status) {
            (CertStatus::Good(_), Status::Good) | (CertStatus::Unknown(_), Status::Unknown) => true,
            (CertStatus::Revoked(info), Status::Revoked { at, reason }) => {
                when(&info.revocation_time) == *at
                    && info.revocation_reason.map_or(0, |r| r.0) == *reason
            }
            _ => false,
        };
        if &single.cert_id != cert_id
            || !same_status
            || when(&single.this_update) != this_update
            || single.next_update.as_ref().map(when) != Some(next_update)
        {
            return Err(bad(format!(
                "the answer for serial {} is not the one intended",
                hex::encode(cert_id.serial_number.as_bytes())
            )));
        }
    }
    let echoed = data
        .response_extensions
        .as_ref()
        .and_then(|exts| exts.iter().find(|e| e.extn_id == asn1::OCSP_NONCE))
        .map(|e| e.extn_value.as_bytes());
    if echoed != nonce {
        return Err(bad("nonce is not the request's".to_string()));
    }
    if basic.signature_algorithm != cred.signer.algorithm().signature_algorithm() {
        return Err(bad("signature algorithm is not the responder's".to_string()));
    }
    // The certificate a client checks the signature with is the one
    // embedded: it must be this responder's, byte for byte.
    let embedded = basic
        .certs
        .as_deref()
        .map(|certs| certs.iter().map(Any::to_der).collect::<Result<Vec<_>, _>>())
        .transpose()
        .map_err(|e| bad(format!("certs: {e}")))?;
    if embedded != Some(vec![cred.certificate.clone()]) {
        return Err(bad(
            "the embedded certificate is not the responder's".to_string()
        ));
    }
    let responder = x509_cert::Certificate::from_der(&cred.certificate)
        .map_err(|e| bad(format!("responder certificate: {e}")))?;
    let spki = responder
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| bad(format!("responder public key: {e}")))?;
    let signature = basic
        .signature
        .as_bytes()
        .ok_or_else(|| bad("signature has unused bits".to_string()))?;
    kxca_hsm::verify(cred.signer.algorithm(), &spki, &signed, signature).map_err(|e| {
        bad(format!(
            "signature does not verify with the responder certificate's key: {e}"
        ))
    })
}

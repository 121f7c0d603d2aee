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
    Revoked { at: i64, reason: u8 },
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
    pub signer: Arc<dyn Signer>,
    pub certificate: Vec<u8>,
    /// SHA-1 of the responder's subjectPublicKey (ResponderID byKey).
    pub key_hash: Vec<u8>,
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
    OcspResponse {
        response_status: Enumerated(0),
        response_bytes: Some(ResponseBytes {
            response_type: asn1::OCSP_BASIC,
            response: OctetString::new(basic).map_err(|e| Error::encoding("response", e))?,
        }),
    }
    .to_der()
    .map_err(|e| Error::encoding("OCSPResponse", e))
}

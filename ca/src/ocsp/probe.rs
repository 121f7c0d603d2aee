//! The client side of the public role, as a relying party sees it: an
//! OCSP request for one serial (RFC 6960, SHA-1 CertID, as most clients
//! send it), and the checks a client makes on the answer and on a served
//! CRL. The console uses it to show what the public role really says, so
//! nothing here trusts the store: only the issuing CA's certificate.
//!
//! No HTTP here: the caller fetches the bytes (with its own timeout and
//! size bound) and hands them over.

use der::asn1::{Any, BitString, ObjectIdentifier};
use der::{Decode, Encode, Sequence};
use sha1::{Digest, Sha1};
use spki::AlgorithmIdentifierOwned;

use super::asn1::{
    self, BasicOcspResponse, CertId, CertStatus, OcspRequest, OcspResponse, Request, ResponderId,
    ResponseData, TbsRequest,
};
use super::response::Status;
use crate::{Authority, Error};

/// Clock difference allowed between the responder and the prober.
const SKEW: i64 = 300;

const EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const CRL_NUMBER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.20");

/// Why an answer or a CRL from the public role is not to be believed. The
/// caller words it for its readers; `detail` is for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeFailure {
    /// Not DER of the expected structure.
    Malformed(String),
    /// An OCSPResponse with a status other than successful (RFC 6960 4.2.1).
    NotSuccessful(u8),
    /// The signature does not verify, or the signer is not authorised by
    /// the issuing CA.
    Signature(String),
    /// It answers about another certificate or another issuer.
    Mismatch(String),
    /// It was valid until this time (Unix seconds), which has passed.
    Stale(i64),
    /// It claims to be made at this time (Unix seconds), in the future.
    FromTheFuture(i64),
}

impl std::fmt::Display for ProbeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeFailure::Malformed(m) => write!(f, "malformed: {m}"),
            ProbeFailure::NotSuccessful(s) => write!(f, "responseStatus {s}, not successful"),
            ProbeFailure::Signature(m) => write!(f, "signature: {m}"),
            ProbeFailure::Mismatch(m) => write!(f, "not the answer asked for: {m}"),
            ProbeFailure::Stale(t) => write!(f, "nextUpdate {t} has passed"),
            ProbeFailure::FromTheFuture(t) => write!(f, "thisUpdate {t} is in the future"),
        }
    }
}

/// A request for one certificate, and what its answer must name.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The DER OCSPRequest, to POST as `application/ocsp-request`.
    pub der: Vec<u8>,
    cert_id: CertId,
}

/// What a verified answer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// Good, revoked (when, why) or unknown.
    pub status: Status,
    /// thisUpdate, Unix seconds.
    pub this_update: i64,
    /// nextUpdate, Unix seconds (RFC 5019: always present from kxca).
    pub next_update: Option<i64>,
}

/// What a verified CRL says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrlFacts {
    /// The cRLNumber extension.
    pub number: i64,
    /// thisUpdate, Unix seconds.
    pub this_update: i64,
    /// nextUpdate, Unix seconds.
    pub next_update: i64,
}

/// An OCSP request for `serial` (big-endian bytes, as stored) of a
/// certificate issued by `issuer`: SHA-1 CertID, no nonce (kxca's
/// responder answers from pre-signed responses, RFC 5019).
pub fn request(issuer: &Authority, serial: &[u8]) -> Result<Probe, Error> {
    use der::asn1::{Int, Null, OctetString};
    let spki = crate::x509::spki(&issuer.spki)?;
    let mut int = Vec::with_capacity(serial.len() + 1);
    if serial.first().is_none_or(|b| b & 0x80 != 0) {
        int.push(0);
    }
    int.extend_from_slice(serial);
    let cert_id = CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: asn1::SHA1,
            parameters: Some(Any::from(Null)),
        },
        issuer_name_hash: OctetString::new(Sha1::digest(&issuer.subject_der).to_vec())
            .map_err(|e| Error::encoding("name hash", e))?,
        issuer_key_hash: OctetString::new(
            Sha1::digest(spki.subject_public_key.raw_bytes()).to_vec(),
        )
        .map_err(|e| Error::encoding("key hash", e))?,
        serial_number: Int::new(&int).map_err(|e| Error::encoding("serial", e))?,
    };
    let der = OcspRequest {
        tbs_request: TbsRequest {
            version: 0,
            requestor_name: None,
            request_list: vec![Request {
                req_cert: cert_id.clone(),
                single_request_extensions: None,
            }],
            request_extensions: None,
        },
        optional_signature: None,
    }
    .to_der()
    .map_err(|e| Error::encoding("OCSPRequest", e))?;
    Ok(Probe { der, cert_id })
}

/// A signed structure (certificate, CRL) with its to-be-signed part kept
/// as the exact bytes that were signed.
#[derive(Sequence)]
struct Signed {
    tbs: Any,
    signature_algorithm: AlgorithmIdentifierOwned,
    signature: BitString,
}

fn unix(t: &der::asn1::GeneralizedTime) -> i64 {
    t.to_unix_duration().as_secs() as i64
}

/// Verifies `signature` over `tbs` with `spki_der`, by the signature
/// algorithm named (the two kxca signs with).
fn verify_sig(
    alg: &AlgorithmIdentifierOwned,
    spki_der: &[u8],
    tbs: &[u8],
    signature: &BitString,
) -> Result<(), String> {
    use kxca_hsm::KeyAlgorithm;
    let algorithm = [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Rsa2048]
        .into_iter()
        .find(|k| k.signature_algorithm().oid == alg.oid)
        .ok_or_else(|| format!("signature algorithm {} not supported", alg.oid))?;
    let sig = signature
        .as_bytes()
        .ok_or_else(|| "signature has unused bits".to_string())?;
    kxca_hsm::verify(algorithm, spki_der, tbs, sig).map_err(|e| e.to_string())
}

/// The key of whoever signed the response: the issuing CA itself, or a
/// responder certificate it carries that the issuing CA signed for OCSP
/// signing and that is valid `now`.
fn signer_key(
    basic: &BasicOcspResponse,
    data: &ResponseData,
    issuer: &Authority,
    now: i64,
) -> Result<Vec<u8>, ProbeFailure> {
    let issuer_spki = crate::x509::spki(&issuer.spki)
        .map_err(|e| ProbeFailure::Signature(format!("issuer key: {e}")))?;
    let names = |spki: &spki::SubjectPublicKeyInfoOwned, subject: &[u8]| match &data.responder_id {
        ResponderId::ByKey(k) => {
            k.as_bytes() == Sha1::digest(spki.subject_public_key.raw_bytes()).as_slice()
        }
        ResponderId::ByName(n) => n.to_der().is_ok_and(|n| n == subject),
    };
    if names(&issuer_spki, &issuer.subject_der) {
        return Ok(issuer.spki.clone());
    }
    let sig = |m: String| ProbeFailure::Signature(m);
    for any in basic.certs.iter().flatten() {
        let der = any.to_der().map_err(|e| sig(format!("certs: {e}")))?;
        let signed =
            Signed::from_der(&der).map_err(|e| sig(format!("responder certificate: {e}")))?;
        let tbs_der = signed
            .tbs
            .to_der()
            .map_err(|e| sig(format!("responder certificate: {e}")))?;
        let tbs = x509_cert::TbsCertificate::from_der(&tbs_der)
            .map_err(|e| sig(format!("responder certificate: {e}")))?;
        let subject = tbs
            .subject()
            .to_der()
            .map_err(|e| sig(format!("responder subject: {e}")))?;
        if !names(tbs.subject_public_key_info(), &subject) {
            continue;
        }
        let issuer_name = tbs
            .issuer()
            .to_der()
            .map_err(|e| sig(format!("responder issuer: {e}")))?;
        if issuer_name != issuer.subject_der {
            return Err(sig(
                "the responder certificate is not issued by the issuing CA".to_string(),
            ));
        }
        verify_sig(
            &signed.signature_algorithm,
            &issuer.spki,
            &tbs_der,
            &signed.signature,
        )
        .map_err(|e| sig(format!("the responder certificate: {e}")))?;
        let validity = tbs.validity();
        let (nb, na) = (
            validity.not_before.to_unix_duration().as_secs() as i64,
            validity.not_after.to_unix_duration().as_secs() as i64,
        );
        if now + SKEW < nb || now > na {
            return Err(sig(format!(
                "the responder certificate is not valid now (valid {nb}..{na})"
            )));
        }
        let ocsp_signing = tbs
            .extensions()
            .into_iter()
            .flatten()
            .filter(|e| e.extn_id == EXT_KEY_USAGE)
            .filter_map(|e| Vec::<ObjectIdentifier>::from_der(e.extn_value.as_bytes()).ok())
            .any(|usages| usages.contains(&asn1::KP_OCSP_SIGNING));
        if !ocsp_signing {
            return Err(sig(
                "the responder certificate is not for OCSP signing".to_string()
            ));
        }
        return tbs
            .subject_public_key_info()
            .to_der()
            .map_err(|e| sig(format!("responder key: {e}")));
    }
    Err(sig(
        "signed neither by the issuing CA nor by a responder certificate it carries".to_string(),
    ))
}

/// Checks an answer to `probe` as a client would: successful, signed by
/// the issuing CA or its delegated responder (chained to `issuer`), about
/// the certificate asked for, and current at `now` (Unix seconds).
pub fn check_answer(
    der: &[u8],
    issuer: &Authority,
    probe: &Probe,
    now: i64,
) -> Result<Answer, ProbeFailure> {
    let malformed = |m: String| ProbeFailure::Malformed(m);
    let response = OcspResponse::from_der(der).map_err(|e| malformed(format!("{e}")))?;
    if response.response_status.0 != 0 {
        return Err(ProbeFailure::NotSuccessful(response.response_status.0));
    }
    let bytes = response
        .response_bytes
        .filter(|b| b.response_type == asn1::OCSP_BASIC)
        .ok_or_else(|| malformed("no basic response".to_string()))?;
    let basic = BasicOcspResponse::from_der(bytes.response.as_bytes())
        .map_err(|e| malformed(format!("BasicOCSPResponse: {e}")))?;
    let signed = basic
        .tbs_response_data
        .to_der()
        .map_err(|e| malformed(format!("ResponseData: {e}")))?;
    let data =
        ResponseData::from_der(&signed).map_err(|e| malformed(format!("ResponseData: {e}")))?;
    let key = signer_key(&basic, &data, issuer, now)?;
    verify_sig(&basic.signature_algorithm, &key, &signed, &basic.signature)
        .map_err(ProbeFailure::Signature)?;
    let single = data
        .responses
        .iter()
        .find(|s| s.cert_id == probe.cert_id)
        .ok_or_else(|| {
            ProbeFailure::Mismatch("no answer for the serial and issuer asked about".to_string())
        })?;
    let this_update = unix(&single.this_update);
    let next_update = single.next_update.as_ref().map(unix);
    if this_update > now + SKEW {
        return Err(ProbeFailure::FromTheFuture(this_update));
    }
    if let Some(next) = next_update.filter(|n| *n < now) {
        return Err(ProbeFailure::Stale(next));
    }
    let status = match &single.cert_status {
        CertStatus::Good(_) => Status::Good,
        CertStatus::Unknown(_) => Status::Unknown,
        CertStatus::Revoked(info) => Status::Revoked {
            at: unix(&info.revocation_time),
            reason: info.revocation_reason.map_or(0, |r| r.0),
        },
    };
    Ok(Answer {
        status,
        this_update,
        next_update,
    })
}

/// Checks a CRL as a client would: issued and signed by `issuer`, with a
/// cRLNumber, and current at `now` (Unix seconds).
pub fn check_crl(der: &[u8], issuer: &Authority, now: i64) -> Result<CrlFacts, ProbeFailure> {
    let malformed = |m: String| ProbeFailure::Malformed(m);
    let signed = Signed::from_der(der).map_err(|e| malformed(format!("{e}")))?;
    let tbs_der = signed
        .tbs
        .to_der()
        .map_err(|e| malformed(format!("TBSCertList: {e}")))?;
    let tbs = x509_cert::crl::TbsCertList::<x509_cert::certificate::Rfc5280>::from_der(&tbs_der)
        .map_err(|e| malformed(format!("TBSCertList: {e}")))?;
    let issuer_name = tbs
        .issuer
        .to_der()
        .map_err(|e| malformed(format!("issuer: {e}")))?;
    if issuer_name != issuer.subject_der {
        return Err(ProbeFailure::Mismatch(
            "the CRL's issuer is not the issuing CA".to_string(),
        ));
    }
    verify_sig(
        &signed.signature_algorithm,
        &issuer.spki,
        &tbs_der,
        &signed.signature,
    )
    .map_err(ProbeFailure::Signature)?;
    let number = tbs
        .crl_extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == CRL_NUMBER)
        .and_then(|e| der::asn1::Uint::from_der(e.extn_value.as_bytes()).ok())
        .and_then(|n| {
            let b = n.as_bytes();
            (b.len() <= 7).then(|| b.iter().fold(0i64, |acc, x| (acc << 8) | i64::from(*x)))
        })
        .ok_or_else(|| malformed("no cRLNumber".to_string()))?;
    let this_update = tbs.this_update.to_unix_duration().as_secs() as i64;
    let next_update = tbs
        .next_update
        .map(|t| t.to_unix_duration().as_secs() as i64)
        .ok_or_else(|| malformed("no nextUpdate".to_string()))?;
    if this_update > now + SKEW {
        return Err(ProbeFailure::FromTheFuture(this_update));
    }
    if next_update < now {
        return Err(ProbeFailure::Stale(next_update));
    }
    Ok(CrlFacts {
        number,
        this_update,
        next_update,
    })
}

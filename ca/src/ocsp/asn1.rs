//! RFC 6960 structures, derived with der 0.8.
//!
//! Why not the `x509-ocsp` crate: its only release (0.2.1) is built on
//! der 0.7 / x509-cert 0.2 / spki 0.7, a second ASN.1 stack beside the
//! der 0.8 one the CA uses, so every hash, serial and signature would cross
//! between two type families as bytes; and its `from_crl` helpers answer
//! "good" for any serial not on a CRL, which this responder must never do.
//! The dozen types below are all the responder needs.

use der::asn1::{Any, BitString, GeneralizedTime, Int, Null, ObjectIdentifier, OctetString};
use der::{
    Choice, DecodeValue, EncodeValue, FixedTag, Header, Length, Reader, Sequence, Tag, Writer,
};
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::Extension;

pub(crate) const OCSP_BASIC: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");
/// id-pkix-ocsp-nonce: the request extension a client echoes to prevent replay.
pub const OCSP_NONCE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.2");
pub(crate) const OCSP_NOCHECK: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.5");
pub(crate) const KP_OCSP_SIGNING: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.9");
/// id-sha1, the CertID hash most clients send.
pub const SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
/// id-sha256, the other CertID hash answered.
pub const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");

/// The hash algorithm of a CertID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlg {
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
}

/// An ASN.1 ENUMERATED that fits a byte (OCSPResponseStatus, CRLReason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Enumerated(pub u8);

impl FixedTag for Enumerated {
    const TAG: Tag = Tag::Enumerated;
}

impl<'a> DecodeValue<'a> for Enumerated {
    type Error = der::Error;
    fn decode_value<R: Reader<'a>>(reader: &mut R, header: Header) -> der::Result<Self> {
        if header.length() != Length::ONE {
            return Err(reader.error(der::ErrorKind::Length {
                tag: Tag::Enumerated,
            }));
        }
        let b = reader.read_byte()?;
        if b & 0x80 != 0 {
            return Err(reader.error(der::ErrorKind::Value {
                tag: Tag::Enumerated,
            }));
        }
        Ok(Enumerated(b))
    }
}

impl EncodeValue for Enumerated {
    fn value_len(&self) -> der::Result<Length> {
        Ok(Length::ONE)
    }
    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        writer.write_byte(self.0)
    }
}

/// `OCSPRequest ::= SEQUENCE { tbsRequest, optionalSignature [0] EXPLICIT OPTIONAL }`
#[derive(Clone, Debug, Sequence)]
pub struct OcspRequest {
    /// What is asked: the certificates and the request extensions.
    pub tbs_request: TbsRequest,
    /// Signed requests are accepted but the signature is not checked: the
    /// answers are public information (RFC 6960 4.1.2 makes signing optional).
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub optional_signature: Option<Any>,
}

/// TBSRequest (RFC 6960 4.1.1): the signed part of a request.
#[derive(Clone, Debug, Sequence)]
pub struct TbsRequest {
    #[asn1(
        context_specific = "0",
        tag_mode = "EXPLICIT",
        default = "Default::default"
    )]
    /// The request syntax version, v1 (0).
    pub version: u8,
    /// The requestor's name, if the client sent one; kxca does not use it.
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    pub requestor_name: Option<Any>,
    /// One entry per certificate asked about.
    pub request_list: Vec<Request>,
    /// Request extensions (the nonce).
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", optional = "true")]
    pub request_extensions: Option<Vec<Extension>>,
}

/// Request: one certificate asked about.
#[derive(Clone, Debug, Sequence)]
pub struct Request {
    /// The certificate, as CertID.
    pub req_cert: CertId,
    /// Per-certificate extensions; kxca does not use them.
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub single_request_extensions: Option<Vec<Extension>>,
}

/// CertID: a certificate named by its issuer's name and key hashes and its serial.
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct CertId {
    /// The algorithm of the two issuer hashes (SHA-1 or SHA-256).
    pub hash_algorithm: AlgorithmIdentifierOwned,
    /// Hash of the issuer's DER-encoded subject Name.
    pub issuer_name_hash: OctetString,
    /// Hash of the issuer's subjectPublicKey bits.
    pub issuer_key_hash: OctetString,
    /// INTEGER, not x509-cert's SerialNumber: a request may name any
    /// number, and a foreign or malformed serial is "unknown", not an error.
    pub serial_number: Int,
}

/// `OCSPResponse ::= SEQUENCE { responseStatus, responseBytes [0] EXPLICIT OPTIONAL }`
#[derive(Clone, Debug, Sequence)]
pub struct OcspResponse {
    /// OCSPResponseStatus.
    pub response_status: Enumerated,
    /// The signed answer; only with `successful`.
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub response_bytes: Option<ResponseBytes>,
}

/// ResponseBytes: the answer's type and its DER.
#[derive(Clone, Debug, Sequence)]
pub struct ResponseBytes {
    /// id-pkix-ocsp-basic: the only type kxca signs.
    pub response_type: ObjectIdentifier,
    /// The BasicOCSPResponse, DER.
    pub response: OctetString,
}

/// BasicOCSPResponse, with the signed ResponseData carried as the exact
/// bytes that were signed.
#[derive(Clone, Debug, Sequence)]
pub struct BasicOcspResponse {
    /// The ResponseData exactly as signed.
    pub tbs_response_data: Any,
    /// The responder key's signature algorithm.
    pub signature_algorithm: AlgorithmIdentifierOwned,
    /// The signature over `tbs_response_data`.
    pub signature: BitString,
    /// The responder certificate, so a client can check the delegation.
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub certs: Option<Vec<Any>>,
}

/// ResponseData (RFC 6960 4.2.1): what the responder signs.
#[derive(Clone, Debug, Sequence)]
pub struct ResponseData {
    #[asn1(
        context_specific = "0",
        tag_mode = "EXPLICIT",
        default = "Default::default"
    )]
    /// v1 (0).
    pub version: u8,
    /// Who signed: kxca always answers byKey.
    pub responder_id: ResponderId,
    /// When the answer was signed.
    pub produced_at: GeneralizedTime,
    /// One answer per certificate asked about.
    pub responses: Vec<SingleResponse>,
    /// Response extensions (the echoed nonce).
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    pub response_extensions: Option<Vec<Extension>>,
}

/// ResponderID: the signer by name or by key hash.
#[derive(Clone, Debug, Choice)]
pub enum ResponderId {
    /// The responder's subject Name; never produced by kxca.
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", constructed = "true")]
    ByName(Any),
    /// SHA-1 of the responder's subjectPublicKey.
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", constructed = "true")]
    ByKey(OctetString),
}

/// SingleResponse: the status of one certificate.
#[derive(Clone, Debug, Sequence)]
pub struct SingleResponse {
    /// The certificate, as the request named it.
    pub cert_id: CertId,
    /// Good, revoked or unknown.
    pub cert_status: CertStatus,
    /// When the status was known correct.
    pub this_update: GeneralizedTime,
    /// When newer information will be available; absent means "any time".
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub next_update: Option<GeneralizedTime>,
    /// Per-certificate extensions; none produced.
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    pub single_extensions: Option<Vec<Extension>>,
}

/// CertStatus of one certificate.
#[derive(Clone, Debug, Choice)]
pub enum CertStatus {
    /// Issued and not revoked.
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT")]
    Good(Null),
    /// Revoked, with when and why.
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", constructed = "true")]
    Revoked(RevokedInfo),
    /// Not issued by this CA, or not known.
    #[asn1(context_specific = "2", tag_mode = "IMPLICIT")]
    Unknown(Null),
}

/// RevokedInfo: when and why a certificate was revoked.
#[derive(Clone, Debug, Sequence)]
pub struct RevokedInfo {
    /// When it was revoked.
    pub revocation_time: GeneralizedTime,
    /// The CRLReason, when one was given.
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub revocation_reason: Option<Enumerated>,
}

/// OCSPResponseStatus values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseStatus {
    /// The answer is in responseBytes.
    Successful = 0,
    /// The request could not be parsed.
    MalformedRequest = 1,
    /// The responder failed.
    InternalError = 2,
    /// The responder is too busy now; try again.
    TryLater = 3,
    /// The responder does not answer for this issuer.
    Unauthorized = 6,
}

impl ResponseStatus {
    /// The whole OCSPResponse for an error status: no responseBytes, never signed.
    pub fn error_body(self) -> &'static [u8] {
        match self {
            ResponseStatus::Successful => &[0x30, 0x03, 0x0a, 0x01, 0x00],
            ResponseStatus::MalformedRequest => &[0x30, 0x03, 0x0a, 0x01, 0x01],
            ResponseStatus::InternalError => &[0x30, 0x03, 0x0a, 0x01, 0x02],
            ResponseStatus::TryLater => &[0x30, 0x03, 0x0a, 0x01, 0x03],
            ResponseStatus::Unauthorized => &[0x30, 0x03, 0x0a, 0x01, 0x06],
        }
    }
    /// The status as RFC 6960 spells it, for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            ResponseStatus::Successful => "successful",
            ResponseStatus::MalformedRequest => "malformedRequest",
            ResponseStatus::InternalError => "internalError",
            ResponseStatus::TryLater => "tryLater",
            ResponseStatus::Unauthorized => "unauthorized",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::{Decode, Encode};

    #[test]
    fn error_bodies_are_valid_der() {
        for s in [
            ResponseStatus::MalformedRequest,
            ResponseStatus::InternalError,
            ResponseStatus::TryLater,
            ResponseStatus::Unauthorized,
        ] {
            let r = OcspResponse::from_der(s.error_body()).unwrap();
            assert_eq!(r.response_status.0, s as u8);
            assert_eq!(r.to_der().unwrap(), s.error_body());
        }
    }
}

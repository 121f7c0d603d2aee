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

pub const OCSP_BASIC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");
pub const OCSP_NONCE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.2");
pub const OCSP_NOCHECK: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.5");
pub const KP_OCSP_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.9");
pub const SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
pub const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");

/// The hash algorithm of a CertID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlg {
    Sha1,
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

/// OCSPRequest ::= SEQUENCE { tbsRequest, optionalSignature [0] EXPLICIT OPTIONAL }
#[derive(Clone, Debug, Sequence)]
pub struct OcspRequest {
    pub tbs_request: TbsRequest,
    /// Signed requests are accepted but the signature is not checked: the
    /// answers are public information (RFC 6960 4.1.2 makes signing optional).
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub optional_signature: Option<Any>,
}

#[derive(Clone, Debug, Sequence)]
pub struct TbsRequest {
    #[asn1(
        context_specific = "0",
        tag_mode = "EXPLICIT",
        default = "Default::default"
    )]
    pub version: u8,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    pub requestor_name: Option<Any>,
    pub request_list: Vec<Request>,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", optional = "true")]
    pub request_extensions: Option<Vec<Extension>>,
}

#[derive(Clone, Debug, Sequence)]
pub struct Request {
    pub req_cert: CertId,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub single_request_extensions: Option<Vec<Extension>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct CertId {
    pub hash_algorithm: AlgorithmIdentifierOwned,
    pub issuer_name_hash: OctetString,
    pub issuer_key_hash: OctetString,
    /// INTEGER, not x509-cert's SerialNumber: a request may name any
    /// number, and a foreign or malformed serial is "unknown", not an error.
    pub serial_number: Int,
}

/// OCSPResponse ::= SEQUENCE { responseStatus, responseBytes [0] EXPLICIT OPTIONAL }
#[derive(Clone, Debug, Sequence)]
pub struct OcspResponse {
    pub response_status: Enumerated,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub response_bytes: Option<ResponseBytes>,
}

#[derive(Clone, Debug, Sequence)]
pub struct ResponseBytes {
    pub response_type: ObjectIdentifier,
    pub response: OctetString,
}

/// BasicOCSPResponse, with the signed ResponseData carried as the exact
/// bytes that were signed.
#[derive(Clone, Debug, Sequence)]
pub struct BasicOcspResponse {
    pub tbs_response_data: Any,
    pub signature_algorithm: AlgorithmIdentifierOwned,
    pub signature: BitString,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub certs: Option<Vec<Any>>,
}

#[derive(Clone, Debug, Sequence)]
pub struct ResponseData {
    #[asn1(
        context_specific = "0",
        tag_mode = "EXPLICIT",
        default = "Default::default"
    )]
    pub version: u8,
    pub responder_id: ResponderId,
    pub produced_at: GeneralizedTime,
    pub responses: Vec<SingleResponse>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    pub response_extensions: Option<Vec<Extension>>,
}

#[derive(Clone, Debug, Choice)]
pub enum ResponderId {
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", constructed = "true")]
    ByName(Any),
    /// SHA-1 of the responder's subjectPublicKey.
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", constructed = "true")]
    ByKey(OctetString),
}

#[derive(Clone, Debug, Sequence)]
pub struct SingleResponse {
    pub cert_id: CertId,
    pub cert_status: CertStatus,
    pub this_update: GeneralizedTime,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub next_update: Option<GeneralizedTime>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    pub single_extensions: Option<Vec<Extension>>,
}

#[derive(Clone, Debug, Choice)]
pub enum CertStatus {
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT")]
    Good(Null),
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", constructed = "true")]
    Revoked(RevokedInfo),
    #[asn1(context_specific = "2", tag_mode = "IMPLICIT")]
    Unknown(Null),
}

#[derive(Clone, Debug, Sequence)]
pub struct RevokedInfo {
    pub revocation_time: GeneralizedTime,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub revocation_reason: Option<Enumerated>,
}

/// OCSPResponseStatus values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseStatus {
    Successful = 0,
    MalformedRequest = 1,
    InternalError = 2,
    TryLater = 3,
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

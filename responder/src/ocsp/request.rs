//! Parsing OCSP requests from the wire: POST bodies and RFC 5019 GET paths.

use der::{Decode, Encode};

use kxca_ca::ocsp::asn1::{self, CertId, OcspRequest};

/// Why a request was refused; every variant becomes `malformedRequest`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The body or decoded path is over `[ocsp] max_request_bytes`.
    #[error("request larger than {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// Not a DER OCSPRequest (the decoder's message).
    #[error("request is not DER OCSPRequest: {0}")]
    Der(String),
    /// An empty requestList.
    #[error("request names no certificate")]
    Empty,
    /// More certificates than `[ocsp] max_certificates_per_request`.
    #[error("request names {count} certificates (limit {limit})")]
    TooManyCertificates {
        /// Certificates named.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A nonce outside RFC 8954's 1 to 32 bytes.
    #[error("nonce of {0} bytes (RFC 8954 allows 1 to 32)")]
    BadNonce(usize),
    /// A GET path that is not base64.
    #[error("GET path is not base64: {0}")]
    Base64(String),
}

/// The hash algorithm of a CertID (defined with the store that keys answers by it).
pub use kxca_ca::ocsp::HashAlg;

/// One certificate asked about.
#[derive(Debug, Clone)]
pub struct Query {
    /// The CertID as the client sent it, echoed back in the answer.
    pub cert_id: CertId,
    /// `None` for a hash algorithm this responder does not use.
    pub hash: Option<HashAlg>,
    /// Serial magnitude without leading zeros; `None` for a negative number.
    pub serial: Option<Vec<u8>>,
}

/// A parsed request.
#[derive(Debug, Clone)]
pub struct ParsedRequest {
    /// The certificates asked about, in request order.
    pub queries: Vec<Query>,
    /// The nonce extension's extnValue, echoed byte for byte.
    pub nonce: Option<Vec<u8>>,
}

/// Parses a DER OCSPRequest.
pub fn parse(
    der: &[u8],
    max_bytes: usize,
    max_certs: usize,
) -> Result<ParsedRequest, RequestError> {
    if der.len() > max_bytes {
        return Err(RequestError::TooLarge { limit: max_bytes });
    }
    let req = OcspRequest::from_der(der).map_err(|e| RequestError::Der(e.to_string()))?;
    let list = req.tbs_request.request_list;
    if list.is_empty() {
        return Err(RequestError::Empty);
    }
    if list.len() > max_certs {
        return Err(RequestError::TooManyCertificates {
            count: list.len(),
            limit: max_certs,
        });
    }
    let mut nonce = None;
    for ext in req.tbs_request.request_extensions.iter().flatten() {
        if ext.extn_id == asn1::OCSP_NONCE {
            let value = ext.extn_value.as_bytes();
            // RFC 8954: Nonce ::= OCTET STRING (SIZE(1..32)), inside extnValue.
            let inner = der::asn1::OctetString::from_der(value)
                .map(|o| o.as_bytes().len())
                .unwrap_or(value.len());
            if !(1..=32).contains(&inner) {
                return Err(RequestError::BadNonce(inner));
            }
            nonce = Some(value.to_vec());
        }
    }
    let queries = list
        .into_iter()
        .map(|r| {
            let oid = r.req_cert.hash_algorithm.oid;
            let hash = if oid == asn1::SHA1 {
                Some(HashAlg::Sha1)
            } else if oid == asn1::SHA256 {
                Some(HashAlg::Sha256)
            } else {
                None
            };
            let bytes = r.req_cert.serial_number.as_bytes();
            let serial = if bytes.first().is_some_and(|b| b & 0x80 != 0) {
                None
            } else {
                let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
                Some(bytes[start..].to_vec())
            };
            Query {
                cert_id: r.req_cert,
                hash,
                serial,
            }
        })
        .collect();
    Ok(ParsedRequest { queries, nonce })
}

/// Decodes the path after `/ocsp/` of an RFC 5019 GET: base64 of the DER
/// request, with `+ / =` either percent-encoded or not, as clients send it.
pub fn decode_get_path(path: &str, max_bytes: usize) -> Result<Vec<u8>, RequestError> {
    use base64::Engine;
    // Base64 of max_bytes is 4/3 as long; percent-encoding triples a character.
    if path.len() > max_bytes * 4 {
        return Err(RequestError::TooLarge { limit: max_bytes });
    }
    let raw = path.as_bytes();
    let mut text = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' && i + 2 < raw.len() {
            let hex = std::str::from_utf8(&raw[i + 1..i + 3]).ok();
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(b) => text.push(b),
                None => return Err(RequestError::Base64("bad percent-encoding".into())),
            }
            i += 3;
        } else if raw[i] == b'%' {
            return Err(RequestError::Base64("bad percent-encoding".into()));
        } else {
            text.push(raw[i]);
            i += 1;
        }
    }
    let engine = base64::engine::general_purpose::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let der = engine
        .decode(&text)
        .map_err(|e| RequestError::Base64(e.to_string()))?;
    if der.len() > max_bytes {
        return Err(RequestError::TooLarge { limit: max_bytes });
    }
    Ok(der)
}

/// The RFC 5019 GET path (without `/ocsp/`) of a request, as `kxca publish`
/// names files: standard base64, unencoded.
pub fn get_path(request_der: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(request_der)
}

/// The DER request an RFC 5019 client sends for one CertID without a nonce.
pub fn single_request_der(cert_id: &CertId) -> Result<Vec<u8>, der::Error> {
    OcspRequest {
        tbs_request: asn1::TbsRequest {
            version: 0,
            requestor_name: None,
            request_list: vec![asn1::Request {
                req_cert: cert_id.clone(),
                single_request_extensions: None,
            }],
            request_extensions: None,
        },
        optional_signature: None,
    }
    .to_der()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// The parser never panics, whatever the bytes.
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&bytes, 16 * 1024, 32);
        }

        /// Nor does the GET path decoder, on any text.
        #[test]
        fn get_path_never_panics(path in ".{0,300}") {
            let _ = decode_get_path(&path, 16 * 1024);
        }

        /// Mutating a valid request never panics and never yields a query
        /// with a serial that was not in the bytes.
        #[test]
        fn mutated_requests_never_panic(pos in 0usize..200, byte in any::<u8>(), cut in 0usize..200) {
            let mut der = sample();
            let p = pos % der.len();
            der[p] = byte;
            der.truncate(der.len() - cut % der.len());
            let _ = parse(&der, 16 * 1024, 32);
        }
    }

    fn sample() -> Vec<u8> {
        // openssl ocsp -reqout of a SHA-1 CertID with a nonce.
        let hex = "30763074304d304b3049300906052b0e03021a05000414424ef3366d8b17e4f9865ea7849fe102bad1a82e04147ba4755b7a29c7c43b768cb3e5c422d343f29784021071a3b4c5d6e7f8091a2b3c4d5e6f7081a2233021301f06092b060105050730010204120410181778bccc4f3273973eac2ff30e29d2";
        hex::decode(hex).unwrap()
    }

    #[test]
    fn parses_sample_with_nonce() {
        let r = parse(&sample(), 16 * 1024, 32).unwrap();
        assert_eq!(r.queries.len(), 1);
        assert_eq!(r.queries[0].hash, Some(HashAlg::Sha1));
        assert_eq!(r.queries[0].serial.as_ref().unwrap().len(), 16);
        assert!(r.nonce.is_some());
    }

    #[test]
    fn get_path_forms_agree() {
        let der = sample();
        let plain = get_path(&der);
        let encoded = plain
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D");
        assert_eq!(decode_get_path(&plain, 16 * 1024).unwrap(), der);
        assert_eq!(decode_get_path(&encoded, 16 * 1024).unwrap(), der);
    }

    #[test]
    fn rejects_truncated_and_oversized() {
        let der = sample();
        assert!(parse(&der[..der.len() - 1], 16 * 1024, 32).is_err());
        assert!(matches!(
            parse(&der, 10, 32),
            Err(RequestError::TooLarge { .. })
        ));
    }
}

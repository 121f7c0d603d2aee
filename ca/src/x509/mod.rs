//! Certificate encoding. The TBSCertificate is assembled here as DER so that
//! the exact bytes the signer signs can be recorded before signing (Boulder's
//! "linted precertificate" discipline) — and because RFC 5280 subjects such as
//! `OU=<contract unit>, OU=<office>` need two attributes of one type, which
//! rcgen's name model cannot express.

pub(crate) mod oids;

use der::asn1::{
    Any, BitString, GeneralizedTime, Ia5String, OctetString, PrintableString, UtcTime,
};
use der::{Decode, Encode, Sequence};
use sha1::{Digest, Sha1};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{
    AccessDescription, AuthorityInfoAccessSyntax, AuthorityKeyIdentifier, BasicConstraints,
    CrlDistributionPoints, ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectAltName,
    SubjectKeyIdentifier,
};
use x509_cert::ext::Extension;
use x509_cert::name::{RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

use crate::Error;

/// RFC 5280 TBSCertificate for a v3 certificate, without the unique ids
/// (which RFC 5280 says CAs must not generate).
#[derive(Clone, Debug, Sequence)]
pub(crate) struct TbsCertificate {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    pub version: u8,
    pub serial_number: SerialNumber,
    pub signature: AlgorithmIdentifierOwned,
    /// The issuer's subject, copied byte for byte from its certificate.
    pub issuer: Any,
    pub validity: Validity,
    pub subject: Any,
    pub subject_public_key_info: SubjectPublicKeyInfoOwned,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT")]
    pub extensions: Vec<Extension>,
}

/// Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }
/// The TBS is carried as the exact DER that was signed.
#[derive(Clone, Debug, Sequence)]
pub(crate) struct SignedEnvelope {
    pub tbs: Any,
    pub signature_algorithm: AlgorithmIdentifierOwned,
    pub signature: BitString,
}

pub(crate) fn enc<T: Encode>(what: &str, v: &T) -> Result<Vec<u8>, Error> {
    v.to_der().map_err(|e| Error::encoding(what, e))
}

/// Wraps already-signed TBS bytes and a signature into the outer SEQUENCE.
pub(crate) fn assemble(
    tbs_der: &[u8],
    alg: AlgorithmIdentifierOwned,
    signature: &[u8],
) -> Result<Vec<u8>, Error> {
    let env = SignedEnvelope {
        tbs: Any::from_der(tbs_der).map_err(|e| Error::encoding("TBS", e))?,
        signature_algorithm: alg,
        signature: BitString::from_bytes(signature).map_err(|e| Error::encoding("signature", e))?,
    };
    enc("certificate", &env)
}

/// RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
pub(crate) fn time(unix: i64) -> Result<Time, Error> {
    let d = std::time::Duration::from_secs(unix.max(0) as u64);
    let dt = der::DateTime::from_unix_duration(d).map_err(|e| Error::encoding("time", e))?;
    if dt.year() < 2050 {
        Ok(Time::UtcTime(
            UtcTime::from_date_time(dt).map_err(|e| Error::encoding("time", e))?,
        ))
    } else {
        Ok(Time::GeneralTime(GeneralizedTime::from_date_time(dt)))
    }
}

pub(crate) fn validity(not_before: i64, not_after: i64) -> Result<Validity, Error> {
    Ok(Validity::new(time(not_before)?, time(not_after)?))
}

/// One attribute of a distinguished name, with its string type chosen by
/// RFC 5280: countryName is PrintableString, the rest UTF8String.
pub(crate) enum DnAttr<'a> {
    Country(&'a str),
    Organization(&'a str),
    OrganizationalUnit(&'a str),
    CommonName(&'a str),
}

/// Builds a Name (RDNSequence), one attribute per RDN, in the given order.
pub(crate) fn name(attrs: &[DnAttr<'_>]) -> Result<Any, Error> {
    let mut seq = RdnSequence::default();
    for a in attrs {
        let (oid, value) = match a {
            DnAttr::Country(c) => (
                oids::COUNTRY,
                Any::encode_from(
                    &PrintableString::new(c).map_err(|e| Error::encoding("countryName", e))?,
                ),
            ),
            DnAttr::Organization(s) => (
                oids::ORGANIZATION,
                Any::encode_from(
                    &der::asn1::Utf8StringRef::new(s).map_err(|e| Error::encoding("O", e))?,
                ),
            ),
            DnAttr::OrganizationalUnit(s) => (
                oids::ORG_UNIT,
                Any::encode_from(
                    &der::asn1::Utf8StringRef::new(s).map_err(|e| Error::encoding("OU", e))?,
                ),
            ),
            DnAttr::CommonName(s) => (
                oids::COMMON_NAME,
                Any::encode_from(
                    &der::asn1::Utf8StringRef::new(s).map_err(|e| Error::encoding("CN", e))?,
                ),
            ),
        };
        let value = value.map_err(|e| Error::encoding("name", e))?;
        let mut rdn = RelativeDistinguishedName::default();
        rdn.insert(AttributeTypeAndValue { oid, value })
            .map_err(|e| Error::encoding("name", e))?;
        seq.push(rdn);
    }
    let der = enc("name", &seq)?;
    Any::from_der(&der).map_err(|e| Error::encoding("name", e))
}

pub(crate) fn spki(der_bytes: &[u8]) -> Result<SubjectPublicKeyInfoOwned, Error> {
    SubjectPublicKeyInfoOwned::from_der(der_bytes).map_err(|e| Error::encoding("public key", e))
}

/// RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING
/// contents. Also the OCSP CertID issuerKeyHash.
pub(crate) fn key_id(spki_der: &[u8]) -> Result<Vec<u8>, Error> {
    let info = spki(spki_der)?;
    Ok(Sha1::digest(info.subject_public_key.raw_bytes()).to_vec())
}

pub(crate) fn ext<T: Encode>(
    oid: der::asn1::ObjectIdentifier,
    critical: bool,
    what: &str,
    v: &T,
) -> Result<Extension, Error> {
    Ok(Extension {
        extn_id: oid,
        critical,
        extn_value: OctetString::new(enc(what, v)?).map_err(|e| Error::encoding(what, e))?,
    })
}

pub(crate) fn basic_constraints(ca: bool, path_len: Option<u8>) -> Result<Extension, Error> {
    ext(
        oids::BASIC_CONSTRAINTS,
        true,
        "basicConstraints",
        &BasicConstraints {
            ca,
            path_len_constraint: path_len,
        },
    )
}

pub(crate) fn key_usage(flags: &[KeyUsages], critical: bool) -> Result<Extension, Error> {
    let mut set = flagset::FlagSet::<KeyUsages>::default();
    for f in flags {
        set |= *f;
    }
    ext(oids::KEY_USAGE, critical, "keyUsage", &KeyUsage(set))
}

pub(crate) fn extended_key_usage(
    purposes: Vec<der::asn1::ObjectIdentifier>,
) -> Result<Extension, Error> {
    ext(
        oids::EXT_KEY_USAGE,
        false,
        "extKeyUsage",
        &ExtendedKeyUsage(purposes),
    )
}

pub(crate) fn subject_key_id(id: &[u8]) -> Result<Extension, Error> {
    let v = SubjectKeyIdentifier(OctetString::new(id).map_err(|e| Error::encoding("SKI", e))?);
    ext(oids::SUBJECT_KEY_ID, false, "subjectKeyIdentifier", &v)
}

pub(crate) fn authority_key_id(id: &[u8]) -> Result<Extension, Error> {
    let v = AuthorityKeyIdentifier {
        key_identifier: Some(OctetString::new(id).map_err(|e| Error::encoding("AKI", e))?),
        authority_cert_issuer: None,
        authority_cert_serial_number: None,
    };
    ext(oids::AUTHORITY_KEY_ID, false, "authorityKeyIdentifier", &v)
}

fn uri(s: &str) -> Result<GeneralName, Error> {
    Ok(GeneralName::UniformResourceIdentifier(
        Ia5String::new(s).map_err(|e| Error::encoding("URI", e))?,
    ))
}

pub(crate) fn crl_distribution_point(url: &str) -> Result<Extension, Error> {
    let v = CrlDistributionPoints(vec![DistributionPoint {
        distribution_point: Some(DistributionPointName::FullName(vec![uri(url)?])),
        reasons: None,
        crl_issuer: None,
    }]);
    ext(
        oids::CRL_DISTRIBUTION_POINTS,
        false,
        "cRLDistributionPoints",
        &v,
    )
}

pub(crate) fn authority_info_access(ocsp: &str, ca_issuers: &str) -> Result<Extension, Error> {
    let v = AuthorityInfoAccessSyntax(vec![
        AccessDescription {
            access_method: oids::AD_OCSP,
            access_location: uri(ocsp)?,
        },
        AccessDescription {
            access_method: oids::AD_CA_ISSUERS,
            access_location: uri(ca_issuers)?,
        },
    ]);
    ext(
        oids::AUTHORITY_INFO_ACCESS,
        false,
        "authorityInfoAccess",
        &v,
    )
}

pub(crate) fn subject_alt_name_email(email: &str) -> Result<Extension, Error> {
    let v = SubjectAltName(vec![GeneralName::Rfc822Name(
        Ia5String::new(email).map_err(|e| Error::encoding("rfc822Name", e))?,
    )]);
    ext(oids::SUBJECT_ALT_NAME, false, "subjectAltName", &v)
}

pub(crate) fn serial_number(bytes: &[u8]) -> Result<SerialNumber, Error> {
    SerialNumber::new(bytes).map_err(|e| Error::encoding("serialNumber", e))
}

/// The subject Name DER of a certificate (for issuer fields of children).
pub(crate) fn subject_der(cert_der: &[u8]) -> Result<Vec<u8>, Error> {
    let cert = x509_cert::Certificate::from_der(cert_der)
        .map_err(|e| Error::encoding("certificate", e))?;
    enc("subject", cert.tbs_certificate().subject())
}

//! CRL encoding. The revokedCertificates list is written straight into one
//! buffer entry by entry, so a CRL of a million entries costs its own size in
//! memory rather than a tree of objects per entry.

use der::Encode;
use spki::AlgorithmIdentifierOwned;

use crate::x509::{self, oids};
use crate::Error;

/// One revoked certificate, as the CRL lists it.
#[derive(Debug, Clone)]
pub struct RevokedEntry {
    /// Serial number magnitude, big-endian.
    pub serial: Vec<u8>,
    /// When it was revoked, Unix seconds (the entry's revocationDate).
    pub revoked_at: i64,
    /// RFC 5280 CRLReason; 0 (unspecified) is left out of the entry, as 5.3.1 asks.
    pub reason: u8,
}

/// What goes around the list.
#[derive(Debug, Clone)]
pub struct CrlInput<'a> {
    /// The issuer's subject Name DER, from its certificate.
    pub issuer_der: &'a [u8],
    /// The issuer's subjectKeyIdentifier, for the CRL's authorityKeyIdentifier.
    pub authority_key_id: &'a [u8],
    /// The cRLNumber, one more than the previous CRL's.
    pub number: u64,
    /// thisUpdate, Unix seconds.
    pub this_update: i64,
    /// nextUpdate, Unix seconds.
    pub next_update: i64,
    /// The algorithm the issuer's key signs with, as the CRL names it.
    pub signature_algorithm: AlgorithmIdentifierOwned,
}

/// A signed CRL.
#[derive(Debug, Clone)]
pub struct CrlOutput {
    /// The signed CRL, DER.
    pub der: Vec<u8>,
    /// Its cRLNumber.
    pub number: u64,
    /// How many revoked certificates it lists.
    pub entries: usize,
    /// thisUpdate, Unix seconds.
    pub this_update: i64,
    /// nextUpdate, Unix seconds.
    pub next_update: i64,
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(bytes.len() - 1);
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    push_len(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

fn integer(magnitude: &[u8]) -> Vec<u8> {
    let start = magnitude
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(magnitude.len().saturating_sub(1));
    let m = if magnitude.is_empty() {
        &[0u8][..]
    } else {
        &magnitude[start..]
    };
    let mut content = Vec::with_capacity(m.len() + 1);
    if m[0] & 0x80 != 0 {
        content.push(0);
    }
    content.extend_from_slice(m);
    tlv(0x02, &content)
}

/// Writes a time as RFC 5280 wants it, without allocating a `der` object.
fn push_time(out: &mut Vec<u8>, unix: i64) {
    let secs = unix.max(0);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, mi, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    if y < 2050 {
        out.extend_from_slice(&[0x17, 13]);
        out.extend_from_slice(format!("{:02}{m:02}{d:02}{h:02}{mi:02}{s:02}Z", y % 100).as_bytes());
    } else {
        out.extend_from_slice(&[0x18, 15]);
        out.extend_from_slice(format!("{y:04}{m:02}{d:02}{h:02}{mi:02}{s:02}Z").as_bytes());
    }
}

fn reason_extensions(reason: u8) -> Vec<u8> {
    // Extensions ::= SEQUENCE { Extension { extnID cRLReason, extnValue OCTET STRING { ENUMERATED } } }
    let oid = oids::CRL_REASON.to_der().unwrap_or_default();
    let value = tlv(0x04, &[0x0a, 0x01, reason]);
    let mut ext = oid;
    ext.extend_from_slice(&value);
    tlv(0x30, &tlv(0x30, &ext))
}

/// Encodes the TBSCertList.
pub fn encode_tbs(
    input: &CrlInput<'_>,
    entries: impl IntoIterator<Item = RevokedEntry>,
) -> Result<(Vec<u8>, usize), Error> {
    let mut list = Vec::new();
    let mut count = 0usize;
    let mut entry = Vec::with_capacity(64);
    for e in entries {
        entry.clear();
        entry.extend_from_slice(&integer(&e.serial));
        push_time(&mut entry, e.revoked_at);
        if e.reason != 0 {
            entry.extend_from_slice(&reason_extensions(e.reason));
        }
        list.push(0x30);
        push_len(&mut list, entry.len());
        list.extend_from_slice(&entry);
        count += 1;
    }

    let mut body = Vec::with_capacity(list.len() + 512);
    body.extend_from_slice(&integer(&[1])); // v2
    body.extend_from_slice(&x509::enc(
        "CRL signature algorithm",
        &input.signature_algorithm,
    )?);
    body.extend_from_slice(input.issuer_der);
    push_time(&mut body, input.this_update);
    push_time(&mut body, input.next_update);
    if count > 0 {
        // RFC 5280 5.1.2.6: absent, not empty, when nothing is revoked.
        body.push(0x30);
        push_len(&mut body, list.len());
        body.extend_from_slice(&list);
    }
    drop(list);
    let aki = x509::enc("AKI", &x509::authority_key_id(input.authority_key_id)?)?;
    let number = x509::enc(
        "cRLNumber",
        &x509_cert::ext::Extension {
            extn_id: oids::CRL_NUMBER,
            critical: false,
            extn_value: der::asn1::OctetString::new(integer(&input.number.to_be_bytes()))
                .map_err(|e| Error::encoding("cRLNumber", e))?,
        },
    )?;
    let mut exts = aki;
    exts.extend_from_slice(&number);
    body.extend_from_slice(&tlv(0xa0, &tlv(0x30, &exts)));

    let mut tbs = Vec::with_capacity(body.len() + 6);
    tbs.push(0x30);
    push_len(&mut tbs, body.len());
    tbs.extend_from_slice(&body);
    Ok((tbs, count))
}

/// Wraps a signed TBSCertList into a CertificateList.
pub(crate) fn assemble(
    tbs: &[u8],
    alg: &AlgorithmIdentifierOwned,
    signature: &[u8],
) -> Result<Vec<u8>, Error> {
    let alg = x509::enc("CRL signature algorithm", alg)?;
    let mut sig = Vec::with_capacity(signature.len() + 1);
    sig.push(0); // no unused bits
    sig.extend_from_slice(signature);
    let sig = tlv(0x03, &sig);
    let mut out = Vec::with_capacity(tbs.len() + alg.len() + sig.len() + 6);
    out.push(0x30);
    push_len(&mut out, tbs.len() + alg.len() + sig.len());
    out.extend_from_slice(tbs);
    out.extend_from_slice(&alg);
    out.extend_from_slice(&sig);
    Ok(out)
}

/// Builds and signs a CRL with `sign` (the issuing CA's signer).
pub fn build(
    input: &CrlInput<'_>,
    entries: impl IntoIterator<Item = RevokedEntry>,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, Error>,
) -> Result<CrlOutput, Error> {
    let (tbs, count) = encode_tbs(input, entries)?;
    let signature = sign(&tbs)?;
    let der = assemble(&tbs, &input.signature_algorithm, &signature)?;
    Ok(CrlOutput {
        der,
        number: input.number,
        entries: count,
        this_update: input.this_update,
        next_update: input.next_update,
    })
}

/// Parses a signed CRL back and checks it says what was asked and carries a
/// valid signature by `issuer_spki`, before it is stored or published: the
/// list is encoded by hand, so this is the last guard against signing and
/// handing out a structure no client can read.
pub(crate) fn check(
    der: &[u8],
    input: &CrlInput<'_>,
    entries: usize,
    algorithm: kxca_hsm::KeyAlgorithm,
    issuer_spki: &[u8],
) -> Result<(), Error> {
    use der::Decode;
    let bad = |m: String| Error::encoding("signed CRL", m);
    let crl = <x509_cert::crl::CertificateList>::from_der(der)
        .map_err(|e| bad(format!("does not parse back: {e}")))?;
    let tbs = &crl.tbs_cert_list;
    if tbs.version != x509_cert::Version::V2 {
        return Err(bad("version is not v2".to_string()));
    }
    if tbs.signature != input.signature_algorithm
        || crl.signature_algorithm != input.signature_algorithm
    {
        return Err(bad(
            "signature algorithm differs from the issuer's".to_string()
        ));
    }
    let issuer = tbs
        .issuer
        .to_der()
        .map_err(|e| bad(format!("issuer: {e}")))?;
    if issuer != input.issuer_der {
        return Err(bad(
            "issuer name differs from the issuing CA's subject".to_string()
        ));
    }
    let unix = |t: x509_cert::time::Time| t.to_unix_duration().as_secs() as i64;
    if unix(tbs.this_update) != input.this_update {
        return Err(bad(format!(
            "thisUpdate {} is not the intended {}",
            unix(tbs.this_update),
            input.this_update
        )));
    }
    if tbs.next_update.map(unix) != Some(input.next_update) {
        return Err(bad(format!(
            "nextUpdate {:?} is not the intended {}",
            tbs.next_update.map(unix),
            input.next_update
        )));
    }
    let listed = tbs.revoked_certificates.as_ref().map_or(0, Vec::len);
    if listed != entries {
        return Err(bad(format!("lists {listed} entries, not {entries}")));
    }
    let extensions = tbs.crl_extensions.as_deref().unwrap_or_default();
    let number = extensions
        .iter()
        .find(|e| e.extn_id == oids::CRL_NUMBER)
        .ok_or_else(|| bad("no cRLNumber".to_string()))?;
    if number.extn_value.as_bytes() != integer(&input.number.to_be_bytes()).as_slice() {
        return Err(bad(format!("cRLNumber is not {}", input.number)));
    }
    let signed = tbs.to_der().map_err(|e| bad(format!("TBSCertList: {e}")))?;
    let signature = crl
        .signature
        .as_bytes()
        .ok_or_else(|| bad("signature has unused bits".to_string()))?;
    kxca_hsm::verify(algorithm, issuer_spki, &signed, signature).map_err(|e| {
        bad(format!(
            "signature does not verify with the issuing CA's key: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::Decode;

    #[test]
    fn times_match_der_crate() {
        for t in [
            0i64,
            951_782_400,
            1_764_115_200,
            2_524_607_999,
            2_524_608_000,
            4_102_444_800,
        ] {
            let mut mine = Vec::new();
            push_time(&mut mine, t);
            let theirs = x509::time(t).unwrap().to_der().unwrap();
            assert_eq!(mine, theirs, "time {t}");
        }
    }

    #[test]
    fn check_refuses_a_malformed_time() {
        // crl.validity_hours = 4294967295 once produced a 17-character
        // GeneralizedTime under a length of 15; the config bounds now stop
        // it, and the check after signing is the second line.
        let issuer =
            x509::enc("n", &x509::name(&[x509::DnAttr::CommonName("t")]).unwrap()).unwrap();
        let input = CrlInput {
            issuer_der: &issuer,
            authority_key_id: &[1; 20],
            number: 1,
            this_update: 1_764_115_200,
            next_update: 1_764_115_200 + 4_294_967_295 * 3600,
            signature_algorithm: kxca_hsm::KeyAlgorithm::EcdsaP256.signature_algorithm(),
        };
        let out = build(&input, Vec::new(), |_| {
            Ok(vec![0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01])
        })
        .unwrap();
        let err = check(&out.der, &input, 0, kxca_hsm::KeyAlgorithm::EcdsaP256, &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not parse back"), "{err}");
    }

    #[test]
    fn crl_parses_with_x509_cert() {
        let input = CrlInput {
            issuer_der: &x509::enc("n", &x509::name(&[x509::DnAttr::CommonName("t")]).unwrap())
                .unwrap(),
            authority_key_id: &[1; 20],
            number: 7,
            this_update: 1_764_115_200,
            next_update: 1_764_720_000,
            signature_algorithm: kxca_hsm::KeyAlgorithm::EcdsaP256.signature_algorithm(),
        };
        let entries = vec![
            RevokedEntry {
                serial: vec![0x80, 1],
                revoked_at: 1_764_000_000,
                reason: 1,
            },
            RevokedEntry {
                serial: vec![0x01],
                revoked_at: 1_764_000_000,
                reason: 0,
            },
        ];
        let out = build(&input, entries, |_| {
            Ok(vec![0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01])
        })
        .unwrap();
        let crl: x509_cert::crl::CertificateList =
            x509_cert::crl::CertificateList::from_der(&out.der).unwrap();
        let revoked = crl.tbs_cert_list.revoked_certificates.unwrap();
        assert_eq!(revoked.len(), 2);
        assert_eq!(revoked[0].serial_number.as_bytes(), &[0, 0x80, 1]);
        assert!(revoked[1].crl_entry_extensions.is_none());
    }
}

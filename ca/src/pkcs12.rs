use std::fmt;
use std::str::FromStr;

use p12_keystore::{
    Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey,
    PrivateKeyChain,
};
use sha1::{Digest, Sha1};
use zeroize::Zeroizing;

use crate::{Error, Password};

/// Which Windows generations a PKCS#12 file must open on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pkcs12Profile {
    /// PBES2 / PBKDF2-HMAC-SHA256 / AES-256-CBC, SHA-256 MAC: Windows 10
    /// 1709+, Server 2019+, and every current browser and JDK.
    Modern,
    /// PBE-SHA1-3DES for both bags, SHA-1 MAC: Windows Server 2016,
    /// Windows 10 1607 and older, which cannot read PBES2.
    Legacy,
}

impl fmt::Display for Pkcs12Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pkcs12Profile::Modern => "modern",
            Pkcs12Profile::Legacy => "legacy",
        })
    }
}

impl FromStr for Pkcs12Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "modern" => Ok(Pkcs12Profile::Modern),
            "legacy" => Ok(Pkcs12Profile::Legacy),
            other => Err(format!(
                "unknown PKCS#12 profile {other:?} (modern or legacy)"
            )),
        }
    }
}

/// Packages a key and its chain (leaf first, root last) as a DER PKCS#12.
///
/// The key bag's friendlyName is `friendly_name` (the certificate id, which
/// Windows shows in the certificate store); each certificate bag carries its
/// subject as friendlyName, and the key and leaf share a localKeyID (the
/// SHA-1 of the leaf certificate, as OpenSSL and Windows do).
pub fn package(
    pkcs8_der: &[u8],
    chain: &[&[u8]],
    friendly_name: &str,
    password: &Password,
    profile: Pkcs12Profile,
    iterations: u32,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let p12 = |e: p12_keystore::error::Error| Error::Pkcs12(e.to_string());
    let leaf = chain
        .first()
        .ok_or_else(|| Error::Pkcs12("empty chain".to_string()))?;
    let local_key_id = Sha1::digest(leaf).to_vec();
    let certs = chain
        .iter()
        .map(|c| Certificate::from_der(c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(p12)?;
    let key = PrivateKey::from_der(pkcs8_der).map_err(p12)?;
    let mut store = KeyStore::new();
    store.add_entry(
        friendly_name,
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(local_key_id, key, certs)),
    );
    let (enc, mac) = match profile {
        Pkcs12Profile::Modern => (
            EncryptionAlgorithm::PbeWithHmacSha256AndAes256,
            MacAlgorithm::HmacSha256,
        ),
        Pkcs12Profile::Legacy => (
            EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc,
            MacAlgorithm::HmacSha1,
        ),
    };
    let bytes = store
        .writer(password.expose())
        .encryption_algorithm(enc)
        .encryption_iterations(iterations)
        .mac_algorithm(mac)
        .mac_iterations(iterations)
        .write()
        .map_err(p12)?;
    // The store held a copy of the private key; it goes out of scope here.
    drop(store);
    Ok(Zeroizing::new(bytes))
}

#[cfg(test)]
pub(crate) mod tests {
    use der::{Decode, Encode};

    /// Strict DER round trip of every nested TLV: a BER file (indefinite
    /// lengths, non-minimal lengths) fails to decode or re-encodes differently.
    pub(crate) fn is_der(bytes: &[u8]) -> bool {
        match der::asn1::Any::from_der(bytes) {
            Ok(any) => any.to_der().map(|d| d == bytes).unwrap_or(false),
            Err(_) => false,
        }
    }

    #[test]
    fn ber_is_rejected() {
        // SEQUENCE with indefinite length.
        assert!(!is_der(&[0x30, 0x80, 0x02, 0x01, 0x01, 0x00, 0x00]));
        // Non-minimal length.
        assert!(!is_der(&[0x30, 0x81, 0x03, 0x02, 0x01, 0x01]));
        assert!(is_der(&[0x30, 0x03, 0x02, 0x01, 0x01]));
    }
}

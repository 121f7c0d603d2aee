use std::fmt;
use std::str::FromStr;

use getrandom::SysRng;
use rand_core::{TryRng, UnwrapErr};

use crate::Error;

/// A certificate serial number: 16 bytes (127 bits) from the system CSPRNG,
/// positive, with no leading zero byte. Written as lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(Vec<u8>);

impl Serial {
    /// A fresh random serial. Uniqueness is enforced by the store's UNIQUE
    /// constraint, and the caller retries on a collision.
    pub fn random() -> Serial {
        let mut bytes = [0u8; 16];
        let mut rng = UnwrapErr(SysRng);
        // UnwrapErr panics only if the OS RNG fails, which leaves no safe way to issue.
        rng.try_fill_bytes(&mut bytes).unwrap_or(());
        // Clear the sign bit so the INTEGER is positive, and keep the first
        // byte non-zero so the DER encoding is exactly 16 bytes long.
        bytes[0] &= 0x7f;
        if bytes[0] == 0 {
            bytes[0] = 0x01;
        }
        Serial(bytes.to_vec())
    }

    /// Big-endian magnitude, without leading zeros.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Serial {
        let start = bytes
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(bytes.len().saturating_sub(1));
        Serial(bytes[start..].to_vec())
    }

    pub(crate) fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl FromStr for Serial {
    type Err = Error;
    /// Accepts hex with or without `0x`, colons or spaces, any case
    /// (as `openssl x509 -serial` and browsers print it).
    fn from_str(s: &str) -> Result<Serial, Error> {
        let cleaned: String = s
            .trim()
            .trim_start_matches("0x")
            .trim_start_matches("0X")
            .chars()
            .filter(|c| *c != ':' && *c != ' ')
            .collect();
        let invalid = |m: &str| Error::InvalidSerial {
            serial: s.to_string(),
            message: m.to_string(),
        };
        if cleaned.is_empty() {
            return Err(invalid("empty"));
        }
        if cleaned.len() > 42 {
            return Err(invalid("longer than 20 bytes"));
        }
        let padded = if cleaned.len() % 2 == 1 {
            format!("0{cleaned}")
        } else {
            cleaned
        };
        let bytes = hex::decode(&padded).map_err(|_| invalid("not hexadecimal"))?;
        Ok(Serial::from_bytes(&bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_serials_are_positive_and_16_bytes() {
        for _ in 0..1000 {
            let s = Serial::random();
            assert_eq!(s.as_bytes().len(), 16);
            assert!(s.as_bytes()[0] & 0x80 == 0 && s.as_bytes()[0] != 0);
        }
        assert_ne!(Serial::random(), Serial::random());
    }

    #[test]
    fn parses_openssl_forms() {
        let s: Serial = "0A:1b:2C".parse().unwrap();
        assert_eq!(s.to_hex(), "0a1b2c");
        let s: Serial = "0x00ff".parse().unwrap();
        assert_eq!(s.to_hex(), "ff");
        assert!("zz".parse::<Serial>().is_err());
        assert!("".parse::<Serial>().is_err());
    }
}

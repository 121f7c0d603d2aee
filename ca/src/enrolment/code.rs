//! The one-time pickup password: minted from the system CSPRNG, shown once
//! (mail 2), stored only as an Argon2id PHC string.

use argon2::{Algorithm, Argon2, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use getrandom::SysRng;
use rand_core::TryRng;
use unicode_normalization::UnicodeNormalization;
use zeroize::{Zeroize, Zeroizing};

use super::PickupPolicy;
use crate::Error;

/// Upper-case letters and digits that survive being read off a phone,
/// printed or typed from a mail: no 0/O, 1/I/L, 2/Z, 5/S, 8/B, 6/G.
/// Only upper case, so case does not matter when it is typed.
pub(crate) const ALPHABET: &[u8] = b"ACDEFHJKMNPQRTUVWXY3479";

/// Characters in a code (without the group separators): 20 from 23 is
/// 20 * log2(23) = 90.5 bits.
pub(crate) const LENGTH: usize = 20;

/// Characters per group: `XXXX-XXXX-XXXX-XXXX-XXXX`.
const GROUP: usize = 4;

fn random(what: &str, buf: &mut [u8]) -> Result<(), Error> {
    SysRng.try_fill_bytes(buf).map_err(|e| Error::Random {
        what: what.to_string(),
        message: e.to_string(),
    })
}

/// A new code, grouped for typing (`XXXX-XXXX-XXXX-XXXX-XXXX`).
pub(crate) fn generate() -> Result<Zeroizing<String>, Error> {
    // 253 is the largest multiple of 23 not above 256: rejection sampling
    // keeps every character equally likely.
    let limit = 256 - 256 % ALPHABET.len();
    let mut raw = Zeroizing::new(Vec::with_capacity(LENGTH));
    let mut buf = Zeroizing::new([0u8; 32]);
    while raw.len() < LENGTH {
        random("pickup code", &mut buf[..])?;
        for &b in buf.iter() {
            if (b as usize) < limit && raw.len() < LENGTH {
                raw.push(ALPHABET[b as usize % ALPHABET.len()]);
            }
        }
    }
    let mut out = Zeroizing::new(String::with_capacity(LENGTH + LENGTH / GROUP));
    for (i, c) in raw.iter().enumerate() {
        if i > 0 && i % GROUP == 0 {
            out.push('-');
        }
        out.push(*c as char);
    }
    Ok(out)
}

/// The code as typed, reduced to what was hashed: full-width characters
/// folded (NFKC), spaces and hyphens (any dash a Japanese IME produces)
/// dropped, upper-cased.
pub(crate) fn canonical(typed: &str) -> Zeroizing<String> {
    let mut folded: String = typed.nfkc().collect();
    let out: String = folded
        .chars()
        .filter(|c| {
            !(c.is_whitespace()
                || matches!(
                    c,
                    '-' | '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{30FC}' | '\u{FF70}'
                ))
        })
        .map(|c| c.to_ascii_uppercase())
        .collect();
    folded.zeroize();
    Zeroizing::new(out)
}

/// The Argon2id PHC string of a code (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`),
/// with a fresh 16-byte salt and the policy's cost.
pub(crate) fn hash(code: &str, policy: &PickupPolicy) -> Result<String, Error> {
    let mut salt = [0u8; 16];
    random("pickup code salt", &mut salt)?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, policy.argon2_params()?);
    let phc = argon
        .hash_password_with_salt(canonical(code).as_bytes(), &salt)
        .map_err(|e| Error::Encoding {
            what: "pickup code hash".to_string(),
            message: e.to_string(),
        })?;
    Ok(phc.to_string())
}

/// Whether `typed` is the code hashed in `phc`. The cost is the one written
/// in the hash; the final comparison is constant-time (argon2's `Output`).
/// A stored value that is not an Argon2id PHC string never matches.
pub fn verify(typed: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    if parsed.algorithm.as_str() != "argon2id" {
        return false;
    }
    let code = canonical(typed);
    if code.is_empty() || code.len() > 4 * LENGTH {
        return false;
    }
    Argon2::default()
        .verify_password(code.as_bytes(), &parsed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PickupPolicy {
        PickupPolicy::parse(
            super::super::policy::SHIPPED_PICKUP,
            std::path::Path::new("pickup.toml"),
        )
        .unwrap()
    }

    #[test]
    fn codes_are_grouped_from_the_alphabet() {
        for _ in 0..200 {
            let c = generate().unwrap();
            assert_eq!(c.len(), LENGTH + LENGTH / GROUP - 1);
            for (i, g) in c.split('-').enumerate() {
                assert_eq!(g.len(), GROUP, "group {i} of {}", c.as_str());
                assert!(g.bytes().all(|b| ALPHABET.contains(&b)));
            }
        }
        assert_eq!(ALPHABET.len(), 23);
        // No look-alikes.
        for b in b"0O1IL2Z5S8B6G" {
            assert!(!ALPHABET.contains(b), "{}", *b as char);
        }
        // 80 bits at least (issue 12).
        assert!((LENGTH as f64) * (ALPHABET.len() as f64).log2() >= 80.0);
    }

    #[test]
    fn hash_verifies_as_typed_and_not_otherwise() {
        let p = policy();
        let code = generate().unwrap();
        let phc = hash(&code, &p).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(!phc.contains(code.as_str()));
        assert!(verify(&code, &phc));
        // Lower case, no hyphens, full-width, spaces: the same code.
        let plain: String = code.chars().filter(|c| *c != '-').collect();
        assert!(verify(&plain.to_lowercase(), &phc));
        let wide: String = code
            .chars()
            .map(|c| char::from_u32(c as u32 - 0x21 + 0xFF01).unwrap())
            .collect();
        assert!(verify(&wide, &phc));
        assert!(verify(&format!(" {} ", code.replace('-', " ")), &phc));
        // One character off is wrong.
        let mut wrong = plain.into_bytes();
        wrong[0] = if wrong[0] == b'A' { b'C' } else { b'A' };
        assert!(!verify(std::str::from_utf8(&wrong).unwrap(), &phc));
        assert!(!verify("", &phc));
        assert!(!verify(&code, "not a phc string"));
        // Another algorithm's PHC is never taken.
        assert!(!verify(&code, &phc.replace("argon2id", "argon2i")));
    }
}

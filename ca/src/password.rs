use getrandom::SysRng;
use rand_core::{TryRng, UnwrapErr};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::Error;

/// Letters and digits that cannot be mistaken for one another when read
/// from a letter or typed from a phone screen: no 0/O/o, 1/l/I, 2/Z/z, 5/S/s, 8/B.
const ALPHABET: &[u8] = b"ACDEFGHJKLMNPQRTUVWXYabcdefghijkmnpqrtuvwxy34679";

/// A PKCS#12 / initial login password. Not `Debug`, not `Display`; wiped on drop.
pub struct Password(SecretString);

impl Password {
    /// Accepts a password given by an operator; the KX client takes 8–16
    /// ASCII letters and digits.
    pub fn from_operator(value: String) -> Result<Password, Error> {
        let s = SecretString::from(value);
        let v = s.expose_secret();
        let n = v.chars().count();
        if !(8..=16).contains(&n) || !v.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Error::Password(
                "must be 8 to 16 ASCII letters and digits (the KX client accepts nothing else)"
                    .to_string(),
            ));
        }
        Ok(Password(s))
    }

    /// The password's text, to put in a PKCS#12 or show once; never log it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Constant-time comparison.
    pub fn matches(&self, other: &str) -> bool {
        self.expose().as_bytes().ct_eq(other.as_bytes()).into()
    }
}

/// 16 characters from an unambiguous alphabet, at least one letter and one
/// digit, from the system CSPRNG (rejection sampling: no modulo bias).
pub fn generate_password() -> Password {
    let mut rng = UnwrapErr(SysRng);
    loop {
        let mut out = String::with_capacity(16);
        while out.len() < 16 {
            let mut b = [0u8; 1];
            rng.try_fill_bytes(&mut b).unwrap_or(());
            // 240 is the largest multiple of 48 below 256.
            if (b[0] as usize) < 240 {
                out.push(ALPHABET[b[0] as usize % ALPHABET.len()] as char);
            }
        }
        let has_digit = out.bytes().any(|b| b.is_ascii_digit());
        let has_letter = out.bytes().any(|b| b.is_ascii_alphabetic());
        if has_digit && has_letter {
            return Password(SecretString::from(out));
        }
        zeroize::Zeroize::zeroize(&mut out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_fit_the_kx_client() {
        assert_eq!(ALPHABET.len(), 48);
        for _ in 0..500 {
            let p = generate_password();
            let v = p.expose();
            assert_eq!(v.len(), 16);
            assert!(v.bytes().all(|b| ALPHABET.contains(&b)));
            assert!(
                v.bytes().any(|b| b.is_ascii_digit()) && v.bytes().any(|b| b.is_ascii_alphabetic())
            );
        }
    }

    #[test]
    fn operator_passwords_are_checked() {
        assert!(Password::from_operator("abcd1234".into()).is_ok());
        assert!(Password::from_operator("short1".into()).is_err());
        assert!(Password::from_operator("has space 1234".into()).is_err());
        assert!(Password::from_operator("x".repeat(17)).is_err());
        assert!(Password::from_operator("abcd1234".into())
            .unwrap()
            .matches("abcd1234"));
    }
}

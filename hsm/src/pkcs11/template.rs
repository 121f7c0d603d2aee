//! Attribute templates for CA key pairs generated on a token.
//!
//! A CA private key must never leave the token and must do nothing but
//! sign. SoftHSM2 (and several HSMs) grant decrypt, unwrap and derive
//! unless the template refuses them, so every capability is spelled out.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;

use crate::KeyAlgorithm;

use super::keys::P256_PARAMS;

pub(crate) struct Templates {
    pub mechanism: Mechanism<'static>,
    pub public: Vec<Attribute>,
    pub private: Vec<Attribute>,
}

pub(crate) fn ca_key_pair(algorithm: KeyAlgorithm, label: &str, id: &[u8]) -> Templates {
    let named = |mut t: Vec<Attribute>| {
        t.push(Attribute::Label(label.as_bytes().to_vec()));
        t.push(Attribute::Id(id.to_vec()));
        t
    };
    let mut public = named(vec![
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
        Attribute::Derive(false),
    ]);
    let private = named(vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::SignRecover(false),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
    ]);
    let mechanism = match algorithm {
        KeyAlgorithm::EcdsaP256 => {
            public.push(Attribute::EcParams(P256_PARAMS.to_vec()));
            Mechanism::EccKeyPairGen
        }
        KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 => {
            let bits: u64 = if algorithm == KeyAlgorithm::Rsa2048 {
                2048
            } else {
                3072
            };
            public.push(Attribute::ModulusBits(bits.into()));
            public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
            Mechanism::RsaPkcsKeyPairGen
        }
    };
    Templates {
        mechanism,
        public,
        private,
    }
}

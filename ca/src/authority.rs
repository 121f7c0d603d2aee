use serde::Serialize;

/// Whether an authority is the trust anchor or the one that signs offices' certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthorityRole {
    /// The self-signed root (pathLen 1).
    Root,
    /// The issuing CA that signs office certificates (pathLen 0).
    Issuing,
}

impl AuthorityRole {
    /// The stored name (`root` / `issuing`).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorityRole::Root => "root",
            AuthorityRole::Issuing => "issuing",
        }
    }
    pub(crate) fn parse(s: &str) -> AuthorityRole {
        if s == "root" {
            AuthorityRole::Root
        } else {
            AuthorityRole::Issuing
        }
    }
}

/// A CA certificate the store knows, current or previous.
#[derive(Debug, Clone, Serialize)]
pub struct Authority {
    /// Row id in `authorities`.
    pub id: i64,
    /// e.g. "root", "issuing-1"; also the file name under /ca/ and /crl/.
    pub name: String,
    /// Root or issuing.
    pub role: AuthorityRole,
    /// The authority that certified this one (`None` for the root).
    pub parent_id: Option<i64>,
    /// Where its key lives (soft:, pkcs11:, yubikey:).
    pub key_ref: String,
    /// Its certificate, DER.
    #[serde(skip)]
    pub certificate: Vec<u8>,
    /// Its subject Name, DER, as issued certificates name their issuer.
    #[serde(skip)]
    pub subject_der: Vec<u8>,
    /// Its SubjectPublicKeyInfo, DER.
    #[serde(skip)]
    pub spki: Vec<u8>,
    /// SHA-1 of the subjectPublicKey: SKI, AKI of children, OCSP key hash.
    #[serde(serialize_with = "hex_ser")]
    pub key_id: Vec<u8>,
    /// Validity start, Unix seconds.
    pub not_before: i64,
    /// Validity end, Unix seconds.
    pub not_after: i64,
    /// Whether it signs now (one active authority per role).
    pub active: bool,
}

fn hex_ser<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

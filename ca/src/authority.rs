use serde::Serialize;

/// Whether an authority is the trust anchor or the one that signs offices' certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthorityRole {
    Root,
    Issuing,
}

impl AuthorityRole {
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
    pub id: i64,
    /// e.g. "root", "issuing-1"; also the file name under /ca/ and /crl/.
    pub name: String,
    pub role: AuthorityRole,
    pub parent_id: Option<i64>,
    pub key_ref: String,
    #[serde(skip)]
    pub certificate: Vec<u8>,
    #[serde(skip)]
    pub subject_der: Vec<u8>,
    #[serde(skip)]
    pub spki: Vec<u8>,
    /// SHA-1 of the subjectPublicKey: SKI, AKI of children, OCSP key hash.
    #[serde(serialize_with = "hex_ser")]
    pub key_id: Vec<u8>,
    pub not_before: i64,
    pub not_after: i64,
    pub active: bool,
}

fn hex_ser<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

//! What goes out with the bytes: RFC 5019 caching headers (ETag,
//! Last-Modified, Expires) built once per signed answer or published file,
//! and the RFC 9110 HTTP date.

use bytes::Bytes;
use kxca_ca::ocsp::Status;
use sha2::{Digest, Sha256};

/// A pre-signed response with its RFC 5019 caching metadata.
#[derive(Debug, Clone)]
pub struct Cached {
    /// The signed OCSPResponse.
    pub der: Bytes,
    /// thisUpdate, Unix seconds.
    pub this_update: i64,
    /// nextUpdate, Unix seconds: not served after it.
    pub next_update: i64,
    /// Quoted strong ETag: a hash of the bytes.
    pub etag: String,
    /// thisUpdate as an HTTP date.
    pub last_modified: String,
    /// nextUpdate as an HTTP date.
    pub expires: String,
    /// The certificate status it states.
    pub status: Status,
    /// ETag, Last-Modified and Expires, ready to send: built once at signing,
    /// not per request.
    pub headers: [http::HeaderValue; 3],
}

impl Cached {
    pub(crate) fn new(der: Vec<u8>, this_update: i64, next_update: i64, status: Status) -> Cached {
        let digest = Sha256::digest(&der);
        let etag = format!("\"{}\"", hex::encode(&digest[..16]));
        let last_modified = http_date(this_update);
        let expires = http_date(next_update);
        // Hex, digits and ASCII dates are always valid header values.
        let h =
            |v: &str| http::HeaderValue::from_str(v).unwrap_or(http::HeaderValue::from_static(""));
        Cached {
            headers: [h(&etag), h(&last_modified), h(&expires)],
            etag,
            last_modified,
            expires,
            der: Bytes::from(der),
            this_update,
            next_update,
            status,
        }
    }
}

/// A file the service publishes (CRL or CA certificate).
#[derive(Debug, Clone)]
pub struct Published {
    /// The DER file.
    pub der: Bytes,
    /// Its media type (`application/pkix-crl`, `application/pkix-cert`).
    pub content_type: &'static str,
    /// As an HTTP date: the CRL's thisUpdate, the certificate's notBefore.
    pub last_modified: String,
    /// Quoted strong ETag: a hash of the bytes.
    pub etag: String,
    /// For CRLs: thisUpdate and nextUpdate.
    pub this_update: i64,
    /// For CRLs, nextUpdate; `None` for a certificate.
    pub next_update: Option<i64>,
}

/// RFC 9110 IMF-fixdate.
pub fn http_date(unix: i64) -> String {
    // The times come from parsed X.509 (CRL thisUpdate, notBefore), which are
    // always within years 1950..9999, so the fallback is never taken in practice.
    let t =
        time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    // Infallible: a full OffsetDateTime has every component this description
    // names, and writing into a String cannot fail with an I/O error.
    t.format(&fmt).unwrap_or_default()
}

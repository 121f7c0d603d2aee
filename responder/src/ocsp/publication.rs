//! CRL and CA-certificate publication: the files `kxca serve` (and `kxca
//! publish`) hand out at `/ca/<name>.cer` and `/crl/<name>.crl`, as the
//! store holds them. The daemon signs the CRLs; this only reads them.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use kxca_ca::store::crls;
use kxca_ca::{Authority, Error, Store};
use sha2::{Digest, Sha256};

use super::headers::{http_date, Published};

/// The CA certificates and the newest CRL of each issuing CA, as the store
/// holds them, by URL path.
pub(crate) fn published_from_store(
    store: &Store,
    authorities: &[Authority],
) -> Result<HashMap<String, Arc<Published>>, Error> {
    // One read snapshot for the CRLs and the audit checkpoint.
    let (latest_crls, audit, links) = store.read(|c| {
        let mut latest = HashMap::new();
        // Roots too: a root CRL signed in a ceremony (docs/CEREMONIES.md).
        for a in authorities {
            if let Some(crl) = crls::latest(c, a.id)? {
                latest.insert(a.id, crl);
            }
        }
        Ok((
            latest,
            kxca_ca::audit_log::published(c)?,
            kxca_ca::ceremony::link_certificates(c)?,
        ))
    })?;
    let mut latest_crls = latest_crls;
    let mut published = HashMap::new();
    // Link certificates of a root rollover, for relying parties that trust
    // only one of the two roots: /ca/<subject>-by-<issuer>.cer.
    let name = |id: i64| {
        authorities
            .iter()
            .find(|a| a.id == id)
            .map(|a| a.name.clone())
    };
    for (issuer, subject, cert, at) in links {
        let (Some(issuer), Some(subject)) = (name(issuer), name(subject)) else {
            continue;
        };
        let der = Bytes::from(cert);
        published.insert(
            format!("/ca/{subject}-by-{issuer}.cer"),
            Arc::new(Published {
                etag: format!("\"{}\"", hex::encode(&Sha256::digest(&der)[..16])),
                der,
                content_type: "application/pkix-cert",
                last_modified: http_date(at),
                this_update: at,
                next_update: None,
            }),
        );
    }
    for a in authorities {
        let der = Bytes::from(a.certificate.clone());
        published.insert(
            format!("/ca/{}.cer", a.name),
            Arc::new(Published {
                etag: format!("\"{}\"", hex::encode(&Sha256::digest(&der)[..16])),
                der,
                content_type: "application/pkix-cert",
                last_modified: http_date(a.not_before),
                this_update: a.not_before,
                next_update: None,
            }),
        );
        if let Some(c) = latest_crls.remove(&a.id).filter(|c| !c.der.is_empty()) {
            let der = Bytes::from(c.der);
            published.insert(
                format!("/crl/{}.crl", a.name),
                Arc::new(Published {
                    etag: format!("\"{}\"", hex::encode(&Sha256::digest(&der)[..16])),
                    der,
                    content_type: "application/pkix-crl",
                    last_modified: http_date(c.this_update),
                    this_update: c.this_update,
                    next_update: Some(c.next_update),
                }),
            );
        }
    }
    // The audit record's latest checkpoint and its key (docs/AUDIT.md).
    for (path, body, content_type, at) in audit {
        let der = Bytes::from(body);
        published.insert(
            path,
            Arc::new(Published {
                etag: format!("\"{}\"", hex::encode(&Sha256::digest(&der)[..16])),
                der,
                content_type,
                last_modified: http_date(at),
                this_update: at,
                next_update: None,
            }),
        );
    }
    Ok(published)
}

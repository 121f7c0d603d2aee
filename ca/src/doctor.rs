//! `kxca doctor`: what in the store is inconsistent or about to fail.
//! Reads only; the home is opened with [`Ca::open_as_is`] so that pending
//! rows are reported before anything resolves them.

use std::path::Path;

use rusqlite::OptionalExtension;
use serde::Serialize;

use crate::store::{certificates, crls, sql, Snapshot};
use crate::{rfc3339, AuthorityRole, Ca, Error};

/// A CA certificate expiring within this many days is reported.
const CA_EXPIRY_WARNING_DAYS: i64 = 90;
/// A root CRL (signed offline, in a ceremony) expiring within this many
/// days is reported: the next ceremony needs officers to be gathered.
const ROOT_CRL_WARNING_DAYS: i64 = 7;

/// One thing found wrong. `kind` is stable, for scripts.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// A stable name of the kind of inconsistency, for scripts.
    pub kind: &'static str,
    /// The serial, authority or file concerned.
    pub subject: String,
    /// What is inconsistent and what to do, in English.
    pub detail: String,
}

/// Every inconsistency in the store and the files kxca wrote, at `now`.
pub fn inspect(ca: &Ca) -> Result<Vec<Finding>, Error> {
    // One snapshot, and SQL errors that name the database.
    ca.store().read(|tx| inspect_in(ca, tx))
}

fn inspect_in(ca: &Ca, conn: &Snapshot<'_>) -> Result<Vec<Finding>, Error> {
    let now = ca.clock().now();
    let mut found = Vec::new();
    let mut add = |kind, subject: String, detail: String| {
        found.push(Finding {
            kind,
            subject,
            detail,
        })
    };

    // Keys and secrets a restored home (docs/BACKUP.md) still lacks.
    for (kind, subject, detail) in
        crate::backup::missing_material(ca.config(), ca.home(), conn, now)?
    {
        add(kind, subject, detail);
    }
    for row in certificates::pending(conn)? {
        if !certificates::owner_alive(row.owner.as_deref()) {
            add(
                "pending",
                row.serial,
                format!(
                    "certificate {} was left pending at {} by a process that is gone; the next kxca command marks it failed",
                    row.certificate_id,
                    rfc3339(row.created_at)
                ),
            );
        }
    }
    for (serial, certificate_id, path) in certificates::good_with_paths(conn, now)? {
        if !Path::new(&path).exists() {
            add(
                "good_without_pkcs12",
                serial,
                format!(
                    "certificate {certificate_id} is good but its PKCS#12 {path} does not exist"
                ),
            );
        }
    }
    for (id, serial, path) in certificates::failed_with_paths(conn)? {
        if Path::new(&path).exists() && certificates::others_with_path(conn, &path, id)? == 0 {
            add(
                "failed_with_pkcs12",
                serial,
                format!("issuance failed but its PKCS#12 {path} exists"),
            );
        }
    }

    let retired = crate::ceremony::retired_ids(conn)?;
    for authority in crate::store::authorities::all(conn)? {
        if authority.not_after < now {
            continue;
        }
        if authority.not_after < now + CA_EXPIRY_WARNING_DAYS * 86_400 {
            add(
                "ca_expiring",
                authority.name.clone(),
                format!(
                    "the {} CA certificate expires at {}",
                    authority.role.as_str(),
                    rfc3339(authority.not_after)
                ),
            );
        }
        // What ceremonies leave to do (docs/CEREMONIES.md): a root CRL to
        // renew before it expires, an old issuing CA to retire.
        if authority.role == AuthorityRole::Root {
            if let Some(crl) = crls::latest(conn, authority.id)? {
                if crl.next_update < now + ROOT_CRL_WARNING_DAYS * 86_400 {
                    add(
                        "root_crl_due",
                        authority.name.clone(),
                        format!(
                            "root CRL #{} expires at {}; sign the next one in a crl ceremony",
                            crl.number,
                            rfc3339(crl.next_update)
                        ),
                    );
                }
            }
            continue;
        }
        if !authority.active
            && !retired.contains(&authority.id)
            && crate::ceremony::live_certificates(conn, authority.id, now)?.is_empty()
        {
            add(
                "retire_due",
                authority.name.clone(),
                "issues nothing new and has no live certificate left: retire it with a final-CRL ceremony"
                    .to_string(),
            );
        }
        let latest = crls::latest(conn, authority.id)?;
        // Revocations the newest CRL may not have seen: those from its
        // thisUpdate second on (older ones were committed before it was
        // built). Each must be on it.
        let since = latest.as_ref().map_or(i64::MIN, |c| c.this_update);
        let mut stmt = conn
            .prepare(
                "SELECT c.serial, r.revoked_at FROM revocations r JOIN certificates c ON c.id = r.certificate
                 WHERE c.authority_id = ?1 AND r.revoked_at >= ?2 ORDER BY r.revoked_at",
            )
            .map_err(sql)?;
        let recent: Vec<(String, i64)> = stmt
            .query_map(rusqlite::params![authority.id, since], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(sql)?
            .collect::<Result<_, _>>()
            .map_err(sql)?;
        let listed = latest.as_ref().map(|c| listed_serials(&c.der));
        for (serial, at) in recent {
            let on_crl = listed
                .as_ref()
                .is_some_and(|l| l.contains(serial.trim_start_matches('0')));
            if on_crl {
                continue;
            }
            let detail = match &latest {
                None => format!(
                    "revoked at {} but no CRL was ever signed; run kxca crl",
                    rfc3339(at)
                ),
                Some(crl) => format!(
                    "revoked at {} but not on CRL #{} ({}); run kxca crl",
                    rfc3339(at),
                    crl.number,
                    rfc3339(crl.this_update)
                ),
            };
            add("crl_behind", format!("{}/{serial}", authority.name), detail);
        }
        if let Some(crl) = &latest {
            if crl.next_update < now {
                add(
                    "crl_expired",
                    authority.name.clone(),
                    format!(
                        "CRL #{} expired at {}",
                        crl.number,
                        rfc3339(crl.next_update)
                    ),
                );
            }
            if authority.active {
                let file = ca.home().crl_dir().join(format!("{}.crl", authority.name));
                if std::fs::read(&file).ok().as_deref() != Some(crl.der.as_slice()) {
                    add(
                        "crl_file_stale",
                        file.display().to_string(),
                        format!("is not CRL #{}, the newest in the store", crl.number),
                    );
                }
            }
        }
        if authority.active {
            let has_table: bool = conn
                .query_row(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ocsp_responder_certs'",
                    [],
                    |_| Ok(true),
                )
                .optional()
                .map_err(sql)?
                .unwrap_or(false);
            if has_table {
                let responder_end: Option<i64> = conn
                    .query_row(
                        "SELECT MAX(not_after) FROM ocsp_responder_certs WHERE authority_id = ?1",
                        [authority.id],
                        |r| r.get(0),
                    )
                    .map_err(sql)?;
                let renew = i64::from(ca.config().ocsp.responder_renew_days) * 86_400;
                if let Some(end) = responder_end {
                    if end < now + renew {
                        add(
                            "responder_expiring",
                            authority.name.clone(),
                            format!(
                                "the OCSP responder certificate expires at {} and was not renewed; is kxca serve running?",
                                rfc3339(end)
                            ),
                        );
                    }
                }
            }
        }
    }
    Ok(found)
}

/// The serials on a CRL, as lower-case hex without leading zeros.
fn listed_serials(der: &[u8]) -> std::collections::HashSet<String> {
    use der::Decode;
    <x509_cert::crl::CertificateList>::from_der(der)
        .ok()
        .and_then(|crl| crl.tbs_cert_list.revoked_certificates)
        .unwrap_or_default()
        .iter()
        .map(|r| {
            hex::encode(r.serial_number.as_bytes())
                .trim_start_matches('0')
                .to_string()
        })
        .collect()
}

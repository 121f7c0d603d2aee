//! Certificates for the admin console itself: its TLS server certificate
//! and the admins' client certificates (the second factor over mutual TLS).
//! They come from the active issuing CA like an office's certificate and sit
//! in the same `certificates` table, so `kxca revoke`, the CRL and OCSP cover
//! them; but they certify no office contact, so their profiles are their own
//! small files (`policies/console-server.toml`, `policies/console-admin.toml`)
//! outside `policies/profiles/`, whose files all describe office contacts.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use der::asn1::{Ia5String, OctetString};
use kxca_hsm::KeyAlgorithm;
use serde::Deserialize;
use serde_json::json;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{KeyUsages, SubjectAltName};
use zeroize::Zeroizing;

use crate::store::audit;
use crate::store::certificates::{self, InsertError, NewCertificate};
use crate::x509::{self, oids, DnAttr, TbsCertificate};
use crate::{AuditAction, AuthorityRole, Ca, CertificateRecord, Error, Holder, Serial};

/// The shipped `policies/console-server.toml`.
pub const SHIPPED_SERVER: &str = include_str!("../../policies/console-server.toml");
/// The shipped `policies/console-admin.toml`.
pub const SHIPPED_ADMIN: &str = include_str!("../../policies/console-admin.toml");

/// What a console certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleUsage {
    /// The console's TLS server certificate (serverAuth, DNS names and IPs).
    Server,
    /// An admin's client certificate (clientAuth).
    Client,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: String,
    description: String,
    usage: ConsoleUsage,
    key: String,
    validity_days: u32,
    backdate_minutes: u32,
}

/// A console certificate profile.
#[derive(Debug, Clone)]
pub struct ConsoleProfile {
    /// The profile's name (stored in `certificates.profile`).
    pub name: String,
    /// What it is for, for the officers reviewing it.
    pub description: String,
    /// Server or client.
    pub usage: ConsoleUsage,
    /// The key kxca generates for the certificate.
    pub key: KeyAlgorithm,
    /// Days from notBefore to notAfter.
    pub validity_days: u32,
    /// How far notBefore is set back for slow clocks.
    pub backdate_minutes: u32,
}

impl ConsoleProfile {
    /// Reads `<policies>/<file>`, or the shipped text when a home made
    /// before the file existed has none (with a warning).
    pub fn load(policies: &Path, usage: ConsoleUsage) -> Result<ConsoleProfile, Error> {
        let (file, shipped) = match usage {
            ConsoleUsage::Server => ("console-server.toml", SHIPPED_SERVER),
            ConsoleUsage::Client => ("console-admin.toml", SHIPPED_ADMIN),
        };
        let path = policies.join(file);
        let profile = match std::fs::read_to_string(&path) {
            Ok(text) => ConsoleProfile::parse(&text, &path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(path = %path.display(), "no console profile in the home; using the shipped one");
                ConsoleProfile::parse(
                    shipped,
                    &PathBuf::from(format!("policies/{file} (shipped)")),
                )?
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        if profile.usage != usage {
            return Err(Error::Policy {
                path,
                message: format!(
                    "usage = {:?}: this file must say usage = \"{}\"",
                    profile.usage,
                    match usage {
                        ConsoleUsage::Server => "server",
                        ConsoleUsage::Client => "client",
                    }
                ),
            });
        }
        Ok(profile)
    }

    /// Parses and checks a profile; the error names the file and key.
    pub fn parse(text: &str, path: &Path) -> Result<ConsoleProfile, Error> {
        let bad = |message: String| Error::Policy {
            path: path.to_path_buf(),
            message,
        };
        let f: File = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let key = match f.key.as_str() {
            "ecdsa-p256" => KeyAlgorithm::EcdsaP256,
            "rsa-2048" => KeyAlgorithm::Rsa2048,
            "rsa-3072" => KeyAlgorithm::Rsa3072,
            other => {
                return Err(bad(format!(
                    "key = {other:?}: expected ecdsa-p256, rsa-2048 or rsa-3072"
                )))
            }
        };
        // Short lives: a server certificate is renewed by a command, and an
        // admin's certificate outliving their job is a standing credential.
        let max = match f.usage {
            ConsoleUsage::Server => 398,
            ConsoleUsage::Client => 825,
        };
        if f.validity_days == 0 || f.validity_days > max {
            return Err(bad(format!(
                "validity_days = {}: must be 1 to {max}",
                f.validity_days
            )));
        }
        if f.backdate_minutes > 60 {
            return Err(bad(format!(
                "backdate_minutes = {}: at most 60",
                f.backdate_minutes
            )));
        }
        if f.name.trim().is_empty() {
            return Err(bad("name: must not be empty".to_string()));
        }
        Ok(ConsoleProfile {
            name: f.name,
            description: f.description,
            usage: f.usage,
            key,
            validity_days: f.validity_days,
            backdate_minutes: f.backdate_minutes,
        })
    }
}

/// Who a console certificate is for.
#[derive(Debug, Clone)]
pub enum ConsoleSubject {
    /// The console's names: the first DNS name (or IP) is the CN.
    Server {
        /// dNSName entries.
        dns: Vec<String>,
        /// iPAddress entries.
        ips: Vec<IpAddr>,
    },
    /// An admin, by login name.
    Admin {
        /// The admin's login name.
        name: String,
    },
}

/// A console certificate with its new key and chain.
pub struct ConsoleCertificate {
    /// The stored row.
    pub record: CertificateRecord,
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// The issuing CA's and the root's certificates, DER (leaf excluded).
    pub chain: Vec<Vec<u8>>,
    /// The new private key, PKCS#8 DER, wiped on drop.
    pub key_pkcs8: Zeroizing<Vec<u8>>,
}

fn dns_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl Ca {
    /// Issues a console certificate from the active issuing CA: recorded
    /// before signing, audited, covered by the CRL and OCSP like any other.
    pub fn issue_console_certificate(
        &mut self,
        profile: &ConsoleProfile,
        subject: &ConsoleSubject,
        actor: &str,
    ) -> Result<ConsoleCertificate, Error> {
        let mut extensions = vec![x509::basic_constraints(false, None)?];
        let (cn, certificate_id, eku, san) = match (profile.usage, subject) {
            (ConsoleUsage::Server, ConsoleSubject::Server { dns, ips }) => {
                let dns: Vec<String> = dns.iter().map(|d| d.trim().to_ascii_lowercase()).collect();
                if let Some(bad) = dns.iter().find(|d| !dns_ok(d)) {
                    return Err(Error::field(
                        "dns",
                        format!("{bad:?} is not a host name (letters, digits, hyphens, dots; no wildcard)"),
                    ));
                }
                let cn = match (dns.first(), ips.first()) {
                    (Some(d), _) => d.clone(),
                    (None, Some(ip)) => ip.to_string(),
                    (None, None) => {
                        return Err(Error::field(
                            "dns",
                            "a server certificate needs at least one DNS name or IP address",
                        ))
                    }
                };
                let mut names = Vec::new();
                for d in &dns {
                    names.push(GeneralName::DnsName(
                        Ia5String::new(d).map_err(|e| Error::encoding("dNSName", e))?,
                    ));
                }
                for ip in ips {
                    let bytes = match ip {
                        IpAddr::V4(v) => v.octets().to_vec(),
                        IpAddr::V6(v) => v.octets().to_vec(),
                    };
                    names.push(GeneralName::IpAddress(
                        OctetString::new(bytes).map_err(|e| Error::encoding("iPAddress", e))?,
                    ));
                }
                (
                    cn.clone(),
                    format!("console-server:{cn}"),
                    oids::KP_SERVER_AUTH,
                    Some(names),
                )
            }
            (ConsoleUsage::Client, ConsoleSubject::Admin { name }) => (
                name.clone(),
                format!("console-admin:{name}"),
                oids::KP_CLIENT_AUTH,
                None,
            ),
            _ => {
                return Err(Error::field(
                    "profile",
                    format!(
                        "profile {} does not certify this kind of subject",
                        profile.name
                    ),
                ))
            }
        };
        let issuer = self.authority(AuthorityRole::Issuing)?;
        let root = match issuer.parent_id {
            Some(id) => self
                .store()
                .read(|c| crate::store::authorities::by_id(c, id))?,
            None => self.authority(AuthorityRole::Root)?,
        };
        let signer = self.signer(&issuer)?;
        let union_name = self.config().union.name.clone();
        let subject_name = x509::name(&[
            DnAttr::Country("JP"),
            DnAttr::Organization(&union_name),
            DnAttr::OrganizationalUnit("kxca console"),
            DnAttr::CommonName(&cn),
        ])?;
        let subject_text = format!("C=JP, O={union_name}, OU=kxca console, CN={cn}");
        let key = kxca_hsm::EphemeralKey::generate(profile.key)?;
        let spki = key.public_key_der();
        let now = self.clock().now();
        let not_before = now - i64::from(profile.backdate_minutes) * 60;
        let not_after =
            (not_before + i64::from(profile.validity_days) * 86_400).min(issuer.not_after);
        let ku = match profile.usage {
            // RSA key exchange (TLS 1.2 without ECDHE) needs keyEncipherment.
            ConsoleUsage::Server if profile.key.is_rsa() => {
                vec![KeyUsages::DigitalSignature, KeyUsages::KeyEncipherment]
            }
            _ => vec![KeyUsages::DigitalSignature],
        };
        extensions.push(x509::key_usage(&ku, true)?);
        extensions.push(x509::extended_key_usage(vec![eku])?);
        extensions.push(x509::subject_key_id(&x509::key_id(spki)?)?);
        extensions.push(x509::authority_key_id(&issuer.key_id)?);
        extensions.push(x509::crl_distribution_point(
            &self.config().publication.crl_url_for(&issuer.name),
        )?);
        extensions.push(x509::authority_info_access(
            &self.config().publication.ocsp_url,
            &self.config().publication.ca_issuers_url_for(&issuer.name),
        )?);
        if let Some(names) = san {
            extensions.push(x509::ext(
                oids::SUBJECT_ALT_NAME,
                false,
                "subjectAltName",
                &SubjectAltName(names),
            )?);
        }
        let issuer_name: der::asn1::Any =
            der::Decode::from_der(&issuer.subject_der).map_err(|e| Error::encoding("issuer", e))?;
        // The table's holder column describes an office contact; a console
        // certificate has none, so it records the admin or host as the
        // contact name with empty codes (no account ever matches it).
        let holder = Holder {
            centre: String::new(),
            union_code: String::new(),
            branch_code: String::new(),
            contract_unit: String::new(),
            office_code: String::new(),
            contact_code: String::new(),
            office_name: "kxca console".to_string(),
            contact_name: cn.clone(),
            email: String::new(),
        };
        let owner = certificates::process_owner();
        let mut attempt = 0;
        let (row_id, serial_hex, tbs) = loop {
            attempt += 1;
            let serial = Serial::random();
            let tbs = x509::enc(
                "TBS certificate",
                &TbsCertificate {
                    version: 2,
                    serial_number: x509::serial_number(serial.as_bytes())?,
                    signature: signer.algorithm().signature_algorithm(),
                    issuer: issuer_name.clone(),
                    validity: x509::validity(not_before, not_after)?,
                    subject: subject_name.clone(),
                    subject_public_key_info: x509::spki(spki)?,
                    extensions: extensions.clone(),
                },
            )?;
            let serial_hex = serial.to_hex();
            let new = NewCertificate {
                serial: &serial_hex,
                authority_id: issuer.id,
                profile: &profile.name,
                certificate_id: &certificate_id,
                subject: &subject_text,
                email: "",
                holder: &holder,
                key_algorithm: profile.key.name(),
                not_before,
                not_after,
                tbs: &tbs,
                owner: &owner,
                pkcs12_path: None,
            };
            let inserted =
                self.store_mut()
                    .write(|tx| match certificates::insert_pending(tx, &new, now) {
                        Ok(id) => {
                            audit::append(
                                tx,
                                now,
                                actor,
                                AuditAction::CertificatePrepare,
                                Some(&serial_hex),
                                json!({"certificate_id": certificate_id, "profile": profile.name}),
                            )?;
                            Ok(Some(id))
                        }
                        Err(InsertError::SerialCollision) => Ok(None),
                        Err(InsertError::Other(e)) => Err(e),
                    })?;
            match inserted {
                Some(id) => break (id, serial_hex, tbs),
                None if attempt < 5 => continue,
                None => {
                    return Err(Error::Database {
                        path: self.store().path().to_path_buf(),
                        message: "five serial number collisions in a row; is the RNG broken?"
                            .to_string(),
                    })
                }
            }
        };
        let signed = crate::ca::sign_checked(signer.as_ref(), &tbs).and_then(|sig| {
            let der = x509::assemble(&tbs, signer.algorithm().signature_algorithm(), &sig)?;
            <x509_cert::Certificate as der::Decode>::from_der(&der)
                .map_err(|e| Error::encoding("issued certificate", e))?;
            Ok(der)
        });
        let der = match signed {
            Ok(der) => der,
            Err(e) => {
                let reason = e.to_string();
                let at = self.clock().now();
                self.store_mut().write(|tx| {
                    certificates::mark_failed(tx, row_id)?;
                    audit::append(
                        tx,
                        at,
                        actor,
                        AuditAction::CertificateSignFailed,
                        Some(&serial_hex),
                        json!({"error": reason}),
                    )
                })?;
                return Err(e);
            }
        };
        let issued_at = self.clock().now();
        self.store_mut().write(|tx| {
            certificates::mark_issued(tx, row_id, &der, issued_at)?;
            audit::append(
                tx,
                issued_at,
                actor,
                AuditAction::CertificateIssue,
                Some(&serial_hex),
                json!({"certificate_id": certificate_id, "profile": profile.name, "not_after": crate::rfc3339(not_after), "key": profile.key.name()}),
            )
        })?;
        let record = self
            .store()
            .read(|c| certificates::by_serial(c, &serial_hex))?
            .ok_or_else(|| Error::UnknownSerial {
                serial: serial_hex.clone(),
            })?;
        tracing::info!(serial = %serial_hex, certificate_id = %certificate_id, "console certificate issued");
        Ok(ConsoleCertificate {
            record,
            der,
            chain: vec![issuer.certificate.clone(), root.certificate.clone()],
            key_pkcs8: Zeroizing::new(key.pkcs8_der().to_vec()),
        })
    }
}

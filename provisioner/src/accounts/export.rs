//! The KX server's account feed (docs/KX-EXPORT.md): every account changed
//! since a time, with its current certificate's serial and the Argon2id
//! PHC string of its KX initial password, as CSV (`kx`) or JSON (`kx-json`).
//! Never a password: kxca does not have one to give.

use serde::Serialize;

use super::register;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// The export's format (`--format`).
pub enum ExportFormat {
    /// RFC 4180 CSV, UTF-8, CRLF, header row.
    KxCsv,
    /// A JSON array of the same records.
    KxJson,
}

impl std::str::FromStr for ExportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "kx" | "kx-csv" => Ok(ExportFormat::KxCsv),
            "kx-json" => Ok(ExportFormat::KxJson),
            other => Err(format!("unknown export format {other:?} (kx, kx-json)")),
        }
    }
}

/// One exported account; the field order is the CSV's column order.
#[derive(Debug, Clone, Serialize)]
pub struct KxRecord {
    /// The login id: the certificate's CN.
    pub certificate_id: String,
    /// 担当センターコード.
    pub centre: String,
    /// 組合コード.
    pub union_code: String,
    /// 支部コード.
    pub branch_code: String,
    /// 契約単位コード.
    pub contract_unit: String,
    /// 事業所コード.
    pub office_code: String,
    /// 事業所名.
    pub office_name: String,
    /// 担当者用コード.
    pub contact_code: String,
    /// 担当者名.
    pub contact_name: String,
    /// メールアドレス1.
    pub email1: String,
    /// メールアドレス2 (may be empty).
    pub email2: String,
    /// A 社労士's account.
    pub sharoushi: bool,
    /// `active` or `revoked`.
    pub state: String,
    /// The valid certificate's serial (hex), empty when none.
    pub serial: String,
    /// Its notAfter, RFC 3339, empty when none.
    pub not_after: String,
    /// `$argon2id$v=19$...`, empty until mail 2 has been sent.
    pub kx_password_phc: String,
    /// When the record last changed, RFC 3339.
    pub updated_at: String,
}

const HEADER: [&str; 17] = [
    "certificate_id",
    "centre",
    "union_code",
    "branch_code",
    "contract_unit",
    "office_code",
    "office_name",
    "contact_code",
    "contact_name",
    "email1",
    "email2",
    "sharoushi",
    "state",
    "serial",
    "not_after",
    "kx_password_phc",
    "updated_at",
];

/// The records changed at or after `since` (all when None), oldest first.
pub fn records(
    store: &mut kxca_ca::Store,
    since: Option<i64>,
) -> Result<Vec<KxRecord>, kxca_ca::Error> {
    store.migrate("accounts", super::migrations())?;
    let accounts = store.read(|c| register::changed_since(c, since))?;
    Ok(accounts
        .into_iter()
        .map(|a| {
            let current = a
                .current_serial
                .as_ref()
                .and_then(|s| a.certificates.iter().find(|c| &c.serial == s));
            KxRecord {
                serial: a.current_serial.clone().unwrap_or_default(),
                not_after: current
                    .map(|c| kxca_ca::rfc3339(c.not_after))
                    .unwrap_or_default(),
                certificate_id: a.certificate_id,
                centre: a.centre,
                union_code: a.union_code,
                branch_code: a.branch_code,
                contract_unit: a.contract_unit,
                office_code: a.office_code,
                office_name: a.office_name,
                contact_code: a.contact_code,
                contact_name: a.contact_name,
                email1: a.email1,
                email2: a.email2,
                sharoushi: a.sharoushi,
                state: a.state.as_str().to_string(),
                kx_password_phc: a.kx_password_phc.unwrap_or_default(),
                updated_at: kxca_ca::rfc3339(a.updated_at),
            }
        })
        .collect())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Renders the export and records who exported what in the audit trail.
pub fn export(
    store: &mut kxca_ca::Store,
    format: ExportFormat,
    since: Option<i64>,
    actor: &str,
    now: i64,
) -> Result<String, kxca_ca::Error> {
    let records = records(store, since)?;
    let out = match format {
        ExportFormat::KxJson => {
            serde_json::to_string_pretty(&records).map_err(|e| kxca_ca::Error::Encoding {
                what: "KX export".to_string(),
                message: e.to_string(),
            })? + "\n"
        }
        ExportFormat::KxCsv => {
            let mut s = HEADER.join(",") + "\r\n";
            for r in &records {
                let fields = [
                    r.certificate_id.as_str(),
                    &r.centre,
                    &r.union_code,
                    &r.branch_code,
                    &r.contract_unit,
                    &r.office_code,
                    &r.office_name,
                    &r.contact_code,
                    &r.contact_name,
                    &r.email1,
                    &r.email2,
                    if r.sharoushi { "1" } else { "0" },
                    &r.state,
                    &r.serial,
                    &r.not_after,
                    &r.kx_password_phc,
                    &r.updated_at,
                ];
                s.push_str(&fields.map(csv_field).join(","));
                s.push_str("\r\n");
            }
            s
        }
    };
    store.write(|tx| {
        tx.audit(now,
            actor,
            kxca_ca::AuditAction::AccountExport,
            None,
            serde_json::json!({ "format": if format == ExportFormat::KxCsv { "kx" } else { "kx-json" }, "since": since, "accounts": records.len() }),
        )
    })?;
    Ok(out)
}

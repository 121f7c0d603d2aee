//! The office register: offices the union has told us exist, imported from
//! a CSV file. The validator consults it when the policy says so. This
//! module owns the `offices` table.

use std::collections::HashSet;
use std::path::Path;

use kxca_ca::store::Migration;
use kxca_ca::Store;
use rusqlite::params;
use serde::Serialize;

use super::existing::{ExistingAccounts, ExistingContact};
use super::normalize::{self, Cell};
use super::policy::{Field, IntakePolicy};

pub(crate) const COMPONENT: &str = "offices";

/// The `offices` table (the office register), migrated as component "offices".
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "office register",
    sql: r#"
CREATE TABLE offices (
    union_code   TEXT NOT NULL,
    branch_code  TEXT NOT NULL,
    office_code  TEXT NOT NULL,
    name         TEXT NOT NULL,
    imported_at  INTEGER NOT NULL,
    PRIMARY KEY (union_code, branch_code, office_code)
);
"#,
}];

/// One registered office.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Office {
    /// 組合コード.
    pub union_code: String,
    /// 支部コード.
    pub branch_code: String,
    /// 事業所コード.
    pub office_code: String,
    /// 事業所名.
    pub name: String,
}

/// Why the office register could not be imported or read.
#[derive(Debug, thiserror::Error)]
pub enum OfficeError {
    /// The CSV file as a whole (unreadable, no header).
    #[error("{file}: {message}")]
    File {
        /// The CSV file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// One row of the CSV file breaks a rule of the intake policy.
    #[error("{file}: line {line}, column {column}: {message}")]
    Row {
        /// The CSV file.
        file: String,
        /// The line, 1-based.
        line: usize,
        /// The column's title.
        column: String,
        /// The rule it breaks.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] kxca_ca::Error),
}

/// The register in memory, for the validator.
#[derive(Debug, Clone, Default)]
pub struct OfficeRegister {
    offices: HashSet<(String, String, String)>,
}

use kxca_ca::store::sql as db;

impl OfficeRegister {
    /// Reads the register from the store (creating its table if needed).
    pub fn load(store: &mut Store) -> Result<OfficeRegister, OfficeError> {
        let offices = list(store)?
            .into_iter()
            .map(|o| (o.union_code, o.branch_code, o.office_code))
            .collect();
        Ok(OfficeRegister { offices })
    }

    /// How many offices are registered.
    pub fn len(&self) -> usize {
        self.offices.len()
    }

    /// Whether the register is empty (then nothing is checked against it).
    pub fn is_empty(&self) -> bool {
        self.offices.is_empty()
    }

    /// Whether this union, branch and office code are registered.
    pub fn contains(&self, union: &str, branch: &str, office: &str) -> bool {
        self.offices
            .contains(&(union.to_string(), branch.to_string(), office.to_string()))
    }
}

impl ExistingAccounts for OfficeRegister {
    fn contacts(&self, _: &str, _: &str, _: &str) -> Vec<ExistingContact> {
        Vec::new()
    }
    fn office_registered(&self, union: &str, branch: &str, office: &str) -> Option<bool> {
        Some(self.contains(union, branch, office))
    }
}

/// Every registered office, ordered by code.
pub fn list(store: &mut Store) -> Result<Vec<Office>, OfficeError> {
    store.migrate(COMPONENT, MIGRATIONS)?;
    let rows = store.read(|c| {
        let mut stmt = c
            .prepare(
                "SELECT union_code, branch_code, office_code, name FROM offices ORDER BY 1, 2, 3",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Office {
                    union_code: r.get(0)?,
                    branch_code: r.get(1)?,
                    office_code: r.get(2)?,
                    name: r.get(3)?,
                })
            })
            .map_err(db)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db)?;
        Ok(rows)
    })?;
    Ok(rows)
}

/// Parses a register CSV (UTF-8 or the Shift_JIS Excel writes) with the
/// header 組合コード,支部コード,事業所コード,事業所名 in any order. Every
/// row is checked before anything is stored.
pub fn parse_csv(
    file: &str,
    bytes: &[u8],
    policy: &IntakePolicy,
) -> Result<Vec<Office>, OfficeError> {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t.to_string(),
        Err(_) => {
            let (t, _, bad) = encoding_rs::SHIFT_JIS.decode(bytes);
            if bad {
                return Err(OfficeError::File {
                    file: file.to_string(),
                    message: "neither UTF-8 nor Shift_JIS text".into(),
                });
            }
            t.into_owned()
        }
    };
    let text = text.trim_start_matches('\u{FEFF}');
    let mut records = csv_records(text).into_iter();
    let Some((_, header)) = records.next() else {
        return Err(OfficeError::File {
            file: file.to_string(),
            message: "empty file".into(),
        });
    };
    let wanted = [
        (Field::UnionCode, "union_code"),
        (Field::BranchCode, "branch_code"),
        (Field::OfficeCode, "office_code"),
        (Field::OfficeName, "office_name"),
    ];
    let mut idx = [0usize; 4];
    for (k, (field, english)) in wanted.iter().enumerate() {
        let title = policy.columns.title(*field);
        idx[k] = header
            .iter()
            .position(|h| {
                let key = normalize::title_key(h);
                key == normalize::title_key(title) || key == *english
            })
            .ok_or_else(|| OfficeError::File {
                file: file.to_string(),
                message: format!("header has no column {title} ({english})"),
            })?;
    }
    let o = &policy.office;
    let uw = policy.union.code.len();
    let bw = policy.branches.width;
    let specs: [(Option<usize>, (usize, usize)); 3] = [
        (Some(uw), (uw, uw)),
        (Some(bw), (bw, bw)),
        (o.width, (o.min_digits, o.max_digits)),
    ];
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (line, rec) in records {
        if rec.iter().all(|c| normalize::trim(c).is_empty()) {
            continue;
        }
        let cell = |k: usize| rec.get(idx[k]).cloned().unwrap_or_default();
        let bad = |k: usize, message: String| OfficeError::Row {
            file: file.to_string(),
            line,
            column: policy.columns.title(wanted[k].0).to_string(),
            message,
        };
        let mut codes = Vec::new();
        for (k, (width, range)) in specs.iter().enumerate() {
            let raw = cell(k);
            match normalize::digit_code(&Cell::Text(raw.clone()), *width, *range) {
                Ok(Some(c)) => codes.push(c.value),
                Ok(None) => return Err(bad(k, "is blank".into())),
                Err(_) => {
                    let w = width.map_or(format!("{}-{}", range.0, range.1), |w| w.to_string());
                    return Err(bad(k, format!("{raw:?} is not a code of {w} digits")));
                }
            }
        }
        let name = normalize::name_text(&cell(3));
        if name.is_empty() {
            return Err(bad(3, "is blank".into()));
        }
        if !seen.insert(codes.clone()) {
            return Err(bad(2, format!("office {} appears twice", codes[2])));
        }
        out.push(Office {
            union_code: codes[0].clone(),
            branch_code: codes[1].clone(),
            office_code: codes[2].clone(),
            name,
        });
    }
    Ok(out)
}

/// Stores the offices of a CSV file (new ones added, known ones renamed)
/// in one transaction with an audit event. Returns how many rows it held.
pub fn import_csv(
    store: &mut Store,
    path: &Path,
    policy: &IntakePolicy,
    actor: &str,
    now: i64,
) -> Result<usize, OfficeError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| OfficeError::File {
        file: file.clone(),
        message: e.to_string(),
    })?;
    let offices = parse_csv(&file, &bytes, policy)?;
    store.migrate(COMPONENT, MIGRATIONS)?;
    let n = offices.len();
    store.write(|tx| {
        for o in &offices {
            tx.execute(
                "INSERT INTO offices (union_code, branch_code, office_code, name, imported_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (union_code, branch_code, office_code)
                 DO UPDATE SET name = excluded.name, imported_at = excluded.imported_at",
                params![o.union_code, o.branch_code, o.office_code, o.name, now],
            )
            .map_err(db)?;
        }
        tx.audit(
            now,
            actor,
            kxca_ca::AuditAction::OfficesImport,
            None,
            serde_json::json!({ "file": file, "offices": n }),
        )
    })?;
    Ok(n)
}

/// RFC 4180 records with their 1-based starting line numbers.
fn csv_records(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    let mut rec = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut line = 1;
    let mut start = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => {
                if c == '\n' {
                    line += 1;
                }
                field.push(c);
            }
            (false, '"') => quoted = true,
            (false, ',') => rec.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                rec.push(std::mem::take(&mut field));
                out.push((start, std::mem::take(&mut rec)));
                line += 1;
                start = line;
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !rec.is_empty() {
        rec.push(field);
        out.push((start, rec));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_quotes_and_sjis() {
        let p = IntakePolicy::shipped();
        let text = "事業所名,組合コード,支部コード,事業所コード\r\n\"山田設計, 株式会社\",26276,00,１２３４５\r\n";
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode(text);
        let offices = parse_csv("o.csv", &sjis, &p).unwrap();
        assert_eq!(offices.len(), 1);
        assert_eq!(offices[0].office_code, "12345");
        assert_eq!(offices[0].name, "山田設計, 株式会社");
    }

    #[test]
    fn bad_row_names_line_and_column() {
        let p = IntakePolicy::shipped();
        let text = "組合コード,支部コード,事業所コード,事業所名\n26276,00,1,A\n26276,0X,2,B\n";
        let e = parse_csv("o.csv", text.as_bytes(), &p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("支部コード"), "{e}");
    }
}

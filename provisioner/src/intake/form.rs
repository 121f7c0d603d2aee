//! Finding the application table in a workbook: the header row by its
//! titles, wherever it is, and the rows below it.

use std::collections::BTreeMap;

use super::error::FormError;
use super::normalize::Cell;
use super::policy::{Field, IntakePolicy};
use super::reader::{Grid, Workbook};

/// One application row as read: every column's cell, except that password
/// cells are reduced to whether something was typed (so no password
/// crosses the parsing worker's pipe).
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct RawRow {
    /// 1-based spreadsheet row number.
    pub row: u32,
    cells: Vec<Cell>,
    pub password_ca: bool,
    pub password_kx: bool,
}

impl RawRow {
    pub fn cell(&self, f: Field) -> &Cell {
        &self.cells[f.index()]
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Table {
    pub sheet: String,
    pub rows: Vec<RawRow>,
    /// The form's sheet re-rendered without its passwords, when asked for.
    #[serde(default)]
    pub copy: Option<RedactedCopy>,
}

/// What is kept of a received form: its table's sheet as a fresh .xlsx,
/// every cell of the two password columns below the header left empty.
/// Nothing of the original file's bytes is carried over (no shared-string
/// table, no cached values, no other sheets), so no typed password can
/// survive in it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(into = "RedactedCopyWire")]
pub struct RedactedCopy {
    /// The .xlsx bytes (rendered by the parsing worker).
    pub bytes: Vec<u8>,
    /// The original's format as told by content: `xlsx`, `ods` or `xls`.
    pub original_format: &'static str,
    /// Password cells that held something and were left empty.
    pub blanked_cells: u32,
}

/// [`RedactedCopy`] on the parsing worker's pipe.
#[derive(serde::Serialize, serde::Deserialize)]
struct RedactedCopyWire {
    #[serde(with = "crate::sandbox::b64")]
    bytes: Vec<u8>,
    original_format: String,
    blanked_cells: u32,
}

impl From<RedactedCopy> for RedactedCopyWire {
    fn from(c: RedactedCopy) -> Self {
        RedactedCopyWire {
            bytes: c.bytes,
            original_format: c.original_format.to_string(),
            blanked_cells: c.blanked_cells,
        }
    }
}

impl<'de> serde::Deserialize<'de> for RedactedCopy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RedactedCopy::try_from(RedactedCopyWire::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<RedactedCopyWire> for RedactedCopy {
    type Error = String;

    fn try_from(w: RedactedCopyWire) -> Result<Self, String> {
        let original_format = match w.original_format.as_str() {
            "xlsx" => "xlsx",
            "ods" => "ods",
            "xls" => "xls",
            other => return Err(format!("unknown original format {other:?}")),
        };
        Ok(RedactedCopy {
            bytes: w.bytes,
            original_format,
            blanked_cells: w.blanked_cells,
        })
    }
}

/// A header candidate: which column holds which field.
struct Header {
    columns: BTreeMap<Field, u32>,
    /// Index in `grid.rows` of the last header row.
    last: usize,
}

pub(crate) fn read_table(
    file: &str,
    bytes: &[u8],
    policy: &IntakePolicy,
    keep_copy: bool,
) -> Result<Table, FormError> {
    let mut wb = Workbook::open(file, bytes, &policy.limits)?;
    let required: Vec<Field> = Field::ALL
        .into_iter()
        .filter(|f| policy.columns.spec(*f).required)
        .collect();
    let mut best_missing: Option<Vec<Field>> = None;
    for name in wb.sheet_names() {
        let grid = wb.read_sheet(&name)?;
        match find_header(&grid, policy, &required) {
            Ok(h) => {
                let copy = if keep_copy {
                    Some(redacted_copy(file, &grid, &h, wb.format_name())?)
                } else {
                    None
                };
                let mut table = rows_below(file, grid, h, policy)?;
                table.copy = copy;
                return Ok(table);
            }
            Err(missing) => {
                if best_missing
                    .as_ref()
                    .is_none_or(|b| missing.len() < b.len())
                {
                    best_missing = Some(missing);
                }
            }
        }
    }
    Err(FormError::NotAForm {
        file: file.to_string(),
        missing_titles: best_missing
            .unwrap_or(required)
            .into_iter()
            .map(|f| policy.columns.title(f).to_string())
            .collect(),
    })
}

fn titles_of(grid: &Grid, i: usize, policy: &IntakePolicy) -> BTreeMap<Field, u32> {
    let mut found = BTreeMap::new();
    for (col, cell) in &grid.rows[i].cells {
        if let Cell::Text(t) = cell {
            if let Some(f) = policy.columns.field_of(t) {
                found.entry(f).or_insert(*col);
            }
        }
    }
    found
}

/// The first row holding every required title; a title merged over two
/// rows, or split over two header rows, is looked for in the next row too.
fn find_header(
    grid: &Grid,
    policy: &IntakePolicy,
    required: &[Field],
) -> Result<Header, Vec<Field>> {
    let mut best: Vec<Field> = required.to_vec();
    let missing = |cols: &BTreeMap<Field, u32>| -> Vec<Field> {
        required
            .iter()
            .copied()
            .filter(|f| !cols.contains_key(f))
            .collect()
    };
    for i in 0..grid.rows.len() {
        let mut cols = titles_of(grid, i, policy);
        if cols.is_empty() {
            continue;
        }
        let m = missing(&cols);
        if m.is_empty() {
            return Ok(Header {
                columns: cols,
                last: i,
            });
        }
        if m.len() < best.len() {
            best = m;
        }
        let next_adjacent = grid
            .rows
            .get(i + 1)
            .is_some_and(|n| n.row == grid.rows[i].row + 1);
        if next_adjacent {
            for (f, c) in titles_of(grid, i + 1, policy) {
                cols.entry(f).or_insert(c);
            }
            if missing(&cols).is_empty() {
                return Ok(Header {
                    columns: cols,
                    last: i + 1,
                });
            }
        }
    }
    Err(best)
}

fn rows_below(
    file: &str,
    grid: Grid,
    header: Header,
    policy: &IntakePolicy,
) -> Result<Table, FormError> {
    let sheet = grid.name;
    let mut rows = Vec::new();
    for gr in grid.rows.into_iter().skip(header.last + 1) {
        let mut cells = vec![Cell::Empty; Field::ALL.len()];
        let (mut pw_ca, mut pw_kx) = (false, false);
        let mut any = false;
        for (f, col) in &header.columns {
            let Some(cell) = gr.get(*col) else { continue };
            if cell.is_blank() {
                continue;
            }
            match f {
                // Only the presence of a password survives reading.
                Field::PasswordCa => pw_ca = true,
                Field::PasswordKx => pw_kx = true,
                _ => cells[f.index()] = cell.clone(),
            }
            if *f != Field::No {
                any = true;
            }
        }
        // Rows with only a number (a pre-numbered empty form) or only
        // cells outside the table (notes) are not applications.
        if !any {
            continue;
        }
        if rows.len() as u32 >= policy.limits.max_rows {
            return Err(FormError::TooManyRows {
                file: file.to_string(),
                rows: rows.len() as u64 + 1,
                limit: policy.limits.max_rows,
            });
        }
        rows.push(RawRow {
            row: gr.row + 1,
            cells,
            password_ca: pw_ca,
            password_kx: pw_kx,
        });
    }
    if rows.is_empty() {
        return Err(FormError::NoRows {
            file: file.to_string(),
            sheet,
        });
    }
    Ok(Table {
        sheet,
        rows,
        copy: None,
    })
}

/// Renders the form's sheet into a new .xlsx with the password columns
/// blanked below the header. The columns are the ones the policy's titles
/// found, so a renamed title in intake.toml is followed here too.
fn redacted_copy(
    file: &str,
    grid: &Grid,
    header: &Header,
    original_format: &'static str,
) -> Result<RedactedCopy, FormError> {
    let failed = |e: rust_xlsxwriter::XlsxError| FormError::Corrupt {
        file: file.to_string(),
        detail: format!("re-rendering the form without its passwords: {e}"),
    };
    let password_cols: Vec<u32> = header
        .columns
        .iter()
        .filter(|(f, _)| f.is_password())
        .map(|(_, c)| *c)
        .collect();
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    // A name Excel refuses (too long, odd characters) keeps the default:
    // the sheet's name is also in the application's record.
    let _ = sheet.set_name(&grid.name);
    let mut blanked = 0u32;
    for (i, gr) in grid.rows.iter().enumerate() {
        for (col, cell) in &gr.cells {
            if i > header.last && password_cols.contains(col) {
                if !cell.is_blank() {
                    blanked += 1;
                }
                continue;
            }
            // Beyond Excel's grid (16384 columns): cannot be shown, and
            // the reader only keeps cells the table could use anyway.
            let Ok(c) = u16::try_from(*col) else { continue };
            let r = gr.row;
            match cell {
                Cell::Empty => continue,
                Cell::Text(t) | Cell::Date(t) | Cell::Error(t) => sheet.write_string(r, c, t),
                Cell::Int(n) => sheet.write_number(r, c, *n as f64),
                Cell::Float(n) => sheet.write_number(r, c, *n),
                Cell::Bool(b) => sheet.write_boolean(r, c, *b),
            }
            .map_err(failed)?;
        }
    }
    let bytes = book.save_to_buffer().map_err(failed)?;
    Ok(RedactedCopy {
        bytes,
        original_format,
        blanked_cells: blanked,
    })
}

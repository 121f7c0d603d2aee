//! Reading a spreadsheet into rows of cells, with the hostile-input limits
//! applied before and while calamine parses it.

use std::io::{Cursor, Read};

use calamine::{Data, DataRef, ExcelDateTime, Ods, Reader, Xls, Xlsx};

use super::error::FormError;
use super::normalize::Cell;
use super::policy::Limits;

/// Non-empty rows of one sheet, in order; each row's cells in column order.
pub(crate) struct Grid {
    pub name: String,
    pub rows: Vec<GridRow>,
}

pub(crate) struct GridRow {
    /// 0-based row index.
    pub row: u32,
    pub cells: Vec<(u32, Cell)>,
}

impl GridRow {
    pub fn get(&self, col: u32) -> Option<&Cell> {
        self.cells
            .binary_search_by_key(&col, |(c, _)| *c)
            .ok()
            .map(|i| &self.cells[i].1)
    }
}

/// Rows allowed above and around the table (titles, notes) on top of the
/// policy's application rows, before reading stops.
pub(super) const SLACK_ROWS: u64 = 1000;
/// Cells per row kept before a sheet counts as too large.
pub(super) const MAX_CELLS_PER_ROW: u64 = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Xlsx,
    Ods,
    Xls,
}

/// A workbook opened from bytes, its sheets read one at a time.
pub(crate) struct Workbook<'a> {
    file: String,
    inner: Inner<'a>,
    limits: Limits,
}

enum Inner<'a> {
    Xlsx(Box<Xlsx<Cursor<&'a [u8]>>>),
    Ods(Box<Ods<Cursor<&'a [u8]>>>),
    Xls(Box<Xls<Cursor<&'a [u8]>>>),
}

impl<'a> Workbook<'a> {
    pub fn open(file: &str, bytes: &'a [u8], limits: &Limits) -> Result<Workbook<'a>, FormError> {
        let file_s = file.to_string();
        if bytes.len() as u64 > limits.max_file_bytes {
            return Err(FormError::TooLarge {
                file: file_s,
                what: "the file".into(),
                size: bytes.len() as u64,
                limit: limits.max_file_bytes,
            });
        }
        let corrupt = |e: String| FormError::Corrupt {
            file: file.to_string(),
            detail: e,
        };
        let inner = match sniff(file, bytes, limits)? {
            Format::Xlsx => Inner::Xlsx(Box::new(
                Xlsx::new(Cursor::new(bytes)).map_err(|e| corrupt(e.to_string()))?,
            )),
            Format::Ods => Inner::Ods(Box::new(
                Ods::new(Cursor::new(bytes)).map_err(|e| corrupt(e.to_string()))?,
            )),
            Format::Xls => {
                super::precheck::xls(file, bytes, limits)?;
                Inner::Xls(Box::new(
                    Xls::new(Cursor::new(bytes)).map_err(|e| corrupt(e.to_string()))?,
                ))
            }
        };
        Ok(Workbook {
            file: file_s,
            inner,
            limits: limits.clone(),
        })
    }

    /// The format as told by content: `xlsx`, `ods` or `xls`.
    pub fn format_name(&self) -> &'static str {
        match &self.inner {
            Inner::Xlsx(_) => "xlsx",
            Inner::Ods(_) => "ods",
            Inner::Xls(_) => "xls",
        }
    }

    pub fn sheet_names(&self) -> Vec<String> {
        match &self.inner {
            Inner::Xlsx(w) => w.sheet_names(),
            Inner::Ods(w) => w.sheet_names(),
            Inner::Xls(w) => w.sheet_names(),
        }
    }

    pub fn read_sheet(&mut self, name: &str) -> Result<Grid, FormError> {
        let mut acc = Accumulator::new(&self.file, &self.limits);
        let file = self.file.clone();
        let corrupt = |e: String| FormError::Corrupt {
            file: file.clone(),
            detail: format!("sheet {name}: {e}"),
        };
        match &mut self.inner {
            // Streamed: a huge or sparse sheet stops at the limit instead of
            // being materialised as a dense range first.
            Inner::Xlsx(w) => {
                let mut reader = w
                    .worksheet_cells_reader(name)
                    .map_err(|e| corrupt(e.to_string()))?;
                while let Some(cell) = reader.next_cell().map_err(|e| corrupt(e.to_string()))? {
                    let (r, c) = cell.get_position();
                    acc.push(r, c, from_ref(cell.get_value()))?;
                }
            }
            Inner::Ods(w) => {
                let range = w
                    .worksheet_range(name)
                    .map_err(|e| corrupt(e.to_string()))?;
                push_range(&mut acc, &range)?;
            }
            Inner::Xls(w) => {
                let range = w
                    .worksheet_range(name)
                    .map_err(|e| corrupt(e.to_string()))?;
                push_range(&mut acc, &range)?;
            }
        }
        Ok(acc.finish(name))
    }
}

fn push_range(acc: &mut Accumulator, range: &calamine::Range<Data>) -> Result<(), FormError> {
    let (r0, c0) = range.start().unwrap_or((0, 0));
    for (r, c, v) in range.used_cells() {
        acc.push(r0 + r as u32, c0 + c as u32, from_data(v))?;
    }
    Ok(())
}

struct Accumulator<'l> {
    file: &'l str,
    limits: &'l Limits,
    rows: Vec<GridRow>,
    cells: u64,
}

impl<'l> Accumulator<'l> {
    fn new(file: &'l str, limits: &'l Limits) -> Self {
        Accumulator {
            file,
            limits,
            rows: Vec::new(),
            cells: 0,
        }
    }

    fn push(&mut self, row: u32, col: u32, cell: Cell) -> Result<(), FormError> {
        if cell.is_blank() {
            return Ok(());
        }
        let max_rows = u64::from(self.limits.max_rows) + SLACK_ROWS;
        self.cells += 1;
        if self.cells > max_rows * MAX_CELLS_PER_ROW {
            return Err(FormError::TooLarge {
                file: self.file.to_string(),
                what: "the number of cells".into(),
                size: self.cells,
                limit: max_rows * MAX_CELLS_PER_ROW,
            });
        }
        match self.rows.last_mut() {
            Some(last) if last.row == row => last.cells.push((col, cell)),
            _ => {
                if self.rows.len() as u64 >= max_rows {
                    return Err(FormError::TooManyRows {
                        file: self.file.to_string(),
                        rows: self.rows.len() as u64 + 1,
                        limit: self.limits.max_rows,
                    });
                }
                self.rows.push(GridRow {
                    row,
                    cells: vec![(col, cell)],
                })
            }
        }
        Ok(())
    }

    fn finish(mut self, name: &str) -> Grid {
        // Readers emit cells row by row, but nothing promises it: sort.
        if !self.rows.windows(2).all(|w| w[0].row < w[1].row) {
            let mut all: Vec<(u32, u32, Cell)> = self
                .rows
                .drain(..)
                .flat_map(|r| r.cells.into_iter().map(move |(c, v)| (r.row, c, v)))
                .collect();
            all.sort_by_key(|(r, c, _)| (*r, *c));
            for (r, c, v) in all {
                match self.rows.last_mut() {
                    Some(last) if last.row == r => last.cells.push((c, v)),
                    _ => self.rows.push(GridRow {
                        row: r,
                        cells: vec![(c, v)],
                    }),
                }
            }
        }
        for r in &mut self.rows {
            r.cells.sort_by_key(|(c, _)| *c);
            r.cells.dedup_by_key(|(c, _)| *c);
        }
        Grid {
            name: name.to_string(),
            rows: self.rows,
        }
    }
}

fn date_text(d: &ExcelDateTime) -> String {
    let (y, mo, day, h, mi, s, _) = d.to_ymd_hms_milli();
    if d.is_datetime() && (h, mi, s) == (0, 0, 0) {
        format!("{y:04}-{mo:02}-{day:02}")
    } else if d.is_datetime() {
        format!("{y:04}-{mo:02}-{day:02} {h:02}:{mi:02}:{s:02}")
    } else {
        d.to_string()
    }
}

fn from_ref(v: &DataRef<'_>) -> Cell {
    match v {
        DataRef::Int(i) => Cell::Int(*i),
        DataRef::Float(f) => Cell::Float(*f),
        DataRef::String(s) => Cell::Text(s.clone()),
        DataRef::SharedString(s) => Cell::Text((*s).to_string()),
        DataRef::Bool(b) => Cell::Bool(*b),
        DataRef::DateTime(d) => Cell::Date(date_text(d)),
        DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => Cell::Date(s.clone()),
        DataRef::Error(e) => Cell::Error(e.to_string()),
        DataRef::Empty => Cell::Empty,
    }
}

fn from_data(v: &Data) -> Cell {
    match v {
        Data::Int(i) => Cell::Int(*i),
        Data::Float(f) => Cell::Float(*f),
        Data::String(s) => Cell::Text(s.clone()),
        Data::Bool(b) => Cell::Bool(*b),
        Data::DateTime(d) => Cell::Date(date_text(d)),
        Data::DateTimeIso(s) | Data::DurationIso(s) => Cell::Date(s.clone()),
        Data::Error(e) => Cell::Error(e.to_string()),
        Data::Empty => Cell::Empty,
    }
}

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
const OLE2_MAGIC: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
/// Entries compressing better than the ratio limit are tolerated when
/// this small: XML of a near-empty sheet compresses extremely well.
const SMALL_ENTRY: u64 = 1 << 20;
const MAX_ZIP_ENTRIES: usize = 10_000;

/// Tells the format by content, and for zips checks the declared and the
/// actual uncompressed sizes before calamine inflates anything.
fn sniff(file: &str, bytes: &[u8], limits: &Limits) -> Result<Format, FormError> {
    if bytes.starts_with(OLE2_MAGIC) {
        return Ok(Format::Xls);
    }
    if !bytes.starts_with(ZIP_MAGIC) {
        return Err(FormError::UnknownFormat {
            file: file.to_string(),
        });
    }
    let corrupt = |d: String| FormError::Corrupt {
        file: file.to_string(),
        detail: d,
    };
    let too_large = |what: &str, size: u64, limit: u64| FormError::TooLarge {
        file: file.to_string(),
        what: what.to_string(),
        size,
        limit,
    };
    let mut zip =
        zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| corrupt(format!("zip: {e}")))?;
    if zip.len() > MAX_ZIP_ENTRIES {
        return Err(too_large(
            "the number of zip entries",
            zip.len() as u64,
            MAX_ZIP_ENTRIES as u64,
        ));
    }
    let mut declared: u64 = 0;
    let mut format = None;
    for i in 0..zip.len() {
        let entry = zip
            .by_index_raw(i)
            .map_err(|e| corrupt(format!("zip entry {i}: {e}")))?;
        let size = entry.size();
        let packed = entry.compressed_size().max(1);
        declared = declared.saturating_add(size);
        if declared > limits.max_decompressed_bytes {
            return Err(too_large(
                "the uncompressed size",
                declared,
                limits.max_decompressed_bytes,
            ));
        }
        if size > SMALL_ENTRY && size / packed > limits.max_compression_ratio {
            return Err(too_large(
                "the compression ratio",
                size / packed,
                limits.max_compression_ratio,
            ));
        }
        let name = entry.name().map_err(|e| corrupt(format!("zip: {e}")))?;
        if name == "xl/workbook.xml" || name == "xl/workbook.bin" {
            format = Some(Format::Xlsx);
        } else if name == "content.xml" && format.is_none() {
            format = Some(Format::Ods);
        }
    }
    let Some(format) = format else {
        return Err(FormError::UnknownFormat {
            file: file.to_string(),
        });
    };
    // Declared sizes can lie: inflate once, counting, and stop at the
    // limit. The parts calamine would hold whole (an .ods's content, an
    // .xlsx's shared strings) are scanned on the way.
    let mut actual: u64 = 0;
    for i in 0..zip.len() {
        let entry = zip
            .by_index(i)
            .map_err(|e| corrupt(format!("zip entry {i}: {e}")))?;
        let name = entry
            .name()
            .map_err(|e| corrupt(format!("zip: {e}")))?
            .to_string();
        let mut counted = std::io::BufReader::new(Counted {
            inner: entry,
            total: &mut actual,
            limit: limits.max_decompressed_bytes,
        });
        let scanned = match (format, name.as_str()) {
            (Format::Ods, "content.xml") => {
                super::precheck::ods_content(file, &mut counted, limits)
            }
            (Format::Xlsx, "xl/sharedStrings.xml") => {
                super::precheck::xlsx_shared_strings(file, &mut counted, limits)
            }
            _ => std::io::copy(&mut counted, &mut std::io::sink())
                .map(|_| ())
                .map_err(|e| corrupt(format!("zip entry {name}: {e}"))),
        };
        drop(counted);
        // Past the limit the reader fails: report the size, not the
        // parse error it caused.
        if actual > limits.max_decompressed_bytes {
            return Err(too_large(
                "the uncompressed size",
                actual,
                limits.max_decompressed_bytes,
            ));
        }
        scanned?;
    }
    Ok(format)
}

/// A zip entry's reader that counts what it inflates into a total shared
/// by all entries and fails once the total passes the limit.
struct Counted<'t, R> {
    inner: R,
    total: &'t mut u64,
    limit: u64,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        *self.total += n as u64;
        if *self.total > self.limit {
            return Err(std::io::Error::other("uncompressed size over the limit"));
        }
        Ok(n)
    }
}

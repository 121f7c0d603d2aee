//! Cheap checks of a spreadsheet's structure before calamine reads it, so
//! that ordinary hostile files are refused fast with a precise reason. The
//! parsing worker (crate::sandbox) is the backstop for what these miss.
//!
//! What is bounded is what calamine would allocate: for .xls the DIMENSIONS
//! record (reserved up front) and the rectangle spanned by the cells with
//! values (a dense range is built over it); for .ods the same rectangle
//! after `number-rows-repeated` / `number-columns-repeated`; for .xlsx the
//! number of shared strings. Empty, merely formatted cells do not count:
//! forms formatted down to the sheet's last row are normal.

use std::io::BufRead;

use quick_xml::events::{BytesStart, Event};

use super::error::FormError;
use super::policy::Limits;

/// The size of an .xls (BIFF8) sheet.
const XLS_ROWS: u64 = 65_536;
const XLS_COLS: u64 = 256;

/// Cells of the rectangle spanned by the cells with values: the rows a
/// form may hold (with room for titles and notes) times a generous width.
fn max_area(limits: &Limits) -> u64 {
    (u64::from(limits.max_rows) + super::reader::SLACK_ROWS) * super::reader::MAX_CELLS_PER_ROW
}

/// Shared strings of an .xlsx: far more than a form's distinct texts.
fn max_shared_strings(limits: &Limits) -> u64 {
    (u64::from(limits.max_rows) + super::reader::SLACK_ROWS) * 64
}

fn corrupt(file: &str, detail: String) -> FormError {
    FormError::Corrupt {
        file: file.to_string(),
        detail,
    }
}

fn too_large(file: &str, what: String, size: u64, limit: u64) -> FormError {
    FormError::TooLarge {
        file: file.to_string(),
        what,
        size,
        limit,
    }
}

/// The rectangle spanned by the cells with values of one sheet.
#[derive(Default)]
struct Span {
    rows: Option<(u64, u64)>,
    cols: Option<(u64, u64)>,
}

impl Span {
    fn add(&mut self, r0: u64, r1: u64, c0: u64, c1: u64) {
        let widen = |s: &mut Option<(u64, u64)>, a: u64, b: u64| {
            *s = Some(match *s {
                None => (a, b),
                Some((lo, hi)) => (lo.min(a), hi.max(b)),
            })
        };
        widen(&mut self.rows, r0, r1);
        widen(&mut self.cols, c0, c1);
    }

    fn extent(&self) -> (u64, u64) {
        match (self.rows, self.cols) {
            (Some((r0, r1)), Some((c0, c1))) => (r1 - r0 + 1, c1 - c0 + 1),
            _ => (0, 0),
        }
    }

    fn check(&self, file: &str, sheet: usize, limits: &Limits) -> Result<(), FormError> {
        let (rows, cols) = self.extent();
        let area = rows.saturating_mul(cols);
        if area > max_area(limits) {
            return Err(too_large(
                file,
                format!(
                    "the area spanned by the cells with values in sheet {} ({rows} rows × {cols} columns)",
                    sheet + 1
                ),
                area,
                max_area(limits),
            ));
        }
        Ok(())
    }
}

// ---- .xls: the compound file (CFB) and the BIFF8 records of its workbook.

const ENDOFCHAIN: u32 = 0xFFFF_FFFE;
const FREESECT: u32 = 0xFFFF_FFFF;

struct Cfb<'a> {
    bytes: &'a [u8],
    shift: u32,
    fat: Vec<u32>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

impl<'a> Cfb<'a> {
    fn sector(&self, id: u32) -> Option<&'a [u8]> {
        let size = 1usize << self.shift;
        let start = (id as usize).checked_add(1)?.checked_mul(size)?;
        self.bytes.get(start..start.checked_add(size)?)
    }

    /// The sectors of a chain, each checked to exist in the file and the
    /// FAT, with no cycle: what calamine indexes without checking.
    fn chain(&self, start: u32, what: &str) -> Result<Vec<u32>, String> {
        let mut out = Vec::new();
        let mut id = start;
        while id != ENDOFCHAIN {
            if out.len() > self.fat.len() {
                return Err(format!("{what}: the sector chain loops"));
            }
            if id as usize >= self.fat.len() || self.sector(id).is_none() {
                return Err(format!(
                    "{what}: sector {id} is beyond the end of the file or the allocation table"
                ));
            }
            out.push(id);
            id = self.fat[id as usize];
            if id == FREESECT {
                return Err(format!("{what}: the sector chain runs into a free sector"));
            }
        }
        Ok(out)
    }

    fn read_chain(&self, start: u32, what: &str) -> Result<Vec<u8>, String> {
        let mut data = Vec::new();
        for id in self.chain(start, what)? {
            data.extend_from_slice(self.sector(id).unwrap_or_default());
        }
        Ok(data)
    }
}

/// The workbook stream of an .xls, with every chain of the compound file
/// checked (calamine panics on a broken one).
fn xls_workbook(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let header = bytes
        .get(..512)
        .ok_or("the file is shorter than its header")?;
    let shift = u32::from(u16_at(header, 0x1E).unwrap_or(0));
    if shift != 9 && shift != 12 {
        return Err(format!("sector size 2^{shift} is not 512 or 4096"));
    }
    let mini_shift = u32::from(u16_at(header, 0x20).unwrap_or(0));
    if mini_shift != 6 {
        return Err(format!("mini sector size 2^{mini_shift} is not 64"));
    }
    let sector_size = 1usize << shift;
    let sectors = (bytes.len() / sector_size).saturating_sub(1);
    let n_fat = u32_at(header, 0x2C).unwrap_or(0) as usize;
    if n_fat > sectors {
        return Err(format!(
            "the header claims {n_fat} allocation-table sectors in a file of {sectors}"
        ));
    }
    let mut cfb = Cfb {
        bytes,
        shift,
        fat: Vec::new(),
    };
    // The DIFAT: 109 entries in the header, then a chain of sectors.
    let mut fat_sectors: Vec<u32> = (0..109)
        .filter_map(|i| u32_at(header, 0x4C + 4 * i))
        .filter(|&id| id < ENDOFCHAIN - 4)
        .collect();
    let mut difat = u32_at(header, 0x44).unwrap_or(ENDOFCHAIN);
    let mut hops = 0;
    while difat < ENDOFCHAIN - 4 {
        hops += 1;
        if hops > sectors {
            return Err("the DIFAT chain loops".into());
        }
        let s = cfb
            .sector(difat)
            .ok_or_else(|| format!("DIFAT sector {difat} is beyond the end of the file"))?;
        let per = sector_size / 4 - 1;
        fat_sectors.extend(
            (0..per)
                .filter_map(|i| u32_at(s, 4 * i))
                .filter(|&id| id < ENDOFCHAIN - 4),
        );
        difat = u32_at(s, 4 * per).unwrap_or(ENDOFCHAIN);
    }
    if fat_sectors.len() > sectors {
        return Err("more allocation-table sectors than the file holds".into());
    }
    for id in fat_sectors {
        let s = cfb
            .sector(id)
            .ok_or_else(|| format!("allocation-table sector {id} is beyond the end of the file"))?;
        cfb.fat
            .extend((0..sector_size / 4).filter_map(|i| u32_at(s, 4 * i)));
    }
    let dir = cfb.read_chain(u32_at(header, 0x30).unwrap_or(ENDOFCHAIN), "directory")?;
    let cutoff = u64::from(u32_at(header, 0x38).unwrap_or(4096));
    let mut root: Option<(u32, u64)> = None;
    let mut workbook: Option<(u32, u64)> = None;
    for entry in dir.chunks_exact(128) {
        let kind = entry[0x42];
        let start = u32_at(entry, 0x74).unwrap_or(ENDOFCHAIN);
        let size = u64::from(u32_at(entry, 0x78).unwrap_or(0));
        let name_len = (u16_at(entry, 0x40).unwrap_or(0) as usize).min(64);
        let name: String = char::decode_utf16(
            entry[..name_len]
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]])),
        )
        .map(|c| c.unwrap_or('\u{FFFD}'))
        .collect::<String>()
        .trim_end_matches('\0')
        .to_string();
        match kind {
            5 => root = Some((start, size)),
            2 => {
                // Every stream calamine might open must have a sound chain.
                if size >= cutoff {
                    let chain = cfb.chain(start, &format!("stream {name}"))?;
                    if ((chain.len() as u64) << shift) < size {
                        return Err(format!(
                            "stream {name} is truncated: {size} bytes declared, {} present",
                            (chain.len() as u64) << shift
                        ));
                    }
                }
                if name == "Workbook" || name == "Book" {
                    workbook = Some((start, size));
                }
            }
            _ => {}
        }
    }
    let (start, size) = workbook.ok_or("no Workbook stream")?;
    let size_usize = size as usize;
    if size >= cutoff {
        let mut data = cfb.read_chain(start, "stream Workbook")?;
        data.truncate(size_usize);
        return Ok(data);
    }
    // A small workbook lives in the mini stream, held by the root entry.
    let (root_start, root_size) = root.ok_or("no root entry")?;
    let mini = cfb.read_chain(root_start, "mini stream")?;
    if (mini.len() as u64) < root_size {
        return Err("the mini stream is truncated".into());
    }
    let minifat_bytes = cfb.read_chain(u32_at(header, 0x3C).unwrap_or(ENDOFCHAIN), "mini FAT")?;
    let minifat: Vec<u32> = (0..minifat_bytes.len() / 4)
        .filter_map(|i| u32_at(&minifat_bytes, 4 * i))
        .collect();
    let mut data = Vec::new();
    let mut id = start;
    while id != ENDOFCHAIN && data.len() < size_usize {
        if data.len() > mini.len() {
            return Err("stream Workbook: the mini sector chain loops".into());
        }
        let at = (id as usize).saturating_mul(64);
        let chunk = mini.get(at..at + 64).ok_or_else(|| {
            format!("stream Workbook: mini sector {id} is beyond the mini stream")
        })?;
        data.extend_from_slice(chunk);
        id = *minifat
            .get(id as usize)
            .ok_or_else(|| format!("stream Workbook: mini sector {id} is not allocated"))?;
    }
    if data.len() < size_usize {
        return Err(format!(
            "stream Workbook is truncated: {size} bytes declared, {} present",
            data.len()
        ));
    }
    data.truncate(size_usize);
    Ok(data)
}

/// Checks an .xls before calamine opens it.
pub(crate) fn xls(file: &str, bytes: &[u8], limits: &Limits) -> Result<(), FormError> {
    let stream = xls_workbook(bytes).map_err(|e| corrupt(file, format!("compound file: {e}")))?;
    let mut at = 0usize;
    let mut sheet: Option<usize> = None;
    let mut sheets = 0usize;
    let mut span = Span::default();
    while at + 4 <= stream.len() {
        let typ = u16_at(&stream, at).unwrap_or(0);
        let len = u16_at(&stream, at + 2).unwrap_or(0) as usize;
        let Some(data) = stream.get(at + 4..at + 4 + len) else {
            return Err(corrupt(
                file,
                format!(
                    "record 0x{typ:04X} at offset {at} runs past the end of the workbook stream"
                ),
            ));
        };
        at += 4 + len;
        let cell = |r: u64, c0: u64, c1: u64, span: &mut Span| -> Result<(), FormError> {
            if r >= XLS_ROWS || c1 >= XLS_COLS {
                return Err(corrupt(
                    file,
                    format!(
                        "a cell at row {} column {} lies outside an .xls sheet ({XLS_ROWS} rows × {XLS_COLS} columns)",
                        r + 1,
                        c1 + 1
                    ),
                ));
            }
            span.add(r, r, c0, c1);
            Ok(())
        };
        match typ {
            // BOF: a new substream (the globals, then each sheet).
            0x0809 => {
                // Substream 0 is the workbook globals: sheet n is substream n.
                if let Some(s) = sheet {
                    span.check(file, s.saturating_sub(1), limits)?;
                }
                sheet = Some(sheets);
                sheets += 1;
                span = Span::default();
            }
            // DIMENSIONS: calamine reserves room for every cell it claims.
            0x0200 => {
                let (rf, rl, cf, cl) = match len {
                    10 => (
                        u64::from(u16_at(data, 0).unwrap_or(0)),
                        u64::from(u16_at(data, 2).unwrap_or(0)),
                        u64::from(u16_at(data, 4).unwrap_or(0)),
                        u64::from(u16_at(data, 6).unwrap_or(0)),
                    ),
                    14 | 16 => (
                        u64::from(u32_at(data, 0).unwrap_or(0)),
                        u64::from(u32_at(data, 4).unwrap_or(0)),
                        u64::from(u16_at(data, 8).unwrap_or(0)),
                        u64::from(u16_at(data, 10).unwrap_or(0)),
                    ),
                    _ => continue,
                };
                if rl > XLS_ROWS || cl > XLS_COLS || rf > rl || cf > cl {
                    return Err(corrupt(
                        file,
                        format!(
                            "the DIMENSIONS record of sheet {} claims rows {rf}–{rl} and columns {cf}–{cl}, beyond an .xls sheet ({XLS_ROWS} rows × {XLS_COLS} columns)",
                            sheets.max(1) - 1
                        ),
                    ));
                }
            }
            // Cells with values: NUMBER, LABEL, RSTRING, BOOLERR, RK,
            // LABELSST, FORMULA. BLANK and MULBLANK (formatting) are not.
            0x0203 | 0x0204 | 0x00D6 | 0x0205 | 0x027E | 0x00FD | 0x0006 => {
                if let (Some(r), Some(c)) = (u16_at(data, 0), u16_at(data, 2)) {
                    cell(u64::from(r), u64::from(c), u64::from(c), &mut span)?;
                }
            }
            // MULRK: a run of cells in one row.
            0x00BD if len >= 6 => {
                let r = u64::from(u16_at(data, 0).unwrap_or(0));
                let c0 = u64::from(u16_at(data, 2).unwrap_or(0));
                let n = ((len - 6) / 6) as u64;
                let c1 = u64::from(u16_at(data, len - 2).unwrap_or(0)).max(c0 + n.max(1) - 1);
                cell(r, c0, c1, &mut span)?;
            }
            _ => {}
        }
    }
    if let Some(s) = sheet {
        span.check(file, s.saturating_sub(1), limits)?;
    }
    Ok(())
}

// ---- .ods content.xml and .xlsx shared strings, streamed.

fn attr_u64(e: &BytesStart<'_>, name: &str) -> Result<Option<u64>, String> {
    for a in e.attributes().with_checks(false) {
        let a = a.map_err(|e| e.to_string())?;
        if a.key.as_ref() == name {
            let v: &str = &a.value;
            return v
                .trim()
                .parse::<u64>()
                .map(Some)
                .map_err(|_| format!("{name} = {v:?} is not a count"));
        }
    }
    Ok(None)
}

fn has_attr(e: &BytesStart<'_>, name: &str) -> bool {
    e.attributes()
        .with_checks(false)
        .flatten()
        .any(|a| a.key.as_ref() == name)
}

/// Checks an .ods's content.xml as it is inflated.
pub(crate) fn ods_content<R: BufRead>(
    file: &str,
    reader: R,
    limits: &Limits,
) -> Result<(), FormError> {
    let xml_err = |e: String| corrupt(file, format!("content.xml: {e}"));
    let mut xml = quick_xml::Reader::from_reader(reader);
    let mut buf = Vec::new();
    let mut sheet: Option<usize> = None;
    let mut sheets = 0usize;
    let mut span = Span::default();
    let mut row: u64 = 0;
    let mut col: u64 = 0;
    let mut row_repeat: u64 = 1;
    // Column runs with values in the current row.
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let mut cells_with_values: u64 = 0;
    loop {
        let event = xml
            .read_event_into(&mut buf)
            .map_err(|e| xml_err(e.to_string()))?;
        let (e, empty) = match &event {
            Event::Start(e) => (Some(e), false),
            Event::Empty(e) => (Some(e), true),
            Event::End(end) => {
                if end.name().as_ref() == "table:table-row" {
                    end_row(
                        &mut span,
                        &mut runs,
                        &mut row,
                        row_repeat,
                        &mut cells_with_values,
                    );
                }
                (None, false)
            }
            Event::Eof => break,
            _ => (None, false),
        };
        if let Some(e) = e {
            match e.name().as_ref() {
                "table:table" => {
                    if let Some(s) = sheet {
                        span.check(file, s, limits)?;
                    }
                    sheet = Some(sheets);
                    sheets += 1;
                    span = Span::default();
                    row = 0;
                }
                "table:table-row" => {
                    row_repeat = attr_u64(e, "table:number-rows-repeated")
                        .map_err(&xml_err)?
                        .unwrap_or(1)
                        .max(1);
                    col = 0;
                    runs.clear();
                    if empty {
                        row = row.saturating_add(row_repeat);
                    }
                }
                "table:table-cell" | "table:covered-table-cell" => {
                    let repeat = attr_u64(e, "table:number-columns-repeated")
                        .map_err(&xml_err)?
                        .unwrap_or(1)
                        .max(1);
                    // A cell with a value has a type or content; an empty
                    // styled cell (the sheet formatted to its end) has neither.
                    if has_attr(e, "office:value-type") || !empty {
                        runs.push((col, col.saturating_add(repeat - 1)));
                    }
                    col = col.saturating_add(repeat);
                }
                _ => {}
            }
            if let Some(s) = sheet {
                span.check(file, s, limits)?;
            }
            if cells_with_values > max_area(limits) {
                return Err(too_large(
                    file,
                    "the number of cells with values after number-rows-repeated / number-columns-repeated".into(),
                    cells_with_values,
                    max_area(limits),
                ));
            }
        }
        buf.clear();
    }
    if let Some(s) = sheet {
        span.check(file, s, limits)?;
    }
    Ok(())
}

fn end_row(
    span: &mut Span,
    runs: &mut Vec<(u64, u64)>,
    row: &mut u64,
    repeat: u64,
    cells: &mut u64,
) {
    let last = row.saturating_add(repeat - 1);
    for (c0, c1) in runs.drain(..) {
        span.add(*row, last, c0, c1);
        *cells = cells.saturating_add((c1 - c0 + 1).saturating_mul(repeat));
    }
    *row = row.saturating_add(repeat);
}

/// Counts an .xlsx's shared strings as the table is inflated: calamine
/// holds them all in memory.
pub(crate) fn xlsx_shared_strings<R: BufRead>(
    file: &str,
    reader: R,
    limits: &Limits,
) -> Result<(), FormError> {
    let mut xml = quick_xml::Reader::from_reader(reader);
    let mut buf = Vec::new();
    let mut count: u64 = 0;
    let limit = max_shared_strings(limits);
    loop {
        match xml.read_event_into(&mut buf) {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) if e.local_name().as_ref() == "si" => {
                count += 1;
                if count > limit {
                    return Err(too_large(
                        file,
                        "the number of shared strings".into(),
                        count,
                        limit,
                    ));
                }
            }
            Ok(Event::Eof) => return Ok(()),
            Ok(_) => {}
            Err(e) => {
                return Err(corrupt(file, format!("xl/sharedStrings.xml: {e}")));
            }
        }
        buf.clear();
    }
}

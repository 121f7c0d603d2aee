//! The hostile corpus, built by the test code itself: spreadsheets whose
//! structure claims or spans far more than they hold, broken compound
//! files, zip bombs, and mails no MIME parser should be trusted with; and
//! next to them the normal forms whose formatting reaches the sheet's last
//! row, which must still be read.

use std::io::Write;

use crate::intake::{row, standard, TITLES, V};

/// The committed .xls fixture (a real Excel 97-2003 form), patched below.
pub fn xls_form() -> Vec<u8> {
    std::fs::read(crate::repo_root().join("provisioner/tests/fixtures/form.xls")).unwrap()
}

fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// DIMENSIONS (type 0x0200, 14 bytes) record offsets in the fixture.
fn dimensions(b: &[u8]) -> Vec<usize> {
    let at = find_all(b, &[0x00, 0x02, 0x0E, 0x00]);
    assert!(!at.is_empty(), "the fixture has no DIMENSIONS record");
    at
}

/// LABELSST (type 0x00FD, 10 bytes) record offsets in the fixture.
fn label_ssts(b: &[u8]) -> Vec<usize> {
    let at = find_all(b, &[0xFD, 0x00, 0x0A, 0x00]);
    assert!(at.len() > 2, "the fixture has too few LABELSST records");
    at
}

/// An .xls whose DIMENSIONS record claims 2^31 rows × 255 columns.
pub fn xls_huge_dimensions() -> Vec<u8> {
    let mut b = xls_form();
    for at in dimensions(&b) {
        put_u32(&mut b, at + 4, 0);
        put_u32(&mut b, at + 8, 0x7FFF_FFFF);
        put_u16(&mut b, at + 12, 0);
        put_u16(&mut b, at + 14, 255);
    }
    b
}

/// An .xls with two cells at opposite corners of a legal sheet (A1 and
/// IV65536): a dense range over them is 16.7 million cells.
pub fn xls_sparse_corners() -> Vec<u8> {
    let mut b = xls_form();
    let cells = label_ssts(&b);
    put_u16(&mut b, cells[0] + 4, 0);
    put_u16(&mut b, cells[0] + 6, 0);
    let last = *cells.last().unwrap();
    put_u16(&mut b, last + 4, 0xFFFF);
    put_u16(&mut b, last + 6, 0x00FF);
    b
}

/// An .xls with a cell at column 16,384 of row 65,536 (no .xls has one):
/// a dense range from A1 is a billion cells.
pub fn xls_cell_beyond_the_sheet() -> Vec<u8> {
    let mut b = xls_form();
    let last = *label_ssts(&b).last().unwrap();
    put_u16(&mut b, last + 4, 0xFFFF);
    put_u16(&mut b, last + 6, 0x3FFF);
    b
}

/// An .xls whose allocation table (FAT) points outside itself.
pub fn xls_broken_fat() -> Vec<u8> {
    let mut b = xls_form();
    let fat_sector = u32::from_le_bytes(b[0x4C..0x50].try_into().unwrap()) as usize;
    let start = (fat_sector + 1) * 512;
    for i in 0..128 {
        let at = start + 4 * i;
        let v = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        if v < 0xFFFF_FFFA {
            put_u32(&mut b, at, 0x00FF_FF00 + i as u32);
        }
    }
    b
}

/// An .xls whose directory chain loops on itself.
pub fn xls_looping_chain() -> Vec<u8> {
    let mut b = xls_form();
    let fat_sector = u32::from_le_bytes(b[0x4C..0x50].try_into().unwrap()) as usize;
    let dir = u32::from_le_bytes(b[0x30..0x34].try_into().unwrap()) as usize;
    put_u32(&mut b, (fat_sector + 1) * 512 + 4 * dir, dir as u32);
    b
}

/// An .xls cut off in the middle of its workbook stream.
pub fn xls_truncated() -> Vec<u8> {
    let b = xls_form();
    b[..b.len() * 6 / 10].to_vec()
}

/// Rewrites a zip, replacing or adding entries (`None` content removes).
pub fn rezip(
    zip_bytes: &[u8],
    changes: &[(&str, Option<Vec<u8>>, zip::CompressionMethod)],
) -> Vec<u8> {
    use std::io::Read;
    let mut src = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes)).unwrap();
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut out);
        let deflated = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for i in 0..src.len() {
            let mut e = src.by_index(i).unwrap();
            let name = e.name().unwrap().to_string();
            if changes.iter().any(|(n, _, _)| *n == name) {
                continue;
            }
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            z.start_file(name, deflated).unwrap();
            z.write_all(&data).unwrap();
        }
        for (name, content, method) in changes {
            if let Some(c) = content {
                let opts = zip::write::SimpleFileOptions::default()
                    .compression_method(*method)
                    .large_file(c.len() > u32::MAX as usize / 2);
                z.start_file(*name, opts).unwrap();
                z.write_all(c).unwrap();
            }
        }
        z.finish().unwrap();
    }
    out.into_inner()
}

fn entry(zip_bytes: &[u8], name: &str) -> Vec<u8> {
    use std::io::Read;
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes)).unwrap();
    let mut e = z.by_name(name).unwrap();
    let mut v = Vec::new();
    e.read_to_end(&mut v).unwrap();
    v
}

/// The test suite's standard two-row .xlsx form.
pub fn xlsx_form() -> Vec<u8> {
    standard(&[row(1, "3456789", "001"), row(2, "3456789", "002")])
}

/// A normal .xlsx formatted down to the sheet's last row: the dimension
/// Excel writes (`A1:O1048576`) and styled empty cells in row 1,048,576.
pub fn xlsx_formatted_to_last_row() -> Vec<u8> {
    let form = xlsx_form();
    let sheet = String::from_utf8(entry(&form, "xl/worksheets/sheet1.xml")).unwrap();
    let start = sheet.find("<dimension ref=\"").unwrap() + "<dimension ref=\"".len();
    let end = start + sheet[start..].find('"').unwrap();
    let mut sheet = format!("{}A1:O1048576{}", &sheet[..start], &sheet[end..]);
    let styled: String = (b'A'..=b'O')
        .map(|c| format!("<c r=\"{}1048576\" s=\"0\"/>", c as char))
        .collect();
    let at = sheet.find("</sheetData>").unwrap();
    sheet.insert_str(at, &format!("<row r=\"1048576\">{styled}</row>"));
    rezip(
        &form,
        &[(
            "xl/worksheets/sheet1.xml",
            Some(sheet.into_bytes()),
            zip::CompressionMethod::Deflated,
        )],
    )
}

/// An .xlsx whose sheet inflates from ~200 KB to 200 MB.
pub fn xlsx_zip_bomb() -> Vec<u8> {
    let mut sheet = b"<worksheet><sheetData>".to_vec();
    sheet.resize(200 << 20, b' ');
    rezip(
        &xlsx_form(),
        &[(
            "xl/worksheets/sheet1.xml",
            Some(sheet),
            zip::CompressionMethod::Deflated,
        )],
    )
}

/// An .xlsx whose sheet declares 1,000 bytes uncompressed (in its local
/// header and the central directory) but inflates to 150 MB.
pub fn xlsx_lying_sizes() -> Vec<u8> {
    let mut sheet = b"<worksheet><sheetData>".to_vec();
    sheet.resize(150 << 20, b' ');
    let name = "xl/worksheets/sheet1.xml";
    let mut b = rezip(
        &xlsx_form(),
        &[(name, Some(sheet), zip::CompressionMethod::Deflated)],
    );
    let mut patched = 0;
    for at in find_all(&b, b"PK\x03\x04") {
        if b.get(at + 30..at + 30 + name.len()) == Some(name.as_bytes()) {
            put_u32(&mut b, at + 22, 1000);
            patched += 1;
        }
    }
    for at in find_all(&b, b"PK\x01\x02") {
        if b.get(at + 46..at + 46 + name.len()) == Some(name.as_bytes()) {
            put_u32(&mut b, at + 24, 1000);
            patched += 1;
        }
    }
    assert_eq!(patched, 2, "sizes not patched");
    b
}

/// An .xlsx with 800,000 shared strings (stored, so no ratio check fires).
pub fn xlsx_huge_shared_strings() -> Vec<u8> {
    let n = 800_000;
    let mut sst = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><sst xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\" count=\"{n}\" uniqueCount=\"{n}\">"
    )
    .into_bytes();
    for _ in 0..n {
        sst.extend_from_slice(b"<si/>");
    }
    sst.extend_from_slice(b"</sst>");
    rezip(
        &xlsx_form(),
        &[(
            "xl/sharedStrings.xml",
            Some(sst),
            zip::CompressionMethod::Stored,
        )],
    )
}

fn ods_cell(v: &V) -> String {
    match v {
        V::S(t) => format!("<table:table-cell office:value-type=\"string\"><text:p>{t}</text:p></table:table-cell>"),
        V::N(n) => format!("<table:table-cell office:value-type=\"float\" office:value=\"{n}\"><text:p>{n}</text:p></table:table-cell>"),
        _ => "<table:table-cell table:style-name=\"ce1\"/>".to_string(),
    }
}

/// An .ods whose table is `rows` (XML fragments of table-rows).
pub fn ods(rows: &str) -> Vec<u8> {
    let content = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
<office:document-content xmlns:office=\"urn:oasis:names:tc:opendocument:xmlns:office:1.0\" \
xmlns:table=\"urn:oasis:names:tc:opendocument:xmlns:table:1.0\" \
xmlns:text=\"urn:oasis:names:tc:opendocument:xmlns:text:1.0\" office:version=\"1.2\">\
<office:body><office:spreadsheet><table:table table:name=\"申込書\">\
<table:table-column table:number-columns-repeated=\"16384\"/>{rows}</table:table>\
</office:spreadsheet></office:body></office:document-content>"
    );
    let manifest = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
<manifest:manifest xmlns:manifest=\"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0\" manifest:version=\"1.2\">\
<manifest:file-entry manifest:full-path=\"/\" manifest:media-type=\"application/vnd.oasis.opendocument.spreadsheet\"/>\
<manifest:file-entry manifest:full-path=\"content.xml\" manifest:media-type=\"text/xml\"/>\
</manifest:manifest>";
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut out);
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        let deflated = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        z.start_file("mimetype", stored).unwrap();
        z.write_all(b"application/vnd.oasis.opendocument.spreadsheet")
            .unwrap();
        z.start_file("META-INF/manifest.xml", deflated).unwrap();
        z.write_all(manifest.as_bytes()).unwrap();
        z.start_file("content.xml", deflated).unwrap();
        z.write_all(content.as_bytes()).unwrap();
        z.finish().unwrap();
    }
    out.into_inner()
}

/// The header and two application rows, as LibreOffice writes a form
/// whose cells are formatted to the sheet's end: each row padded with
/// `number-columns-repeated` empty styled cells up to column 16,384, and
/// the rest of the sheet one row repeated 1,048,573 times.
pub fn ods_formatted_to_last_row() -> Vec<u8> {
    let pad = format!(
        "<table:table-cell table:style-name=\"ce1\" table:number-columns-repeated=\"{}\"/>",
        16384 - TITLES.len()
    );
    let mut rows = String::new();
    let header: Vec<V> = TITLES.iter().map(|t| V::S(t.to_string())).collect();
    for r in [header, row(1, "3456789", "001"), row(2, "3456789", "002")] {
        rows.push_str("<table:table-row table:style-name=\"ro1\">");
        for v in &r {
            rows.push_str(&ods_cell(v));
        }
        rows.push_str(&pad);
        rows.push_str("</table:table-row>");
    }
    rows.push_str(
        "<table:table-row table:style-name=\"ro1\" table:number-rows-repeated=\"1048553\">\
<table:table-cell table:style-name=\"ce1\" table:number-columns-repeated=\"16384\"/></table:table-row>\
<table:table-row table:style-name=\"ro1\" table:number-rows-repeated=\"20\">\
<table:table-cell table:number-columns-repeated=\"16384\"/></table:table-row>",
    );
    ods(&rows)
}

/// An .ods of a few hundred bytes whose one value cell, repeated across
/// 16,000 columns and 6,000 rows, is 96 million cells.
pub fn ods_repeat_bomb() -> Vec<u8> {
    ods("<table:table-row table:number-rows-repeated=\"6000\">\
<table:table-cell office:value-type=\"float\" office:value=\"1\" table:number-columns-repeated=\"16000\">\
<text:p>1</text:p></table:table-cell></table:table-row>")
}

/// An .ods whose value cells sit at the first and the last row of the
/// sheet, 16,384 columns apart.
pub fn ods_sparse_repeats() -> Vec<u8> {
    ods("<table:table-row><table:table-cell office:value-type=\"string\"><text:p>a</text:p></table:table-cell></table:table-row>\
<table:table-row table:number-rows-repeated=\"1048574\"><table:table-cell table:number-columns-repeated=\"16384\"/></table:table-row>\
<table:table-row><table:table-cell table:number-columns-repeated=\"16383\"/>\
<table:table-cell office:value-type=\"string\"><text:p>z</text:p></table:table-cell></table:table-row>")
}

/// Every hostile spreadsheet, by the file name it is checked under.
pub fn hostile_spreadsheets() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("huge-dimensions.xls", xls_huge_dimensions()),
        ("sparse-corners.xls", xls_sparse_corners()),
        ("beyond-the-sheet.xls", xls_cell_beyond_the_sheet()),
        ("broken-fat.xls", xls_broken_fat()),
        ("looping-chain.xls", xls_looping_chain()),
        ("truncated.xls", xls_truncated()),
        ("repeat-bomb.ods", ods_repeat_bomb()),
        ("sparse-repeats.ods", ods_sparse_repeats()),
        ("zip-bomb.xlsx", xlsx_zip_bomb()),
        ("lying-sizes.xlsx", xlsx_lying_sizes()),
        ("shared-strings.xlsx", xlsx_huge_shared_strings()),
    ]
}

// ---- mail

const FROM: &str = "applicant@office.test";

fn head(id: &str, content_type: &str) -> String {
    format!(
        "From: <{FROM}>\r\nTo: signup@kx.test\r\nSubject: form\r\nMessage-ID: <{id}>\r\n\
Date: Fri, 27 Nov 2026 10:00:00 +0900\r\nMIME-Version: 1.0\r\nContent-Type: {content_type}\r\n\r\n"
    )
}

/// A mail carrying `file` as an attachment named `name`.
pub fn mail_with(id: &str, name: &str, file: &[u8]) -> Vec<u8> {
    format!(
        "{}--XX\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n申込書を送付します。\r\n--XX\r\n\
Content-Type: application/octet-stream; name=\"{name}\"\r\n\
Content-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
{}\r\n--XX--\r\n",
        head(id, "multipart/mixed; boundary=\"XX\""),
        crate::common::mime_base64(file)
    )
    .into_bytes()
}

/// 50,000 message/rfc822 parts, each inside the last (~1.6 MB).
pub fn mime_nested(id: &str) -> Vec<u8> {
    let mut m = head(id, "message/rfc822").into_bytes();
    for _ in 0..50_000 {
        m.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
    }
    m.extend_from_slice(b"Subject: innermost\r\n\r\nhello\r\n");
    m
}

/// One multipart of 100,000 parts.
pub fn mime_many_parts(id: &str) -> Vec<u8> {
    let mut m = head(id, "multipart/mixed; boundary=\"b\"").into_bytes();
    for _ in 0..100_000 {
        m.extend_from_slice(b"--b\r\n\r\nx\r\n");
    }
    m.extend_from_slice(b"--b--\r\n");
    m
}

/// A mail with a 40 MB attachment.
pub fn mime_huge_attachment(id: &str) -> Vec<u8> {
    let file = vec![b'A'; 30 << 20];
    mail_with(id, "big.xlsx", &file)
}

/// Every hostile mail: the MIME ones and one per hostile spreadsheet.
pub fn hostile_mails() -> Vec<(String, Vec<u8>)> {
    let mut v = vec![
        ("nested".to_string(), mime_nested("nested@office.test")),
        (
            "many-parts".to_string(),
            mime_many_parts("parts@office.test"),
        ),
        (
            "huge-attachment".to_string(),
            mime_huge_attachment("big@office.test"),
        ),
    ];
    for (name, bytes) in hostile_spreadsheets() {
        v.push((
            name.to_string(),
            mail_with(&format!("{name}@office.test"), name, &bytes),
        ));
    }
    v
}

//! Building application forms for the intake tests with rust_xlsxwriter,
//! laid out like the union's real form unless a test says otherwise.

use rust_xlsxwriter::{ExcelDateTime, Format, Formula, Workbook};

/// The 15 titles of the form, in the union's order.
pub const TITLES: [&str; 15] = [
    "No.",
    "担当センターコード",
    "契約単位コード",
    "組合コード",
    "支部コード",
    "事業所コード",
    "担当者用コード",
    "メールアドレス1",
    "組合名",
    "支部名",
    "事業所名",
    "担当者名",
    "認証局へ初回ログイン用のパスワード",
    "KXサーバへ初回ログイン時のパスワード",
    "メールアドレス2",
];

/// A cell value as a clerk's Excel would store it.
#[derive(Clone, Debug)]
pub enum V {
    /// Text.
    S(String),
    /// A number.
    N(f64),
    /// A date (year, month, day).
    Date(u16, u8, u8),
    /// A formula whose cached result is an error such as "#DIV/0!".
    Err(&'static str),
    /// An empty cell.
    Blank,
}

/// A text cell.
pub fn s(t: &str) -> V {
    V::S(t.to_string())
}

/// A valid office-contact row: office 12345, contact `contact`.
pub fn row(no: u32, office: &str, contact: &str) -> Vec<V> {
    vec![
        V::N(no as f64),
        s("JC"),
        s("2627600"),
        s("26276"),
        s("00"),
        s(office),
        s(contact),
        s(&format!("c{contact}.o{office}@example.co.jp")),
        s("全国設計事務所健康保険組合"),
        s("本部"),
        s("山田設計株式会社"),
        s("山田 太郎"),
        V::Blank,
        V::Blank,
        V::Blank,
    ]
}

/// The union's own head-office row (blank office code).
pub fn own_row(no: u32, contact: &str) -> Vec<V> {
    let mut r = row(no, "", contact);
    r[10] = V::Blank;
    r[7] = s(&format!("kx{contact}@sekkei-kenpo.jp"));
    r
}

/// Index of a column by its title.
pub fn col(title: &str) -> usize {
    TITLES.iter().position(|t| *t == title).unwrap()
}

/// Sets the cell of a form row under the column titled `title`.
pub fn set(r: &mut [V], title: &str, v: V) {
    r[col(title)] = v;
}

/// A worksheet to write: cells and merged ranges.
pub struct Sheet {
    /// The sheet tab name.
    pub name: String,
    /// (row, col, value), 0-based.
    pub cells: Vec<(u32, u16, V)>,
    /// (first row, first col, last row, last col, text)
    pub merges: Vec<(u32, u16, u32, u16, String)>,
}

impl Sheet {
    /// An empty sheet.
    pub fn new(name: &str) -> Sheet {
        Sheet {
            name: name.to_string(),
            cells: Vec::new(),
            merges: Vec::new(),
        }
    }

    /// Adds a cell (0-based row and column).
    pub fn put(&mut self, r: u32, c: u16, v: V) {
        self.cells.push((r, c, v));
    }
}

/// The real form's layout: title, note, 組合名 line, header on row 4,
/// rows from row 5, columns in `order` (titles), from column `first_col`.
pub fn form_sheet(
    name: &str,
    header_row: u32,
    first_col: u16,
    order: &[&str],
    rows: &[Vec<V>],
) -> Sheet {
    let mut sh = Sheet::new(name);
    if header_row >= 3 {
        sh.put(
            header_row - 3,
            first_col,
            s("【Kenpo eXpress利用申込兼電子証明書発行申請書（事業所用）】"),
        );
        sh.put(
            header_row - 2,
            first_col,
            s("下記の利用者向けにKenpo eXpressの利用および電子証明書の発行を申請します。"),
        );
        sh.put(
            header_row - 1,
            first_col,
            s("組合名： 全国設計事務所健康保険組合"),
        );
    }
    for (j, t) in order.iter().enumerate() {
        sh.put(header_row, first_col + j as u16, s(t));
    }
    for (i, r) in rows.iter().enumerate() {
        for (j, t) in order.iter().enumerate() {
            // Columns the form does not know get a note, as clerks add them.
            let v = match TITLES.iter().position(|x| x == t) {
                Some(k) => r[k].clone(),
                None => s("メモ"),
            };
            if !matches!(v, V::Blank) {
                sh.put(header_row + 1 + i as u32, first_col + j as u16, v);
            }
        }
    }
    sh
}

/// The standard form: header on spreadsheet row 4, first row on row 5.
pub fn standard(rows: &[Vec<V>]) -> Vec<u8> {
    xlsx(&[form_sheet("申込書", 3, 0, &TITLES, rows)])
}

/// The sheets as an .xlsx file, written by rust_xlsxwriter.
pub fn xlsx(sheets: &[Sheet]) -> Vec<u8> {
    let mut wb = Workbook::new();
    let date_format = Format::new().set_num_format("yyyy/mm/dd");
    for sh in sheets {
        let ws = wb.add_worksheet();
        ws.set_name(&sh.name).unwrap();
        for (r, c, v) in &sh.cells {
            match v {
                V::S(t) => {
                    ws.write_string(*r, *c, t).unwrap();
                }
                V::N(n) => {
                    ws.write_number(*r, *c, *n).unwrap();
                }
                V::Date(y, m, d) => {
                    let dt = ExcelDateTime::from_ymd(*y, *m, *d).unwrap();
                    ws.write_datetime_with_format(*r, *c, &dt, &date_format)
                        .unwrap();
                }
                V::Err(e) => {
                    ws.write_formula(*r, *c, Formula::new("=1/0").set_result(*e))
                        .unwrap();
                }
                V::Blank => {}
            }
        }
        for (r1, c1, r2, c2, t) in &sh.merges {
            ws.merge_range(*r1, *c1, *r2, *c2, t, &Format::new())
                .unwrap();
        }
    }
    wb.save_to_buffer().unwrap()
}

/// The applicant the signup mails of [`signup_mail`] come from.
pub const APPLICANT: &str = "applicant@office.test";
/// The signup mailbox [`signup_mail`] writes to.
pub const SIGNUP: &str = "signup@kx.test";

/// A signup mail from [`APPLICANT`] to [`SIGNUP`] with `form` attached
/// as form.xlsx, Message-ID `id`.
pub fn signup_mail(id: &str, form: &[u8]) -> Vec<u8> {
    use crate::common::mime_base64;
    format!(
        "From: {APPLICANT}\r\nTo: {SIGNUP}\r\nSubject: =?UTF-8?B?{}?=\r\nMessage-ID: <{id}>\r\n\
Date: Mon, 07 Dec 2026 10:00:00 +0900\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\n\
Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--XX\r\n\
Content-Type: application/vnd.openxmlformats-officedocument.spreadsheetml.sheet; name=\"form.xlsx\"\r\n\
Content-Disposition: attachment; filename=\"form.xlsx\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
{}\r\n--XX--\r\n",
        mime_base64("利用申込".as_bytes()),
        mime_base64("申込書を送付します。\r\n".as_bytes()),
        mime_base64(form)
    )
    .into_bytes()
}

/// A valid row for `office`/`contact` whose mail goes to the test mailboxes:
/// メールアドレス1 [`APPLICANT`], メールアドレス2 `email2` (blank when None).
pub fn contact_row(no: u32, office: &str, contact: &str, email2: Option<&str>) -> Vec<V> {
    let mut r = row(no, office, contact);
    set(&mut r, "メールアドレス1", s(APPLICANT));
    set(&mut r, "メールアドレス2", email2.map(s).unwrap_or(V::Blank));
    r
}

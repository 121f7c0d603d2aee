//! Normalisation of what clerks type into the form: full-width characters,
//! stray spaces and invisible characters, and codes that Excel turned into
//! numbers or dates.

use unicode_normalization::UnicodeNormalization;

/// One spreadsheet cell as read, before normalisation. Password cells are
/// never read into one of these (the reader keeps only their presence).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Cell {
    /// Nothing typed.
    Empty,
    /// Text as typed.
    Text(String),
    /// An integer (.xls stores integers as such).
    Int(i64),
    /// A number (.xlsx and .ods store every number as a float).
    Float(f64),
    /// TRUE or FALSE.
    Bool(bool),
    /// A date or time; the text is how the report shows it.
    Date(String),
    /// A formula error such as `#DIV/0!` or `#REF!`.
    Error(String),
}

impl Cell {
    /// The cell as the clerk sees it, for reports.
    pub fn original(&self) -> String {
        match self {
            Cell::Empty => String::new(),
            Cell::Text(s) => s.clone(),
            Cell::Int(i) => i.to_string(),
            Cell::Float(f) => float_text(*f),
            Cell::Bool(b) => if *b { "TRUE" } else { "FALSE" }.to_string(),
            Cell::Date(s) | Cell::Error(s) => s.clone(),
        }
    }

    /// Blank after trimming spaces and invisible characters.
    pub fn is_blank(&self) -> bool {
        match self {
            Cell::Empty => true,
            Cell::Text(s) => trim(s).is_empty(),
            _ => false,
        }
    }
}

fn float_text(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

// The text rules are shared with issuance (`Holder::normalized`).
pub use kxca_ca::rules::{code_text, name_text, trim};
use kxca_ca::rules::{is_invisible, is_space};

/// The key a header title is matched by: NFKC, no spaces or line breaks,
/// ASCII lower case, and a trailing full stop dropped ("No." = "No").
pub fn title_key(s: &str) -> String {
    let n: String = s
        .nfkc()
        .filter(|c| !is_space(*c) && !is_invisible(*c))
        .collect::<String>()
        .to_ascii_lowercase();
    // Clerks' and the union's annotations: "※事業所コード", "事業所コード(半角)".
    let mut k = n
        .trim_start_matches(['※', '*'])
        .trim_end_matches(['※', '*']);
    if k.ends_with(')') {
        if let Some(open) = k.rfind('(') {
            if open > 0 {
                k = &k[..open];
            }
        }
    }
    k.trim_end_matches('.').to_string()
}

/// A code cell after normalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    /// The code's digits.
    pub value: String,
    /// Excel stored the code as a number and it was left-padded with zeros.
    pub padded: bool,
}

/// Why a code cell cannot be a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeProblem {
    /// A number with a fractional part.
    Fraction,
    /// Excel made the code a date.
    Date,
    /// Excel wrote the number in E notation (digits lost).
    ENotation,
    /// The cell holds a formula error.
    FormulaError,
    /// Something other than digits.
    NotDigits,
    /// Too many or too few digits for the column.
    Width,
}

/// Reads a digit code: `width` pads integers Excel stored as numbers and is
/// required of text; `range` (min, max digits) applies when no width is set.
pub fn digit_code(
    cell: &Cell,
    width: Option<usize>,
    range: (usize, usize),
) -> Result<Option<Code>, CodeProblem> {
    let check = |value: String, padded: bool| -> Result<Option<Code>, CodeProblem> {
        let ok = match width {
            Some(w) => value.len() == w,
            None => value.len() >= range.0 && value.len() <= range.1,
        };
        if ok {
            Ok(Some(Code { value, padded }))
        } else {
            Err(CodeProblem::Width)
        }
    };
    let number = |digits: String| -> Result<Option<Code>, CodeProblem> {
        match width {
            Some(w) if digits.len() < w => check(format!("{digits:0>w$}"), true),
            _ => check(digits, false),
        }
    };
    match cell {
        Cell::Empty => Ok(None),
        Cell::Text(s) => {
            let t = code_text(s);
            if t.is_empty() {
                Ok(None)
            } else if is_excel_error(&t) {
                Err(CodeProblem::FormulaError)
            } else if t.bytes().all(|b| b.is_ascii_digit()) {
                check(t, false)
            } else if is_e_notation(&t) {
                Err(CodeProblem::ENotation)
            } else if is_decimal(&t) {
                Err(CodeProblem::Fraction)
            } else {
                Err(CodeProblem::NotDigits)
            }
        }
        Cell::Int(i) if *i >= 0 => number(i.to_string()),
        Cell::Int(_) => Err(CodeProblem::NotDigits),
        Cell::Float(f) => {
            if !f.is_finite() || *f < 0.0 {
                Err(CodeProblem::NotDigits)
            } else if *f >= 1e15 {
                // Excel shows numbers this large in E-notation and has lost digits.
                Err(CodeProblem::ENotation)
            } else if f.fract() != 0.0 {
                Err(CodeProblem::Fraction)
            } else {
                number(format!("{}", *f as u64))
            }
        }
        Cell::Bool(_) => Err(CodeProblem::NotDigits),
        Cell::Date(_) => Err(CodeProblem::Date),
        Cell::Error(_) => Err(CodeProblem::FormulaError),
    }
}

/// A letter code such as the centre code: NFKC, upper case.
pub fn letter_code(cell: &Cell) -> Result<Option<String>, CodeProblem> {
    match cell {
        Cell::Empty => Ok(None),
        Cell::Text(s) => {
            let t = code_text(s).to_ascii_uppercase();
            if is_excel_error(&t) {
                return Err(CodeProblem::FormulaError);
            }
            Ok(if t.is_empty() { None } else { Some(t) })
        }
        Cell::Int(_) | Cell::Float(_) | Cell::Bool(_) => Err(CodeProblem::NotDigits),
        Cell::Date(_) => Err(CodeProblem::Date),
        Cell::Error(_) => Err(CodeProblem::FormulaError),
    }
}

/// Text of any cell for a text field (names, e-mail): numbers as shown.
pub fn text_of(cell: &Cell) -> String {
    match cell {
        Cell::Text(s) => s.clone(),
        other => other.original(),
    }
}

/// Excel's error values. A formula's cached error can arrive as text
/// (some writers store it as a string result), so text is checked too.
const EXCEL_ERRORS: &[&str] = &[
    "#DIV/0!",
    "#N/A",
    "#NAME?",
    "#NULL!",
    "#NUM!",
    "#REF!",
    "#VALUE!",
    "#SPILL!",
    "#CALC!",
    "#GETTING_DATA",
    "#FIELD!",
    "#BLOCKED!",
    "#CONNECT!",
    "#BUSY!",
    "#UNKNOWN!",
];

fn is_excel_error(t: &str) -> bool {
    EXCEL_ERRORS.iter().any(|e| e.eq_ignore_ascii_case(t))
}

fn is_e_notation(t: &str) -> bool {
    let lower = t.to_ascii_lowercase();
    let Some((mantissa, exp)) = lower.split_once('e') else {
        return false;
    };
    let exp = exp.strip_prefix(['+', '-']).unwrap_or(exp);
    let mantissa_ok = !mantissa.is_empty()
        && mantissa.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && mantissa.bytes().filter(|b| *b == b'.').count() <= 1
        && mantissa.bytes().any(|b| b.is_ascii_digit());
    mantissa_ok && !exp.is_empty() && exp.bytes().all(|b| b.is_ascii_digit())
}

fn is_decimal(t: &str) -> bool {
    let mut parts = t.split('.');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(a), Some(b), None)
            if !a.is_empty() && a.bytes().all(|c| c.is_ascii_digit())
                && !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit())
    )
}

/// Whether every character is in JIS X 0208 (or ASCII). Returns the first
/// character that is not: half-width katakana, NEC/IBM extensions such as
/// ① and ㈱, and characters without a JIS code at all.
pub fn first_outside_jis_x0208(s: &str) -> Option<char> {
    s.chars().find(|c| !in_jis_x0208(*c))
}

fn in_jis_x0208(c: char) -> bool {
    if c.is_ascii() {
        return !c.is_ascii_control();
    }
    if ('\u{FF61}'..='\u{FF9F}').contains(&c) {
        // Half-width katakana (JIS X 0201), which ISO-2022-JP would widen.
        return false;
    }
    let mut buf = [0u8; 4];
    let (bytes, _, unmappable) = encoding_rs::EUC_JP.encode(c.encode_utf8(&mut buf));
    if unmappable || bytes.len() != 2 {
        return false;
    }
    // EUC-JP puts JIS X 0208 row r at lead byte 0xA0 + r. Rows 1-8 and
    // 16-84 are the standard; row 13 (NEC specials) and 89-92 (IBM
    // extensions) exist only in Windows' code page.
    let row = bytes[0].wrapping_sub(0xA0);
    (1..=8).contains(&row) || (16..=84).contains(&row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_typed_full_width_or_with_spaces() {
        let w3 = (Some(3), (1, 10));
        assert_eq!(
            digit_code(&Cell::Text("　００１\u{200B} ".into()), w3.0, w3.1)
                .unwrap()
                .unwrap()
                .value,
            "001"
        );
        assert_eq!(
            digit_code(&Cell::Text("\u{FEFF}001\u{00A0}".into()), w3.0, w3.1)
                .unwrap()
                .unwrap()
                .value,
            "001"
        );
    }

    #[test]
    fn integer_codes_are_padded() {
        let c = digit_code(&Cell::Float(1.0), Some(3), (1, 10))
            .unwrap()
            .unwrap();
        assert_eq!(
            c,
            Code {
                value: "001".into(),
                padded: true
            }
        );
        let c = digit_code(&Cell::Int(1), Some(3), (1, 10))
            .unwrap()
            .unwrap();
        assert_eq!(c.value, "001");
        let c = digit_code(&Cell::Float(26276.0), Some(5), (1, 10))
            .unwrap()
            .unwrap();
        assert_eq!(
            c,
            Code {
                value: "26276".into(),
                padded: false
            }
        );
        // No width: nothing to pad to.
        let c = digit_code(&Cell::Float(123.0), None, (1, 10))
            .unwrap()
            .unwrap();
        assert_eq!(
            c,
            Code {
                value: "123".into(),
                padded: false
            }
        );
    }

    #[test]
    fn code_problems() {
        let p = |c: Cell| digit_code(&c, Some(3), (1, 10)).unwrap_err();
        assert_eq!(p(Cell::Float(1.5)), CodeProblem::Fraction);
        assert_eq!(p(Cell::Text("1.5".into())), CodeProblem::Fraction);
        assert_eq!(p(Cell::Float(1e20)), CodeProblem::ENotation);
        assert_eq!(p(Cell::Text("1E+03".into())), CodeProblem::ENotation);
        assert_eq!(p(Cell::Text("１.２Ｅ３".into())), CodeProblem::ENotation);
        assert_eq!(p(Cell::Date("2024-01-01".into())), CodeProblem::Date);
        assert_eq!(p(Cell::Error("#DIV/0!".into())), CodeProblem::FormulaError);
        assert_eq!(p(Cell::Text("0O1".into())), CodeProblem::NotDigits);
        assert_eq!(p(Cell::Text("1".into())), CodeProblem::Width);
        assert_eq!(p(Cell::Float(1234.0)), CodeProblem::Width);
    }

    #[test]
    fn names_fold_spaces() {
        assert_eq!(name_text(" 山田　　太郎 "), "山田\u{3000}太郎");
        assert_eq!(name_text("Yamada  \t Taro\u{200B}"), "Yamada Taro");
        // NFC composes a decomposed ガ.
        assert_eq!(name_text("\u{30AB}\u{3099}"), "ガ");
    }

    #[test]
    fn jis_x0208() {
        assert_eq!(first_outside_jis_x0208("山田太郎 ABC"), None);
        assert_eq!(first_outside_jis_x0208("髙橋"), Some('髙'));
        assert_eq!(first_outside_jis_x0208("㈱山田"), Some('㈱'));
        assert_eq!(first_outside_jis_x0208("①"), Some('①'));
        assert_eq!(first_outside_jis_x0208("ﾔﾏﾀﾞ"), Some('ﾔ'));
        assert_eq!(first_outside_jis_x0208("𠮷野家"), Some('𠮷'));
    }

    #[test]
    fn titles_match_loosely() {
        assert_eq!(title_key("メールアドレス１"), title_key("メールアドレス1"));
        assert_eq!(title_key("担当者\n用コード"), title_key("担当者用コード"));
        assert_eq!(title_key("No．"), "no");
        assert_eq!(
            title_key("※事業所コード（半角数字）"),
            title_key("事業所コード")
        );
    }
}

//! Writes the .xlsx that provisioner/tests/fixtures/make.sh converts to the
//! committed .xls and .ods fixtures (LibreOffice is not needed by the tests).

use rust_xlsxwriter::{ExcelDateTime, Format, Workbook, XlsxError};

fn main() -> Result<(), XlsxError> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "form.xlsx".into());
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.set_name("申込書")?;
    ws.write_string(
        0,
        0,
        "【Kenpo eXpress利用申込兼電子証明書発行申請書（事業所用）】",
    )?;
    ws.write_string(2, 0, "組合名： 全国設計事務所健康保険組合")?;
    let policy = kxca_provisioner::intake::IntakePolicy::shipped();
    for (c, t) in policy.columns.titles().iter().enumerate() {
        ws.write_string(3, c as u16, *t)?;
    }
    let rows: [[&str; 12]; 4] = [
        [
            "1",
            "JC",
            "2627600",
            "26276",
            "00",
            "12345",
            "#1",
            "a@example.co.jp",
            "全国設計事務所健康保険組合",
            "本部",
            "山田設計株式会社",
            "山田 太郎",
        ],
        [
            "2",
            "ＪＣ",
            "２６２７６００",
            "２６２７６",
            "００",
            "１２３４６",
            "００１",
            "ｂ＠ｅｘａｍｐｌｅ．ｃｏ．ｊｐ",
            "全国設計事務所健康保険組合",
            "本部",
            "鈴木建築設計",
            "鈴木　花子",
        ],
        [
            "3",
            "JC",
            "2627601",
            "26276",
            "00",
            "12347",
            "001",
            "c@example.co.jp",
            "全国設計事務所健康保険組合",
            "本部",
            "佐藤設計",
            "佐藤 一郎",
        ],
        [
            "4",
            "JC",
            "2627600",
            "26276",
            "00",
            "#date",
            "001",
            "d@example.co.jp",
            "全国設計事務所健康保険組合",
            "本部",
            "高田設計",
            "高田 次郎",
        ],
    ];
    let date = Format::new().set_num_format("yyyy/mm/dd");
    for (i, r) in rows.iter().enumerate() {
        let row = 4 + i as u32;
        for (c, v) in r.iter().enumerate() {
            let c = c as u16;
            match *v {
                "#1" => {
                    ws.write_number(row, c, 1.0)?;
                }
                "#date" => {
                    ws.write_datetime_with_format(
                        row,
                        c,
                        &ExcelDateTime::from_ymd(2024, 4, 1)?,
                        &date,
                    )?;
                }
                _ if c == 0 => {
                    ws.write_number(row, c, v.parse::<f64>().unwrap_or(0.0))?;
                }
                _ => {
                    ws.write_string(row, c, *v)?;
                }
            }
        }
    }
    wb.save(&out)?;
    Ok(())
}

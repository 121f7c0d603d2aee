//! Writes an application form of N valid rows, one office each, for
//! benches/provisioning.sh: `bench_form OUT.xlsx N EMAIL1 EMAIL2`.

use rust_xlsxwriter::{Workbook, XlsxError};

fn main() -> Result<(), XlsxError> {
    let mut args = std::env::args().skip(1);
    let out = args.next().unwrap_or_else(|| "form.xlsx".into());
    let rows: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let email1 = args
        .next()
        .unwrap_or_else(|| "applicant@office.test".into());
    let email2 = args.next().unwrap_or_default();
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.set_name("申込書")?;
    ws.write_string(
        0,
        0,
        "【Kenpo eXpress利用申込兼電子証明書発行申請書（事業所用）】",
    )?;
    ws.write_string(1, 0, "組合名： 全国設計事務所健康保険組合")?;
    let policy = kxca_provisioner::intake::IntakePolicy::shipped();
    for (c, t) in policy.columns.titles().iter().enumerate() {
        ws.write_string(2, c as u16, *t)?;
    }
    for i in 0..rows {
        let r = 3 + i;
        let office = format!("{}", 100_000 + i);
        let cells = [
            (i + 1).to_string(),
            "JC".into(),
            "2627600".into(),
            "26276".into(),
            "00".into(),
            office,
            "001".into(),
            email1.clone(),
            "全国設計事務所健康保険組合".into(),
            "本部".into(),
            format!("設計事務所{i}"),
            "山田 太郎".into(),
            String::new(),
            String::new(),
            email2.clone(),
        ];
        for (c, v) in cells.iter().enumerate() {
            if !v.is_empty() {
                ws.write_string(r, c as u16, v)?;
            }
        }
    }
    wb.save(&out)
}

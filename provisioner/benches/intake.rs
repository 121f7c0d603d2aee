//! Parse and validate a generated 10,000-row .xlsx; compare with calamine
//! merely reading the same file. Each measurement runs in a child process so
//! that its peak RSS (VmHWM) is its own. `cargo bench -p kxca-provisioner --bench intake`.

use std::io::Cursor;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use calamine::{Reader, Xlsx};
use kxca_provisioner::intake::{check_bytes, IntakePolicy, NoExistingAccounts, RowStatus};

const ROWS: u32 = 10_000;
const RUNS: usize = 5;

fn generate(path: &Path) {
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    ws.set_name("申込書").unwrap();
    let policy = IntakePolicy::shipped();
    let titles = policy.columns.titles();
    ws.write_string(
        0,
        0,
        "【Kenpo eXpress利用申込兼電子証明書発行申請書（事業所用）】",
    )
    .unwrap();
    ws.write_string(1, 0, "組合名： 全国設計事務所健康保険組合")
        .unwrap();
    for (c, t) in titles.iter().enumerate() {
        ws.write_string(2, c as u16, *t).unwrap();
    }
    for i in 0..ROWS {
        let r = 3 + i;
        let office = format!("{}", 100_000 + i);
        ws.write_number(r, 0, f64::from(i + 1)).unwrap();
        ws.write_string(r, 1, "JC").unwrap();
        ws.write_string(r, 2, "2627600").unwrap();
        ws.write_number(r, 3, 26276.0).unwrap();
        ws.write_string(r, 4, "００").unwrap();
        ws.write_string(r, 5, &office).unwrap();
        ws.write_number(r, 6, 1.0).unwrap();
        ws.write_string(r, 7, format!("kx{office}@example.co.jp"))
            .unwrap();
        ws.write_string(r, 8, "全国設計事務所健康保険組合").unwrap();
        ws.write_string(r, 9, "本部").unwrap();
        ws.write_string(r, 10, format!("株式会社設計{office}事務所"))
            .unwrap();
        ws.write_string(r, 11, "山田　太郎").unwrap();
        ws.write_string(r, 14, format!("sub{office}@example.jp"))
            .unwrap();
    }
    wb.save(path).unwrap();
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|v| v.parse().unwrap_or(0)))
        })
        .unwrap_or(0)
}

/// One measurement in this process: prints "<ms> <peak kB> <rows>".
fn child(mode: &str, path: &str) {
    let bytes = std::fs::read(path).unwrap();
    let policy = IntakePolicy::shipped();
    let t = Instant::now();
    let rows = match mode {
        "read" => {
            let mut wb = Xlsx::new(Cursor::new(&bytes[..])).unwrap();
            let name = wb.sheet_names()[0].clone();
            wb.worksheet_range(&name).unwrap().height()
        }
        _ => {
            let r = check_bytes("bench.xlsx", &bytes, &policy, &NoExistingAccounts).unwrap();
            assert_eq!(
                r.count(RowStatus::Valid),
                ROWS as usize,
                "every generated row is valid"
            );
            r.rows.len()
        }
    };
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    println!("{ms:.1} {} {rows}", peak_rss_kb());
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let (Some(mode), Some(path)) = (
        args.iter().find_map(|a| a.strip_prefix("--mode=")),
        args.iter().find_map(|a| a.strip_prefix("--file=")),
    ) {
        return child(mode, path);
    }
    let dir = std::env::temp_dir().join(format!("kxca-intake-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("form-10000.xlsx");
    generate(&file);
    let size = std::fs::metadata(&file).unwrap().len();
    let exe = std::env::current_exe().unwrap();
    let mut results = Vec::new();
    for mode in ["read", "check"] {
        let (mut ms, mut rss) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            let out = Command::new(&exe)
                .arg(format!("--mode={mode}"))
                .arg(format!("--file={}", file.display()))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let line = String::from_utf8(out.stdout).unwrap();
            let f: Vec<f64> = line
                .split_whitespace()
                .map(|x| x.parse().unwrap())
                .collect();
            ms.push(f[0]);
            rss.push(f[1]);
        }
        results.push((mode, median(ms), median(rss)));
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("intake benchmark: {ROWS} rows, {size} bytes .xlsx, median of {RUNS} runs each");
    for (mode, ms, rss) in &results {
        let what = if *mode == "read" {
            "calamine read only"
        } else {
            "kxca parse+validate"
        };
        println!(
            "  {what:<22} {ms:8.1} ms   peak RSS {:7.1} MiB",
            rss / 1024.0
        );
    }
    let (r, c) = (&results[0], &results[1]);
    println!(
        "  ratio check/read: time {:.2}x, peak RSS {:.2}x; goal < 1000 ms: {}",
        c.1 / r.1,
        c.2 / r.2,
        if c.1 < 1000.0 { "met" } else { "NOT met" }
    );
}

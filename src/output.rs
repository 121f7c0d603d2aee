use std::io::IsTerminal;

/// Logs go to stderr so stdout stays machine-readable (`--json`).
pub fn init_logging(verbose: u8) {
    // The yubikey crate logs at ERROR what kxca reports itself in one line
    // (a wrong PIN, an empty reader beside the YubiKey): shown from -v on.
    let default = match verbose {
        0 => "warn,yubikey=off",
        1 => "info,yubikey=warn",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KXCA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// A plain text table with aligned columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c}{}", " ".repeat(widths[i] - c.chars().count())))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(header.iter().map(|s| s.to_string()).collect());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.clone()));
        out.push('\n');
    }
    out
}

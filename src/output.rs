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

/// An error and its causes on one line joined with ": ", each cause once.
/// Library errors often both print their source and return it from
/// `source()` (thiserror's `{source}` with a `source` field, `#[from]` with
/// `{0}`): a cause whose text the line already holds adds nothing and is
/// left out.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string().replace(['\r', '\n'], " ");
        let text = text.trim();
        if text.is_empty() || line.contains(text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn each_cause_once() {
        // The real pair from issue 11: the CA error interpolates the hsm
        // error, which interpolates the io error, and each is also a source.
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let hsm = kxca_hsm::Error::SecretFile {
            path: "hsmy/pin".into(),
            source: io,
        };
        let e = anyhow::Error::from(kxca_ca::Error::Key(hsm));
        assert_eq!(
            one_line(&e),
            "key: cannot read secret file hsmy/pin: No such file or directory"
        );
        let e = anyhow::anyhow!("inner cause").context("outer");
        assert_eq!(one_line(&e), "outer: inner cause");
    }
}

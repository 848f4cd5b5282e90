//! What the commands print: lines on standard output that end the process
//! quietly when the reader has gone away, JSON documents, sizes.

/// Writes a line to stdout; when the reader has gone away (`backupctl ls |
/// head`), exits quietly instead of panicking as `println!` would.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::emit(format_args!($($arg)*))
    };
}
pub(crate) use out;

/// Writes one line for [`out!`].
pub(crate) fn emit(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
    {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {error}");
        std::process::exit(1);
    }
}

/// Writes `bytes` as they are to stdout (a generated script or page); a
/// reader gone away ends the process quietly, as with [`out!`].
pub(crate) fn print_bytes(bytes: &[u8]) -> Result<(), backup_core::Error> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(error) => Err(backup_core::Error::io(
            "cannot write to standard output",
            "-",
            error,
        )),
        Ok(()) => Ok(()),
    }
}

/// Prints `value` as one pretty-printed JSON document (the `--json` output).
pub(crate) fn print_json(value: &serde_json::Value) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => out!("{text}"),
        Err(error) => eprintln!("error: cannot encode JSON output: {error}"),
    }
}

/// A size for people: `512 B`, `1.50 KiB`, `3.00 GiB`.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

/// The one-line summary of a prune, shown by `prune` and `forget --prune`.
pub(crate) fn print_prune(report: &backup_core::PruneReport) {
    out!(
        "prune: {} packs ({}) before; {} unused packs marked, {} repacked into {}; {} deleted ({}), {} rescued; {} mark(s) waiting for the grace period, {} postponed while a backup runs",
        report.packs_before,
        human_bytes(report.bytes_before),
        report.packs_marked,
        report.packs_repacked,
        report.packs_written,
        report.packs_deleted,
        human_bytes(report.bytes_deleted),
        report.packs_rescued,
        report.marks_waiting,
        report.marks_postponed
    );
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn sizes_use_binary_units_with_two_decimals() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(3 << 30), "3.00 GiB");
        assert_eq!(human_bytes(u64::MAX), "16777216.00 TiB");
    }
}

//! The `--progress` display: a bar on a terminal, or JSON lines on stderr.

use backup_core::{Phase, ProgressSink};

use crate::cli::{Common, ProgressMode};

/// Builds the progress sink for `--progress`: `None` when nothing is shown.
pub(crate) fn progress_sink(common: &Common) -> Option<ProgressSink> {
    use std::io::IsTerminal;
    let mode = match common.progress {
        ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bar,
        ProgressMode::Auto => ProgressMode::None,
        other => other,
    };
    match mode {
        ProgressMode::Json => Some(ProgressSink::new(|event| {
            if let Ok(line) = serde_json::to_string(event) {
                eprintln!("{line}");
            }
        })),
        ProgressMode::Bar => Some(progress_bar()),
        ProgressMode::Auto | ProgressMode::None => None,
    }
}

/// A bar of bytes done out of the total, with the file count as its message.
fn progress_bar() -> ProgressSink {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} {percent}% {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    ProgressSink::new(move |event| {
        bar.set_length(event.bytes_total.unwrap_or(event.bytes_done));
        bar.set_position(event.bytes_done);
        let files = match event.files_total {
            Some(total) => format!("{}/{} files", event.files_done, total),
            None => format!("{} files", event.files_done),
        };
        bar.set_message(files);
        if event.phase != Phase::Running {
            bar.finish_and_clear();
        }
    })
}

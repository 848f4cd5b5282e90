//! `machine-limits`: how fast this machine can read a dataset and hash and
//! compress its bytes, printed as one JSON document.
//!
//! ```text
//! machine-limits [--threads N] [--level L] [--max-bytes N] [--no-cold] DIR
//! ```
//!
//! * `read_cached`: every file read whole, in parallel, after a first
//!   untimed read has put it in the page cache.
//! * `read_cold`: the same after `posix_fadvise(DONTNEED)` on every file
//!   (skipped with `--no-cold`). Pages the kernel cannot drop (not yet
//!   written back) stay cached, so sync the dataset first.
//! * `sha256`, `zstd`, `sha256_zstd`: the dataset's bytes (at most
//!   `--max-bytes`, default 4 GiB, held in memory in 1 MiB pieces) hashed,
//!   compressed at `--level` (default 3), and both, on all threads.
//!
//! Throughputs are in MB/s (10^6 bytes per second); `*_dataset_seconds`
//! scales each rate to the whole dataset.

use std::path::PathBuf;
use std::process::ExitCode;

use backup_benches::limits::{self, Measurement};

struct Options {
    dir: PathBuf,
    threads: usize,
    level: i32,
    max_bytes: u64,
    cold: bool,
}

const USAGE: &str =
    "usage: machine-limits [--threads N] [--level L] [--max-bytes N] [--no-cold] DIR";

fn parse_options() -> Result<Options, String> {
    let mut dir = None;
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut level = 3;
    let mut max_bytes = 4u64 << 30;
    let mut cold = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--threads" => {
                threads = value("--threads")?
                    .parse()
                    .map_err(|error| format!("--threads: {error}"))?;
            }
            "--level" => {
                level = value("--level")?
                    .parse()
                    .map_err(|error| format!("--level: {error}"))?;
            }
            "--max-bytes" => {
                max_bytes = value("--max-bytes")?
                    .parse()
                    .map_err(|error| format!("--max-bytes: {error}"))?;
            }
            "--no-cold" => cold = false,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other if other.starts_with('-') => {
                return Err(format!("unknown option {other}\n{USAGE}"))
            }
            other => {
                if dir.replace(PathBuf::from(other)).is_some() {
                    return Err(format!("one directory only\n{USAGE}"));
                }
            }
        }
    }
    Ok(Options {
        dir: dir.ok_or_else(|| USAGE.to_string())?,
        threads: threads.max(1),
        level,
        max_bytes,
        cold,
    })
}

fn run(options: &Options) -> Result<serde_json::Value, String> {
    let context = |what: &'static str| {
        let dir = options.dir.display().to_string();
        move |error: std::io::Error| format!("{what} {dir}: {error}")
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(options.threads)
        .build()
        .map_err(|error| format!("thread pool: {error}"))?;
    let files = limits::list_files(&options.dir).map_err(context("listing"))?;
    let total: u64 = files.iter().map(|file| file.size).sum();

    limits::read_files(&files, &pool).map_err(context("reading"))?;
    let cached = limits::read_files(&files, &pool).map_err(context("reading"))?;
    let cold = if options.cold {
        limits::evict_from_page_cache(&files).map_err(context("evicting"))?;
        let cold = limits::read_files(&files, &pool).map_err(context("reading"))?;
        Some(cold)
    } else {
        None
    };

    let pieces =
        limits::load_pieces(&files, 1 << 20, options.max_bytes).map_err(context("loading"))?;
    let sha256 = limits::hash(&pieces, &pool);
    let zstd = limits::compress_all(&pieces, options.level, &pool);
    let both = limits::hash_and_compress(&pieces, options.level, &pool);
    drop(pieces);

    let dataset_seconds = |measurement: &Measurement| {
        let rate = measurement.megabytes_per_second();
        if rate > 0.0 {
            total as f64 / 1e6 / rate
        } else {
            0.0
        }
    };
    Ok(serde_json::json!({
        "dataset": options.dir.display().to_string(),
        "files": files.len(),
        "bytes": total,
        "threads": options.threads,
        "zstd_level": options.level,
        "read_cached": cached.to_json(),
        "read_cold": cold.map(|cold| {
            let mut json = cold.to_json();
            json["method"] = "posix_fadvise(POSIX_FADV_DONTNEED) on every file".into();
            json
        }),
        "sha256": sha256.to_json(),
        "zstd": zstd.to_json(),
        "sha256_zstd": both.to_json(),
        "read_cached_dataset_seconds": dataset_seconds(&cached),
        "read_cold_dataset_seconds": cold.as_ref().map(dataset_seconds),
        "sha256_zstd_dataset_seconds": dataset_seconds(&both),
    }))
}

fn main() -> ExitCode {
    let outcome = parse_options().and_then(|options| run(&options));
    match outcome {
        Ok(report) => {
            println!("{report:#}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("machine-limits: {message}");
            ExitCode::FAILURE
        }
    }
}

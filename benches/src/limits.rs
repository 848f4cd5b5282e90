//! The machine's own limits over a dataset: how fast it reads the files and
//! how fast it hashes and compresses their bytes on all cores.
//!
//! A backup reads every byte, hashes it (SHA-256) and compresses it (zstd);
//! it cannot be faster than the slower of reading and computing. These
//! measurements give that floor for the machine and dataset at hand.
//!
//! ```
//! use backup_benches::limits;
//!
//! let dir = std::env::temp_dir().join(format!("limits-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! std::fs::write(dir.join("a.txt"), backup_benches::data::text(100_000, 1)).unwrap();
//! let files = limits::list_files(&dir).unwrap();
//! let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
//! let read = limits::read_files(&files, &pool).unwrap();
//! assert_eq!(read.bytes, 100_000);
//! let pieces = limits::load_pieces(&files, 1 << 20, u64::MAX).unwrap();
//! let both = limits::hash_and_compress(&pieces, 3, &pool);
//! assert_eq!(both.bytes, 100_000);
//! std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

/// One file of a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetFile {
    /// Its path.
    pub path: PathBuf,
    /// Its size in bytes when listed.
    pub size: u64,
}

/// Bytes processed and the wall time it took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    /// Bytes processed.
    pub bytes: u64,
    /// Wall time, seconds.
    pub seconds: f64,
}

impl Measurement {
    /// Throughput in MB/s (1 MB = 10^6 bytes).
    pub fn megabytes_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 / 1e6 / self.seconds
        } else {
            0.0
        }
    }

    /// `{"bytes": .., "seconds": .., "mb_per_s": ..}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "bytes": self.bytes,
            "seconds": self.seconds,
            "mb_per_s": self.megabytes_per_second(),
        })
    }
}

/// Every regular file under `root` (symbolic links are not followed), in
/// path order.
///
/// # Errors
///
/// The first directory that cannot be listed or entry that cannot be
/// examined.
pub fn list_files(root: &Path) -> io::Result<Vec<DatasetFile>> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&dir)?;
        if metadata.is_file() {
            files.push(DatasetFile {
                path: dir,
                size: metadata.len(),
            });
            continue;
        }
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push(DatasetFile {
                    path: entry.path(),
                    size: entry.metadata()?.len(),
                });
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// Asks the kernel to drop the files' pages from the page cache
/// (`posix_fadvise(POSIX_FADV_DONTNEED)`), so the next read comes from disk.
/// Pages not yet written back stay cached: sync the files first.
///
/// # Errors
///
/// The first file that cannot be opened or advised.
pub fn evict_from_page_cache(files: &[DatasetFile]) -> io::Result<()> {
    for file in files {
        let handle = File::open(&file.path)?;
        rustix::fs::fadvise(&handle, 0, None, rustix::fs::Advice::DontNeed)?;
    }
    Ok(())
}

/// Reads every file whole, in parallel on `pool`'s threads, and measures
/// the wall time.
///
/// # Errors
///
/// The first file that cannot be read.
pub fn read_files(files: &[DatasetFile], pool: &rayon::ThreadPool) -> io::Result<Measurement> {
    let start = Instant::now();
    let bytes = pool.install(|| {
        files
            .par_iter()
            .map_init(
                || vec![0u8; 1 << 20],
                |buffer, file| -> io::Result<u64> {
                    let mut handle = File::open(&file.path)?;
                    let mut total = 0u64;
                    loop {
                        let read = handle.read(buffer)?;
                        if read == 0 {
                            break Ok(total);
                        }
                        total += read as u64;
                    }
                },
            )
            .try_reduce(|| 0, |a, b| Ok(a + b))
    })?;
    Ok(Measurement {
        bytes,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Loads the files into memory cut in pieces of `piece_len` bytes (a file
/// smaller than that is one piece), as a backup cuts files into chunks;
/// stops after `max_bytes`.
///
/// # Errors
///
/// The first file that cannot be read.
pub fn load_pieces(
    files: &[DatasetFile],
    piece_len: usize,
    max_bytes: u64,
) -> io::Result<Vec<Vec<u8>>> {
    let piece_len = piece_len.max(1);
    let mut pieces = Vec::new();
    let mut loaded = 0u64;
    'files: for file in files {
        let mut handle = File::open(&file.path)?;
        loop {
            let mut piece = Vec::with_capacity(piece_len);
            (&mut handle)
                .take(piece_len as u64)
                .read_to_end(&mut piece)?;
            if piece.is_empty() {
                break;
            }
            loaded += piece.len() as u64;
            pieces.push(piece);
            if loaded >= max_bytes {
                break 'files;
            }
        }
    }
    Ok(pieces)
}

fn measure_pieces(
    pieces: &[Vec<u8>],
    pool: &rayon::ThreadPool,
    work: impl Fn(&mut Option<zstd::bulk::Compressor<'static>>, &[u8]) + Sync,
) -> Measurement {
    let start = Instant::now();
    pool.install(|| {
        pieces
            .par_iter()
            .for_each_init(|| None, |compressor, piece| work(compressor, piece));
    });
    Measurement {
        bytes: pieces.iter().map(|piece| piece.len() as u64).sum(),
        seconds: start.elapsed().as_secs_f64(),
    }
}

fn compress(compressor: &mut Option<zstd::bulk::Compressor<'static>>, level: i32, piece: &[u8]) {
    if compressor.is_none() {
        *compressor = zstd::bulk::Compressor::new(level).ok();
    }
    if let Some(compressor) = compressor {
        // The output is dropped: only the work counts.
        std::hint::black_box(compressor.compress(piece).map(|out| out.len()).ok());
    }
}

/// SHA-256 of every piece, on all of `pool`'s threads.
pub fn hash(pieces: &[Vec<u8>], pool: &rayon::ThreadPool) -> Measurement {
    measure_pieces(pieces, pool, |_, piece| {
        std::hint::black_box(Sha256::digest(piece));
    })
}

/// zstd at `level` of every piece, on all of `pool`'s threads.
pub fn compress_all(pieces: &[Vec<u8>], level: i32, pool: &rayon::ThreadPool) -> Measurement {
    measure_pieces(pieces, pool, |compressor, piece| {
        compress(compressor, level, piece)
    })
}

/// SHA-256 then zstd at `level` of every piece, on all of `pool`'s threads:
/// the computing a backup must do at least.
pub fn hash_and_compress(pieces: &[Vec<u8>], level: i32, pool: &rayon::ThreadPool) -> Measurement {
    measure_pieces(pieces, pool, |compressor, piece| {
        std::hint::black_box(Sha256::digest(piece));
        compress(compressor, level, piece);
    })
}

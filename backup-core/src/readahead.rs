//! Reading small files on the CPU pool without waiting for the disk.
//!
//! A backup reads most small files whole. Reading one on a blocking thread
//! and then encoding it on the CPU pool costs two thread wake-ups per file
//! (and a third when the read waits for the disk); for tens of thousands of
//! files that is a tenth of the backup's time. Instead the walk asks the
//! kernel, a few dozen files ahead, to bring the files it will read into
//! the page cache ([`prefetch`]), and the CPU pool reads each file itself
//! with reads that fail rather than wait ([`read_cached`]). A file whose
//! bytes are not (yet) cached is read on a blocking thread as before.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// What [`read_cached`] found.
pub(crate) enum Cached {
    /// The whole file, read without waiting.
    Read(Vec<u8>),
    /// Some of its bytes are not in the page cache: reading would wait.
    WouldWait,
    /// Reads that do not wait are not available here (another system, or
    /// a file system without them).
    Unsupported,
}

/// Asks the kernel to start reading each of `paths` into the page cache,
/// without waiting for it. Files that cannot be opened are skipped: their
/// read reports why.
pub(crate) fn prefetch(paths: &[PathBuf]) {
    for path in paths {
        if let Ok(file) = File::open(path) {
            advise_will_need(&file);
        }
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn advise_will_need(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the duration of the call; the
    // advice only starts reads into the page cache. Its result is a hint's:
    // a failure changes nothing but the speed.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_WILLNEED);
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_will_need(_file: &File) {}

/// Reads the whole file at `path` (about `size` bytes, its size when it was
/// listed) if that needs no wait for the disk.
///
/// # Errors
///
/// An error opening or reading the file other than "would wait".
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(crate) fn read_cached(path: &Path, size: u64) -> io::Result<Cached> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    // Non-blocking: a file replaced by a pipe since it was listed must not
    // hold a CPU thread.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    // One byte more than the listed size: the read that finds the end
    // needs room.
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0).saturating_add(1));
    loop {
        if data.len() == data.capacity() {
            // The file grew since it was listed.
            data.reserve(64 * 1024);
        }
        let spare = data.spare_capacity_mut();
        let iov = libc::iovec {
            iov_base: spare.as_mut_ptr().cast(),
            iov_len: spare.len(),
        };
        let offset = libc::off_t::try_from(data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large"))?;
        // SAFETY: `iov` describes the vector's spare capacity, which stays
        // allocated and unaliased for the call; the kernel writes at most
        // `iov_len` bytes there.
        let read = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, offset, libc::RWF_NOWAIT) };
        match usize::try_from(read) {
            Ok(0) => return Ok(Cached::Read(data)),
            Ok(read) => {
                // SAFETY: the kernel initialised the first `read` bytes of
                // the spare capacity (`read <= iov_len`).
                unsafe { data.set_len(data.len() + read) };
            }
            Err(_) => {
                let error = io::Error::last_os_error();
                return match error.raw_os_error() {
                    Some(libc::EAGAIN) => Ok(Cached::WouldWait),
                    Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL) => Ok(Cached::Unsupported),
                    _ if error.kind() == io::ErrorKind::Interrupted => continue,
                    _ => Err(error),
                };
            }
        }
    }
}

/// Reads that do not wait are Linux's (`RWF_NOWAIT`).
///
/// # Errors
///
/// None: every file is read on a blocking thread.
#[cfg(not(target_os = "linux"))]
pub(crate) fn read_cached(_path: &Path, _size: u64) -> io::Result<Cached> {
    Ok(Cached::Unsupported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_file_is_read_whole_and_a_missing_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        // Just written: in the page cache.
        prefetch(std::slice::from_ref(&path));
        // Listed smaller (the file grew) and larger (it shrank) than it is.
        for listed in [0, 1000, 200_000, 300_000] {
            match read_cached(&path, listed).unwrap() {
                Cached::Read(data) => assert_eq!(data, content),
                Cached::WouldWait => panic!("a file just written is cached"),
                // Not Linux, or a file system without reads that do not wait.
                Cached::Unsupported => {}
            }
        }
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        if let Cached::Read(data) = read_cached(&empty, 0).unwrap() {
            assert!(data.is_empty());
        }
        #[cfg(target_os = "linux")]
        {
            let missing = read_cached(&dir.path().join("missing"), 10);
            assert!(matches!(missing, Err(error) if error.kind() == io::ErrorKind::NotFound));
        }
        // Prefetching a missing file is not an error.
        prefetch(&[dir.path().join("missing")]);
    }
}

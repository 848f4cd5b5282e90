//! Read windows: small blobs are read with the pack range around them.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::sink::Sink;

/// Small blobs are read with the range of their pack around them: restoring
/// many small files reads blobs that a backup stored near each other (a
/// backup walks sibling directories at once, so a directory's files are
/// spread over a few MiB of a pack), and one read costs far less than a
/// read and a hand-off to a blocking thread per blob. Measured on the
/// benchmark's mixed tree: 256 KiB windows, 64 kept, restore 15% faster
/// than without; 4 MiB windows, 8 kept, twice as slow (ranges read again
/// and again).
pub(crate) const READ_WINDOW: u64 = 256 * 1024;
/// Windows kept: their memory is `READ_WINDOWS * READ_WINDOW` (16 MiB).
pub(crate) const READ_WINDOWS: usize = 64;
/// Blobs up to this size are read through a window.
pub(crate) const WINDOW_BLOB_MAX: u64 = 64 * 1024;

/// One range of a pack, read once by whichever reader needs it first.
#[derive(Debug)]
struct ReadWindow {
    key: String,
    start: u64,
    bytes: tokio::sync::OnceCell<Bytes>,
}

/// The most recently used pack ranges (see [`READ_WINDOW`]).
#[derive(Debug, Default)]
pub(crate) struct ReadWindows {
    recent: Mutex<std::collections::VecDeque<Arc<ReadWindow>>>,
}

impl ReadWindows {
    /// The bytes `range` of pack `key` from a window, reading the window
    /// if no reader did; `None` when the window cannot be read or does not
    /// hold the whole range (the caller then reads the range itself, and
    /// reports what is wrong).
    pub(crate) async fn read(
        &self,
        sink: &dyn Sink,
        key: &str,
        range: Range<u64>,
    ) -> Option<Bytes> {
        let start = range.start - range.start % READ_WINDOW;
        if range.end > start + READ_WINDOW {
            return None;
        }
        let window = {
            let mut recent = self.recent.lock().ok()?;
            let found = recent
                .iter()
                .position(|window| window.start == start && window.key == key);
            let window = match found {
                Some(position) => recent.remove(position)?,
                None => Arc::new(ReadWindow {
                    key: key.to_string(),
                    start,
                    bytes: tokio::sync::OnceCell::new(),
                }),
            };
            recent.push_front(window.clone());
            recent.truncate(READ_WINDOWS);
            window
        };
        let bytes = window
            .bytes
            .get_or_try_init(|| sink.get_range(key, Some(start..start + READ_WINDOW)))
            .await;
        let Ok(bytes) = bytes else {
            // Not kept: the next reader tries again, or reads directly.
            if let Ok(mut recent) = self.recent.lock() {
                recent.retain(|other| !Arc::ptr_eq(other, &window));
            }
            return None;
        };
        let offset = usize::try_from(range.start - start).ok()?;
        let end = usize::try_from(range.end - start).ok()?;
        (end <= bytes.len()).then(|| bytes.slice(offset..end))
    }

    /// Drops the window holding `offset` of pack `key`: its bytes failed a
    /// check, and other blobs must not be read from them.
    pub(crate) fn forget(&self, key: &str, offset: u64) {
        let start = offset - offset % READ_WINDOW;
        if let Ok(mut recent) = self.recent.lock() {
            recent.retain(|window| !(window.start == start && window.key == key));
        }
    }
}

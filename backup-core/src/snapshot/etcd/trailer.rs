//! etcd's snapshot trailer: the SHA-256 of the database bytes, sent as the
//! stream's last 32 bytes, checked while the bytes stream through.

use sha2::{Digest, Sha256};

/// The trailer's length.
pub(crate) const TRAILER_LEN: usize = 32;

/// Hashes a stream of database bytes followed by their 32-byte SHA-256,
/// holding back the last 32 bytes seen, which are the trailer at the end.
#[derive(Default)]
pub(crate) struct TrailerCheck {
    hasher: Sha256,
    tail: Vec<u8>,
    total: u64,
}

/// What a stream that passed the check held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verified {
    /// Bytes of the database, without the trailer.
    pub(crate) db_size: u64,
    /// The trailer, the database's SHA-256.
    pub(crate) digest: [u8; TRAILER_LEN],
}

impl TrailerCheck {
    /// Takes the next bytes of the stream.
    pub(crate) fn update(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        let held = self.tail.len() + data.len();
        if held <= TRAILER_LEN {
            self.tail.extend_from_slice(data);
            return;
        }
        let to_hash = held - TRAILER_LEN;
        let from_tail = to_hash.min(self.tail.len());
        self.hasher.update(&self.tail[..from_tail]);
        let from_data = to_hash - from_tail;
        self.hasher.update(&data[..from_data]);
        let mut tail = self.tail.split_off(from_tail);
        tail.extend_from_slice(&data[from_data..]);
        self.tail = tail;
    }

    /// Bytes seen so far, trailer included.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Checks the end of the stream: `expected_db_size` (when the sender
    /// announced it) database bytes, then their SHA-256.
    ///
    /// # Errors
    ///
    /// A message naming the trailer check: a stream too short to hold a
    /// trailer, one whose length is not what was announced (cut off), or
    /// one whose trailer is not the digest of the bytes before it.
    pub(crate) fn finish(self, expected_db_size: Option<u64>) -> Result<Verified, String> {
        if self.tail.len() < TRAILER_LEN {
            return Err(format!(
                "the snapshot failed etcd's SHA-256 trailer check: the stream ended after {} \
                 bytes, too short to hold the 32-byte trailer",
                self.total
            ));
        }
        let db_size = self.total - TRAILER_LEN as u64;
        if let Some(expected) = expected_db_size {
            if db_size != expected {
                return Err(format!(
                    "the snapshot failed etcd's SHA-256 trailer check: the member announced a \
                     {expected}-byte database and the stream held {} bytes (cut off, or \
                     without its trailer)",
                    self.total
                ));
            }
        }
        let digest: [u8; TRAILER_LEN] = self.hasher.finalize().into();
        if digest[..] != self.tail[..] {
            return Err(format!(
                "the snapshot failed etcd's SHA-256 trailer check: the trailer says {} and the \
                 {db_size} database bytes hash to {} (the snapshot is damaged)",
                hex::encode(&self.tail),
                hex::encode(digest)
            ));
        }
        Ok(Verified { db_size, digest })
    }
}

/// Checks a whole snapshot file's trailer, as `etcdctl snapshot save` writes
/// it: read in blocks.
pub(crate) fn check_file(path: &std::path::Path) -> Result<Verified, String> {
    let mut check = TrailerCheck::default();
    crate::snapshot::restorer::read_blocks(path, |block| {
        check.update(block);
        Ok(())
    })?;
    // A bbolt file is whole pages: with the trailer, the length is 32 past a
    // multiple of 512.
    if check.total() % 512 != TRAILER_LEN as u64 {
        return Err(format!(
            "the snapshot failed etcd's SHA-256 trailer check: {} bytes is not whole database \
             pages plus a 32-byte trailer (a copy of member/snap/db has no trailer)",
            check.total()
        ));
    }
    check.finish(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(db: &[u8]) -> Vec<u8> {
        let mut bytes = db.to_vec();
        bytes.extend_from_slice(&Sha256::digest(db));
        bytes
    }

    fn check(bytes: &[u8], pieces: usize, expected: Option<u64>) -> Result<Verified, String> {
        let mut check = TrailerCheck::default();
        let step = bytes.len().div_ceil(pieces).max(1);
        for piece in bytes.chunks(step) {
            check.update(piece);
        }
        check.finish(expected)
    }

    #[test]
    fn a_stream_with_its_trailer_passes_however_it_is_cut() {
        let db: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let bytes = stream(&db);
        for pieces in [1, 2, 3, 7, 313, 10_032] {
            let verified = check(&bytes, pieces, Some(10_000)).unwrap();
            assert_eq!(verified.db_size, 10_000);
            assert_eq!(verified.digest[..], Sha256::digest(&db)[..]);
        }
        // Pieces smaller than the trailer.
        let mut check_small = TrailerCheck::default();
        for byte in &bytes {
            check_small.update(std::slice::from_ref(byte));
        }
        assert!(check_small.finish(None).is_ok());
    }

    #[test]
    fn a_flipped_byte_a_cut_trailer_or_a_short_stream_fails_naming_the_check() {
        let db = vec![5u8; 4096];
        let mut flipped = stream(&db);
        flipped[100] ^= 1;
        let cut = &stream(&db)[..4096 + 31];
        let cases: [(&[u8], Option<u64>); 4] = [
            (&flipped, Some(4096)),
            (cut, Some(4096)),
            (cut, None),
            (&[1, 2, 3], None),
        ];
        for (bytes, expected) in cases {
            let message = check(bytes, 3, expected).unwrap_err();
            assert!(message.contains("SHA-256 trailer check"), "{message}");
        }
        // A database without a trailer is cut off by the announced size.
        let message = check(&db, 2, Some(4096)).unwrap_err();
        assert!(message.contains("announced"), "{message}");
    }
}

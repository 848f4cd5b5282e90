//! Seeded random data.
//!
//! [`TestRng`] is `rand_chacha`'s ChaCha8, whose output for a seed that
//! crate keeps stable across its versions: a failing test replays with the
//! same data on any machine.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::MIB;

/// A seeded random number generator with the few draws tests need; it
/// implements [`RngCore`], so all of `rand`'s [`Rng`] methods work on it too.
///
/// ```
/// use backup_testkit::TestRng;
///
/// let (mut a, mut b) = (TestRng::new(7), TestRng::new(7));
/// assert_eq!(a.below(1000), b.below(1000));
/// assert!((10..20).contains(&a.range(10, 20)));
/// ```
#[derive(Debug, Clone)]
pub struct TestRng(ChaCha8Rng);

impl TestRng {
    /// The generator for `seed`.
    pub fn new(seed: u64) -> TestRng {
        TestRng(ChaCha8Rng::seed_from_u64(seed))
    }

    /// 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n`.
    ///
    /// # Panics
    ///
    /// When `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.gen_range(0..n)
    }

    /// Uniform in `low..high`.
    ///
    /// # Panics
    ///
    /// When the range is empty.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        self.0.gen_range(low..high)
    }

    /// True with probability `one_in`⁻¹.
    pub fn one_in(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }

    /// One of `items`.
    ///
    /// # Panics
    ///
    /// When `items` is empty.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        items
            .choose(&mut self.0)
            .expect("TestRng::pick needs at least one item")
    }
}

impl RngCore for TestRng {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.0.try_fill_bytes(dest)
    }
}

/// `len` incompressible bytes from `seed`.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    TestRng::new(seed).fill_bytes(&mut out);
    out
}

const WORDS: &[&str] = &[
    "the",
    "backup",
    "of",
    "a",
    "repository",
    "is",
    "verified",
    "chunk",
    "index",
    "pack",
    "manifest",
    "restore",
    "data",
    "file",
    "directory",
    "snapshot",
    "encrypted",
    "log",
    "error",
    "warning",
    "info",
    "request",
    "response",
    "user",
    "session",
    "GET",
    "POST",
    "/api/v1/items",
    "200",
    "404",
    "500",
    "latency_ms=",
    "time",
    "and",
    "with",
    "from",
    "to",
    "in",
    "server",
    "client",
    "東京",
    "данные",
    "🦀",
];

/// `len` bytes of compressible, log-like text from `seed`: numbered lines of
/// words (the last character may be cut in the middle).
pub fn text_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = TestRng::new(seed);
    let mut out = Vec::with_capacity(len + 32);
    let mut line = 0u64;
    while out.len() < len {
        line += 1;
        out.extend_from_slice(format!("{line:08} ").as_bytes());
        for _ in 0..rng.range(4, 16) {
            out.extend_from_slice(rng.pick(WORDS).as_bytes());
            out.push(b' ');
        }
        out.push(b'\n');
    }
    out.truncate(len);
    out
}

/// Writes `len` incompressible bytes from `seed` to a new file at `path`,
/// a mebibyte at a time (for files too large to build in memory).
pub fn write_random_file(path: &Path, seed: u64, len: u64) {
    let mut rng = TestRng::new(seed);
    let mut file =
        File::create(path).unwrap_or_else(|error| panic!("creating {}: {error}", path.display()));
    let mut buffer = vec![0u8; MIB as usize];
    let mut left = len;
    while left > 0 {
        let n = left.min(MIB) as usize;
        rng.fill_bytes(&mut buffer[..n]);
        file.write_all(&buffer[..n])
            .unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
        left -= n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_bytes_and_another_seed_others() {
        assert_eq!(random_bytes(1, 100), random_bytes(1, 100));
        assert_ne!(random_bytes(1, 100), random_bytes(2, 100));
        assert_eq!(text_bytes(3, 5000), text_bytes(3, 5000));
        assert_eq!(text_bytes(3, 5000).len(), 5000);
    }

    #[test]
    fn a_streamed_file_holds_the_bytes_of_random_bytes() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("f");
        write_random_file(&path, 9, MIB + 5);
        assert_eq!(
            std::fs::read(&path).expect("reading the file"),
            random_bytes(9, (MIB + 5) as usize)
        );
    }
}

//! Deterministic sample data for the benchmarks.
//!
//! The same `(length, seed)` always gives the same bytes, so two runs (or two
//! machines) benchmark exactly the same input. Three kinds cover what a
//! backup meets: incompressible bytes (media, archives, encrypted files),
//! text (source, configuration, logs) that zstd shrinks several times, and a
//! mix of the two.

/// A small, fast generator (xorshift64*): good enough to make bytes that
/// neither compress nor repeat, and far faster than the data it feeds.
#[derive(Debug, Clone)]
pub struct Generator {
    state: u64,
}

impl Generator {
    /// A generator for `seed` (any value, zero included).
    pub fn new(seed: u64) -> Generator {
        // SplitMix64 step: spreads close seeds apart and avoids the all-zero
        // state xorshift cannot leave.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Generator {
            state: (z ^ (z >> 31)) | 1,
        }
    }

    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }

    /// Fills `out` with pseudo-random bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        let mut words = out.chunks_exact_mut(8);
        for word in &mut words {
            word.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let tail = words.into_remainder();
        let last = self.next_u64().to_le_bytes();
        for (byte, value) in tail.iter_mut().zip(last) {
            *byte = value;
        }
    }
}

/// `len` incompressible bytes.
///
/// # Examples
///
/// ```
/// let bytes = backup_benches::data::random(1000, 1);
/// assert_eq!(bytes.len(), 1000);
/// assert_ne!(bytes, backup_benches::data::random(1000, 2));
/// ```
pub fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    Generator::new(seed).fill(&mut out);
    out
}

const WORDS: &[&str] = &[
    "backup",
    "restore",
    "chunk",
    "pack",
    "index",
    "manifest",
    "tree",
    "repository",
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "for",
    "with",
    "on",
    "error",
    "warning",
    "info",
    "debug",
    "request",
    "response",
    "latency",
    "server",
    "client",
    "connection",
    "timeout",
    "retry",
    "user",
    "session",
    "token",
    "config",
    "value",
    "key",
    "table",
    "row",
    "column",
    "query",
    "insert",
    "update",
    "delete",
    "select",
    "from",
    "where",
    "order",
    "by",
    "limit",
    "offset",
    "function",
    "return",
    "struct",
    "impl",
    "let",
    "mut",
    "match",
    "if",
    "else",
    "loop",
    "while",
    "disk",
    "memory",
    "network",
    "cpu",
    "thread",
    "process",
    "signal",
    "file",
    "directory",
    "path",
    "name",
    "size",
    "time",
    "date",
    "year",
    "month",
    "day",
    "hour",
    "minute",
    "second",
];

/// `len` bytes of English-like text in lines, as source files and logs
/// are: compresses about three to four times with zstd.
///
/// # Examples
///
/// ```
/// let text = backup_benches::data::text(200, 3);
/// assert!(text.iter().all(|byte| byte.is_ascii()));
/// ```
pub fn text(len: usize, seed: u64) -> Vec<u8> {
    let mut generator = Generator::new(seed);
    let mut out = Vec::with_capacity(len + 16);
    let mut line = 0u64;
    while out.len() < len {
        line += 1;
        out.extend_from_slice(format!("{line:06} ").as_bytes());
        let words = 4 + generator.below(12);
        for _ in 0..words {
            let word = WORDS
                .get(generator.below(WORDS.len() as u64) as usize)
                .copied()
                .unwrap_or("x");
            out.extend_from_slice(word.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(generator.below(1_000_000).to_string().as_bytes());
        out.push(b'\n');
    }
    out.truncate(len);
    out
}

/// `len` bytes alternating 4 KiB of random bytes and 4 KiB of text:
/// compresses to a little over half.
pub fn mixed(len: usize, seed: u64) -> Vec<u8> {
    const BLOCK: usize = 4096;
    let noise = random(len.div_ceil(2) + BLOCK, seed);
    let prose = text(len.div_ceil(2) + BLOCK, seed ^ 0x5A5A);
    let mut out = Vec::with_capacity(len);
    let mut from_noise = noise.chunks(BLOCK);
    let mut from_prose = prose.chunks(BLOCK);
    while out.len() < len {
        match (from_noise.next(), from_prose.next()) {
            (Some(a), Some(b)) => {
                out.extend_from_slice(a);
                out.extend_from_slice(b);
            }
            _ => break,
        }
    }
    out.truncate(len);
    out
}

/// The three kinds of sample data, with their names, each `len` bytes.
pub fn samples(len: usize) -> [(&'static str, Vec<u8>); 3] {
    [
        ("random", random(len, 1)),
        ("text", text(len, 2)),
        ("mixed", mixed(len, 3)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_are_deterministic_and_sized() {
        for len in [0, 1, 7, 8, 9, 4095, 4096, 10_001] {
            assert_eq!(random(len, 5).len(), len);
            assert_eq!(text(len, 5).len(), len);
            assert_eq!(mixed(len, 5).len(), len);
            assert_eq!(mixed(len, 5), mixed(len, 5));
        }
        assert_ne!(text(1000, 1), text(1000, 2));
    }

    #[test]
    fn kinds_compress_as_documented() {
        let len = 1 << 20;
        let ratio = |data: &[u8]| {
            let compressed = zstd::bulk::compress(data, 3).map(|c| c.len()).unwrap_or(0);
            compressed as f64 / data.len() as f64
        };
        assert!(ratio(&random(len, 1)) > 0.99);
        assert!(ratio(&text(len, 1)) < 0.4, "{}", ratio(&text(len, 1)));
        let mixed_ratio = ratio(&mixed(len, 1));
        assert!((0.45..0.8).contains(&mixed_ratio), "{mixed_ratio}");
    }
}

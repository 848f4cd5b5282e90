//! The RDB file's own checks: its `REDIS` + version header, and the CRC-64
//! (Jones, as Redis computes it) of every byte before the last eight, which
//! hold it little-endian after the `0xFF` end marker.

/// Redis's CRC-64 (`crc64_jones`, reflected, as `CRC_64_REDIS`).
const CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_REDIS);

/// Checks an RDB stream as its bytes pass.
pub(crate) struct RdbCheck {
    digest: crc::Digest<'static, u64>,
    header: Vec<u8>,
    tail: Vec<u8>,
    /// The last byte hashed: the ninth from the end, the end marker once
    /// the stream is whole.
    last_hashed: Option<u8>,
    total: u64,
}

impl Default for RdbCheck {
    fn default() -> Self {
        RdbCheck {
            digest: CRC64.digest(),
            header: Vec::new(),
            tail: Vec::new(),
            last_hashed: None,
            total: 0,
        }
    }
}

/// What a checked RDB held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckedRdb {
    /// The RDB format version from the header.
    pub(crate) version: u32,
    /// Its length in bytes.
    pub(crate) size: u64,
    /// The CRC-64, `None` when the server writes none (`rdbchecksum no`).
    pub(crate) crc64: Option<u64>,
}

/// The end marker and the CRC-64.
const TAIL: usize = 9;
const HEADER: usize = 9;

impl RdbCheck {
    /// Takes the next bytes; fails as soon as the header is wrong.
    pub(crate) fn update(&mut self, data: &[u8]) -> Result<(), String> {
        self.total += data.len() as u64;
        if self.header.len() < HEADER {
            let wanted = (HEADER - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..wanted]);
            if self.header.len() == HEADER {
                parse_header(&self.header)?;
            }
        }
        // Hold back the last eight bytes (the checksum); hash the rest.
        let held = self.tail.len() + data.len();
        if held <= 8 {
            self.tail.extend_from_slice(data);
            return Ok(());
        }
        let to_hash = held - 8;
        let from_tail = to_hash.min(self.tail.len());
        self.digest.update(&self.tail[..from_tail]);
        let from_data = to_hash - from_tail;
        self.digest.update(&data[..from_data]);
        self.last_hashed = match from_data {
            0 => self.tail.get(from_tail - 1).copied(),
            _ => data.get(from_data - 1).copied(),
        };
        let mut keep: Vec<u8> = self.tail.split_off(from_tail);
        keep.extend_from_slice(&data[from_data..]);
        self.tail = keep;
        Ok(())
    }

    /// Checks the end of the stream.
    pub(crate) fn finish(self) -> Result<CheckedRdb, String> {
        if self.total < (HEADER + TAIL) as u64 {
            return Err(format!(
                "the RDB failed its check: {} bytes is too short for a header, an end marker \
                 and a CRC-64",
                self.total
            ));
        }
        let version = parse_header(&self.header)?;
        if self.last_hashed != Some(0xFF) {
            return Err(
                "the RDB failed its check: no 0xFF end marker before the CRC-64 (the file is cut off)"
                    .into(),
            );
        }
        let stored = u64::from_le_bytes(
            self.tail
                .as_slice()
                .try_into()
                .map_err(|_| "the RDB failed its check: no CRC-64 at its end".to_string())?,
        );
        let computed = self.digest.finalize();
        if stored == 0 {
            // Written with `rdbchecksum no`: nothing to compare.
            return Ok(CheckedRdb {
                version,
                size: self.total,
                crc64: None,
            });
        }
        if stored != computed {
            return Err(format!(
                "the RDB failed its CRC-64 check: the file says {stored:016x} and its bytes give \
                 {computed:016x} (the file is damaged)"
            ));
        }
        Ok(CheckedRdb {
            version,
            size: self.total,
            crc64: Some(stored),
        })
    }
}

fn parse_header(header: &[u8]) -> Result<u32, String> {
    let (magic, digits) = header.split_at(5.min(header.len()));
    if magic != b"REDIS" || digits.len() != 4 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(format!(
            "the RDB failed its check: it does not start with REDIS and a four-digit version \
             (it starts with {:?})",
            String::from_utf8_lossy(header)
        ));
    }
    std::str::from_utf8(digits)
        .ok()
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(|| "the RDB failed its check: unreadable version".to_string())
}

/// Checks a whole RDB file.
pub(crate) fn check_file(path: &std::path::Path) -> Result<CheckedRdb, String> {
    let mut check = RdbCheck::default();
    crate::snapshot::restorer::read_blocks(path, |block| check.update(block))?;
    check.finish()
}

/// The newest RDB version a Redis server of `major.minor` loads.
pub(crate) fn max_rdb_version(major: u32, minor: u32) -> u32 {
    match (major, minor) {
        (0..=3, _) => 7,
        (4, _) => 8,
        (5 | 6, _) => 9,
        (7, 0..=1) => 10,
        (7, 2..=3) => 11,
        (7, _) => 12,
        _ => 12,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rdb(body: &[u8], checksum: bool) -> Vec<u8> {
        let mut bytes = b"REDIS0010".to_vec();
        bytes.extend_from_slice(body);
        bytes.push(0xFF);
        let crc = if checksum { CRC64.checksum(&bytes) } else { 0 };
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }

    fn check(bytes: &[u8], step: usize) -> Result<CheckedRdb, String> {
        let mut check = RdbCheck::default();
        for piece in bytes.chunks(step) {
            check.update(piece)?;
        }
        check.finish()
    }

    #[test]
    fn the_crc_is_redis_own() {
        // Redis's crc64 test vector (src/crc64.c).
        assert_eq!(CRC64.checksum(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    }

    #[test]
    fn a_whole_rdb_passes_however_it_is_cut() {
        let bytes = rdb(&[7u8; 1000], true);
        for step in [1, 3, 8, 9, 10, 500, 5000] {
            let checked = check(&bytes, step).unwrap();
            assert_eq!(checked.version, 10);
            assert_eq!(checked.size, bytes.len() as u64);
            assert!(checked.crc64.is_some());
        }
        assert_eq!(check(&rdb(b"x", false), 4).unwrap().crc64, None);
    }

    #[test]
    fn damage_fails_the_check() {
        let good = rdb(&[1u8; 300], true);
        let mut flipped = good.clone();
        flipped[100] ^= 4;
        let message = check(&flipped, 7).unwrap_err();
        assert!(message.contains("CRC-64"), "{message}");
        let message = check(&good[..good.len() - 3], 7).unwrap_err();
        assert!(message.contains("failed its"), "{message}");
        let mut header = good.clone();
        header[0] = b'X';
        let message = check(&header, 7).unwrap_err();
        assert!(message.contains("REDIS"), "{message}");
    }
}

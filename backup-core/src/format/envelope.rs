//! The envelope around every object that is not a pack: config, key files,
//! indexes and manifests (pack headers use it too).
//!
//! ```text
//! magic "BKUP" (4) || version (1) || kind (1) || flags (1) || reserved 0 (1)
//!   || payload (n) || SHA-256 of all preceding bytes (32)
//! ```
//!
//! `flags` bit 0: payload is zstd-compressed; bit 1: payload is encrypted
//! (`nonce || ciphertext || tag`, the 8 header bytes as associated data).
//! Compression is applied before encryption. All other bits are invalid.

use std::io::Read;

use sha2::{Digest, Sha256};

use crate::crypto::MasterKey;
use crate::{Error, Result};

/// The four magic bytes that start every envelope.
pub const MAGIC: [u8; 4] = *b"BKUP";
/// Length of the envelope header.
pub const ENVELOPE_HEADER_LEN: usize = 8;
/// Header plus trailing checksum.
pub const ENVELOPE_OVERHEAD: usize = ENVELOPE_HEADER_LEN + 32;

const FLAG_COMPRESSED: u8 = 0b01;
const FLAG_ENCRYPTED: u8 = 0b10;

/// What an envelope holds. Stored as one byte; other values are invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ObjectKind {
    /// The repository config (`config`).
    Config = 1,
    /// A key file (`keys/<id>`).
    Key = 2,
    /// An index (`index/<id>`).
    Index = 3,
    /// A backup manifest (`manifests/<id>`).
    Manifest = 4,
    /// The header at the end of a pack.
    PackHeader = 5,
    /// A running backup's in-flight marker (`inflight/<id>`).
    Inflight = 6,
    /// A prune's deletion mark (`pending/<id>`).
    DeletionMark = 7,
}

impl ObjectKind {
    fn from_byte(byte: u8) -> Option<ObjectKind> {
        Some(match byte {
            1 => ObjectKind::Config,
            2 => ObjectKind::Key,
            3 => ObjectKind::Index,
            4 => ObjectKind::Manifest,
            5 => ObjectKind::PackHeader,
            6 => ObjectKind::Inflight,
            7 => ObjectKind::DeletionMark,
            _ => return None,
        })
    }
}

/// Builds an envelope around `payload`.
///
/// Compresses when `compress` is set and it makes the payload smaller;
/// encrypts when `key` is given.
pub fn seal(kind: ObjectKind, payload: &[u8], compress: bool, key: Option<&MasterKey>) -> Vec<u8> {
    let mut flags = 0u8;
    let compressed;
    let mut body: &[u8] = payload;
    if compress {
        if let Ok(bytes) = zstd::bulk::compress(payload, 3) {
            if bytes.len() < payload.len() {
                compressed = bytes;
                body = &compressed;
                flags |= FLAG_COMPRESSED;
            }
        }
    }
    if key.is_some() {
        flags |= FLAG_ENCRYPTED;
    }
    let header = [
        MAGIC[0],
        MAGIC[1],
        MAGIC[2],
        MAGIC[3],
        envelope_version(),
        kind as u8,
        flags,
        0,
    ];
    let mut out = Vec::with_capacity(body.len() + ENVELOPE_OVERHEAD + crate::crypto::SEAL_OVERHEAD);
    out.extend_from_slice(&header);
    match key {
        Some(key) => out.extend_from_slice(&key.seal(body, &header)),
        None => out.extend_from_slice(body),
    }
    let checksum = Sha256::digest(&out);
    out.extend_from_slice(&checksum);
    out
}

fn envelope_version() -> u8 {
    // FORMAT_VERSION is small; the envelope stores it in one byte.
    u8::try_from(super::FORMAT_VERSION).unwrap_or(u8::MAX)
}

/// Checks and opens an envelope read from object `key_name`.
///
/// Verifies the checksum, magic, version and kind; decrypts with `key` (an
/// encrypted repository refuses unencrypted metadata, so an attacker cannot
/// swap in plaintext objects); decompresses with a size limit.
///
/// # Errors
///
/// [`Error::Corrupt`] naming the object for any damage,
/// [`Error::UnsupportedVersion`] for a version this build does not read.
pub fn open(
    key_name: &str,
    bytes: &[u8],
    expected: ObjectKind,
    key: Option<&MasterKey>,
) -> Result<Vec<u8>> {
    open_checked(key_name, bytes, expected, key, true)
}

/// [`open`] for an object stored under its content hash (`index/<id>`,
/// `manifests/<id>`) whose bytes the caller has already checked against
/// that name: the check covers every byte, so the trailing checksum over
/// the same bytes is not computed a second time. Everything else (magic,
/// version, kind, flags, authentication, decompression limit) is checked
/// as by [`open`]; `verify` still checks the trailing checksum.
///
/// # Errors
///
/// As [`open`].
pub fn open_named(
    key_name: &str,
    bytes: &[u8],
    expected: ObjectKind,
    key: Option<&MasterKey>,
) -> Result<Vec<u8>> {
    open_checked(key_name, bytes, expected, key, false)
}

fn open_checked(
    key_name: &str,
    bytes: &[u8],
    expected: ObjectKind,
    key: Option<&MasterKey>,
    checksum: bool,
) -> Result<Vec<u8>> {
    let corrupt = |offset: usize, detail: String| Error::corrupt(key_name, offset as u64, detail);
    if bytes.len() < ENVELOPE_OVERHEAD {
        return Err(corrupt(
            0,
            format!(
                "object is {} bytes, shorter than the minimum of {ENVELOPE_OVERHEAD}",
                bytes.len()
            ),
        ));
    }
    let body_end = bytes.len() - 32;
    let (content, stored_checksum) = bytes.split_at(body_end);
    if checksum {
        check_checksum(key_name, content, stored_checksum)?;
    }
    let (header, body) = content.split_at(ENVELOPE_HEADER_LEN);
    if header.get(0..4) != Some(&MAGIC[..]) {
        return Err(corrupt(0, "bad magic: not a repository object".into()));
    }
    let version = u32::from(header.get(4).copied().unwrap_or(0));
    if !(super::MIN_FORMAT_VERSION..=super::FORMAT_VERSION).contains(&version) {
        return Err(Error::UnsupportedVersion {
            key: key_name.to_string(),
            found: version,
            min_supported: super::MIN_FORMAT_VERSION,
            max_supported: super::FORMAT_VERSION,
        });
    }
    let kind_byte = header.get(5).copied().unwrap_or(0);
    if ObjectKind::from_byte(kind_byte) != Some(expected) {
        return Err(corrupt(
            5,
            format!("object kind {kind_byte} where {expected:?} was expected"),
        ));
    }
    let flags = header.get(6).copied().unwrap_or(0);
    if flags & !(FLAG_COMPRESSED | FLAG_ENCRYPTED) != 0 || header.get(7) != Some(&0) {
        return Err(corrupt(6, format!("invalid flags {flags:#04x}")));
    }
    let encrypted = flags & FLAG_ENCRYPTED != 0;
    let plain_body;
    let body = match (encrypted, key) {
        (true, Some(key)) => {
            plain_body = key.open(body, header).ok_or_else(|| {
                corrupt(
                    ENVELOPE_HEADER_LEN,
                    "decryption failed: the object was modified or belongs to another repository"
                        .into(),
                )
            })?;
            &plain_body[..]
        }
        (true, None) => {
            return Err(corrupt(
                6,
                "encrypted object in an unencrypted repository".into(),
            ))
        }
        (false, Some(_)) if expected != ObjectKind::Config && expected != ObjectKind::Key => {
            return Err(corrupt(
                6,
                "unencrypted object in an encrypted repository: refused".into(),
            ))
        }
        (false, _) => body,
    };
    if flags & FLAG_COMPRESSED != 0 {
        decompress_bounded(body, MAX_PLAINTEXT)
            .map_err(|detail| corrupt(ENVELOPE_HEADER_LEN, detail))
    } else {
        Ok(body.to_vec())
    }
}

const MAX_PLAINTEXT: usize = super::MAX_METADATA_PLAINTEXT;

fn check_checksum(key_name: &str, content: &[u8], stored: &[u8]) -> Result<()> {
    let actual = Sha256::digest(content);
    if actual.as_slice() == stored {
        return Ok(());
    }
    Err(Error::corrupt(
        key_name,
        content.len() as u64,
        format!(
            "checksum mismatch: expected {}, computed {}",
            hex::encode(stored),
            hex::encode(actual)
        ),
    ))
}

/// Decompresses a zstd frame, refusing output larger than `limit` bytes.
pub fn decompress_bounded(compressed: &[u8], limit: usize) -> std::result::Result<Vec<u8>, String> {
    // The frame header states the size (our writer always records it):
    // decompress in one call into a buffer of exactly that size instead of
    // growing one. A frame whose data does not fit the stated size fails.
    if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(compressed) {
        if size > limit as u64 {
            return Err(format!(
                "decompressed size exceeds the limit of {limit} bytes"
            ));
        }
        let out = zstd::bulk::decompress(compressed, size as usize)
            .map_err(|error| format!("decompression failed: {error}"))?;
        if out.len() as u64 != size {
            return Err(format!(
                "decompressed {} bytes where the frame states {size}",
                out.len()
            ));
        }
        return Ok(out);
    }
    let decoder = zstd::stream::read::Decoder::with_buffer(compressed)
        .map_err(|error| format!("zstd: {error}"))?;
    let mut out = Vec::new();
    let read = decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|error| format!("decompression failed: {error}"))?;
    if read > limit {
        return Err(format!(
            "decompressed size exceeds the limit of {limit} bytes"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_plain_compressed_encrypted() {
        let payload = b"hello hello hello hello hello hello hello hello".repeat(10);
        let key = MasterKey::generate();
        for (compress, key) in [(false, None), (true, None), (true, Some(&key))] {
            let sealed = seal(ObjectKind::Index, &payload, compress, key);
            assert_eq!(
                open("index/x", &sealed, ObjectKind::Index, key).unwrap(),
                payload
            );
        }
    }

    #[test]
    fn decompression_is_bounded_with_and_without_a_stated_size() {
        let payload = b"index entry ".repeat(5000);
        // zstd's one-shot compressor states the size in the frame header.
        let stated = zstd::bulk::compress(&payload, 3).unwrap();
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&stated).unwrap(),
            Some(payload.len() as u64)
        );
        // A streaming compressor without a pledged size does not.
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        std::io::Write::write_all(&mut encoder, &payload).unwrap();
        let unstated = encoder.finish().unwrap();
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&unstated).unwrap(),
            None
        );
        for frame in [&stated, &unstated] {
            assert_eq!(decompress_bounded(frame, payload.len()).unwrap(), payload);
            let error = decompress_bounded(frame, payload.len() - 1).unwrap_err();
            assert!(error.contains("exceeds the limit"), "{error}");
            assert!(decompress_bounded(&frame[..frame.len() - 3], payload.len()).is_err());
        }
    }

    #[test]
    fn open_named_skips_only_the_trailing_checksum() {
        let key = MasterKey::generate();
        let payload = b"{\"packs\": []}".repeat(20);
        let mut sealed = seal(ObjectKind::Index, &payload, true, Some(&key));
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        // The caller checked the bytes against their name: a damaged
        // trailing checksum is what `open` catches and `open_named` leaves.
        assert!(open("index/x", &sealed, ObjectKind::Index, Some(&key)).is_err());
        assert_eq!(
            open_named("index/x", &sealed, ObjectKind::Index, Some(&key)).unwrap(),
            payload
        );
        // Everything else is still checked.
        sealed[last] ^= 1;
        assert!(open_named("index/x", &sealed, ObjectKind::Manifest, Some(&key)).is_err());
        sealed[ENVELOPE_HEADER_LEN + 30] ^= 1;
        assert!(open_named("index/x", &sealed, ObjectKind::Index, Some(&key)).is_err());
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let sealed = seal(ObjectKind::Manifest, b"{\"a\":1}", true, None);
        for position in 0..sealed.len() {
            let mut damaged = sealed.clone();
            damaged[position] ^= 0x40;
            let error = open("manifests/x", &damaged, ObjectKind::Manifest, None).unwrap_err();
            assert!(matches!(error, Error::Corrupt { .. }), "{error}");
        }
    }

    #[test]
    fn wrong_kind_version_and_plaintext_downgrade_are_refused() {
        let sealed = seal(ObjectKind::Manifest, b"{}", false, None);
        assert!(open("k", &sealed, ObjectKind::Index, None).is_err());
        let key = MasterKey::generate();
        assert!(open("k", &sealed, ObjectKind::Manifest, Some(&key)).is_err());
        // A future version with a valid checksum gives a version error.
        let mut future = sealed[..sealed.len() - 32].to_vec();
        future[4] = 9;
        let checksum = Sha256::digest(&future);
        future.extend_from_slice(&checksum);
        assert!(matches!(
            open("k", &future, ObjectKind::Manifest, None),
            Err(Error::UnsupportedVersion { found: 9, .. })
        ));
    }
}

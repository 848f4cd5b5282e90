//! Pack files: many chunks (blobs) in one object, with a header at the end.
//!
//! ```text
//! Blob_1 || ... || Blob_n || Header || HeaderLength (u32 LE) || "BKPK"
//! ```
//!
//! The header is an envelope (kind `PackHeader`, encrypted in encrypted
//! repositories) holding one 42-byte entry per blob, in order:
//!
//! ```text
//! kind (1) || flags (1) || stored_length (u32 LE) || raw_length (u32 LE) || id (32)
//! ```
//!
//! A blob's offset is the sum of the stored lengths before it. The header is
//! at the end so a pack can be written as a stream; because it lists every
//! blob, the index can be rebuilt from the packs alone. A pack's id is the
//! SHA-256 of the whole pack file.

use sha2::{Digest, Sha256};

use crate::crypto::{self, MasterKey};
use crate::format::envelope::{self, ObjectKind};
use crate::format::reader::ByteReader;
use crate::{Error, Id, Result};

/// Magic bytes at the very end of a pack.
pub const PACK_MAGIC: [u8; 4] = *b"BKPK";
/// Length of the trailer: header length plus magic.
pub const PACK_TRAILER_LEN: usize = 8;
/// Length of one header entry.
pub const HEADER_ENTRY_LEN: usize = 42;
/// Blob flag: the stored bytes are zstd-compressed (before encryption).
pub const BLOB_COMPRESSED: u8 = 0b01;

/// What a blob holds. Stored as one byte; other values are invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum BlobKind {
    /// File content.
    Data = 1,
    /// Directory metadata.
    Tree = 2,
}

impl BlobKind {
    /// Parses the stored byte.
    pub fn from_byte(byte: u8) -> Option<BlobKind> {
        match byte {
            1 => Some(BlobKind::Data),
            2 => Some(BlobKind::Tree),
            _ => None,
        }
    }
}

/// One blob as listed in a pack header or an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlobEntry {
    /// The chunk id (of the plaintext).
    pub id: Id,
    /// Data or tree.
    pub kind: BlobKind,
    /// [`BLOB_COMPRESSED`] or 0.
    pub flags: u8,
    /// Offset of the blob in the pack.
    pub offset: u32,
    /// Bytes stored in the pack.
    pub stored_length: u32,
    /// Length of the plaintext chunk.
    pub raw_length: u32,
}

/// Largest plaintext chunk a reader accepts (the chunker's maximum is 16 MiB;
/// the extra room is for directory metadata blobs).
pub const MAX_BLOB_RAW_LENGTH: u32 = 64 * 1024 * 1024;

/// Encodes one chunk for storage: compress when smaller, then encrypt.
///
/// Returns the stored bytes and the blob flags. The chunk is compressed
/// straight into the output buffer and encrypted there, in place.
pub fn encode_blob(
    id: &Id,
    kind: BlobKind,
    plaintext: &[u8],
    key: Option<&MasterKey>,
    level: i32,
) -> (Vec<u8>, u8) {
    let head = if key.is_some() { crypto::NONCE_LEN } else { 0 };
    let mut flags = 0;
    let mut out = Vec::new();
    if level > 0 {
        if let Some(compressed) = compress_after(head, plaintext, level) {
            out = compressed;
            flags |= BLOB_COMPRESSED;
        }
    }
    if flags & BLOB_COMPRESSED == 0 {
        out.clear();
        out.reserve_exact(head + plaintext.len() + crypto::TAG_LEN);
        out.resize(head, 0);
        out.extend_from_slice(plaintext);
    }
    if let Some(key) = key {
        key.seal_in_place(&mut out, &blob_associated_data(id, kind));
    }
    (out, flags)
}

fn blob_associated_data(id: &Id, kind: BlobKind) -> [u8; 33] {
    let mut aad = [0u8; 33];
    aad[..32].copy_from_slice(id.as_bytes());
    aad[32] = kind as u8;
    aad
}

thread_local! {
    /// One zstd compression context per thread, reused: creating one per
    /// chunk costs more than compressing a small chunk.
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
    /// One zstd decompression context per thread, reused.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Compresses `plaintext` into one zstd frame (with its content size),
/// written after `head` zero bytes of a buffer with room for a tag; `None`
/// when that is not smaller than the plaintext.
fn compress_after(head: usize, plaintext: &[u8], level: i32) -> Option<Vec<u8>> {
    COMPRESSOR.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.as_ref().map(|(current, _)| *current) != Some(level) {
            *slot = zstd::bulk::Compressor::new(level)
                .ok()
                .map(|compressor| (level, compressor));
        }
        let compressor = &mut slot.as_mut()?.1;
        // Room for the frame only while it is not much larger than the
        // plaintext: zstd stops with an error as soon as it would not fit.
        // The cursor writes after `head` into the spare capacity, which
        // needs no zeroing first.
        let mut out = Vec::with_capacity(head + plaintext.len() + crypto::TAG_LEN);
        out.resize(head, 0);
        let mut cursor = std::io::Cursor::new(out);
        cursor.set_position(head as u64);
        let length = compressor.compress_to_buffer(plaintext, &mut cursor).ok()?;
        let out = cursor.into_inner();
        (length < plaintext.len() && out.len() == head + length).then_some(out)
    })
}

/// Decompresses a blob into a buffer of exactly `raw_length` bytes of
/// capacity: a frame that would produce more fails instead of growing it.
fn decompress_exact(body: &[u8], raw_length: usize) -> std::result::Result<Vec<u8>, String> {
    DECOMPRESSOR.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_none() {
            *slot =
                Some(zstd::bulk::Decompressor::new().map_err(|error| format!("zstd: {error}"))?);
        }
        let decompressor = slot
            .as_mut()
            .ok_or_else(|| "zstd: no decompression context".to_string())?;
        let mut out = Vec::with_capacity(raw_length);
        decompressor
            .decompress_to_buffer(body, &mut out)
            .map_err(|error| format!("decompression failed: {error}"))?;
        Ok(out)
    })
}

/// Decodes a stored blob and checks it is the chunk `entry.id`.
///
/// `object` names the pack for error messages.
///
/// # Errors
///
/// [`Error::Corrupt`] with the pack key, the blob's offset, and the expected
/// and actual id or the failing step.
pub fn decode_blob(
    object: &str,
    entry: &BlobEntry,
    stored: &[u8],
    key: Option<&MasterKey>,
) -> Result<Vec<u8>> {
    let offset = u64::from(entry.offset);
    let corrupt =
        |detail: String| Error::corrupt(object, offset, format!("blob {}: {detail}", entry.id));
    if stored.len() != entry.stored_length as usize {
        return Err(corrupt(format!(
            "truncated: {} bytes where {} were expected",
            stored.len(),
            entry.stored_length
        )));
    }
    if entry.raw_length > MAX_BLOB_RAW_LENGTH {
        return Err(corrupt(format!(
            "declared length {} is too large",
            entry.raw_length
        )));
    }
    let decrypted;
    let body = match key {
        Some(key) => {
            decrypted = key
                .open(stored, &blob_associated_data(&entry.id, entry.kind))
                .ok_or_else(|| corrupt("decryption failed (damaged or not this chunk)".into()))?;
            &decrypted[..]
        }
        None => stored,
    };
    let plaintext = if entry.flags & BLOB_COMPRESSED != 0 {
        decompress_exact(body, entry.raw_length as usize).map_err(corrupt)?
    } else {
        body.to_vec()
    };
    if plaintext.len() != entry.raw_length as usize {
        return Err(corrupt(format!(
            "length {} where {} was expected",
            plaintext.len(),
            entry.raw_length
        )));
    }
    let actual = match key {
        Some(key) => key.chunk_id(&plaintext),
        None => Id::digest(&plaintext),
    };
    if actual != entry.id {
        return Err(corrupt(format!(
            "content hash mismatch: expected {}, computed {actual}",
            entry.id
        )));
    }
    Ok(plaintext)
}

/// Accumulates blobs into one pack.
#[derive(Debug, Default)]
pub struct PackBuilder {
    /// Blob bytes not yet taken (see [`take_pending`](Self::take_pending)).
    data: Vec<u8>,
    entries: Vec<BlobEntry>,
    /// Bytes taken so far.
    taken: usize,
}

impl PackBuilder {
    /// An empty pack that fills `buffer` (cleared first), so that a
    /// writer can reuse the buffers of packs it has stored.
    pub fn with_buffer(mut buffer: Vec<u8>) -> Self {
        buffer.clear();
        PackBuilder {
            data: buffer,
            entries: Vec::new(),
            taken: 0,
        }
    }

    /// An empty pack with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        PackBuilder {
            data: Vec::with_capacity(capacity),
            entries: Vec::new(),
            taken: 0,
        }
    }

    /// Bytes of blobs so far (taken ones included).
    pub fn len(&self) -> usize {
        self.taken + self.data.len()
    }

    /// Bytes of blobs added since the last [`take_pending`](Self::take_pending).
    pub fn pending(&self) -> usize {
        self.data.len()
    }

    /// Takes the bytes added since the last call, for a pack written as it
    /// fills; `replacement` (cleared) holds the next ones. Offsets of later
    /// blobs still count from the pack's start.
    pub fn take_pending(&mut self, mut replacement: Vec<u8>) -> Vec<u8> {
        replacement.clear();
        self.taken += self.data.len();
        std::mem::replace(&mut self.data, replacement)
    }

    /// Whether no blob was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends an encoded blob.
    pub fn add(&mut self, id: Id, kind: BlobKind, flags: u8, raw_length: u32, stored: &[u8]) {
        self.add_entry(id, kind, flags, raw_length, stored.len());
        self.append(stored);
    }

    /// Records a blob of `stored_length` bytes starting at the current end
    /// of the pack; its bytes follow with [`append`](Self::append), which
    /// lets a pack written as it fills take them in pieces.
    pub fn add_entry(
        &mut self,
        id: Id,
        kind: BlobKind,
        flags: u8,
        raw_length: u32,
        stored_length: usize,
    ) {
        let offset = u32::try_from(self.len()).unwrap_or(u32::MAX);
        self.entries.push(BlobEntry {
            id,
            kind,
            flags,
            offset,
            stored_length: u32::try_from(stored_length).unwrap_or(u32::MAX),
            raw_length,
        });
    }

    /// Appends bytes of the blob last recorded by [`add_entry`](Self::add_entry).
    pub fn append(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
    }

    /// Writes the header and trailer; returns the pack id, bytes and entries.
    ///
    /// For a pack kept whole: with bytes taken, the id would not cover
    /// them (see [`finish_pending`](Self::finish_pending)).
    pub fn finish(self, key: Option<&MasterKey>) -> (Id, Vec<u8>, Vec<BlobEntry>) {
        debug_assert_eq!(self.taken, 0, "finish of a pack written as it fills");
        let (data, entries) = self.finish_pending(key);
        let id = Id(Sha256::digest(&data).into());
        (id, data, entries)
    }

    /// Appends the header and trailer to the bytes not yet taken and
    /// returns them with the entries: the end of a pack written as it
    /// fills, whose id is the SHA-256 of everything taken and returned.
    pub fn finish_pending(mut self, key: Option<&MasterKey>) -> (Vec<u8>, Vec<BlobEntry>) {
        let mut header = Vec::with_capacity(self.entries.len() * HEADER_ENTRY_LEN);
        for entry in &self.entries {
            header.push(entry.kind as u8);
            header.push(entry.flags);
            header.extend_from_slice(&entry.stored_length.to_le_bytes());
            header.extend_from_slice(&entry.raw_length.to_le_bytes());
            header.extend_from_slice(entry.id.as_bytes());
        }
        let sealed = envelope::seal(ObjectKind::PackHeader, &header, false, key);
        self.data.extend_from_slice(&sealed);
        let header_length = u32::try_from(sealed.len()).unwrap_or(u32::MAX);
        self.data.extend_from_slice(&header_length.to_le_bytes());
        self.data.extend_from_slice(&PACK_MAGIC);
        (self.data, self.entries)
    }
}

/// Reads the header of a whole pack file.
///
/// # Errors
///
/// [`Error::Corrupt`] naming `object` when the trailer, header or blob
/// extents are damaged.
pub fn read_header(object: &str, pack: &[u8], key: Option<&MasterKey>) -> Result<Vec<BlobEntry>> {
    let header_length = read_trailer(object, pack.len() as u64, pack)?;
    let trailer_start = pack.len() - PACK_TRAILER_LEN;
    let header_start = trailer_start - header_length as usize;
    let header = pack.get(header_start..trailer_start).unwrap_or_default();
    decode_header(object, header, header_start as u64, key)
}

/// Parses the 8-byte trailer at the end of a pack of `pack_size` bytes;
/// `tail` holds at least the pack's last 8 bytes. Returns the header length,
/// checked to fit in the pack.
///
/// # Errors
///
/// [`Error::Corrupt`] naming `object` for a bad magic or header length.
pub fn read_trailer(object: &str, pack_size: u64, tail: &[u8]) -> Result<u32> {
    let corrupt = |offset: u64, detail: String| Error::corrupt(object, offset, detail);
    if pack_size < PACK_TRAILER_LEN as u64 || tail.len() < PACK_TRAILER_LEN {
        return Err(corrupt(
            0,
            format!("pack of {pack_size} bytes has no trailer"),
        ));
    }
    let trailer_start = pack_size - PACK_TRAILER_LEN as u64;
    let mut trailer = ByteReader::new(
        tail.get(tail.len() - PACK_TRAILER_LEN..)
            .unwrap_or_default(),
    );
    let header_length = trailer.u32().unwrap_or(0);
    if trailer.take(4) != Some(&PACK_MAGIC[..]) {
        return Err(corrupt(trailer_start + 4, "bad pack magic".into()));
    }
    if u64::from(header_length) > trailer_start {
        return Err(corrupt(
            trailer_start,
            format!("header length {header_length} exceeds the pack"),
        ));
    }
    Ok(header_length)
}

/// Opens a pack header (the envelope found at `header_start`) and checks
/// that its blobs exactly fill the pack up to the header.
///
/// # Errors
///
/// [`Error::Corrupt`] naming `object`.
pub fn decode_header(
    object: &str,
    header_bytes: &[u8],
    header_start: u64,
    key: Option<&MasterKey>,
) -> Result<Vec<BlobEntry>> {
    let corrupt = |offset: u64, detail: String| Error::corrupt(object, offset, detail);
    let header =
        envelope::open(object, header_bytes, ObjectKind::PackHeader, key).map_err(|error| {
            match error {
                Error::Corrupt { detail, offset, .. } => {
                    corrupt(header_start + offset, format!("pack header: {detail}"))
                }
                other => other,
            }
        })?;
    let entries = parse_header_entries(&header)
        .ok_or_else(|| corrupt(header_start, "malformed pack header".into()))?;
    let blobs_end: u64 = entries
        .last()
        .map(|e| u64::from(e.offset) + u64::from(e.stored_length))
        .unwrap_or(0);
    if blobs_end != header_start {
        return Err(corrupt(
            header_start,
            format!("blobs end at {blobs_end} but the header starts at {header_start}"),
        ));
    }
    Ok(entries)
}

fn parse_header_entries(header: &[u8]) -> Option<Vec<BlobEntry>> {
    if !header.len().is_multiple_of(HEADER_ENTRY_LEN) {
        return None;
    }
    let mut reader = ByteReader::new(header);
    let mut entries = Vec::with_capacity(header.len() / HEADER_ENTRY_LEN);
    let mut offset: u64 = 0;
    while reader.remaining() > 0 {
        let kind = BlobKind::from_byte(reader.u8()?)?;
        let flags = reader.u8()?;
        if flags & !BLOB_COMPRESSED != 0 {
            return None;
        }
        let stored_length = reader.u32()?;
        let raw_length = reader.u32()?;
        let id = reader.id()?;
        entries.push(BlobEntry {
            id,
            kind,
            flags,
            offset: u32::try_from(offset).ok()?,
            stored_length,
            raw_length,
        });
        offset += u64::from(stored_length);
    }
    Some(entries)
}

/// The key under which pack `id` is stored: `data/<first two hex digits>/<id>`.
pub fn pack_key(id: &Id) -> String {
    let hex = id.to_hex();
    format!("data/{}/{}", &hex[..2], hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trip_plain_and_encrypted() {
        let key = MasterKey::generate();
        for key in [None, Some(&key)] {
            let mut builder = PackBuilder::default();
            let chunks: Vec<Vec<u8>> = vec![b"aaaa".repeat(100), b"xyz".to_vec(), Vec::new()];
            for chunk in &chunks {
                let id = key
                    .map(|k| k.chunk_id(chunk))
                    .unwrap_or_else(|| Id::digest(chunk));
                let (stored, flags) = encode_blob(&id, BlobKind::Data, chunk, key, 3);
                builder.add(id, BlobKind::Data, flags, chunk.len() as u32, &stored);
            }
            let (pack_id, bytes, entries) = builder.finish(key);
            assert_eq!(Id::digest(&bytes), pack_id);
            let read = read_header("p", &bytes, key).unwrap();
            assert_eq!(read, entries);
            for (entry, chunk) in read.iter().zip(&chunks) {
                let stored = &bytes[entry.offset as usize..][..entry.stored_length as usize];
                assert_eq!(&decode_blob("p", entry, stored, key).unwrap(), chunk);
            }
        }
    }

    #[test]
    fn damaged_blob_and_header_are_reported() {
        let mut builder = PackBuilder::default();
        let chunk = b"some data".to_vec();
        let id = Id::digest(&chunk);
        let (stored, flags) = encode_blob(&id, BlobKind::Data, &chunk, None, 0);
        builder.add(id, BlobKind::Data, flags, chunk.len() as u32, &stored);
        let (_, bytes, entries) = builder.finish(None);
        let mut damaged = bytes[..entries[0].stored_length as usize].to_vec();
        damaged[0] ^= 1;
        let error = decode_blob("data/x", &entries[0], &damaged, None).unwrap_err();
        assert!(error.to_string().contains("hash mismatch"), "{error}");
        for position in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[position] ^= 0x10;
            let header = read_header("p", &damaged, None);
            let blob_ok = header.as_ref().ok().and_then(|entries| {
                let e = entries.first()?;
                let stored =
                    damaged.get(e.offset as usize..(e.offset + e.stored_length) as usize)?;
                decode_blob("p", e, stored, None).ok()
            });
            assert!(blob_ok.is_none(), "flip at {position} went unnoticed");
        }
    }
}

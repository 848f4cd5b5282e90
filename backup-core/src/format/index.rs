//! Index files: where each chunk is stored.
//!
//! An index object (`index/<id>`, an envelope of kind `Index`, compressed and,
//! in encrypted repositories, encrypted) has this payload, all integers
//! little-endian:
//!
//! ```text
//! supersedes_count (u32) || supersedes_count × index id (32)
//! pack_count (u32) || pack_count × Pack
//! Pack = pack id (32) || pack size (u64) || blob_count (u32) || blob_count × Blob
//! Blob = kind (1) || flags (1) || offset (u32) || stored_length (u32) || raw_length (u32) || id (32)
//! ```
//!
//! An index only ever lists packs that were completely stored before it was
//! written. `supersedes` names index objects whose content this one
//! replaces (written by compaction and prune; readers ignore superseded ones).
//! Its id is the SHA-256 of the stored object.

use std::collections::{HashMap, HashSet};

use crate::format::pack::{BlobEntry, BlobKind, BLOB_COMPRESSED};
use crate::format::reader::ByteReader;
use crate::{Error, Id, Result};

const BLOB_RECORD_LEN: usize = 46;
const PACK_RECORD_MIN_LEN: usize = 44;

/// The blobs of one pack as listed in an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedPack {
    /// The pack's id.
    pub id: Id,
    /// The pack file's size in bytes.
    pub size: u64,
    /// Its blobs.
    pub blobs: Vec<BlobEntry>,
}

/// The decoded content of one index object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexFile {
    /// Index objects this one replaces.
    pub supersedes: Vec<Id>,
    /// The packs it lists.
    pub packs: Vec<IndexedPack>,
}

impl IndexFile {
    /// A fresh random id, listed in `supersedes` of every index written.
    ///
    /// Index ids are content hashes and `supersedes` names ids, so an index
    /// written with the same bytes as one superseded earlier would get its
    /// id and be ignored by every reader. One random (and therefore
    /// nonexistent) id in `supersedes` makes every index object unique;
    /// superseding an object that does not exist has no effect.
    pub fn uniqueness_marker() -> Id {
        Id(crate::crypto::random_bytes())
    }

    /// Encodes the payload.
    pub fn encode(&self) -> Vec<u8> {
        let blobs: usize = self.packs.iter().map(|p| p.blobs.len()).sum();
        let mut out = Vec::with_capacity(
            8 + self.packs.len() * PACK_RECORD_MIN_LEN + blobs * BLOB_RECORD_LEN,
        );
        out.extend_from_slice(&len_u32(self.supersedes.len()).to_le_bytes());
        for id in &self.supersedes {
            out.extend_from_slice(id.as_bytes());
        }
        out.extend_from_slice(&len_u32(self.packs.len()).to_le_bytes());
        for pack in &self.packs {
            out.extend_from_slice(pack.id.as_bytes());
            out.extend_from_slice(&pack.size.to_le_bytes());
            out.extend_from_slice(&len_u32(pack.blobs.len()).to_le_bytes());
            for blob in &pack.blobs {
                out.push(blob.kind as u8);
                out.push(blob.flags);
                out.extend_from_slice(&blob.offset.to_le_bytes());
                out.extend_from_slice(&blob.stored_length.to_le_bytes());
                out.extend_from_slice(&blob.raw_length.to_le_bytes());
                out.extend_from_slice(blob.id.as_bytes());
            }
        }
        out
    }

    /// Decodes a payload read from object `key`.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] naming `key` and the offset of the first bad field.
    pub fn decode(key: &str, payload: &[u8]) -> Result<IndexFile> {
        let mut reader = ByteReader::new(payload);
        let corrupt = |reader: &ByteReader<'_>, what: &str| {
            Error::corrupt(key, reader.position() as u64, format!("index: {what}"))
        };
        let count = reader.u32().ok_or_else(|| corrupt(&reader, "truncated"))? as usize;
        if count > reader.remaining() / 32 {
            return Err(corrupt(&reader, "supersedes count exceeds the object"));
        }
        let mut supersedes = Vec::with_capacity(count);
        for _ in 0..count {
            supersedes.push(reader.id().ok_or_else(|| corrupt(&reader, "truncated"))?);
        }
        let pack_count = reader.u32().ok_or_else(|| corrupt(&reader, "truncated"))? as usize;
        if pack_count > reader.remaining() / PACK_RECORD_MIN_LEN {
            return Err(corrupt(&reader, "pack count exceeds the object"));
        }
        let mut packs = Vec::with_capacity(pack_count);
        for _ in 0..pack_count {
            let id = reader.id().ok_or_else(|| corrupt(&reader, "truncated"))?;
            let size = reader.u64().ok_or_else(|| corrupt(&reader, "truncated"))?;
            let blob_count = reader.u32().ok_or_else(|| corrupt(&reader, "truncated"))? as usize;
            if blob_count > reader.remaining() / BLOB_RECORD_LEN {
                return Err(corrupt(&reader, "blob count exceeds the object"));
            }
            let mut blobs = Vec::with_capacity(blob_count);
            for _ in 0..blob_count {
                let at = reader.position();
                let kind = reader.u8().and_then(BlobKind::from_byte);
                let flags = reader.u8();
                let offset = reader.u32();
                let stored_length = reader.u32();
                let raw_length = reader.u32();
                let blob_id = reader.id();
                match (kind, flags, offset, stored_length, raw_length, blob_id) {
                    (
                        Some(kind),
                        Some(flags),
                        Some(offset),
                        Some(stored_length),
                        Some(raw_length),
                        Some(id),
                    ) if flags & !BLOB_COMPRESSED == 0
                        && u64::from(offset) + u64::from(stored_length) <= size =>
                    {
                        blobs.push(BlobEntry {
                            id,
                            kind,
                            flags,
                            offset,
                            stored_length,
                            raw_length,
                        })
                    }
                    _ => return Err(Error::corrupt(key, at as u64, "index: invalid blob record")),
                }
            }
            packs.push(IndexedPack { id, size, blobs });
        }
        if reader.remaining() != 0 {
            return Err(corrupt(&reader, "trailing bytes"));
        }
        Ok(IndexFile { supersedes, packs })
    }
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Where one blob lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// The pack holding it.
    pub pack: Id,
    /// Its entry in that pack.
    pub entry: BlobEntry,
}

/// A blob's place as the in-memory index keeps it: the pack as a number
/// into `Index::pack_ids` instead of its 32-byte id, and without a second
/// copy of the blob id (the table's key). 20 bytes instead of 80: a large
/// index takes less than half the memory and loads faster.
#[derive(Debug, Clone, Copy)]
struct Slot {
    pack: u32,
    offset: u32,
    stored_length: u32,
    raw_length: u32,
    kind: BlobKind,
    flags: u8,
}

/// The in-memory union of all index objects.
#[derive(Debug, Default, Clone)]
pub struct Index {
    blobs: HashMap<Id, Slot>,
    packs: HashMap<Id, u64>,
    /// Pack ids by the number a [`Slot`] names.
    pack_ids: Vec<Id>,
    /// The number of each pack in `pack_ids`.
    pack_numbers: HashMap<Id, u32>,
    files: HashSet<Id>,
    /// Packs a prune marked for deletion: still readable, but never a
    /// reason to skip storing a chunk.
    doomed: HashSet<Id>,
    /// Packs listed by an index object (not only known from their header).
    listed: HashSet<Id>,
}

impl Index {
    /// Adds every pack of an index object.
    pub fn add_file(&mut self, index_id: Id, file: &IndexFile) {
        self.files.insert(index_id);
        for pack in &file.packs {
            self.listed.insert(pack.id);
            self.add_pack(pack);
        }
    }

    /// Makes room for `blobs` more blobs and `packs` more packs, so that
    /// loading a large index does not grow (and rehash) the tables again
    /// and again.
    pub fn reserve(&mut self, blobs: usize, packs: usize) {
        self.blobs.reserve(blobs);
        self.packs.reserve(packs);
        self.pack_ids.reserve(packs);
        self.pack_numbers.reserve(packs);
        self.listed.reserve(packs);
    }

    /// Whether an index object lists the pack (as opposed to the pack being
    /// known only from its own header, as doomed packs are).
    pub fn is_listed(&self, pack: &Id) -> bool {
        self.listed.contains(pack)
    }

    /// The packs marked as doomed.
    pub fn doomed(&self) -> &HashSet<Id> {
        &self.doomed
    }

    /// Marks packs as doomed (see the field); call before adding files.
    pub fn set_doomed(&mut self, doomed: HashSet<Id>) {
        self.doomed = doomed;
    }

    /// Adds one pack's blobs. Where a blob is in several packs, a pack that
    /// is not doomed is preferred, then the smallest pack id, so that every
    /// reader picks the same copy.
    pub fn add_pack(&mut self, pack: &IndexedPack) {
        self.packs.insert(pack.id, pack.size);
        let number = self.pack_number(pack.id);
        let doomed = self.doomed.contains(&pack.id);
        for blob in &pack.blobs {
            let candidate = Slot {
                pack: number,
                offset: blob.offset,
                stored_length: blob.stored_length,
                raw_length: blob.raw_length,
                kind: blob.kind,
                flags: blob.flags,
            };
            match self.blobs.entry(blob.id) {
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(candidate);
                }
                std::collections::hash_map::Entry::Occupied(mut slot) => {
                    let current = self.pack_ids[slot.get().pack as usize];
                    let current_doomed = self.doomed.contains(&current);
                    if (current_doomed, current) > (doomed, pack.id) {
                        slot.insert(candidate);
                    }
                }
            }
        }
    }

    /// The number of a pack in `pack_ids`, given one if it has none yet.
    fn pack_number(&mut self, pack: Id) -> u32 {
        if let Some(number) = self.pack_numbers.get(&pack) {
            return *number;
        }
        // More than 2^32 packs (at least 2^32 × 4 MiB of data) would be
        // needed to run out of numbers.
        let number = u32::try_from(self.pack_ids.len())
            .unwrap_or_else(|_| unreachable!("more than 2^32 packs in one index"));
        self.pack_ids.push(pack);
        self.pack_numbers.insert(pack, number);
        number
    }

    fn location(&self, id: &Id, slot: &Slot) -> BlobLocation {
        BlobLocation {
            pack: self.pack_ids[slot.pack as usize],
            entry: BlobEntry {
                id: *id,
                kind: slot.kind,
                flags: slot.flags,
                offset: slot.offset,
                stored_length: slot.stored_length,
                raw_length: slot.raw_length,
            },
        }
    }

    /// Where the blob is stored, if it is.
    pub fn get(&self, id: &Id) -> Option<BlobLocation> {
        self.blobs.get(id).map(|slot| self.location(id, slot))
    }

    /// Whether the blob is stored in a pack that is not doomed: only then
    /// may a backup reference it without storing it again.
    pub fn contains(&self, id: &Id) -> bool {
        self.blobs.get(id).is_some_and(|slot| {
            self.doomed.is_empty() || !self.doomed.contains(&self.pack_ids[slot.pack as usize])
        })
    }

    /// Whether the blob can be read (doomed packs included).
    pub fn readable(&self, id: &Id) -> bool {
        self.blobs.contains_key(id)
    }

    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    /// Number of distinct blobs.
    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }

    /// Every indexed pack with its size.
    pub fn packs(&self) -> &HashMap<Id, u64> {
        &self.packs
    }

    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    /// Ids of the index objects loaded.
    pub fn files(&self) -> &HashSet<Id> {
        &self.files
    }

    /// Every blob id with its location.
    pub fn iter(&self) -> impl Iterator<Item = (&Id, BlobLocation)> {
        self.blobs
            .iter()
            .map(|(id, slot)| (id, self.location(id, slot)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &[u8], offset: u32) -> BlobEntry {
        BlobEntry {
            id: Id::digest(name),
            kind: BlobKind::Data,
            flags: BLOB_COMPRESSED,
            offset,
            stored_length: 10,
            raw_length: 20,
        }
    }

    #[test]
    fn a_blob_in_several_packs_resolves_to_one_copy_and_skips_doomed_packs() {
        let (low, high) = {
            let (a, b) = (Id::digest(b"pack a"), Id::digest(b"pack b"));
            if a < b {
                (a, b)
            } else {
                (b, a)
            }
        };
        let shared = entry(b"shared", 0);
        let only_high = entry(b"only in high", 10);
        let pack = |id, blobs| IndexedPack {
            id,
            size: 100,
            blobs,
        };
        for doomed_low in [false, true] {
            let mut index = Index::default();
            if doomed_low {
                index.set_doomed(HashSet::from([low]));
            }
            // Added in both orders: the choice must not depend on it.
            for order in [[high, low], [low, high]] {
                let mut index = index.clone();
                for id in order {
                    let blobs = if id == high {
                        vec![shared, only_high]
                    } else {
                        vec![entry(b"shared", 50)]
                    };
                    index.add_pack(&pack(id, blobs));
                }
                let location = index.get(&shared.id).unwrap();
                if doomed_low {
                    assert_eq!((location.pack, location.entry), (high, shared));
                } else {
                    assert_eq!(location.pack, low);
                    assert_eq!(location.entry.offset, 50);
                }
                assert_eq!(index.get(&only_high.id).unwrap().entry, only_high);
                assert_eq!(index.get(&only_high.id).unwrap().pack, high);
                assert!(index.contains(&shared.id));
                assert_eq!(index.blob_count(), 2);
                assert_eq!(index.packs().len(), 2);
                let mut listed: Vec<(Id, Id)> =
                    index.iter().map(|(id, at)| (*id, at.pack)).collect();
                listed.sort();
                let mut expected = vec![
                    (shared.id, if doomed_low { high } else { low }),
                    (only_high.id, high),
                ];
                expected.sort();
                assert_eq!(listed, expected);
            }
        }
        // A blob only in a doomed pack is readable but not "contained".
        let mut index = Index::default();
        index.set_doomed(HashSet::from([low]));
        index.add_pack(&pack(low, vec![shared]));
        assert!(index.readable(&shared.id));
        assert!(!index.contains(&shared.id));
        assert_eq!(index.get(&shared.id).unwrap().pack, low);
    }

    #[test]
    fn encode_decode_and_hostile_counts() {
        let file = IndexFile {
            supersedes: vec![Id::digest(b"old")],
            packs: vec![IndexedPack {
                id: Id::digest(b"pack"),
                size: 100,
                blobs: vec![BlobEntry {
                    id: Id::digest(b"blob"),
                    kind: BlobKind::Data,
                    flags: BLOB_COMPRESSED,
                    offset: 0,
                    stored_length: 50,
                    raw_length: 80,
                }],
            }],
        };
        let bytes = file.encode();
        assert_eq!(IndexFile::decode("i", &bytes).unwrap(), file);
        for cut in 0..bytes.len() {
            assert!(IndexFile::decode("i", &bytes[..cut]).is_err());
        }
        let mut huge = bytes.clone();
        huge[36..40].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(IndexFile::decode("i", &huge).is_err());
    }
}

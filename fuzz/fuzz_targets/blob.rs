//! `pack::decode_blob` on structured input: arbitrary entry fields and
//! stored bytes; and the `encode_blob` → `decode_blob` round trip.
//!
//! Checked: no panic; decompression never produces more than the declared
//! raw length (at most 64 MiB); a blob decodes only to the chunk its id
//! names; an encoded chunk decodes to itself, and (encrypted) not as the
//! other blob kind; a damaged one does not decode, or (compressed, not
//! encrypted) decodes to the same chunk.

#![no_main]

use arbitrary::Arbitrary;
use backup_core::internals::pack::{self, BlobEntry, BlobKind};
use backup_core::Id;
use backup_fuzz::test_key;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Input {
    /// Arbitrary entry and bytes.
    Raw {
        tree: bool,
        flags: u8,
        offset: u32,
        /// `None`: the stored length is the length of `stored`, so the
        /// decoder gets past its first check.
        stored_length: Option<u32>,
        raw_length: u32,
        /// `None`: the id is the SHA-256 of `stored` (right for an
        /// uncompressed blob of an unencrypted repository).
        id: Option<[u8; 32]>,
        keyed: bool,
        stored: Vec<u8>,
    },
    /// A chunk encoded by `encode_blob`, then damaged (or not).
    Encoded {
        tree: bool,
        level: u8,
        keyed: bool,
        plaintext: Vec<u8>,
        /// Flip one bit at this position of the stored bytes.
        flip: Option<u16>,
    },
}

fn kind(tree: bool) -> BlobKind {
    if tree {
        BlobKind::Tree
    } else {
        BlobKind::Data
    }
}

fuzz_target!(|input: Input| {
    match input {
        Input::Raw {
            tree,
            flags,
            offset,
            stored_length,
            raw_length,
            id,
            keyed,
            stored,
        } => {
            let entry = BlobEntry {
                id: id.map(Id).unwrap_or_else(|| Id::digest(&stored)),
                kind: kind(tree),
                flags,
                offset,
                stored_length: stored_length
                    .unwrap_or_else(|| u32::try_from(stored.len()).unwrap_or(u32::MAX)),
                raw_length,
            };
            let key = keyed.then(test_key);
            if let Ok(plaintext) = pack::decode_blob("data/00/fuzz", &entry, &stored, key) {
                assert_eq!(plaintext.len(), raw_length as usize);
                assert!(raw_length <= pack::MAX_BLOB_RAW_LENGTH);
                if key.is_none() {
                    assert_eq!(Id::digest(&plaintext), entry.id);
                }
            }
        }
        Input::Encoded {
            tree,
            level,
            keyed,
            plaintext,
            flip,
        } => {
            let key = keyed.then(test_key);
            let id = key.map_or_else(|| Id::digest(&plaintext), |k| k.chunk_id(&plaintext));
            // Levels 0 (off) to 22, as the config allows.
            let level = i32::from(level % 23);
            let (stored, flags) = pack::encode_blob(&id, kind(tree), &plaintext, key, level);
            let entry = BlobEntry {
                id,
                kind: kind(tree),
                flags,
                offset: 0,
                stored_length: u32::try_from(stored.len()).expect("small blob"),
                raw_length: u32::try_from(plaintext.len()).expect("small chunk"),
            };
            match pack::decode_blob("data/00/fuzz", &entry, &stored, key) {
                Ok(decoded) => assert!(decoded == plaintext, "round trip changed the chunk"),
                Err(error) => panic!("an encoded blob does not decode: {error}"),
            }
            if key.is_some() {
                let other = BlobEntry {
                    kind: kind(!tree),
                    ..entry
                };
                assert!(
                    pack::decode_blob("data/00/fuzz", &other, &stored, key).is_err(),
                    "an encrypted blob decoded as the other kind"
                );
            }
            if let Some(position) = flip {
                let mut damaged = stored.clone();
                if let Some(byte) = damaged.get_mut(usize::from(position) / 8) {
                    *byte ^= 1 << (position % 8);
                    match pack::decode_blob("data/00/fuzz", &entry, &damaged, key) {
                        Err(_) => {}
                        // Some bits of a zstd frame do not change what it
                        // decodes to; the chunk id check guarantees the
                        // result is still the chunk. Encrypted or stored raw,
                        // every flipped bit must be caught.
                        Ok(decoded) => assert!(
                            decoded == plaintext && key.is_none() && flags != 0,
                            "a damaged blob decoded (to {} bytes)",
                            decoded.len()
                        ),
                    }
                }
            }
        }
    }
});

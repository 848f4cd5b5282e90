//! `pack::read_header` on arbitrary bytes taken as a whole pack (without a
//! key and with one), then `decode_blob` on every blob it lists; and
//! `read_trailer` with an arbitrary pack size.
//!
//! Each input is also tried with the checksum of its header envelope
//! repaired, so that mutations reach the header entry parser.
//!
//! Checked: no panic; the entries of a header that decodes lie end to end
//! from offset 0 to the start of the header (so every blob is inside the
//! pack); `read_trailer` never returns a header length that does not fit.

#![no_main]

use backup_core::internals::crypto::MasterKey;
use backup_core::internals::pack::{self, PACK_TRAILER_LEN};
use backup_fuzz::{fix_envelope_checksum, test_key};
use libfuzzer_sys::fuzz_target;

const OBJECT: &str = "data/00/fuzz";

fuzz_target!(|data: &[u8]| {
    let key = test_key();
    check_pack(data, None);
    check_pack(data, Some(key));
    if let Some(repaired) = repair_header_checksum(data) {
        check_pack(&repaired, None);
        check_pack(&repaired, Some(key));
    }

    // The ranged-read path: the trailer of a pack of a claimed size, read
    // from the tail actually fetched.
    if data.len() >= 8 {
        let (size, tail) = data.split_at(8);
        let pack_size = u64::from_le_bytes(size.try_into().unwrap_or_default());
        if let Ok(header_length) = pack::read_trailer(OBJECT, pack_size, tail) {
            assert!(
                u64::from(header_length) + PACK_TRAILER_LEN as u64 <= pack_size,
                "header length {header_length} accepted for a pack of {pack_size} bytes"
            );
        }
    }
});

fn check_pack(pack_bytes: &[u8], key: Option<&MasterKey>) {
    let Ok(entries) = pack::read_header(OBJECT, pack_bytes, key) else {
        return;
    };
    let mut offset = 0u64;
    for entry in &entries {
        assert_eq!(
            u64::from(entry.offset),
            offset,
            "blob offsets are not contiguous"
        );
        offset += u64::from(entry.stored_length);
        assert!(
            entry.flags & !pack::BLOB_COMPRESSED == 0,
            "invalid blob flags accepted"
        );
    }
    let header_length = pack_bytes
        .get(pack_bytes.len() - 8..pack_bytes.len() - 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .expect("a decoded pack has a trailer");
    let header_start = (pack_bytes.len() - PACK_TRAILER_LEN) as u64 - u64::from(header_length);
    assert_eq!(
        offset, header_start,
        "blobs do not end where the header starts"
    );
    for entry in &entries {
        let start = entry.offset as usize;
        let stored = pack_bytes
            .get(start..start + entry.stored_length as usize)
            .expect("a listed blob lies inside the pack");
        let _ = pack::decode_blob(OBJECT, entry, stored, key);
    }
}

/// The pack with the trailing checksum of its header envelope recomputed, if
/// its trailer points at a header of at least 40 bytes.
fn repair_header_checksum(data: &[u8]) -> Option<Vec<u8>> {
    let trailer_start = data.len().checked_sub(PACK_TRAILER_LEN)?;
    let length = u32::from_le_bytes(
        data.get(trailer_start..trailer_start + 4)?
            .try_into()
            .ok()?,
    );
    let header_start = trailer_start.checked_sub(length as usize)?;
    let header = data.get(header_start..trailer_start)?;
    if header.len() < backup_core::internals::ENVELOPE_OVERHEAD {
        return None;
    }
    let mut out = data.to_vec();
    out[header_start..trailer_start].copy_from_slice(&fix_envelope_checksum(header));
    Some(out)
}

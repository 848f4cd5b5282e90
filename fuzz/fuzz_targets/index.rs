//! `IndexFile::decode` on arbitrary payloads, and encode → decode round
//! trips of whatever decodes. An input starting with the envelope magic is
//! also opened as an index object (with its checksum repaired) first, so
//! index objects reach the decoder whole; only uncompressed ones, since the
//! fuzzer soon finds small zstd frames that expand to many megabytes, which
//! cost milliseconds each (decompression is the `envelope` target's job,
//! and the seeds hold decompressed payloads).
//!
//! Checked: no panic, no allocation from an unchecked count; every blob lies
//! inside its pack; the encoding is canonical (re-encoding a decoded payload
//! gives the same bytes, which decode to an equal value).

#![no_main]

use backup_core::internals::envelope;
use backup_core::internals::ObjectKind;
use backup_core::internals::index::IndexFile;
use backup_fuzz::fix_envelope_checksum;
use libfuzzer_sys::fuzz_target;

fn check(payload: &[u8]) {
    let Ok(file) = IndexFile::decode("index/fuzz", payload) else {
        return;
    };
    for pack in &file.packs {
        for blob in &pack.blobs {
            assert!(u64::from(blob.offset) + u64::from(blob.stored_length) <= pack.size);
        }
    }
    let encoded = file.encode();
    assert!(encoded == payload, "decode → encode is not the identity");
    match IndexFile::decode("index/fuzz", &encoded) {
        Ok(again) => assert_eq!(again, file, "encode → decode changed the index"),
        Err(error) => panic!("a re-encoded index does not decode: {error}"),
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.starts_with(&backup_core::internals::MAGIC) && !backup_fuzz::compressed_envelope(data) {
        let fixed = fix_envelope_checksum(data);
        if let Ok(payload) = envelope::open("index/fuzz", &fixed, ObjectKind::Index, None) {
            check(&payload);
        }
    }
});

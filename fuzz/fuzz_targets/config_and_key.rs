//! `RepoConfig::from_object`, `KeyFile::from_object` and `KeyFile::open` on
//! arbitrary bytes (as given and with the envelope checksum repaired).
//!
//! Checked: no panic; a config that decodes satisfies the documented ranges
//! and encodes back to an object that decodes to the same config.

#![no_main]

use backup_core::internals::config::{KeyFile, RepoConfig};
use backup_core::internals::crypto::MasterKey;
use backup_core::KdfParams;
use backup_fuzz::fix_envelope_checksum;
use libfuzzer_sys::fuzz_target;

const PASSWORD: &[u8] = b"fuzz-password";

/// `KeyFile::open` runs Argon2id with the parameters of the (fuzzed) key
/// file, and backup-core accepts up to 1 GiB and 100 passes: one such input
/// would take seconds. The target only opens key files whose parameters are
/// at most 64 KiB of memory and 1 pass (parallelism is then at most 8, since
/// Argon2 needs 8 KiB per lane); the range checks on larger values are plain
/// comparisons, covered by `KeyFile::from_object` and by the key files that
/// `open` refuses before deriving anything.
fn cheap(params: &KdfParams) -> bool {
    params.memory_kib <= 64 && params.iterations <= 1
}

fuzz_target!(|data: &[u8]| {
    let fixed = fix_envelope_checksum(data);
    for bytes in [data, &fixed[..]] {
        if let Ok(config) = RepoConfig::from_object(bytes) {
            assert_eq!(config.version, 1);
            assert!((0..=22).contains(&config.compression_level));
            assert!((1 << 20..=512 << 20).contains(&config.pack_size));
            assert!(config.chunker.validate().is_ok() && config.tree_chunker.validate().is_ok());
            let again = config.to_object().expect("a decoded config encodes");
            let decoded = RepoConfig::from_object(&again).expect("an encoded config decodes");
            assert_eq!(
                decoded, config,
                "config changed in an encode/decode round trip"
            );
        }
        if let Ok(file) = KeyFile::from_object("keys/fuzz", bytes) {
            assert_eq!(file.kdf, "argon2id");
            if cheap(&file.params) {
                // The input itself stands for the config object: a key file
                // that opens must bind exactly these bytes.
                let _ = file.open("keys/fuzz", PASSWORD, bytes);
            }
        }
    }

    // A key file made for this input as config object opens with the right
    // password and config only. Costs three cheap Argon2id runs, so it is
    // done for one input in 16.
    if data.first().is_some_and(|b| b & 0x0f == 0) {
        key_file_round_trip(data);
    }
});

fn key_file_round_trip(config_object: &[u8]) {
    let master = MasterKey::generate();
    let params = KdfParams::insecure_for_tests();
    let file = KeyFile::create(&master, PASSWORD, params, config_object, "fuzz".into())
        .expect("creating a key file");
    let object = file.to_object().expect("encoding a key file");
    let file = KeyFile::from_object("keys/fuzz", &object).expect("decoding a key file");
    let opened = file
        .open("keys/fuzz", PASSWORD, config_object)
        .expect("opening a key file with its own config");
    let opened = opened.expect("the right password opens the key file");
    assert_eq!(opened.chunk_id(b"probe"), master.chunk_id(b"probe"));
    assert_eq!(opened.chunker_seed(), master.chunker_seed());
    assert!(matches!(
        file.open("keys/fuzz", b"wrong", config_object),
        Ok(None)
    ));
    let mut other = config_object.to_vec();
    other.push(0);
    assert!(
        file.open("keys/fuzz", PASSWORD, &other).is_err(),
        "a key file accepted a modified config"
    );
}

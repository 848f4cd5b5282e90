//! Helpers shared by the fuzz targets in `fuzz_targets/`.
//!
//! Most objects of the format are envelopes ending with a SHA-256 of the
//! bytes before it, which random mutations almost never get right: fed raw,
//! nearly every input stops at the checksum check. The targets therefore
//! decode each input twice, as given and with its checksum repaired
//! ([`fix_envelope_checksum`]), so the fuzzer reaches the magic, version,
//! kind and flags checks, decompression and the payload decoders behind them.

use std::sync::OnceLock;

use backup_core::internals::crypto::MasterKey;
use sha2::{Digest, Sha256};

/// Length of the trailing SHA-256 of an envelope.
pub const CHECKSUM_LEN: usize = 32;

/// The master key used for the "encrypted repository" variants.
///
/// `MasterKey::from_bytes` is `pub(crate)`, so a fixed key cannot be built
/// from outside backup-core: the key is generated once per process instead.
/// Fuzzed bytes are never valid ciphertext under it either way; inputs that
/// must decrypt are sealed with it inside the target (see `envelope`).
pub fn test_key() -> &'static MasterKey {
    static KEY: OnceLock<MasterKey> = OnceLock::new();
    KEY.get_or_init(MasterKey::generate)
}

/// `bytes` with a valid envelope checksum: the last 32 bytes are replaced
/// by the SHA-256 of the others when the input is long enough to hold one,
/// otherwise a checksum of the whole input is appended.
pub fn fix_envelope_checksum(bytes: &[u8]) -> Vec<u8> {
    let body = if bytes.len() >= backup_core::internals::ENVELOPE_OVERHEAD {
        &bytes[..bytes.len() - CHECKSUM_LEN]
    } else {
        bytes
    };
    let mut out = body.to_vec();
    out.extend_from_slice(&Sha256::digest(body));
    out
}

/// Whether `bytes` look like an envelope with the compressed flag set.
pub fn compressed_envelope(bytes: &[u8]) -> bool {
    bytes.get(6).is_some_and(|flags| flags & 0x01 != 0)
}

/// Every object kind of the format.
pub const ALL_KINDS: [backup_core::internals::ObjectKind; 7] = {
    use backup_core::internals::ObjectKind::*;
    [
        Config,
        Key,
        Index,
        Manifest,
        PackHeader,
        Inflight,
        DeletionMark,
    ]
};

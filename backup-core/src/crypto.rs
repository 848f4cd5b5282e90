//! Keys, key derivation, authenticated encryption and keyed chunk ids.
//!
//! * The **master key** is 72 random bytes: a 32-byte encryption key for
//!   XChaCha20-Poly1305, a 32-byte HMAC-SHA-256 key for chunk ids, and an
//!   8-byte seed for the chunker's gear table (so chunk boundaries do not
//!   reveal file contents either).
//! * The master key is stored in key files, wrapped with a key derived from
//!   the password by Argon2id (memory-hard).
//! * Every secret is zeroized when dropped and never printed by `Debug`.

use chacha20::cipher::consts::U10;
use hmac::{Hmac, Mac};
use rand::RngCore;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::{Error, Id, Result};

/// Nonce length of XChaCha20-Poly1305.
pub const NONCE_LEN: usize = 24;
/// Authentication tag length of XChaCha20-Poly1305.
pub const TAG_LEN: usize = 16;
/// Bytes added to a plaintext by [`MasterKey::seal`].
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// The repository's secret keys.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    encryption: [u8; 32],
    id_key: [u8; 32],
    chunker_seed: u64,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// Length of a serialised master key.
pub const MASTER_KEY_LEN: usize = 72;

impl MasterKey {
    /// Generates a new random master key from the operating system's RNG.
    pub fn generate() -> MasterKey {
        let mut rng = rand::rngs::OsRng;
        let mut key = MasterKey {
            encryption: [0; 32],
            id_key: [0; 32],
            chunker_seed: 0,
        };
        rng.fill_bytes(&mut key.encryption);
        rng.fill_bytes(&mut key.id_key);
        // The gear-table seed must be non-zero, zero means "unseeded".
        key.chunker_seed = rng.next_u64() | 1;
        key
    }

    /// Serialises the key: encryption key, id key, chunker seed (LE).
    pub(crate) fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(MASTER_KEY_LEN));
        out.extend_from_slice(&self.encryption);
        out.extend_from_slice(&self.id_key);
        out.extend_from_slice(&self.chunker_seed.to_le_bytes());
        out
    }

    /// Parses [`MasterKey::to_bytes`] output.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<MasterKey> {
        if bytes.len() != MASTER_KEY_LEN {
            return None;
        }
        let mut key = MasterKey {
            encryption: [0; 32],
            id_key: [0; 32],
            chunker_seed: 0,
        };
        key.encryption.copy_from_slice(bytes.get(0..32)?);
        key.id_key.copy_from_slice(bytes.get(32..64)?);
        key.chunker_seed = u64::from_le_bytes(bytes.get(64..72)?.try_into().ok()?);
        Some(key)
    }

    /// The seed for the chunker's gear table.
    pub fn chunker_seed(&self) -> u64 {
        self.chunker_seed
    }

    /// Keyed chunk id: HMAC-SHA-256 of the plaintext under the id key.
    pub fn chunk_id(&self, plaintext: &[u8]) -> Id {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.id_key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(plaintext);
        Id(mac.finalize().into_bytes().into())
    }

    /// Encrypts `plaintext`; returns `nonce || ciphertext || tag`.
    pub fn seal(&self, plaintext: &[u8], associated: &[u8]) -> Vec<u8> {
        seal_with(&self.encryption, plaintext, associated)
    }

    /// Encrypts `buffer[NONCE_LEN..]` in place and completes `buffer` to
    /// `nonce || ciphertext || tag`, the same bytes [`MasterKey::seal`]
    /// returns, without copying the plaintext. The first [`NONCE_LEN`] bytes
    /// of `buffer` are overwritten with the nonce.
    ///
    /// # Panics
    ///
    /// When `buffer` is shorter than [`NONCE_LEN`].
    pub fn seal_in_place(&self, buffer: &mut Vec<u8>, associated: &[u8]) {
        seal_in_place_with(&self.encryption, buffer, associated);
    }

    /// Decrypts the output of [`MasterKey::seal`].
    ///
    /// # Errors
    ///
    /// `None` when the data is too short or fails authentication.
    pub fn open(&self, sealed: &[u8], associated: &[u8]) -> Option<Vec<u8>> {
        open_with(&self.encryption, sealed, associated)
    }
}

/// XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha) for one nonce: HChaCha20
/// derives a subkey from the key and the nonce's first 16 bytes, and IETF
/// ChaCha20-Poly1305 (RFC 8439) runs under the subkey with the 12-byte
/// nonce of four zero bytes and the nonce's last 8 bytes. The AEAD itself is
/// ring's, whose vectorised code seals about twice as fast as a portable
/// implementation; the bytes are the same.
fn xchacha(key: &[u8; 32], nonce: &[u8; NONCE_LEN]) -> (LessSafeKey, Nonce) {
    let (head, tail) = nonce.split_at(16);
    let mut subkey = chacha20::hchacha::<U10>(key.into(), head.into());
    let unbound = UnboundKey::new(&CHACHA20_POLY1305, &subkey)
        .unwrap_or_else(|_| unreachable!("ChaCha20-Poly1305 takes a 32-byte key"));
    subkey.as_mut_slice().zeroize();
    let mut short = [0u8; 12];
    short[4..].copy_from_slice(tail);
    (
        LessSafeKey::new(unbound),
        Nonce::assume_unique_for_key(short),
    )
}

/// [`MasterKey::seal_in_place`] under `key`, with a fresh random nonce.
fn seal_in_place_with(key: &[u8; 32], buffer: &mut Vec<u8>, associated: &[u8]) {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    seal_in_place_with_nonce(key, &nonce, buffer, associated);
}

/// Seals `buffer[NONCE_LEN..]` in place under `key` and `nonce`, writing
/// the nonce in front and appending the tag.
fn seal_in_place_with_nonce(
    key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    buffer: &mut Vec<u8>,
    associated: &[u8],
) {
    buffer[..NONCE_LEN].copy_from_slice(nonce);
    let (cipher, short) = xchacha(key, nonce);
    let tag = cipher
        .seal_in_place_separate_tag(short, Aad::from(associated), &mut buffer[NONCE_LEN..])
        .unwrap_or_else(|_| unreachable!("XChaCha20-Poly1305 encryption of an in-memory buffer"));
    buffer.extend_from_slice(tag.as_ref());
}

/// Seals with a given nonce, for the inline vectors of FORMAT.md (writers
/// always draw the nonce at random), through the writers' own code.
#[cfg(test)]
pub(crate) fn seal_with_nonce(
    key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
    associated: &[u8],
) -> Vec<u8> {
    let mut out = vec![0; NONCE_LEN];
    out.extend_from_slice(plaintext);
    seal_in_place_with_nonce(key, nonce, &mut out, associated);
    out
}

fn seal_with(key: &[u8; 32], plaintext: &[u8], associated: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SEAL_OVERHEAD + plaintext.len());
    out.resize(NONCE_LEN, 0);
    out.extend_from_slice(plaintext);
    seal_in_place_with(key, &mut out, associated);
    out
}

fn open_with(key: &[u8; 32], sealed: &[u8], associated: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < SEAL_OVERHEAD {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let (cipher, nonce) = xchacha(key, nonce.try_into().ok()?);
    let mut out = ciphertext.to_vec();
    match cipher.open_in_place(nonce, Aad::from(associated), &mut out) {
        Ok(plaintext) => {
            let length = plaintext.len();
            out.truncate(length);
            Some(out)
        }
        // What the buffer holds after a failed check is unspecified (it
        // may be decrypted, unauthenticated bytes): wiped, not just freed.
        Err(_) => {
            out.zeroize();
            None
        }
    }
}

/// Cost parameters of Argon2id, stored in each key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Number of passes.
    pub iterations: u32,
    /// Degree of parallelism.
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 4 lanes: the second recommended option of RFC 9106
    /// (section 4). The lanes are computed in parallel, so the derivation
    /// takes a fraction of the wall time on several cores, while a guess
    /// costs an attacker the same memory and work as with one lane.
    fn default() -> Self {
        KdfParams {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 4,
        }
    }
}

impl KdfParams {
    /// Small parameters for tests only: fast, and not secure.
    pub fn insecure_for_tests() -> Self {
        KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }

    /// Checks the parameters are within what a reader agrees to compute.
    pub(crate) fn validate(&self) -> Result<()> {
        // At most 1 GiB: a hostile key file must not exhaust the reader's memory.
        let sane = (8..=1024 * 1024).contains(&self.memory_kib)
            && (1..=100).contains(&self.iterations)
            && (1..=64).contains(&self.parallelism);
        if sane {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "key derivation parameters out of range: {self:?}"
            )))
        }
    }

    /// Derives a 32-byte key-encryption key from the password.
    pub(crate) fn derive(&self, password: &[u8], salt: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
        self.validate()?;
        let params =
            argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
                .map_err(|error| {
                    Error::InvalidArgument(format!("key derivation parameters: {error}"))
                })?;
        let blocks = params.block_count();
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; 32]);
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(self.parallelism as usize);
        let mut hash = || match KdfMemory::map(blocks, threads) {
            Some(mut memory) => {
                argon.hash_password_into_with_memory(password, salt, out.as_mut(), memory.blocks())
            }
            None => argon.hash_password_into(password, salt, out.as_mut()),
        };
        // The crate's lanes run on a pool of their own that ends with the
        // derivation: idle workers of a long-lived pool keep spinning for
        // milliseconds after the work ends, taking the cores from what the
        // command does next (index decoding, on a 2-core machine).
        let derived = match rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|_| "kdf".into())
            .build()
        {
            Ok(pool) => pool.install(hash),
            Err(_) => hash(),
        };
        derived.map_err(|error| Error::InvalidArgument(format!("key derivation: {error}")))?;
        Ok(out)
    }
}

/// The key derivation's memory, mapped in huge pages where the system
/// allows: Argon2 reads its blocks at random, so with 4 KiB pages a large
/// share of its time goes to page faults (16,384 for 64 MiB) and TLB
/// misses (measured: 90 ms instead of 55 for the default costs). The
/// blocks hold password-derived state: they are zeroized before the
/// mapping is returned.
#[cfg(target_os = "linux")]
struct KdfMemory {
    mapping: *mut libc::c_void,
    mapped: usize,
    blocks: *mut argon2::Block,
    count: usize,
    /// Threads that wipe the blocks when the mapping is dropped.
    threads: usize,
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
impl KdfMemory {
    /// Huge page size this mapping aligns to.
    const HUGE_PAGE: usize = 2 << 20;

    /// Maps `count` zeroed blocks, or `None` (the caller then lets argon2
    /// allocate) if the system refuses the mapping; `threads` wipe it.
    fn map(count: usize, threads: usize) -> Option<KdfMemory> {
        let size = count.checked_mul(argon2::Block::SIZE)?;
        let mapped = size.checked_add(Self::HUGE_PAGE)?;
        // SAFETY: an anonymous private mapping with no address hint; the
        // result is checked for MAP_FAILED before use.
        let mapping = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if mapping == libc::MAP_FAILED {
            return None;
        }
        let offset = mapping.cast::<u8>().align_offset(Self::HUGE_PAGE);
        // SAFETY: `offset < HUGE_PAGE`, so the aligned start and `size`
        // bytes after it lie inside the mapping.
        let blocks = unsafe { mapping.cast::<u8>().add(offset) };
        // SAFETY: advice on a range inside our own mapping; failure (a
        // kernel without transparent huge pages) only means 4 KiB pages.
        unsafe { libc::madvise(blocks.cast(), size, libc::MADV_HUGEPAGE) };
        Some(KdfMemory {
            mapping,
            mapped,
            blocks: blocks.cast(),
            count,
            threads,
        })
    }

    /// The blocks, zero-filled by the kernel until written.
    fn blocks(&mut self) -> &mut [argon2::Block] {
        // SAFETY: `blocks` is aligned to 2 MiB (more than a Block's 64),
        // points to `count` blocks of readable, writable memory that lives
        // as long as `self`, and a block of zero bytes is a valid Block.
        unsafe { std::slice::from_raw_parts_mut(self.blocks, self.count) }
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
impl Drop for KdfMemory {
    fn drop(&mut self) {
        // On one thread, wiping 64 MiB took ~3 ms of every command's time:
        // the derivation's threads share it.
        let threads = self.threads.max(1);
        let share = self.count.div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let mut parts = self.blocks().chunks_mut(share);
            let own = parts.next();
            for part in parts {
                scope.spawn(move || part.iter_mut().for_each(Zeroize::zeroize));
            }
            if let Some(part) = own {
                part.iter_mut().for_each(Zeroize::zeroize);
            }
        });
        // SAFETY: unmaps exactly the mapping made in `map`, once; no
        // reference into it outlives `self`.
        unsafe { libc::munmap(self.mapping, self.mapped) };
    }
}

/// Elsewhere argon2 allocates its memory itself.
#[cfg(not(target_os = "linux"))]
struct KdfMemory;

#[cfg(not(target_os = "linux"))]
impl KdfMemory {
    fn map(_count: usize, _threads: usize) -> Option<KdfMemory> {
        None
    }

    fn blocks(&mut self) -> &mut [argon2::Block] {
        &mut []
    }
}

/// Wraps `secret` with a key-encryption key.
pub(crate) fn wrap(kek: &[u8; 32], secret: &[u8], associated: &[u8]) -> Vec<u8> {
    seal_with(kek, secret, associated)
}

/// Unwraps the output of [`wrap`].
pub(crate) fn unwrap(
    kek: &[u8; 32],
    sealed: &[u8],
    associated: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    open_with(kek, sealed, associated).map(Zeroizing::new)
}

/// Random bytes from the operating system.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_in_mapped_memory_matches_argon2s_own_allocation() {
        // 4 MiB spans two huge pages (two passes over four lanes); 4104 KiB
        // ends inside a third one; 64 KiB is less than one.
        for (memory_kib, iterations, parallelism) in [(4096, 2, 4), (4104, 1, 1), (64, 1, 1)] {
            let ours = KdfParams {
                memory_kib,
                iterations,
                parallelism,
            };
            let derived = ours.derive(b"password", b"0123456789abcdef").unwrap();
            let params =
                argon2::Params::new(memory_kib, iterations, parallelism, Some(32)).unwrap();
            let mut expected = [0u8; 32];
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password_into(b"password", b"0123456789abcdef", &mut expected)
                .unwrap();
            assert_eq!(
                *derived, expected,
                "m={memory_kib} t={iterations} p={parallelism}"
            );
        }
    }

    #[test]
    fn sealing_gives_the_bytes_of_a_reference_xchacha20_poly1305() {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        use chacha20poly1305::{XChaCha20Poly1305, XNonce};
        let key: [u8; 32] = random_bytes();
        let reference = XChaCha20Poly1305::new((&key).into());
        // Lengths around ChaCha20's 64-byte blocks and the vectorised
        // paths' wider strides, and a chunk's size.
        for length in [
            0,
            1,
            15,
            16,
            63,
            64,
            65,
            255,
            256,
            257,
            1000,
            4096,
            65_537,
            1 << 20,
        ] {
            let plaintext: Vec<u8> = (0..length).map(|i| (i * 7 + length) as u8).collect();
            let associated = format!("aad {length}");
            let sealed = seal_with(&key, &plaintext, associated.as_bytes());
            assert_eq!(sealed.len(), SEAL_OVERHEAD + length);
            let (nonce, body) = sealed.split_at(NONCE_LEN);
            let expected = reference
                .encrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: &plaintext,
                        aad: associated.as_bytes(),
                    },
                )
                .unwrap();
            assert_eq!(body, &expected[..], "length {length}");
            assert_eq!(
                open_with(&key, &sealed, associated.as_bytes()).as_deref(),
                Some(&plaintext[..]),
                "length {length}"
            );
            // And the other way: what the reference seals, we open.
            let mut theirs = nonce.to_vec();
            theirs.extend_from_slice(&expected);
            assert_eq!(
                open_with(&key, &theirs, associated.as_bytes()).as_deref(),
                Some(&plaintext[..])
            );
        }
    }

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let key = MasterKey::generate();
        let sealed = key.seal(b"secret data", b"aad");
        let mut in_place = vec![0u8; NONCE_LEN];
        in_place.extend_from_slice(b"secret data");
        key.seal_in_place(&mut in_place, b"aad");
        assert_eq!(in_place.len(), sealed.len());
        assert_eq!(
            key.open(&in_place, b"aad").as_deref(),
            Some(&b"secret data"[..])
        );
        assert_eq!(
            key.open(&sealed, b"aad").as_deref(),
            Some(&b"secret data"[..])
        );
        assert!(key.open(&sealed, b"other").is_none());
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(key.open(&tampered, b"aad").is_none());
        let other = MasterKey::generate();
        assert!(other.open(&sealed, b"aad").is_none());
    }

    #[test]
    fn keyed_ids_differ_per_key_and_debug_hides_secrets() {
        let a = MasterKey::generate();
        let b = MasterKey::generate();
        assert_ne!(a.chunk_id(b"x"), b.chunk_id(b"x"));
        assert_eq!(a.chunk_id(b"x"), a.chunk_id(b"x"));
        assert_eq!(format!("{a:?}"), "MasterKey(<redacted>)");
        let bytes = a.to_bytes();
        let back = MasterKey::from_bytes(&bytes).map(|k| k.chunk_id(b"x"));
        assert_eq!(back, Some(a.chunk_id(b"x")));
    }
}

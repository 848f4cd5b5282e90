//! Argon2id (RFC 9106, version 0x13) on x86-64 processors with AVX-512 or
//! AVX2.
//!
//! Opening an encrypted repository derives the key-encryption key from the
//! password, and with the default costs (64 MiB, 3 passes, 4 lanes) that
//! derivation is most of the time of a short command such as restoring one
//! file. This path gives the bytes of the `argon2` crate (the tests compare
//! them over a grid of costs, lane counts and input lengths) in about half
//! its time: with the default costs on two cores, 24-30 ms against 55-63.
//! Three things make the difference (64 MiB, 3 passes):
//!
//! * the compression function works on 512-bit registers, two rows or two
//!   columns of the block at a time, with AVX-512's 64-bit rotations (one
//!   lane on one thread: 96 -> 63 ms); without AVX-512, on 256-bit
//!   registers, one row or column at a time (default costs, two threads:
//!   31 ms where AVX-512 took 27 in the same minute);
//! * in the data-dependent part the next reference block is chosen by the
//!   first word of the block being computed, and that word is final after
//!   the first of the four column steps: its cache lines are fetched while
//!   the other three run (one lane: 63 -> 51 ms);
//! * two lanes advance in turn on each thread, so the wait for one lane's
//!   reference block overlaps the other lane's computation (four lanes on
//!   one thread: 56 -> 40 ms).
//!
//! Elsewhere (neither instruction set, other architectures, memory the
//! kernel would not map) the caller uses the `argon2` crate.

#![allow(unsafe_code)]

use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
use std::sync::Barrier;

use blake2::digest::consts::U32;
use blake2::{Blake2b, Blake2b512, Digest};
use zeroize::{Zeroize, Zeroizing};

/// 64-bit words in a block.
const WORDS: usize = 128;
/// Bytes in a block.
pub(super) const BLOCK_SIZE: usize = WORDS * 8;
/// Slices per pass; lanes synchronise at the end of each.
const SYNC_POINTS: usize = 4;
/// Pseudo-random words an address block holds.
const ADDRESSES_PER_BLOCK: usize = 128;
/// Argon2's version number.
const VERSION: u32 = 0x13;
/// Argon2's type number for Argon2id.
const TYPE_ID: u32 = 2;
/// Length of the derived key.
const TAG_LEN: usize = 32;
/// Shortest salt Argon2 accepts.
const MIN_SALT_LEN: usize = 8;

/// One 1 KiB block, aligned for 512-bit loads.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Block([u64; WORDS]);

impl Block {
    const ZERO: Block = Block([0; WORDS]);
}

/// The derivation's memory, shared by the threads that fill it.
#[derive(Clone, Copy)]
struct Memory(*mut Block);

// SAFETY: the threads write disjoint blocks (each its own lanes' segment of
// the current slice) and read only blocks no thread writes during that
// slice; a barrier separates the slices. That is Argon2's own design: a
// reference into another lane never falls in that lane's current segment.
unsafe impl Send for Memory {}
// SAFETY: as for `Send`.
unsafe impl Sync for Memory {}

/// The instruction sets this path has a compression function for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Instructions {
    /// AVX-512 Foundation: 512-bit registers and 64-bit rotations.
    Avx512,
    /// AVX2: 256-bit registers.
    Avx2,
}

impl Instructions {
    /// The best this processor runs, if any.
    fn detect() -> Option<Instructions> {
        if std::arch::is_x86_feature_detected!("avx512f") {
            Some(Instructions::Avx512)
        } else if std::arch::is_x86_feature_detected!("avx2") {
            Some(Instructions::Avx2)
        } else {
            None
        }
    }

    /// Whether this processor runs them.
    fn present(self) -> bool {
        match self {
            Instructions::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            Instructions::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
        }
    }
}

/// Whether this processor can run this path.
pub(super) fn available() -> bool {
    Instructions::detect().is_some()
}

/// Argon2's compression function G on one instruction set.
trait Kernel: Copy + Send + Sync {
    /// `out = P(x ^ y) ^ x ^ y`, XORed into the old `out` when `xor_into`
    /// is set. `early` receives the output's first word as soon as it is
    /// final, before three quarters of the work.
    ///
    /// # Safety
    ///
    /// The processor has the kernel's instructions; the three pointers are
    /// valid 64-byte aligned blocks; `out` may be read by no one else while
    /// it is written.
    unsafe fn compress(
        self,
        out: *mut Block,
        x: *const Block,
        y: *const Block,
        xor_into: bool,
        early: impl FnOnce(u64),
    );
}

/// The AVX-512 kernel.
#[derive(Clone, Copy)]
struct Avx512;

impl Kernel for Avx512 {
    unsafe fn compress(
        self,
        out: *mut Block,
        x: *const Block,
        y: *const Block,
        xor_into: bool,
        early: impl FnOnce(u64),
    ) {
        // SAFETY: the caller's promises are `avx512::compress`'s.
        unsafe { avx512::compress(out, x, y, xor_into, early) }
    }
}

/// The AVX2 kernel.
#[derive(Clone, Copy)]
struct Avx2;

impl Kernel for Avx2 {
    unsafe fn compress(
        self,
        out: *mut Block,
        x: *const Block,
        y: *const Block,
        xor_into: bool,
        early: impl FnOnce(u64),
    ) {
        // SAFETY: the caller's promises are `avx2::compress`'s.
        unsafe { avx2::compress(out, x, y, xor_into, early) }
    }
}

/// The costs of one derivation.
#[derive(Clone, Copy, Debug)]
pub(super) struct Costs {
    /// Memory in KiB (1 KiB blocks).
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub lanes: u32,
}

/// Derives Argon2id's 32-byte tag of `password` and `salt` with no secret
/// and no associated data, on `threads` threads.
///
/// Returns `None`, having touched nothing, when this processor has neither
/// AVX-512 nor AVX2, when the costs or salt are outside what Argon2 allows (the
/// caller's fallback then reports the error), or when the memory is smaller
/// than the costs need.
///
/// # Safety
///
/// `memory` must point to `capacity` blocks of 1 KiB, writable, aligned to
/// 64 bytes, and not accessed by anything else during the call. The blocks
/// hold password-derived state afterwards: the caller wipes them.
pub(super) unsafe fn derive(
    password: &[u8],
    salt: &[u8],
    costs: Costs,
    threads: usize,
    memory: *mut u8,
    capacity: usize,
) -> Option<Zeroizing<[u8; TAG_LEN]>> {
    let instructions = Instructions::detect()?;
    // SAFETY: the caller's promises, and the instructions are present.
    unsafe {
        derive_using(
            instructions,
            password,
            salt,
            costs,
            threads,
            memory,
            capacity,
        )
    }
}

/// [`derive`] with the given instruction set, if present.
///
/// # Safety
///
/// As for [`derive`].
unsafe fn derive_using(
    instructions: Instructions,
    password: &[u8],
    salt: &[u8],
    costs: Costs,
    threads: usize,
    memory: *mut u8,
    capacity: usize,
) -> Option<Zeroizing<[u8; TAG_LEN]>> {
    let lanes = costs.lanes as usize;
    let valid = instructions.present()
        && costs.iterations >= 1
        && (1..=0xFF_FFFF).contains(&costs.lanes)
        && costs.memory_kib as usize >= 8 * lanes
        && salt.len() >= MIN_SALT_LEN
        && u32::try_from(salt.len()).is_ok()
        && u32::try_from(password.len()).is_ok();
    if !valid {
        return None;
    }
    // The memory is rounded down to a multiple of 4 blocks per lane.
    let count = SYNC_POINTS * lanes * (costs.memory_kib as usize / (SYNC_POINTS * lanes));
    if count > capacity {
        return None;
    }
    let shape = Shape {
        count,
        lane_length: count / lanes,
        segment_length: count / lanes / SYNC_POINTS,
        lanes,
        passes: costs.iterations as usize,
    };
    let memory = Memory(memory.cast::<Block>());
    let initial = initial_hash(password, salt, costs);
    let mut bytes = Zeroizing::new([0u8; BLOCK_SIZE]);
    for lane in 0..lanes {
        for index in 0..2u32 {
            let lane_number = lane as u32;
            variable_hash(
                &[
                    &initial[..],
                    &index.to_le_bytes(),
                    &lane_number.to_le_bytes(),
                ],
                &mut bytes,
            );
            // SAFETY: the block lies inside the memory (`count <= capacity`)
            // and nothing else runs yet.
            let block = unsafe { &mut *memory.0.add(shape.lane_length * lane + index as usize) };
            for (word, chunk) in block.0.iter_mut().zip(bytes.chunks_exact(8)) {
                let mut le = [0u8; 8];
                le.copy_from_slice(chunk);
                *word = u64::from_le_bytes(le);
                le.zeroize();
            }
        }
    }
    drop(initial);

    // SAFETY: the instructions are present; the memory holds `count`
    // blocks with the first two of each lane written.
    unsafe {
        match instructions {
            Instructions::Avx512 => fill_memory(Avx512, memory, shape, threads),
            Instructions::Avx2 => fill_memory(Avx2, memory, shape, threads),
        }
    }

    // The tag hashes the XOR of every lane's last block.
    let mut last = Zeroizing::new([0u64; WORDS]);
    for lane in 0..lanes {
        // SAFETY: inside the memory; every thread has ended.
        let block = unsafe { &*memory.0.add(shape.lane_length * (lane + 1) - 1) };
        for (word, other) in last.iter_mut().zip(block.0.iter()) {
            *word ^= other;
        }
    }
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(last.iter()) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    let mut hasher = Blake2b::<U32>::new();
    hasher.update((TAG_LEN as u32).to_le_bytes());
    hasher.update(&bytes[..]);
    let mut tag = Zeroizing::new([0u8; TAG_LEN]);
    tag.copy_from_slice(&hasher.finalize());
    Some(tag)
}

/// Runs every pass over the memory on `threads` threads, each taking a
/// share of the lanes and meeting the others at the end of every slice.
///
/// # Safety
///
/// The processor has the kernel's instructions; the memory holds
/// `shape.count` blocks, this call's alone.
unsafe fn fill_memory(kernel: impl Kernel, memory: Memory, shape: Shape, threads: usize) {
    let threads = threads.clamp(1, shape.lanes);
    let barrier = Barrier::new(threads);
    let fill = |thread: usize| {
        let mine: Vec<usize> = (thread..shape.lanes).step_by(threads).collect();
        for pass in 0..shape.passes {
            for slice in 0..SYNC_POINTS {
                let position = Position { pass, slice };
                for pair in mine.chunks(2) {
                    // SAFETY: this thread's lanes, this slice (see `Memory`);
                    // the caller's promises for the rest.
                    unsafe { fill_segments(kernel, memory, shape, position, pair) };
                }
                barrier.wait();
            }
        }
    };
    std::thread::scope(|scope| {
        for thread in 1..threads {
            let fill = &fill;
            scope.spawn(move || fill(thread));
        }
        fill(0);
    });
}

/// H0: BLAKE2b-512 of the costs, the inputs and their lengths.
fn initial_hash(password: &[u8], salt: &[u8], costs: Costs) -> Zeroizing<[u8; 64]> {
    let mut hasher = Blake2b512::new();
    for value in [
        costs.lanes,
        TAG_LEN as u32,
        costs.memory_kib,
        costs.iterations,
        VERSION,
        TYPE_ID,
        password.len() as u32,
    ] {
        hasher.update(value.to_le_bytes());
    }
    hasher.update(password);
    hasher.update((salt.len() as u32).to_le_bytes());
    hasher.update(salt);
    // No secret and no associated data: two empty fields.
    hasher.update(0u32.to_le_bytes());
    hasher.update(0u32.to_le_bytes());
    let mut out = Zeroizing::new([0u8; 64]);
    out.copy_from_slice(&hasher.finalize());
    out
}

/// H' with a 1 KiB output: chained BLAKE2b-512, the first 32 bytes of each
/// but the last (RFC 9106, section 3.3).
fn variable_hash(inputs: &[&[u8]], out: &mut [u8; BLOCK_SIZE]) {
    let mut hasher = Blake2b512::new();
    hasher.update((BLOCK_SIZE as u32).to_le_bytes());
    for input in inputs {
        hasher.update(input);
    }
    let mut digest = hasher.finalize();
    let mut at = 0;
    while BLOCK_SIZE - at > 64 {
        out[at..at + 32].copy_from_slice(&digest[..32]);
        at += 32;
        digest = Blake2b512::digest(digest);
    }
    out[at..].copy_from_slice(&digest);
    digest.as_mut_slice().zeroize();
}

/// The memory's dimensions.
#[derive(Clone, Copy)]
struct Shape {
    count: usize,
    lane_length: usize,
    segment_length: usize,
    lanes: usize,
    passes: usize,
}

/// Where the fill stands.
#[derive(Clone, Copy)]
struct Position {
    pass: usize,
    slice: usize,
}

impl Position {
    /// Argon2id takes its references from address blocks (independent of
    /// the password) in the first half of the first pass, and from the
    /// previous block's first word after that.
    fn data_independent(self) -> bool {
        self.pass == 0 && self.slice < SYNC_POINTS / 2
    }

    /// The first two blocks of each lane are written by `derive`.
    fn first_index(self) -> usize {
        if self.pass == 0 && self.slice == 0 {
            2
        } else {
            0
        }
    }

    /// The block that block `index` of `lane`'s segment references, from
    /// the pseudo-random word `random` (RFC 9106, section 3.4.1.2).
    fn reference(self, shape: Shape, lane: usize, random: u64, index: usize) -> usize {
        let Shape {
            lane_length,
            segment_length,
            lanes,
            ..
        } = shape;
        let reference_lane = if self.pass == 0 && self.slice == 0 {
            lane
        } else {
            (random >> 32) as usize % lanes
        };
        let not_first = usize::from(index != 0);
        let area = match (self.pass, reference_lane == lane) {
            (0, _) if self.slice == 0 => index - 1,
            (0, true) => self.slice * segment_length + index - 1,
            (0, false) => self.slice * segment_length + not_first - 1,
            (_, true) => lane_length - segment_length + index - 1,
            (_, false) => lane_length - segment_length + not_first - 1,
        };
        let low = random & 0xFFFF_FFFF;
        let low = (low * low) >> 32;
        let relative = area - 1 - ((area as u64 * low) >> 32) as usize;
        let start = if self.pass != 0 && self.slice != SYNC_POINTS - 1 {
            (self.slice + 1) * segment_length
        } else {
            0
        };
        reference_lane * lane_length + (start + relative) % lane_length
    }
}

/// One lane's progress through its segment.
struct LaneFill {
    lane: usize,
    current: usize,
    previous: usize,
    /// The reference of the next block, when already known and prefetched.
    next_reference: Option<usize>,
    /// Input of the address blocks: pass, lane, slice, sizes, type, counter.
    address_input: Block,
    addresses: Block,
}

impl LaneFill {
    /// Computes the next 128 addresses: G(0, G(0, input)) with the counter
    /// advanced.
    ///
    /// # Safety
    ///
    /// The processor has the kernel's instructions.
    unsafe fn next_addresses(&mut self, kernel: impl Kernel) {
        self.address_input.0[6] += 1;
        let mut once = Block::ZERO;
        // SAFETY: three distinct, aligned blocks; the caller's promise.
        unsafe {
            kernel.compress(&mut once, &Block::ZERO, &self.address_input, false, |_| ());
            kernel.compress(&mut self.addresses, &Block::ZERO, &once, false, |_| ());
        }
    }
}

/// Fills the segments of `lanes` (one or two) in this slice, a block of
/// each in turn.
///
/// # Safety
///
/// The processor has the kernel's instructions; the blocks of these lanes'
/// segments in this slice are this call's alone; the memory is
/// `shape.count` blocks.
unsafe fn fill_segments(
    kernel: impl Kernel,
    memory: Memory,
    shape: Shape,
    position: Position,
    lanes: &[usize],
) {
    let first = position.first_index();
    let independent = position.data_independent();
    let mut fills: Vec<LaneFill> = lanes
        .iter()
        .map(|&lane| {
            let current = lane * shape.lane_length + position.slice * shape.segment_length + first;
            // A pass after the first starts from the lane's last block.
            let previous = if position.slice == 0 && first == 0 {
                current + shape.lane_length - 1
            } else {
                current - 1
            };
            let mut fill = LaneFill {
                lane,
                current,
                previous,
                next_reference: None,
                address_input: Block::ZERO,
                addresses: Block::ZERO,
            };
            if independent {
                fill.address_input.0[..6].copy_from_slice(&[
                    position.pass as u64,
                    lane as u64,
                    position.slice as u64,
                    shape.count as u64,
                    shape.passes as u64,
                    u64::from(TYPE_ID),
                ]);
                if first != 0 {
                    // SAFETY: the caller's promise.
                    unsafe { fill.next_addresses(kernel) };
                }
            }
            fill
        })
        .collect();
    let base = memory.0;
    for index in first..shape.segment_length {
        for fill in fills.iter_mut() {
            let reference = match fill.next_reference.take() {
                Some(reference) => reference,
                None => {
                    let random = if independent {
                        if index % ADDRESSES_PER_BLOCK == 0 {
                            // SAFETY: the caller's promise.
                            unsafe { fill.next_addresses(kernel) };
                        }
                        fill.addresses.0[index % ADDRESSES_PER_BLOCK]
                    } else {
                        // SAFETY: the previous block, inside the memory,
                        // written by this thread.
                        unsafe { (*base.add(fill.previous)).0[0] }
                    };
                    position.reference(shape, fill.lane, random, index)
                }
            };
            let lane = fill.lane;
            let addresses = &fill.addresses;
            let next_reference = &mut fill.next_reference;
            let next = index + 1;
            let prefetch = |first_word: u64| {
                if next == shape.segment_length {
                    return;
                }
                let random = if !independent {
                    first_word
                } else if next % ADDRESSES_PER_BLOCK != 0 {
                    addresses.0[next % ADDRESSES_PER_BLOCK]
                } else {
                    return;
                };
                let reference = position.reference(shape, lane, random, next);
                // SAFETY: `reference` is a block index inside the memory.
                let lines = unsafe { base.add(reference) }.cast::<i8>();
                for line in 0..BLOCK_SIZE / 64 {
                    // SAFETY: a hint; SSE is part of x86-64.
                    unsafe { _mm_prefetch::<_MM_HINT_T0>(lines.wrapping_add(64 * line)) };
                }
                *next_reference = Some(reference);
            };
            // SAFETY: the three blocks are inside the memory; the current one
            // is this call's alone (see `Memory`), the others are only read.
            // In passes after the first the new block is XORed into the old.
            unsafe {
                kernel.compress(
                    base.add(fill.current),
                    base.add(fill.previous),
                    base.add(reference),
                    position.pass > 0,
                    prefetch,
                );
            }
            fill.previous = fill.current;
            fill.current += 1;
        }
    }
}

/// What both kernels share, written once over each one's instructions:
/// BlaMka's multiplication-hardened addition, BLAKE2b's quarter round and
/// the permutation P on groups of four registers, and the loads and stores
/// around them. A kernel names its target feature, its register type, its
/// 64-bit add, multiply (low 32 bits) and XOR, its right rotation of each
/// word by a constant number of bits, its rotation of words within each 256-bit half, and
/// its aligned load, store and zero.
macro_rules! kernel_common {
    (
        feature: $feature:literal,
        register: $register:ty,
        add: $add:ident,
        multiply: $multiply:ident,
        xor: $xor:ident,
        rotate_right: $rotate:ident,
        rotate_words: $rotate_words:ident,
        load: $load:ident,
        store: $store:ident,
        zero: $zero:ident $(,)?
    ) => {
        /// `a + b + 2 * lo32(a) * lo32(b)` on each word.
        #[target_feature(enable = $feature)]
        #[inline]
        fn blamka(a: $register, b: $register) -> $register {
            let product = $multiply(a, b);
            $add($add(a, b), $add(product, product))
        }

        /// One quarter of BLAKE2b's G on the four columns of each 16-word
        /// state the registers hold.
        #[target_feature(enable = $feature)]
        #[inline]
        fn half_round(a: &mut $register, b: &mut $register, c: &mut $register, d: &mut $register) {
            *a = blamka(*a, *b);
            *d = $rotate::<32>($xor(*d, *a));
            *c = blamka(*c, *d);
            *b = $rotate::<24>($xor(*b, *c));
            *a = blamka(*a, *b);
            *d = $rotate::<16>($xor(*d, *a));
            *c = blamka(*c, *d);
            *b = $rotate::<63>($xor(*b, *c));
        }

        /// The permutation P: each 256-bit half of the four registers holds
        /// words 0-3, 4-7, 8-11 and 12-15 of one 16-word state.
        #[target_feature(enable = $feature)]
        #[inline]
        fn permute(state: &mut [$register; 4]) {
            let [a, b, c, d] = state;
            half_round(a, b, c, d);
            // Diagonals into columns: rotate b, c, d by 1, 2, 3 words.
            *b = $rotate_words::<0b00_11_10_01>(*b);
            *c = $rotate_words::<0b01_00_11_10>(*c);
            *d = $rotate_words::<0b10_01_00_11>(*d);
            half_round(a, b, c, d);
            *b = $rotate_words::<0b10_01_00_11>(*b);
            *c = $rotate_words::<0b01_00_11_10>(*c);
            *d = $rotate_words::<0b00_11_10_01>(*d);
        }

        /// Loads `x ^ y` into registers, and beside it what the output is
        /// XORed with at the end: the same, and the old output too when
        /// `xor_into` is set.
        ///
        /// # Safety
        ///
        /// The three pointers are valid 64-byte aligned blocks.
        #[target_feature(enable = $feature)]
        #[inline]
        unsafe fn load(
            out: *const Block,
            x: *const Block,
            y: *const Block,
            xor_into: bool,
        ) -> ([$register; REGISTERS], [$register; REGISTERS]) {
            let (out, x, y) = (
                out.cast::<$register>(),
                x.cast::<$register>(),
                y.cast::<$register>(),
            );
            let mut z = [$zero(); REGISTERS];
            let mut keep = z;
            for k in 0..REGISTERS {
                // SAFETY: register `k` of an aligned block (the caller's
                // promise).
                let r = unsafe { $xor($load(x.add(k)), $load(y.add(k))) };
                z[k] = r;
                keep[k] = if xor_into {
                    // SAFETY: as above.
                    $xor(r, unsafe { $load(out.add(k)) })
                } else {
                    r
                };
            }
            (z, keep)
        }

        /// Stores `z ^ keep` into `out`.
        ///
        /// # Safety
        ///
        /// `out` is a valid 64-byte aligned block no one else reads.
        #[target_feature(enable = $feature)]
        #[inline]
        unsafe fn store(
            out: *mut Block,
            z: &[$register; REGISTERS],
            keep: &[$register; REGISTERS],
        ) {
            let out = out.cast::<$register>();
            for k in 0..REGISTERS {
                // SAFETY: register `k` of the aligned output block.
                unsafe { $store(out.add(k), $xor(z[k], keep[k])) };
            }
        }
    };
}

/// The compression function on 512-bit registers.
mod avx512 {
    use std::arch::x86_64::{
        __m512i, _mm512_add_epi64, _mm512_castsi512_si128, _mm512_load_si512, _mm512_mul_epu32,
        _mm512_permutex2var_epi64, _mm512_permutex_epi64, _mm512_ror_epi64, _mm512_setr_epi64,
        _mm512_setzero_si512, _mm512_shuffle_i64x2, _mm512_store_si512, _mm512_xor_si512,
        _mm_cvtsi128_si64,
    };

    use super::{Block, WORDS};

    /// 512-bit registers a block fills.
    const REGISTERS: usize = WORDS / 8;

    kernel_common! {
        feature: "avx512f",
        register: __m512i,
        add: _mm512_add_epi64,
        multiply: _mm512_mul_epu32,
        xor: _mm512_xor_si512,
        rotate_right: _mm512_ror_epi64,
        rotate_words: _mm512_permutex_epi64,
        load: _mm512_load_si512,
        store: _mm512_store_si512,
        zero: _mm512_setzero_si512,
    }

    /// Argon2's compression G: `out = P(x ^ y) ^ x ^ y`, XORed into the old
    /// `out` when `xor_into` is set. `early` receives the output's first word
    /// as soon as it is final, before three quarters of the work.
    ///
    /// The block is 16 registers `z[k]` of words `8k..8k+8`; row `r` is
    /// `z[2r]` and `z[2r+1]`. Column `c` is words `2c, 2c+1` of every row.
    ///
    /// # Safety
    ///
    /// The three pointers are valid 64-byte aligned blocks; `out` may be read
    /// by no one else while it is written.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn compress(
        out: *mut Block,
        x: *const Block,
        y: *const Block,
        xor_into: bool,
        early: impl FnOnce(u64),
    ) {
        // SAFETY: the caller's promise.
        let (mut z, keep) = unsafe { load(out, x, y, xor_into) };
        // Rows, two at a time.
        for pair in 0..4 {
            let k = 4 * pair;
            let mut state = [
                _mm512_shuffle_i64x2::<0x44>(z[k], z[k + 2]),
                _mm512_shuffle_i64x2::<0xEE>(z[k], z[k + 2]),
                _mm512_shuffle_i64x2::<0x44>(z[k + 1], z[k + 3]),
                _mm512_shuffle_i64x2::<0xEE>(z[k + 1], z[k + 3]),
            ];
            permute(&mut state);
            let [a, b, c, d] = state;
            z[k] = _mm512_shuffle_i64x2::<0x44>(a, b);
            z[k + 2] = _mm512_shuffle_i64x2::<0xEE>(a, b);
            z[k + 1] = _mm512_shuffle_i64x2::<0x44>(c, d);
            z[k + 3] = _mm512_shuffle_i64x2::<0xEE>(c, d);
        }
        // Columns, two at a time: `gather` picks words `o..o+4` of two rows
        // (o = 0 or 4 within a register) as columns (o/2, o/2+1).
        let gather = [
            _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11),
            _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15),
        ];
        let scatter = [
            _mm512_setr_epi64(0, 1, 4, 5, 8, 9, 12, 13),
            _mm512_setr_epi64(2, 3, 6, 7, 10, 11, 14, 15),
        ];
        // columns[2h + s][g]: register half h (columns 0-3 or 4-7), column pair
        // s within it, rows 2g and 2g+1.
        let mut columns = [[z[0]; 4]; 4];
        for half in 0..2 {
            for (pair, pattern) in gather.iter().enumerate() {
                for (rows, column) in columns[2 * half + pair].iter_mut().enumerate() {
                    *column = _mm512_permutex2var_epi64(
                        z[4 * rows + half],
                        *pattern,
                        z[4 * rows + 2 + half],
                    );
                }
            }
        }
        {
            permute(&mut columns[0]);
            // Word 0 (row 0, column 0) is now final.
            let first = _mm512_xor_si512(columns[0][0], keep[0]);
            early(_mm_cvtsi128_si64(_mm512_castsi512_si128(first)) as u64);
        }
        for column in columns[1..].iter_mut() {
            permute(column);
        }
        for half in 0..2 {
            for rows in 0..4 {
                let (low, high) = (columns[2 * half][rows], columns[2 * half + 1][rows]);
                z[4 * rows + half] = _mm512_permutex2var_epi64(low, scatter[0], high);
                z[4 * rows + 2 + half] = _mm512_permutex2var_epi64(low, scatter[1], high);
            }
        }
        // SAFETY: the caller's promise.
        unsafe { store(out, &z, &keep) };
    }
}

/// The compression function on 256-bit registers.
mod avx2 {
    use std::arch::x86_64::{
        __m256i, _mm256_add_epi64, _mm256_castsi256_si128, _mm256_load_si256, _mm256_mul_epu32,
        _mm256_or_si256, _mm256_permute2x128_si256, _mm256_permute4x64_epi64, _mm256_setr_epi8,
        _mm256_setzero_si256, _mm256_shuffle_epi32, _mm256_shuffle_epi8, _mm256_sll_epi64,
        _mm256_srl_epi64, _mm256_srli_epi64, _mm256_store_si256, _mm256_xor_si256,
        _mm_cvtsi128_si64, _mm_cvtsi32_si128,
    };

    use super::{Block, WORDS};

    /// 256-bit registers a block fills.
    const REGISTERS: usize = WORDS / 4;

    kernel_common! {
        feature: "avx2",
        register: __m256i,
        add: _mm256_add_epi64,
        multiply: _mm256_mul_epu32,
        xor: _mm256_xor_si256,
        rotate_right: rotate_right,
        rotate_words: _mm256_permute4x64_epi64,
        load: _mm256_load_si256,
        store: _mm256_store_si256,
        zero: _mm256_setzero_si256,
    }

    /// Rotates each 64-bit word right by `BITS` (1 to 63). AVX2 has no
    /// rotation: the four BLAKE2b uses are a dword shuffle (32), byte
    /// shuffles (24, 16) and a shift with an add (63).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn rotate_right<const BITS: i32>(x: __m256i) -> __m256i {
        match BITS {
            32 => _mm256_shuffle_epi32::<0b10_11_00_01>(x),
            24 => _mm256_shuffle_epi8(
                x,
                _mm256_setr_epi8(
                    3, 4, 5, 6, 7, 0, 1, 2, 11, 12, 13, 14, 15, 8, 9, 10, 3, 4, 5, 6, 7, 0, 1, 2,
                    11, 12, 13, 14, 15, 8, 9, 10,
                ),
            ),
            16 => _mm256_shuffle_epi8(
                x,
                _mm256_setr_epi8(
                    2, 3, 4, 5, 6, 7, 0, 1, 10, 11, 12, 13, 14, 15, 8, 9, 2, 3, 4, 5, 6, 7, 0, 1,
                    10, 11, 12, 13, 14, 15, 8, 9,
                ),
            ),
            // Right by 63 is left by 1.
            63 => _mm256_xor_si256(_mm256_srli_epi64::<63>(x), _mm256_add_epi64(x, x)),
            _ => _mm256_or_si256(
                _mm256_srl_epi64(x, _mm_cvtsi32_si128(BITS)),
                _mm256_sll_epi64(x, _mm_cvtsi32_si128(64 - BITS)),
            ),
        }
    }

    /// Argon2's compression G, as [`super::Kernel::compress`].
    ///
    /// The block is 32 registers `z[k]` of words `4k..4k+4`; row `r` is
    /// `z[4r..4r+4]`. Column `c` is words `2c, 2c+1` of every row: half of
    /// register `c / 2` of each row.
    ///
    /// # Safety
    ///
    /// The three pointers are valid 64-byte aligned blocks; `out` may be read
    /// by no one else while it is written.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn compress(
        out: *mut Block,
        x: *const Block,
        y: *const Block,
        xor_into: bool,
        early: impl FnOnce(u64),
    ) {
        // SAFETY: the caller's promise.
        let (mut z, keep) = unsafe { load(out, x, y, xor_into) };
        for row in 0..8 {
            let mut state = [z[4 * row], z[4 * row + 1], z[4 * row + 2], z[4 * row + 3]];
            permute(&mut state);
            z[4 * row..4 * row + 4].copy_from_slice(&state);
        }
        // Column `c` takes the low (even `c`) or high (odd `c`) halves of
        // register `c / 2` of two rows into each of its four registers.
        let mut columns = [[z[0]; 4]; 8];
        let mut early = Some(early);
        for (column, state) in columns.iter_mut().enumerate() {
            let register = column / 2;
            for (rows, part) in state.iter_mut().enumerate() {
                let (upper, lower) = (z[8 * rows + register], z[8 * rows + 4 + register]);
                *part = if column % 2 == 0 {
                    _mm256_permute2x128_si256::<0x20>(upper, lower)
                } else {
                    _mm256_permute2x128_si256::<0x31>(upper, lower)
                };
            }
            permute(state);
            if let Some(early) = early.take() {
                // Word 0 (row 0, column 0) is now final.
                let first = _mm256_xor_si256(state[0], keep[0]);
                early(_mm_cvtsi128_si64(_mm256_castsi256_si128(first)) as u64);
            }
        }
        for register in 0..4 {
            let (even, odd) = (&columns[2 * register], &columns[2 * register + 1]);
            for rows in 0..4 {
                z[8 * rows + register] = _mm256_permute2x128_si256::<0x20>(even[rows], odd[rows]);
                z[8 * rows + 4 + register] =
                    _mm256_permute2x128_si256::<0x31>(even[rows], odd[rows]);
            }
        }
        // SAFETY: the caller's promise.
        unsafe { store(out, &z, &keep) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the `argon2` crate derives.
    fn reference(password: &[u8], salt: &[u8], costs: Costs) -> [u8; TAG_LEN] {
        let params = argon2::Params::new(
            costs.memory_kib,
            costs.iterations,
            costs.lanes,
            Some(TAG_LEN),
        )
        .unwrap();
        let mut out = [0u8; TAG_LEN];
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password_into(password, salt, &mut out)
            .unwrap();
        out
    }

    /// This path's derivation in freshly zeroed memory of `capacity` blocks.
    fn ours(
        instructions: Instructions,
        password: &[u8],
        salt: &[u8],
        costs: Costs,
        threads: usize,
        capacity: usize,
    ) -> Option<[u8; TAG_LEN]> {
        let mut memory = vec![Block::ZERO; capacity];
        // SAFETY: `capacity` aligned blocks, ours alone.
        unsafe {
            derive_using(
                instructions,
                password,
                salt,
                costs,
                threads,
                memory.as_mut_ptr().cast(),
                capacity,
            )
        }
        .map(|tag| *tag)
    }

    /// The instruction sets this processor has, best first.
    fn present() -> Vec<Instructions> {
        [Instructions::Avx512, Instructions::Avx2]
            .into_iter()
            .filter(|instructions| instructions.present())
            .collect()
    }

    #[test]
    fn derives_the_bytes_of_the_argon2_crate() {
        let sets = present();
        assert_eq!(available(), !sets.is_empty());
        assert_eq!(Instructions::detect(), sets.first().copied());
        if sets.is_empty() {
            eprintln!("neither AVX-512 nor AVX2 here: this path is not compared");
        }
        for instructions in sets {
            let mut cases = 0;
            // Memory sizes that are and are not multiples of 4 blocks per
            // lane, the smallest Argon2 allows (8 per lane), and more than
            // 128 blocks per segment (a second address block); 1 to 4
            // passes; 1 to 8 lanes on 1 to 3 threads; passwords and salts
            // of many lengths.
            for memory_kib in [8, 16, 33, 100, 600, 2051] {
                for iterations in 1..=4 {
                    for lanes in [1u32, 2, 3, 4, 5, 8] {
                        if memory_kib < 8 * lanes {
                            continue;
                        }
                        let costs = Costs {
                            memory_kib,
                            iterations,
                            lanes,
                        };
                        let password: Vec<u8> = (0..(memory_kib + iterations) as u8 % 70)
                            .map(|i| i.wrapping_mul(31))
                            .collect();
                        let salt: Vec<u8> = (0..8 + lanes as u8 * 3).collect();
                        let expected = reference(&password, &salt, costs);
                        for threads in 1..=3 {
                            let derived =
                                ours(instructions, &password, &salt, costs, threads, 2051);
                            assert_eq!(
                                derived,
                                Some(expected),
                                "{instructions:?} {costs:?} on {threads} threads"
                            );
                            cases += 1;
                        }
                    }
                }
            }
            assert_eq!(cases, 300);
        }
    }

    #[test]
    fn declines_what_argon2_would_refuse_or_memory_too_small() {
        let costs = Costs {
            memory_kib: 64,
            iterations: 1,
            lanes: 1,
        };
        for instructions in [Instructions::Avx512, Instructions::Avx2] {
            let run = |password: &[u8], salt: &[u8], costs: Costs, capacity: usize| {
                ours(instructions, password, salt, costs, 1, capacity)
            };
            // An instruction set the processor lacks is declined too.
            assert_eq!(
                run(b"password", b"saltsalt", costs, 64).is_some(),
                instructions.present()
            );
            // A salt under 8 bytes, memory under 8 blocks per lane, no pass,
            // no lane, and memory smaller than the costs: left to the crate,
            // which reports the error (or allocates for itself).
            assert!(run(b"password", b"salt", costs, 64).is_none());
            let small = Costs {
                memory_kib: 15,
                lanes: 2,
                ..costs
            };
            assert!(run(b"password", b"saltsalt", small, 64).is_none());
            let no_pass = Costs {
                iterations: 0,
                ..costs
            };
            assert!(run(b"password", b"saltsalt", no_pass, 64).is_none());
            let no_lane = Costs { lanes: 0, ..costs };
            assert!(run(b"password", b"saltsalt", no_lane, 64).is_none());
            assert!(run(b"password", b"saltsalt", costs, 63).is_none());
        }
    }
}

//! Byte layouts of the repository format. `FORMAT.md` is the normative
//! description; this module is its implementation.
//!
//! Every decoder here returns an error on bad input: none panics, indexes
//! out of bounds, or allocates from a length it has not checked against the
//! bytes actually present.

pub mod config;
pub mod envelope;
pub mod index;
pub mod manifest;
pub mod pack;
pub mod reader;
pub mod tree;
#[cfg(test)]
mod vectors;

#[cfg_attr(not(feature = "internals"), allow(unused_imports))]
pub use envelope::{ObjectKind, ENVELOPE_HEADER_LEN, ENVELOPE_OVERHEAD, MAGIC};

/// The repository format version this build writes.
pub const FORMAT_VERSION: u32 = 1;
/// The oldest repository format version this build reads.
pub const MIN_FORMAT_VERSION: u32 = 1;

/// Largest plaintext a metadata object (index, manifest, key, config) may
/// decode to. Bounds the memory a hostile object can make a reader allocate.
pub const MAX_METADATA_PLAINTEXT: usize = 512 * 1024 * 1024;

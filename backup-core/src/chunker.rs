//! Content-defined chunking (FastCDC, 2020 variant).
//!
//! Cut points depend only on the bytes near them, so inserting a byte early
//! in a large file changes the chunks around the insertion and no others.

use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Chunk size bounds, recorded in the repository config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// Smallest chunk (except the last of a stream), bytes.
    pub min_size: u32,
    /// Target average chunk size, bytes.
    pub avg_size: u32,
    /// Largest chunk, bytes.
    pub max_size: u32,
}

impl Default for ChunkerParams {
    /// 512 KiB / 1 MiB / 8 MiB, as restic uses.
    fn default() -> Self {
        ChunkerParams {
            min_size: 512 * 1024,
            avg_size: 1024 * 1024,
            max_size: 8 * 1024 * 1024,
        }
    }
}

impl ChunkerParams {
    /// Parameters for directory metadata: small chunks, so a change to one
    /// entry of a large directory rewrites little.
    pub fn for_trees() -> Self {
        ChunkerParams {
            min_size: 16 * 1024,
            avg_size: 64 * 1024,
            max_size: 256 * 1024,
        }
    }

    /// Checks the bounds FastCDC accepts (it panics outside them).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] describing the bound broken.
    pub fn validate(&self) -> Result<()> {
        use fastcdc::v2020::{
            AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN,
        };
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&self.min_size)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&self.avg_size)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&self.max_size)
            && self.min_size <= self.avg_size
            && self.avg_size <= self.max_size;
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "chunker parameters out of range: {self:?}"
            )))
        }
    }
}

/// Splits byte streams into content-defined chunks.
#[derive(Debug, Clone, Copy)]
pub struct Chunker {
    params: ChunkerParams,
    seed: u64,
}

impl Chunker {
    /// A chunker with validated `params` and gear-table `seed` (0: unseeded).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the parameters are out of range.
    pub fn new(params: ChunkerParams, seed: u64) -> Result<Chunker> {
        params.validate()?;
        Ok(Chunker { params, seed })
    }

    /// The chunker's size bounds.
    pub fn params(&self) -> ChunkerParams {
        self.params
    }

    /// Iterates over the chunks of `reader`, reading at most one maximum-size
    /// chunk ahead (memory stays bounded whatever the stream's length).
    pub fn chunks<R: Read>(&self, reader: R) -> impl Iterator<Item = std::io::Result<Vec<u8>>> {
        fastcdc::v2020::StreamCDC::with_level_and_seed(
            reader,
            self.params.min_size,
            self.params.avg_size,
            self.params.max_size,
            fastcdc::v2020::Normalization::Level1,
            self.seed,
        )
        .map(|result| {
            result.map(|chunk| chunk.data).map_err(|error| match error {
                fastcdc::v2020::Error::IoError(error) => error,
                other => std::io::Error::other(other.to_string()),
            })
        })
    }

    /// Splits an in-memory buffer, returning the chunk slices in order.
    pub fn split<'a>(&self, data: &'a [u8]) -> Vec<&'a [u8]> {
        let cdc = fastcdc::v2020::FastCDC::with_level_and_seed(
            data,
            self.params.min_size,
            self.params.avg_size,
            self.params.max_size,
            fastcdc::v2020::Normalization::Level1,
            self.seed,
        );
        cdc.filter_map(|chunk| data.get(chunk.offset..chunk.offset + chunk.length))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(len: usize, mut state: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    #[test]
    fn insertion_changes_only_nearby_chunks() {
        let chunker = Chunker::new(ChunkerParams::default(), 0).unwrap();
        let data = pseudo_random(24 << 20, 7);
        let mut changed = data.clone();
        changed.insert(1000, 0xAB);
        let before: std::collections::HashSet<_> = chunker.split(&data).into_iter().collect();
        let after = chunker.split(&changed);
        let new = after
            .iter()
            .filter(|chunk| !before.contains(*chunk))
            .count();
        assert!(new <= 2, "{new} of {} chunks changed", after.len());
        let streamed: Vec<Vec<u8>> = chunker.chunks(&data[..]).map(|c| c.unwrap()).collect();
        assert_eq!(streamed.concat(), data);
    }

    #[test]
    fn invalid_params_are_rejected_not_panicking() {
        let bad = ChunkerParams {
            min_size: 0,
            avg_size: 1,
            max_size: 2,
        };
        assert!(Chunker::new(bad, 0).is_err());
    }
}

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

    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    /// Iterates over the chunks of `reader`, holding at most a maximum-size
    /// chunk and a quarter more in memory, whatever the stream's length.
    /// The chunks are the ones [`Chunker::split`] finds in the whole stream:
    /// a cut depends only on the bytes from the chunk's start up to the cut,
    /// so a cut found before the end of the bytes read so far is final, and
    /// one that falls at their end is looked for again with more bytes.
    pub fn chunks<R: Read>(&self, reader: R) -> impl Iterator<Item = std::io::Result<Vec<u8>>> {
        self.chunks_in(reader, Vec::new())
    }

    /// [`chunks`](Self::chunks) in `window`, a buffer of an earlier
    /// stream ([`StreamChunks::into_window`]): a fresh buffer costs a page
    /// fault for each of its pages when it is first filled.
    pub(crate) fn chunks_in<R: Read>(&self, reader: R, mut window: Vec<u8>) -> StreamChunks<R> {
        let max = self.params.max_size as usize;
        // Refilled when a cut is not found in the bytes read: only the part
        // of one chunk read so far is moved to the front.
        window.resize(max + max / 4, 0);
        StreamChunks {
            chunker: *self,
            reader,
            buffer: window,
            start: 0,
            end: 0,
            eof: false,
            failed: false,
        }
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

/// The iterator of [`Chunker::chunks`].
pub(crate) struct StreamChunks<R> {
    chunker: Chunker,
    reader: R,
    buffer: Vec<u8>,
    /// Start of the bytes not yet returned.
    start: usize,
    /// End of the bytes read.
    end: usize,
    eof: bool,
    failed: bool,
}

impl<R: Read> StreamChunks<R> {
    /// The buffer, for the next stream.
    pub(crate) fn into_window(self) -> Vec<u8> {
        self.buffer
    }

    /// Moves the bytes not yet returned to the front and reads until the
    /// buffer is full or the stream ends.
    fn refill(&mut self) -> std::io::Result<()> {
        self.buffer.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        while self.end < self.buffer.len() {
            match self.reader.read(&mut self.buffer[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(read) => self.end += read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// The length of the next chunk, as far as the bytes read tell.
    fn cut(&self) -> Option<usize> {
        let params = self.chunker.params;
        fastcdc::v2020::FastCDC::with_level_and_seed(
            &self.buffer[self.start..self.end],
            params.min_size,
            params.avg_size,
            params.max_size,
            fastcdc::v2020::Normalization::Level1,
            self.chunker.seed,
        )
        .next()
        .map(|chunk| chunk.length)
    }
}

impl<R: Read> Iterator for StreamChunks<R> {
    type Item = std::io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let max = self.chunker.params.max_size as usize;
        loop {
            let pending = self.end - self.start;
            if let Some(length) = self.cut() {
                // A cut before the end of the bytes read, at the maximum
                // size, or at the end of the stream is final.
                if self.eof || length < pending || length >= max {
                    let chunk = self.buffer[self.start..self.start + length].to_vec();
                    self.start += length;
                    return Some(Ok(chunk));
                }
            } else if self.eof {
                return None;
            }
            if let Err(error) = self.refill() {
                self.failed = true;
                return Some(Err(error));
            }
        }
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
    fn streamed_chunks_are_the_chunks_of_earlier_versions() {
        /// Returns at most `step` bytes per read, as pipes and sockets do.
        struct Trickle<'a> {
            data: &'a [u8],
            step: usize,
        }
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                let n = self.step.min(out.len()).min(self.data.len());
                out[..n].copy_from_slice(&self.data[..n]);
                self.data = &self.data[n..];
                Ok(n)
            }
        }
        let mut compared = 0;
        for (params, seed) in [
            (ChunkerParams::default(), 0),
            (ChunkerParams::default(), 0x5eed),
            (ChunkerParams::for_trees(), 42),
        ] {
            let chunker = Chunker::new(params, seed).unwrap();
            let max = params.max_size as usize;
            for (length, step) in [(0, 7), (1, 7), (max - 1, 4096), (max * 5 + 12345, 65_537)] {
                // Half random, half repeated: cuts fall both by content and
                // at the maximum size.
                let mut data = pseudo_random(length / 2, length as u64 + seed);
                data.resize(length, 0x42);
                // The stream chunker that backups used before (fastcdc's).
                let reference: Vec<Vec<u8>> = fastcdc::v2020::StreamCDC::with_level_and_seed(
                    &data[..],
                    params.min_size,
                    params.avg_size,
                    params.max_size,
                    fastcdc::v2020::Normalization::Level1,
                    seed,
                )
                .map(|chunk| chunk.unwrap().data)
                .collect();
                let streamed: Vec<Vec<u8>> = chunker
                    .chunks(Trickle { data: &data, step })
                    .map(|chunk| chunk.unwrap())
                    .collect();
                let split: Vec<&[u8]> = chunker.split(&data);
                assert_eq!(streamed, reference, "length {length}");
                assert_eq!(
                    split,
                    reference.iter().map(Vec::as_slice).collect::<Vec<_>>()
                );
                compared += reference.len();
            }
        }
        assert!(compared > 30, "{compared} chunks compared");
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

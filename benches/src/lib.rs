//! # backup-benches
//!
//! Measurements of backup-core and of the machine it runs on.
//!
//! * `benches/*.rs`: criterion micro-benchmarks of the hot paths of a
//!   backup (chunking, hashing, compression, encryption, pack writing,
//!   index lookup, directory and manifest encoding). Run them with
//!   `cargo bench -p backup-benches`.
//! * `machine-limits`: how fast this machine can read a dataset (from the
//!   page cache and from disk) and hash and compress its bytes on all cores:
//!   the floor no backup tool can beat.
//! * `compare/compare.py`: backupctl, restic, borg and rustic side by side
//!   on the same generated datasets (see `benches/README.md`).
//!
//! This library holds what those share: deterministic sample data
//! ([`data`]) and the measurements behind `machine-limits` ([`limits`]).
//!
//! ```
//! use backup_benches::data;
//!
//! let text = data::text(4096, 7);
//! assert_eq!(text.len(), 4096);
//! assert_eq!(text, data::text(4096, 7), "the same seed gives the same bytes");
//! ```

pub mod data;
pub mod limits;

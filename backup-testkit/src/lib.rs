//! # backup-testkit
//!
//! The helpers of the workspace's tests, each written once: the crates list
//! it as a dev-dependency (it is never published).
//!
//! - [`server`]: real servers on 127.0.0.1 — s3s-fs and moto (S3), Azurite
//!   (Azure Blob Storage), OpenSSH's sshd (SFTP) — each in its own process
//!   group, on a port no other test can take from it, ready only once it
//!   answers a request of its protocol, and killed when dropped. A missing
//!   server program fails the test with a message naming
//!   `scripts/install-test-servers.sh`: nothing is skipped.
//! - [`tree`]: a deterministic, hostile directory tree (Unicode and odd
//!   names, modes, nanosecond times, symlinks of every kind, empty
//!   directories, large files) and an exact comparison of two trees.
//! - [`rng`]: seeded random data ([`TestRng`], built on `rand`'s ChaCha8):
//!   the same seed gives the same bytes on every run and machine.
//! - [`process`]: process groups, killing a process with everything it
//!   started, waiting for a condition with a hang guard.
//! - [`fault`]: [`FaultSink`], a sink that fails, stalls and truncates on
//!   purpose.
//! - [`cassandra`]: stand-in Cassandra 4.0 nodes (a python3 `nodetool`
//!   acting on a data directory layout) for the Cassandra snapshotter's
//!   tests; a stand-in, not Cassandra.
//! - [`backupctl`]: a runner for the `backupctl` binary with a clean
//!   environment, and [`repo`]: looking at a local repository's objects.
//!
//! Helpers panic with a message saying what failed: a helper's failure is
//! the test's failure.
//!
//! ```
//! use backup_testkit::tree::{assert_same_tree_except, generate_tree, TreeSpec, ABSOLUTE_LINK};
//!
//! let place = tempfile::tempdir().unwrap();
//! let stats = generate_tree(&place.path().join("a"), &TreeSpec::new(7, 30));
//! generate_tree(&place.path().join("b"), &TreeSpec::new(7, 30));
//! assert!(stats.files > 30);
//! // The same tree but for the one link to an absolute path inside it.
//! assert_same_tree_except(&place.path().join("a"), &place.path().join("b"), &[ABSOLUTE_LINK]);
//! ```

// Test helpers report failure by panicking, with a message.
#![allow(clippy::expect_used)]

pub mod backupctl;
pub mod cassandra;
pub mod fault;
pub mod h2_tamper;
pub mod process;
pub mod repo;
pub mod rng;
pub mod server;
pub mod tree;

pub use fault::{FaultCounts, FaultPlan, FaultSink};
pub use rng::TestRng;

/// 1024 bytes.
pub const KIB: u64 = 1024;
/// 1024 KiB.
pub const MIB: u64 = 1024 * 1024;

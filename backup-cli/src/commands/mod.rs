//! One module per subcommand: its options (a clap `Args` struct) and the
//! function that runs it and prints its result.

pub(crate) mod backup;
pub(crate) mod cluster;
pub(crate) mod completion;
pub(crate) mod copy;
pub(crate) mod diff;
pub(crate) mod dump;
pub(crate) mod export;
pub(crate) mod find;
pub(crate) mod forget;
pub(crate) mod init;
pub(crate) mod key;
pub(crate) mod list;
pub(crate) mod ls;
pub(crate) mod man;
pub(crate) mod prune;
pub(crate) mod repair;
pub(crate) mod restore;
pub(crate) mod schedule;
pub(crate) mod show;
pub(crate) mod stats;
pub(crate) mod verify;
pub(crate) mod wal;

/// Exit status when a backup or restore succeeded only in part.
pub(crate) const EXIT_PARTIAL: u8 = 3;

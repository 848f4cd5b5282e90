//! The operations on a repository, each in its own module over the engine
//! and in one pattern: a `run` function that takes the [`Engine`] (and the
//! archiver where it needs one) with the operation's options, and returns
//! its report. [`Repository`](crate::Repository)'s methods call them.
//!
//! [`Engine`]: crate::engine::Engine

pub(crate) mod backup;
pub(crate) mod copy;
pub(crate) mod diff;
pub(crate) mod find;
pub(crate) mod forget;
pub(crate) mod keys;
pub(crate) mod ls;
pub(crate) mod prune;
pub(crate) mod read_file;
pub(crate) mod repair_backups;
pub(crate) mod repair_index;
pub(crate) mod restore;
pub(crate) mod stats;
pub(crate) mod verify;

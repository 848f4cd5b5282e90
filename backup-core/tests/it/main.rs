//! backup-core's integration tests, in one test binary (one link instead of
//! nine), through the public API and backup-testkit's helpers.
//!
//! - `copy`: backups copied into another repository, with its own keys.
//! - `corruption`: every kind of damage to a repository is found by verify
//!   and never restored as data.
//! - `embedding`: what a service embedding the library relies on.
//! - `faults`: storage that fails, stalls and truncates.
//! - `golden`: repositories written by earlier versions still restore.
//! - `hostile`: objects built to attack the reader are refused.
//! - `inspect`: diff, find and stats over backups.
//! - `keys`: passwords added, removed and changed; never none left.
//! - `prune`: forget and prune free space and keep what is kept.
//! - `repair`: the index rebuilt from the packs after damage or loss.
//! - `retention`: the retention policy, against restic's decisions too.
//! - `schedule`, `schedule_runner`: the scheduler on a simulated clock.
//! - `security`: what an encrypted repository hides.
//! - `stores`: data-store snapshotters against real servers.
//! - `listed_files`: files listed in advance (`Entry::Files`), read
//!   locally or from a fetched tar stream.
//! - `tar_entry`: tar streams stored as trees.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod copy;
mod corruption;
mod custom_archiver;
mod embedding;
mod faults;
mod golden;
mod hostile;
mod inspect;
mod keys;
mod listed_files;
mod prune;
mod repair;
mod repair_backups;
mod retention;
mod schedule;
mod schedule_runner;
mod security;
mod stores;
mod tar_entry;

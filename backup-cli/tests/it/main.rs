//! backupctl's end-to-end tests, all in one test binary (one link instead
//! of five): each module runs the real binary against repositories in
//! temporary directories or on servers started by backup-testkit.
//!
//! - `cli`: local repositories: round trips, deduplication, encryption,
//!   damage, partial restores, hostile targets, errors.
//! - `copy`: backups copied from a local repository into S3 (s3s-fs) under
//!   another password.
//! - `lifecycle`: forget and prune beside running backups, concurrent
//!   writers, progress output, the scheduler.
//! - `limits`: `--limit-upload` and `--limit-download` held to their rates.
//! - `crash`: backups killed at random moments, locally and on S3.
//! - `inspect`: `diff`, `find` and `stats`.
//! - `keys`: `key list`, `add`, `remove` and `passwd`: which passwords
//!   open the repository afterwards; its data untouched.
//! - `excludes`: exclude options and files-from lists against restic's
//!   on the same tree; `--dry-run`.
//! - `remote`: S3 (s3s-fs), Azure (Azurite) and SFTP (sshd) repositories.
//! - `repair`: `repair index` after an index object is damaged or lost.
//! - `cassandra`: cluster and node backups of stand-in Cassandra nodes
//!   to S3 and SFTP, restored into new nodes.
//! - `pitr`: PostgreSQL's WAL archive (wal-push, wal-fetch) and
//!   point-in-time restore, WAL retention and gaps.
//! - `secrets`: no secret in any output, at the most verbose log level.
//! - `shell`: completion scripts and manual pages.
//!
//! A missing test server fails its tests (run
//! scripts/install-test-servers.sh); nothing is skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cassandra;
mod cli;
mod copy;
mod crash;
mod excludes;
mod inspect;
mod keys;
mod lifecycle;
mod limits;
mod metadata;
mod pitr;
mod remote;
mod repair;
mod restore_target;
mod secrets;
mod shell;
mod stores;

use std::ops::Deref;
use std::path::PathBuf;

use backup_testkit::backupctl::{Backupctl, Out};

/// A runner of the `backupctl` binary under test.
pub fn backupctl() -> Backupctl {
    Backupctl::new(env!("CARGO_BIN_EXE_backupctl"))
}

/// A local repository and a runner giving it (`--repo PATH`, and the
/// password in `BACKUP_PASSWORD` when there is one) to every subcommand.
pub struct Repo {
    /// Where the repository is.
    pub path: PathBuf,
    password: Option<String>,
    cli: Backupctl,
}

impl Repo {
    /// The repository at `path`, opened with `password`.
    pub fn new(path: PathBuf, password: Option<&str>) -> Repo {
        let mut cli = backupctl().global(["--repo".as_ref(), path.as_os_str()]);
        if let Some(password) = password {
            cli = cli.env("BACKUP_PASSWORD", password);
        }
        Repo {
            path,
            password: password.map(str::to_owned),
            cli,
        }
    }

    /// `init`, encrypted when the repository has a password.
    pub fn init(&self) -> Out {
        self.cli.init(self.password.is_some())
    }
}

impl Deref for Repo {
    type Target = Backupctl;

    fn deref(&self) -> &Backupctl {
        &self.cli
    }
}

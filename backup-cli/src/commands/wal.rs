//! `backupctl wal-push` and `wal-fetch`: PostgreSQL's `archive_command`
//! and `restore_command`, the WAL archive of a set of base backups.

use std::path::PathBuf;
use std::process::ExitCode;

use backup_core::{Error, WalArchive, WalPush};
use clap::Args;
use serde_json::json;

use crate::cli::Common;
use crate::output::print_json;
use crate::repository::open;

/// Options of `wal-push`.
#[derive(Args, Debug)]
pub(crate) struct WalPushArgs {
    #[command(flatten)]
    common: Common,
    /// The set of the base backups (the WAL goes to SET/wal).
    #[arg(long)]
    set: String,
    /// The server's wal_segment_size in bytes, when not 16 MiB.
    #[arg(long, default_value_t = 16 << 20, value_name = "BYTES")]
    wal_segment_size: u64,
    /// The file to archive: PostgreSQL's %p.
    path: PathBuf,
}

/// Options of `wal-fetch`.
#[derive(Args, Debug)]
pub(crate) struct WalFetchArgs {
    #[command(flatten)]
    common: Common,
    /// The set of the base backups (the WAL is read from SET/wal).
    #[arg(long)]
    set: String,
    /// The server's wal_segment_size in bytes, when not 16 MiB.
    #[arg(long, default_value_t = 16 << 20, value_name = "BYTES")]
    wal_segment_size: u64,
    /// The file PostgreSQL asks for: its %f.
    name: String,
    /// Where to write it: its %p.
    path: PathBuf,
}

/// Archives one WAL file; exits 0 only once it is stored (or was, with the
/// same contents).
pub(crate) async fn push(args: WalPushArgs) -> Result<ExitCode, Error> {
    let repo = open(&args.common).await?;
    let archive = WalArchive::new(&repo, &args.set).with_segment_size(args.wal_segment_size);
    let pushed = archive.push(&args.path).await?;
    if args.common.json {
        print_json(&json!({
            "file": args.path.file_name().map(|name| name.to_string_lossy().into_owned()),
            "set": archive.set(),
            "stored": pushed == WalPush::Stored,
        }));
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes one archived WAL file; exits 1 when it is not archived (the end
/// of the archive, for PostgreSQL).
pub(crate) async fn fetch(args: WalFetchArgs) -> Result<ExitCode, Error> {
    let repo = open(&args.common).await?;
    let archive = WalArchive::new(&repo, &args.set).with_segment_size(args.wal_segment_size);
    if archive.fetch(&args.name, &args.path).await? {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{} is not archived in set {:?}", args.name, archive.set());
        Ok(ExitCode::FAILURE)
    }
}

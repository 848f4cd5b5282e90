//! `backupctl`: back up, list, restore and verify repositories from the
//! command line. A thin front end over `backup-core`.
//!
//! `cli` declares the command line, `commands/` holds one module per
//! subcommand, and the modules beside them what several commands share:
//! opening the repository, reading secrets, printing, progress, and how an
//! error is shown.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod cli;
mod commands;
mod error;
mod output;
mod parse;
mod password;
mod progress;
mod repository;
mod source;

use std::process::ExitCode;

use backup_core::Error;
use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BACKUP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    limit_malloc_arenas();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", error::describe(&error));
            ExitCode::FAILURE
        }
    }
}

/// Runs the subcommand.
async fn run(command: Command) -> Result<ExitCode, Error> {
    match command {
        Command::Init(args) => commands::init::run(args).await,
        Command::Backup(args) => commands::backup::run(*args).await,
        Command::Copy(args) => commands::copy::run(args).await,
        Command::List(args) => commands::list::run(args).await,
        Command::Ls(args) => commands::ls::run(args).await,
        Command::Diff(args) => commands::diff::run(args).await,
        Command::Find(args) => commands::find::run(args).await,
        Command::Stats(args) => commands::stats::run(args).await,
        Command::Show(args) => commands::show::run(args).await,
        Command::Dump(args) => commands::dump::run(args).await,
        Command::Export(args) => commands::export::run(args).await,
        Command::Restore(args) => commands::restore::run(*args).await,
        Command::Forget(args) => commands::forget::run(*args).await,
        Command::Prune(args) => commands::prune::run(args).await,
        Command::Key(args) => commands::key::run(args).await,
        Command::Repair(args) => commands::repair::run(args).await,
        Command::Schedule(args) => commands::schedule::run(args).await,
        Command::Verify(args) => commands::verify::run(args).await,
        Command::ClusterBackup(args) => commands::cluster::backup(args).await,
        Command::ClusterRestore(args) => commands::cluster::restore(args).await,
        Command::ClusterList(args) => commands::cluster::list(args).await,
        Command::WalPush(args) => commands::wal::push(args).await,
        Command::WalFetch(args) => commands::wal::fetch(args).await,
        Command::Completion(args) => commands::completion::run(args),
        Command::Man(args) => commands::man::run(args),
    }
}

/// Caps glibc's malloc arenas at two and fixes the size from which
/// allocations are mapped on their own at 4 MiB. By default glibc gives each
/// of the many threads of a backup (async workers, blocking readers, the CPU
/// pool) arenas of their own, and megabyte-sized buffers freed on another
/// thread than the one that allocated them pile up; and its sliding mmap
/// threshold, once raised by a freed 16 MiB pack buffer, keeps such buffers
/// in the heap after they are freed. Both measured lower peak memory; the
/// fixed threshold cost no time (pack buffers are reused by the backup).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    // SAFETY: mallopt only sets an allocator tunable; it is called before
    // any thread is started.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

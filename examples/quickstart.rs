//! Back up a directory to a local repository, list, verify and restore it.
//!
//! ```text
//! cargo run --example quickstart                 # backs up a generated sample tree
//! cargo run --example quickstart -- /some/dir    # backs up /some/dir
//! ```
//!
//! Everything is written under `./backup-demo/`: the repository in `repo/`,
//! the restored copy in `restored/`. Run it twice to see the second backup
//! skip every unchanged file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_core::DirectorySnapshotter;
use backup_core::{
    BackupOptions, Error, InitOptions, LocalSink, Repository, RestoreOptions, VerifyOptions,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let demo = PathBuf::from("backup-demo");
    let source = match std::env::args_os().nth(1) {
        Some(path) => PathBuf::from(path),
        None => make_sample(&demo.join("source"))?,
    };

    // 1. A repository in a local directory. Without a password it is not
    //    encrypted; pass `InitOptions::default().with_password(..)` to encrypt.
    let sink = Arc::new(LocalSink::create(demo.join("repo"))?);
    let repo = match Repository::init(sink.clone(), InitOptions::default()).await {
        Ok(repo) => repo,
        Err(Error::RepositoryExists { .. }) => Repository::open(sink, None).await?,
        Err(other) => return Err(other.into()),
    };

    // 2. Back up: unchanged files (compared with the previous backup of the
    //    set) are not read again, and known chunks are never stored twice.
    let options = BackupOptions::default().with_set("quickstart");
    let summary = repo
        .backup(&DirectorySnapshotter::new(vec![source.clone()]), options)
        .await?;
    let stats = &summary.manifest.stats;
    println!(
        "backup {}: {} files ({} unchanged), {} bytes read, {} bytes added in {} ms",
        summary.id.short(),
        stats.files,
        stats.files_unchanged,
        stats.bytes_read,
        stats.bytes_added,
        stats.duration_ms
    );

    // 3. List the backups of the set.
    for backup in repo.list().await? {
        println!(
            "  {}  {}  {} files",
            backup.id.short(),
            backup.manifest.time,
            backup.manifest.stats.files
        );
    }

    // 4. Verify everything, data included.
    let report = repo
        .verify(&VerifyOptions::default().with_read_data(true))
        .await?;
    println!(
        "verify: {} packs read, {} blobs checked, {} problems",
        report.packs_read,
        report.blobs_checked,
        report.errors.len()
    );

    // 5. Restore the newest backup of the set.
    let latest = repo.find_backup("latest", Some("quickstart")).await?;
    let target = demo.join("restored");
    let restored = repo
        .restore(&latest, &target, &RestoreOptions::default())
        .await?;
    println!(
        "restored {} files ({} bytes) to {}",
        restored.files,
        restored.bytes,
        target.display()
    );
    Ok(())
}

/// Writes a small sample tree (text, binary, nested and empty directories).
fn make_sample(root: &Path) -> std::io::Result<PathBuf> {
    if root.exists() {
        // Written once, so that later runs show unchanged files being skipped.
        return Ok(root.to_path_buf());
    }
    std::fs::create_dir_all(root.join("logs"))?;
    std::fs::create_dir_all(root.join("empty"))?;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let binary: Vec<u8> = (0..4 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(root.join("data.bin"), binary)?;
    let log: String = (0..50_000)
        .map(|line| {
            format!(
                "2026-11-21T00:00:{:02}Z INFO request {line} served\n",
                line % 60
            )
        })
        .collect();
    std::fs::write(root.join("logs/app.log"), log)?;
    std::fs::write(root.join("README.txt"), "sample data for the quickstart\n")?;
    Ok(root.to_path_buf())
}

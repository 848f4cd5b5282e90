//! `backupctl dump`: one stored file to standard output (restic's `dump`),
//! or a stored directory as a tar stream, so a snapshot can be piped into
//! the store's own tools.

use std::io::Write;
use std::process::ExitCode;

use backup_core::{Error, NodeKind, Repository};
use clap::Args;
use tokio::io::AsyncWriteExt;

use crate::cli::Common;
use crate::repository::open;

/// Options of `dump`.
#[derive(Args, Debug)]
pub(crate) struct DumpArgs {
    #[command(flatten)]
    common: Common,
    /// `latest` or a backup id (a unique prefix is enough).
    backup: String,
    /// The stored file (or directory, as tar) to write, relative to the
    /// backup's root; `/` for the whole backup as tar.
    path: String,
    /// With `latest`: the newest backup of this set.
    #[arg(long)]
    set: Option<String>,
}

/// Writes the file, or a tar of the directory, to standard output.
pub(crate) async fn run(args: DumpArgs) -> Result<ExitCode, Error> {
    let repo = open(&args.common).await?;
    let backup = repo.find_backup(&args.backup, args.set.as_deref()).await?;
    let path = args.path.trim_matches('/').to_string();
    let entries = repo.ls(&backup).await?;
    let is_dir = path.is_empty()
        || entries
            .iter()
            .any(|entry| entry.path == path && entry.kind == NodeKind::Dir);
    if !is_dir {
        let reader = repo.open_file(&backup, &path).await?;
        let mut stdout = tokio::io::stdout();
        reader.copy_to(&mut stdout).await?;
        stdout
            .flush()
            .await
            .map_err(|error| Error::io("writing to standard output", "-", error))?;
        return Ok(ExitCode::SUCCESS);
    }
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    };
    let selected: Vec<_> = entries
        .into_iter()
        .filter(|entry| path.is_empty() || entry.path == path || entry.path.starts_with(&prefix))
        .collect();
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || write_tar(&repo, &backup, selected, &runtime))
        .await
        .map_err(|error| {
            Error::io("writing the tar stream", "-", std::io::Error::other(error))
        })??;
    Ok(ExitCode::SUCCESS)
}

/// A stored file as a blocking reader, for the tar writer.
struct BlockingFile<'a> {
    reader: backup_core::FileReader,
    runtime: &'a tokio::runtime::Handle,
    current: Vec<u8>,
    offset: usize,
}

impl std::io::Read for BlockingFile<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.offset == self.current.len() {
            match self.runtime.block_on(self.reader.next_chunk()) {
                Ok(Some(chunk)) => {
                    self.current = chunk;
                    self.offset = 0;
                }
                Ok(None) => return Ok(0),
                Err(error) => return Err(std::io::Error::other(error.to_string())),
            }
        }
        let count = buf.len().min(self.current.len() - self.offset);
        buf[..count].copy_from_slice(&self.current[self.offset..self.offset + count]);
        self.offset += count;
        Ok(count)
    }
}

fn write_tar(
    repo: &Repository,
    backup: &backup_core::Backup,
    entries: Vec<backup_core::LsEntry>,
    runtime: &tokio::runtime::Handle,
) -> Result<(), Error> {
    let failed = |error: std::io::Error| Error::io("writing the tar stream", "-", error);
    let stdout = std::io::stdout().lock();
    let mut builder = tar::Builder::new(std::io::BufWriter::new(stdout));
    builder.mode(tar::HeaderMode::Complete);
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mode(entry.mode & 0o7777);
        header.set_mtime(u64::try_from(entry.mtime.timestamp()).unwrap_or(0));
        match entry.kind {
            NodeKind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                builder
                    .append_data(&mut header, format!("{}/", entry.path), std::io::empty())
                    .map_err(failed)?;
            }
            NodeKind::Symlink => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder
                    .append_link(&mut header, &entry.path, entry.target.unwrap_or_default())
                    .map_err(failed)?;
            }
            NodeKind::File => {
                let reader = runtime.block_on(repo.open_file(backup, &entry.path))?;
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(reader.size());
                let file = BlockingFile {
                    reader,
                    runtime,
                    current: Vec::new(),
                    offset: 0,
                };
                builder
                    .append_data(&mut header, &entry.path, file)
                    .map_err(failed)?;
            }
        }
    }
    let mut out = builder.into_inner().map_err(failed)?;
    out.flush().map_err(failed)
}

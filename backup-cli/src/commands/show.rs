//! `backupctl show`: one backup's manifest: its source and the source's
//! facts (etcd revision, Redis RDB version...), sizes, tags and status.

use std::process::ExitCode;

use backup_core::Error;
use clap::Args;

use crate::cli::Common;
use crate::output::{human_bytes, out, print_json};
use crate::repository::open;

/// Options of `show`.
#[derive(Args, Debug)]
pub(crate) struct ShowArgs {
    #[command(flatten)]
    common: Common,
    /// `latest` or a backup id (a unique prefix is enough).
    backup: String,
    /// With `latest`: the newest backup of this set.
    #[arg(long)]
    set: Option<String>,
}

/// Prints the backup's manifest, as text or JSON.
pub(crate) async fn run(args: ShowArgs) -> Result<ExitCode, Error> {
    let repo = open(&args.common).await?;
    let backup = repo.find_backup(&args.backup, args.set.as_deref()).await?;
    let manifest = &backup.manifest;
    if args.common.json {
        let mut value = serde_json::to_value(manifest)
            .map_err(|error| Error::InvalidArgument(format!("encoding the manifest: {error}")))?;
        if let Some(object) = value.as_object_mut() {
            object.insert("id".into(), backup.id.to_hex().into());
            object.insert("short_id".into(), backup.id.short().into());
        }
        print_json(&value);
        return Ok(ExitCode::SUCCESS);
    }
    let status = serde_json::to_value(manifest.status)
        .ok()
        .and_then(|value| value.as_str().map(str::to_string))
        .unwrap_or_default();
    out!("backup   {}", backup.id.to_hex());
    out!("set      {}", manifest.set);
    out!("time     {}", manifest.time.to_rfc3339());
    out!("status   {status}");
    out!("writer   {} (host {})", manifest.writer, manifest.hostname);
    out!(
        "source   {} {}",
        manifest.source.kind,
        manifest.source.paths.join(" ")
    );
    let stats = &manifest.stats;
    out!(
        "size     {} in {} files, {} dirs; {} added; {:.2}s",
        human_bytes(stats.bytes_total),
        stats.files,
        stats.dirs,
        human_bytes(stats.bytes_added),
        stats.duration_ms as f64 / 1000.0
    );
    if let Some(parent) = &manifest.parent {
        out!("parent   {}", parent.short());
    }
    for (key, value) in &manifest.tags {
        out!("tag      {key}={value}");
    }
    if manifest.source.kind == backup_core::CASSANDRA_KIND {
        if let Some(node) = backup_core::describe_node(&manifest.facts) {
            out!("{node}");
        }
    }
    if !manifest.facts.is_empty() {
        out!("facts");
        for (key, value) in &manifest.facts {
            let shown = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_string);
            out!("  {key}: {shown}");
        }
    }
    for error in &manifest.errors {
        out!("not backed up: {}: {}", error.path, error.message);
    }
    Ok(ExitCode::SUCCESS)
}

//! `backupctl export`: one stored file written as a plain object (S3, GCS,
//! Azure), and a presigned GET URL for it, for a hosted control plane's
//! `restoreSnapshotURL`.

use std::process::ExitCode;

use backup_core::Error;
use backup_sinks::object_store::ExportTarget;
use clap::Args;
use serde_json::json;

use crate::cli::Common;
use crate::output::{human_bytes, out, print_json};
use crate::repository::{object_store_options, open};

/// Options of `export`.
#[derive(Args, Debug)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    common: Common,
    /// `latest` or a backup id (a unique prefix is enough).
    backup: String,
    /// The stored file to export, relative to the backup's root.
    path: String,
    /// The object to write: s3://BUCKET/KEY, az://CONTAINER/KEY or
    /// gs://BUCKET/KEY (the same settings and environment as a repository).
    #[arg(long, value_name = "URL")]
    to: String,
    /// Print a URL that downloads the object with a plain GET for this long
    /// (for example 1h; S3 allows up to 7 days).
    #[arg(long, value_name = "DURATION")]
    presign: Option<String>,
    /// With `latest`: the newest backup of this set.
    #[arg(long)]
    set: Option<String>,
}

/// Writes the object and prints where, and the presigned URL.
pub(crate) async fn run(args: ExportArgs) -> Result<ExitCode, Error> {
    let expires = args
        .presign
        .as_deref()
        .map(|text| {
            backup_core::parse_duration(text)
                .map_err(|error| Error::InvalidArgument(format!("--presign {text:?}: {error}")))
        })
        .transpose()?;
    let target = ExportTarget::from_url(&args.to, &object_store_options(&args.common.store)?)?;
    let repo = open(&args.common).await?;
    let backup = repo.find_backup(&args.backup, args.set.as_deref()).await?;
    let reader = repo.open_file(&backup, &args.path).await?;
    let bytes = target.write(reader).await?;
    let url = match expires {
        Some(expires) => Some(target.presign_get(expires).await?),
        None => None,
    };
    if args.common.json {
        print_json(&json!({
            "id": backup.id.to_hex(),
            "path": args.path,
            "object": target.location(),
            "bytes": bytes,
            "url": url,
        }));
    } else {
        out!(
            "exported {} of backup {} to {} ({})",
            args.path,
            backup.id.short(),
            target.location(),
            human_bytes(bytes)
        );
        if let Some(url) = url {
            out!("{url}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

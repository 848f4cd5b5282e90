//! `backupctl init`: create a new repository.

use std::process::ExitCode;

use backup_core::{Error, InitOptions, Repository};
use clap::Args;
use serde_json::json;

use crate::cli::Common;
use crate::output::{out, print_json};
use crate::password::password;
use crate::repository::create_sink_for;

/// Options of `init`.
#[derive(Args, Debug)]
pub(crate) struct InitArgs {
    #[command(flatten)]
    common: Common,
    /// Create an unencrypted repository (no password).
    #[arg(long)]
    no_encryption: bool,
}

/// Creates the repository, and its directory when missing (a local one,
/// or the base directory on an SFTP server, as `mkdir -p` would).
pub(crate) async fn run(args: InitArgs) -> Result<ExitCode, Error> {
    let InitArgs {
        common,
        no_encryption,
    } = args;
    let sink = create_sink_for(&common).await?;
    let password = if no_encryption {
        None
    } else {
        // The copy moves into `init`, which zeroizes it.
        Some(password(&common)?.filter(|p| !p.is_empty()).map(|p| p.to_vec()).ok_or_else(|| {
            Error::InvalidArgument(
                "a password is needed for an encrypted repository: use --password-file or BACKUP_PASSWORD, or --no-encryption".into(),
            )
        })?)
    };
    let location = sink.location();
    let repo = Repository::init(sink, {
        let mut options = InitOptions::default();
        options.password = password;
        options
    })
    .await?;
    if common.json {
        print_json(&json!({
            "location": location,
            "id": repo.id().to_hex(),
            "encrypted": repo.is_encrypted(),
            "format_version": repo.format_version(),
        }));
    } else {
        out!(
            "created {} repository {} at {location}",
            if repo.is_encrypted() {
                "encrypted"
            } else {
                "unencrypted"
            },
            repo.id().short()
        );
    }
    Ok(ExitCode::SUCCESS)
}

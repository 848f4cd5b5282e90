//! `backupctl key`: the passwords of an encrypted repository, as restic's
//! `key` command: `list`, `add`, `remove ID` and `passwd`.
//!
//! The repository is opened with the usual password (`--password-file` or
//! `BACKUP_PASSWORD`); the new password of `add` and `passwd` comes from
//! `--new-password-file` (or `BACKUP_NEW_PASSWORD_FILE`) or
//! `BACKUP_NEW_PASSWORD`, never from an argument.

use std::path::PathBuf;
use std::process::ExitCode;

use backup_core::{Error, KeyInfo, Repository};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::cli::Common;
use crate::output::{out, print_json};
use crate::password::new_password;
use crate::repository::open;

/// Options of `key`.
#[derive(Args, Debug)]
pub(crate) struct KeyArgs {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    action: KeyAction,
}

/// What `key` does.
#[derive(Subcommand, Debug)]
enum KeyAction {
    /// List the keys (passwords); `*` marks the one given.
    List,
    /// Add a key for a new password; every other password keeps working.
    Add(NewPassword),
    /// Remove a key (by id or a unique prefix of it): its password no
    /// longer opens the repository. The key given and the last key are
    /// never removed.
    Remove {
        /// The key's id, or a unique prefix of it, as `key list` shows it.
        id: String,
    },
    /// Change the password given: add a key for the new password, then
    /// remove the key of the old one (if interrupted, both work).
    Passwd(NewPassword),
}

/// Where the new password comes from.
#[derive(Args, Debug)]
struct NewPassword {
    /// File holding the new password (else BACKUP_NEW_PASSWORD is used).
    #[arg(long, env = "BACKUP_NEW_PASSWORD_FILE", value_name = "FILE")]
    new_password_file: Option<PathBuf>,
}

/// Runs the `key` action and prints its result. A new password is read
/// before the repository is opened, so that a missing one fails at once.
pub(crate) async fn run(args: KeyArgs) -> Result<ExitCode, Error> {
    let KeyArgs { common, action } = args;
    match action {
        KeyAction::List => list(&open(&common).await?, common.json).await,
        KeyAction::Add(new) => {
            let password = new_password(new.new_password_file.as_deref())?;
            let id = open(&common).await?.add_key(&password).await?;
            if common.json {
                print_json(&json!({ "added": id }));
            } else {
                out!("added key {}", id.short());
            }
            Ok(ExitCode::SUCCESS)
        }
        KeyAction::Remove { id } => {
            let removed = open(&common).await?.remove_key(&id).await?;
            if common.json {
                print_json(&json!({ "removed": removed }));
            } else {
                out!("removed key {}", removed.short());
            }
            Ok(ExitCode::SUCCESS)
        }
        KeyAction::Passwd(new) => {
            let password = new_password(new.new_password_file.as_deref())?;
            let repo = open(&common).await?;
            let old = repo
                .keys()
                .await?
                .into_iter()
                .find(|key| key.current)
                .map(|key| key.id);
            let id = repo.change_password(&password).await?;
            if common.json {
                print_json(&json!({ "added": id, "removed": old }));
            } else {
                match old {
                    Some(old) => out!(
                        "changed the password: key {} replaces key {}",
                        id.short(),
                        old.short()
                    ),
                    None => out!("changed the password: new key {}", id.short()),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Prints the keys, the current one marked.
async fn list(repo: &Repository, json: bool) -> Result<ExitCode, Error> {
    let keys: Vec<KeyInfo> = repo.keys().await?;
    if json {
        let value = serde_json::to_value(&keys)
            .map_err(|error| Error::InvalidArgument(format!("encoding the keys: {error}")))?;
        print_json(&value);
        return Ok(ExitCode::SUCCESS);
    }
    out!(" {:<10} {:<24} Host", "ID", "Created");
    for key in &keys {
        out!(
            "{}{:<10} {:<24} {}",
            if key.current { '*' } else { ' ' },
            key.id.short(),
            key.created.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            key.hostname
        );
    }
    Ok(ExitCode::SUCCESS)
}

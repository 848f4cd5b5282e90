//! `backupctl completion SHELL`: print a completion script for a shell,
//! generated from the command line's definition (clap_complete).

use std::process::ExitCode;

use backup_core::Error;
use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::cli::Cli;
use crate::output::print_bytes;

/// Options of `completion`.
///
/// Install the script where the shell looks for completions, for example
/// `backupctl completion bash > /etc/bash_completion.d/backupctl`,
/// `backupctl completion zsh > "${fpath[1]}/_backupctl"` or
/// `backupctl completion fish > ~/.config/fish/completions/backupctl.fish`.
#[derive(Args, Debug)]
pub(crate) struct CompletionArgs {
    /// The shell the script is for.
    #[arg(value_enum)]
    shell: Shell,
}

/// Prints the script.
pub(crate) fn run(args: CompletionArgs) -> Result<ExitCode, Error> {
    let mut command = Cli::command();
    let name = command.get_name().to_owned();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, name, &mut script);
    print_bytes(&script)?;
    Ok(ExitCode::SUCCESS)
}

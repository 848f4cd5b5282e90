//! `backupctl man`: the manual pages, generated from the command line's
//! definition (clap_mangen): `backupctl.1` printed, or it and one page per
//! subcommand (`backupctl-init.1`, ...) written into a directory.

use std::path::PathBuf;
use std::process::ExitCode;

use backup_core::Error;
use clap::{Args, CommandFactory};

use crate::cli::Cli;
use crate::output::{out, print_bytes};

/// Options of `man`.
#[derive(Args, Debug)]
pub(crate) struct ManArgs {
    /// Write backupctl.1 and a page per subcommand (backupctl-init.1, ...)
    /// into this directory (created if missing) instead of printing
    /// backupctl.1.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Prints the page, or writes the pages.
pub(crate) fn run(args: ManArgs) -> Result<ExitCode, Error> {
    let pages = pages()
        .map_err(|source| Error::io("cannot render the manual pages", "backupctl.1", source))?;
    let Some(dir) = args.dir else {
        // The top-level page comes last, after its subcommands'.
        if let Some((_, page)) = pages.last() {
            print_bytes(page.as_bytes())?;
        }
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(&dir)
        .map_err(|source| Error::io("cannot create the directory", &dir, source))?;
    for (name, page) in &pages {
        let path = dir.join(name);
        std::fs::write(&path, page)
            .map_err(|source| Error::io("cannot write the manual page", &path, source))?;
    }
    out!("wrote {} manual pages to {}", pages.len(), dir.display());
    Ok(ExitCode::SUCCESS)
}

/// Every page, as (file name, roff): each subcommand's, depth first, then
/// `backupctl.1`. The pages clap_mangen's `generate_to` writes, with the
/// title line first.
fn pages() -> std::io::Result<Vec<(String, String)>> {
    fn collect(command: clap::Command, pages: &mut Vec<(String, String)>) -> std::io::Result<()> {
        for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
            collect(sub.clone(), pages)?;
        }
        let man = clap_mangen::Man::new(command);
        let mut page = Vec::new();
        man.render(&mut page)?;
        let page = String::from_utf8(page).map_err(std::io::Error::other)?;
        pages.push((man.get_filename(), title_first(&page)));
        Ok(())
    }
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let mut pages = Vec::new();
    collect(command, &mut pages)?;
    Ok(pages)
}

/// `page` with its `.TH` title line first, as a man page begins: the roff
/// writer puts its definition of the apostrophe string (`Aq`) before it,
/// which works as well right after it, before any use.
fn title_first(page: &str) -> String {
    let mut lines: Vec<&str> = page.lines().collect();
    if let Some(at) = lines.iter().position(|line| line.starts_with(".TH ")) {
        let title = lines.remove(at);
        lines.insert(0, title);
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_title_line_moves_to_the_top_and_nothing_else_moves() {
        let page = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n.TH backupctl 1\n.SH NAME\n";
        assert_eq!(
            title_first(page),
            ".TH backupctl 1\n.ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n.SH NAME\n"
        );
        assert_eq!(title_first(".SH NAME\n"), ".SH NAME\n");
    }
}

//! `backupctl completion SHELL` and `backupctl man`: what a shell and `man`
//! are given is generated from the same command line the binary parses.

use std::collections::BTreeSet;
use std::process::Command;

use crate::backupctl;

/// The subcommands, as `backupctl --help` lists them (the help's own
/// `help` aside).
fn subcommands() -> Vec<String> {
    let help = backupctl().run(["--help"]).ok().stdout;
    let names: Vec<String> = help
        .lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        // A description's continuation lines are indented further.
        .filter(|line| !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect();
    for expected in ["init", "backup", "restore", "forget", "completion", "man"] {
        assert!(
            names.iter().any(|name| name == expected),
            "{expected}: {help}"
        );
    }
    names
}

#[test]
fn the_bash_script_is_valid_and_knows_every_subcommand() {
    let script = backupctl().run(["completion", "bash"]).ok().stdout;
    let missing: Vec<String> = subcommands()
        .into_iter()
        .filter(|name| !script.contains(name.as_str()))
        .collect();
    assert!(missing.is_empty(), "not in the bash script: {missing:?}");
    // Options of a subcommand complete too.
    assert!(script.contains("--limit-upload") && script.contains("--keep-daily"));

    let place = tempfile::tempdir().unwrap();
    let file = place.path().join("backupctl.bash");
    std::fs::write(&file, &script).unwrap();
    let checked = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(
        checked.status.success(),
        "bash -n refuses the script: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[test]
fn every_shell_gets_a_script_and_an_unknown_one_is_refused() {
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let script = backupctl().run(["completion", shell]).ok().stdout;
        assert!(script.contains("backupctl"), "{shell}: {script}");
        assert!(script.contains("restore"), "{shell}: {script}");
    }
    let fish = backupctl().run(["completion", "fish"]).ok().stdout;
    assert!(
        fish.lines()
            .any(|line| line.starts_with("complete -c backupctl")),
        "{fish}"
    );

    let out = backupctl().run(["completion", "tcsh"]).fails();
    assert!(
        out.stderr.contains("tcsh") && out.stderr.contains("bash"),
        "{}",
        out.describe()
    );
}

#[test]
fn the_man_page_is_roff_and_names_the_subcommands() {
    let page = backupctl().run(["man"]).ok().stdout;
    assert!(page.starts_with(".TH"), "{}", &page[..page.len().min(200)]);
    assert!(page.contains("backupctl"), "{page}");
    let missing: Vec<String> = subcommands()
        .into_iter()
        // roff escapes every hyphen: backupctl\-wal\-push(1).
        .filter(|name| !page.contains(&format!("backupctl\\-{}", name.replace('-', "\\-"))))
        .collect();
    assert!(
        missing.is_empty(),
        "not in the man page: {missing:?}\n{page}"
    );

    // One page per subcommand, into a directory.
    let place = tempfile::tempdir().unwrap();
    let dir = place.path().join("man1");
    backupctl()
        .run(["man".as_ref(), "--dir".as_ref(), dir.as_os_str()])
        .ok();
    let pages: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(pages.contains("backupctl.1"), "{pages:?}");
    for name in subcommands() {
        assert!(
            pages.contains(&format!("backupctl-{name}.1")),
            "{name}: {pages:?}"
        );
    }
    let forget = std::fs::read_to_string(dir.join("backupctl-forget.1")).unwrap();
    assert!(
        forget.starts_with(".TH") && forget.contains("keep\\-daily"),
        "{forget}"
    );
}

//! `restore` into a target that already holds files, with restic's
//! options: `--overwrite always|if-changed|if-newer|never`, `--delete`,
//! `--exclude` / `--iexclude` and `--verify`.

use std::fs;
use std::path::Path;

use filetime::FileTime;
use serde_json::Value;

use super::Repo;

/// The summary of `restore --json`, asserting it completed.
fn restore(repo: &Repo, id: &str, target: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let out = repo.restore(id, target, &args);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    out.json()["summary"].clone()
}

fn read(path: impl AsRef<Path>) -> String {
    fs::read_to_string(path).unwrap()
}

#[test]
fn overwrite_delete_exclude_and_verify_as_restic_has_them() {
    let scratch = tempfile::tempdir().unwrap();
    let source = scratch.path().join("site");
    fs::create_dir_all(source.join("logs")).unwrap();
    fs::write(source.join("index.html"), "<h1>backed up</h1>").unwrap();
    fs::write(source.join("style.css"), "body {}").unwrap();
    fs::write(source.join("app.js"), "run()").unwrap();
    fs::write(source.join("logs/App.LOG"), "old log").unwrap();
    fs::write(source.join("logs/debug.log"), "debug").unwrap();
    let repo = Repo::new(scratch.path().join("repo"), Some("restore options"));
    repo.init();
    let id = repo.backup([source.as_os_str()])["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A first restore, verified; logs left out, whatever their case.
    let target = scratch.path().join("target");
    let summary = restore(
        &repo,
        &id,
        &target,
        &["--verify", "--exclude", "debug.log", "--iexclude", "*.log"],
    );
    let site = target.join("site");
    assert_eq!(summary["verified"], 3, "{summary}");
    assert!(!site.join("logs/App.LOG").exists());
    assert!(!site.join("logs/debug.log").exists());
    assert_eq!(read(site.join("index.html")), "<h1>backed up</h1>");

    // The target changes: a file edited (new size), one edited keeping its
    // size and time, one newer than the backup's, extra files, a directory
    // and a symlink to a file outside the target.
    fs::write(site.join("index.html"), "<h1>edited in place, longer</h1>").unwrap();
    let css_time =
        FileTime::from_last_modification_time(&fs::metadata(site.join("style.css")).unwrap());
    fs::write(site.join("style.css"), "p    {}").unwrap();
    filetime::set_file_mtime(site.join("style.css"), css_time).unwrap();
    fs::write(site.join("app.js"), "newer()").unwrap();
    let future = FileTime::from_unix_time(4_000_000_000, 0);
    filetime::set_file_mtime(site.join("app.js"), future).unwrap();
    fs::write(site.join("extra.txt"), "not in the backup").unwrap();
    fs::create_dir_all(site.join("cache/deep")).unwrap();
    fs::write(site.join("cache/deep/blob"), "cached").unwrap();
    let outside = scratch.path().join("outside.txt");
    fs::write(&outside, "must survive").unwrap();
    std::os::unix::fs::symlink(&outside, site.join("link-out")).unwrap();
    fs::write(site.join("logs/keep.log"), "excluded: kept by --delete").unwrap();

    // never: nothing already there is replaced.
    let summary = restore(
        &repo,
        &id,
        &target,
        &["--overwrite", "never", "--iexclude", "*.log"],
    );
    assert_eq!(
        read(site.join("index.html")),
        "<h1>edited in place, longer</h1>"
    );
    assert_eq!(summary["skipped"], 3, "{summary}");
    // if-newer: the newer app.js stays, the others (older here) too.
    restore(
        &repo,
        &id,
        &target,
        &["--overwrite", "if-newer", "--iexclude", "*.log"],
    );
    assert_eq!(read(site.join("app.js")), "newer()");
    // if-changed: the file of another size is replaced, the one with the
    // backup's size and time is assumed unchanged (as restic assumes).
    let summary = restore(
        &repo,
        &id,
        &target,
        &["--overwrite", "if-changed", "--iexclude", "*.log"],
    );
    assert_eq!(read(site.join("index.html")), "<h1>backed up</h1>");
    assert_eq!(read(site.join("style.css")), "p    {}");
    assert_eq!(read(site.join("app.js")), "run()");
    assert_eq!(summary["skipped"], 1, "{summary}");

    // always (the default) with --delete: the target becomes the backup,
    // less what is excluded; the symlink is removed, not followed.
    let summary = restore(
        &repo,
        &id,
        &target,
        &["--delete", "--verify", "--iexclude", "*.log"],
    );
    assert_eq!(read(site.join("style.css")), "body {}");
    assert!(!site.join("extra.txt").exists());
    assert!(!site.join("cache").exists());
    assert!(fs::symlink_metadata(site.join("link-out")).is_err());
    assert_eq!(read(&outside), "must survive");
    assert_eq!(
        read(site.join("logs/keep.log")),
        "excluded: kept by --delete"
    );
    assert_eq!(summary["deleted"], 3, "{summary}");
    assert_eq!(summary["verified"], 3, "{summary}");
    let mut left: Vec<String> = fs::read_dir(&site)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["app.js", "index.html", "logs", "style.css"]);

    // A bad pattern or value is refused before anything is written.
    let out = repo.restore(&id, &target, &["--overwrite", "sometimes"]);
    assert_eq!(out.code, Some(2), "{}", out.describe());
    let out = repo.restore(&id, &target, &["--exclude", "[unclosed"]);
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(out.stderr.contains("[unclosed"), "{}", out.describe());
}

//! Choosing what to back up, compared with restic (Debian's restic 0.14,
//! installed by scripts/install-test-servers.sh) on the same tree: each
//! exclude option and each files-from list must store exactly the paths
//! restic stores.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::Repo;

/// A tree that every option has something to leave out of.
fn build_tree(root: &Path) {
    let dirs = [
        "src/sub/deep",
        "cache/inner",
        "fakecache",
        "node_modules/pkg",
        "Logs",
        "data/skipme",
        "data/keep",
    ];
    for dir in dirs {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    let files: [(&str, &[u8]); 17] = [
        ("src/main.c", b"int main;"),
        ("src/main.o", b"obj"),
        ("src/sub/util.o", b"obj"),
        ("src/sub/util.c", b"c"),
        ("src/sub/deep/x.o", b"obj"),
        ("src/sub/deep/x.h", b"h"),
        (
            "cache/CACHEDIR.TAG",
            b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n",
        ),
        ("cache/blob", b"cached"),
        ("cache/inner/more", b"cached"),
        ("fakecache/CACHEDIR.TAG", b"not a signature"),
        ("fakecache/blob", b"kept"),
        ("node_modules/pkg/index.js", b"js"),
        ("Logs/App.LOG", b"log"),
        ("Logs/app.log", b"log"),
        ("data/skipme/.nobackup", b""),
        ("data/skipme/secret", b"s"),
        ("data/keep/notes.txt", b"n"),
    ];
    for (path, content) in files {
        fs::write(root.join(path), content).unwrap();
    }
    fs::write(root.join("data/big.bin"), vec![7u8; 10_000]).unwrap();
    fs::write(root.join("data/small.bin"), vec![7u8; 4096]).unwrap();
    std::os::unix::fs::symlink("src/main.c", root.join("link")).unwrap();
}

/// restic with its own repository under `dir`.
struct Restic {
    repo: PathBuf,
    cache: PathBuf,
}

impl Restic {
    fn new(dir: &Path) -> Restic {
        let restic = Restic {
            repo: dir.join("restic-repo"),
            cache: dir.join("restic-cache"),
        };
        restic.run(&["init"]);
        restic
    }

    fn run(&self, args: &[&str]) -> String {
        let output = Command::new("restic")
            .args(args)
            .env("RESTIC_REPOSITORY", &self.repo)
            .env("RESTIC_PASSWORD", "restic-password")
            .env("RESTIC_CACHE_DIR", &self.cache)
            .env("EXCLUDES_TEST_DIR", "src/sub")
            .output()
            .expect("restic is installed (scripts/install-test-servers.sh)");
        assert!(
            output.status.success(),
            "restic {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// The paths restic's newest backup holds below `base`, relative to
    /// `base`'s parent (as ours names them).
    fn stored(&self, args: &[&str], base: &Path) -> BTreeSet<String> {
        let mut backup = vec!["backup", "--quiet"];
        backup.extend_from_slice(args);
        self.run(&backup);
        let listing = self.run(&["ls", "--json", "latest"]);
        let parent = base.parent().unwrap();
        listing
            .lines()
            .filter_map(|line| {
                let node: serde_json::Value = serde_json::from_str(line).ok()?;
                let path = PathBuf::from(node["path"].as_str()?);
                (path.starts_with(base) && node["struct_type"] == "node")
                    .then(|| path.strip_prefix(parent).unwrap().display().to_string())
            })
            .collect()
    }
}

/// The paths our newest backup holds.
fn ours(repo: &Repo, args: &[&str]) -> BTreeSet<String> {
    let mut backup = vec!["backup", "--set", "excludes"];
    backup.extend_from_slice(args);
    let mut command = repo.command(backup);
    command.env("EXCLUDES_TEST_DIR", "src/sub");
    repo.run_command(command).ok();
    let ls = repo.run(["ls", "latest", "--json"]).ok().json();
    ls["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["path"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn exclude_options_store_what_restic_stores() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    build_tree(&tree);
    let tree_arg = tree.to_str().unwrap().to_string();
    let exclude_file = tmp.path().join("excludes");
    fs::write(
        &exclude_file,
        "# build products\n\n  *.o  \nnode_modules\n${EXCLUDES_TEST_DIR}/deep\n",
    )
    .unwrap();
    let exclude_file = exclude_file.to_str().unwrap().to_string();
    let anchored = format!("{tree_arg}/data/keep");
    let restic = Restic::new(tmp.path());
    let repo = Repo::new(tmp.path().join("repo"), Some("ours"));
    repo.init().ok();

    let everything = ours(&repo, &[&tree_arg]);
    assert_eq!(everything, restic.stored(&[&tree_arg], &tree));
    assert_eq!(everything.len(), 33, "{everything:?}");

    let cases: Vec<Vec<&str>> = vec![
        vec!["--exclude", "*.o", "--exclude", "node_modules"],
        vec!["--exclude", "src/**/*.o"],
        vec!["--exclude", "sub/*.o"],
        vec!["--exclude", &anchored],
        vec!["--exclude", "[Ll]ogs"],
        vec!["--iexclude", "*.log"],
        vec!["--exclude", "*.log"],
        vec!["--exclude-file", &exclude_file],
        vec!["--iexclude-file", &exclude_file],
        vec!["--exclude-if-present", ".nobackup"],
        vec!["--exclude-if-present", "CACHEDIR.TAG"],
        vec!["--exclude-caches"],
        vec!["--exclude-larger-than", "4k"],
        vec!["--exclude-larger-than", "4095"],
        vec![
            "--exclude-caches",
            "--exclude-if-present",
            ".nobackup",
            "--exclude",
            "*.c",
        ],
    ];
    for case in cases {
        let mut args = case.clone();
        args.push(&tree_arg);
        let theirs = restic.stored(&args, &tree);
        let mine = ours(&repo, &args);
        assert_eq!(mine, theirs, "{case:?}");
        assert!(mine.len() < everything.len(), "{case:?} left nothing out");
    }
}

#[test]
fn files_from_lists_store_what_restic_stores() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    build_tree(&tree);
    let root = tree.display().to_string();
    let restic = Restic::new(tmp.path());
    let repo = Repo::new(tmp.path().join("repo"), None);
    repo.init().ok();

    // restic stores each listed path at its absolute path; ours stores it
    // under its name at the root. The files of both must be the same.
    let lists = [
        (
            "--files-from",
            format!("# sources\n{root}/src/*.c\n\n{root}/Logs\n{root}/data/keep/notes.txt\n"),
        ),
        (
            "--files-from-verbatim",
            format!("{root}/src/sub\n{root}/data/small.bin\n"),
        ),
        ("--files-from-raw", format!("{root}/cache\0{root}/link\0")),
    ];
    for (option, list) in lists {
        let file = tmp.path().join("list");
        fs::write(&file, list).unwrap();
        let file = file.to_str().unwrap();
        let theirs: BTreeSet<String> = restic
            .stored(&[option, file], &tree)
            .into_iter()
            .filter(|path| !tree.parent().unwrap().join(path).is_dir())
            .map(|path| path.trim_start_matches("tree/").to_string())
            .collect();
        let mine: BTreeSet<String> = ours(&repo, &[option, file])
            .into_iter()
            .filter(|path| !path.ends_with('/') && !is_dir_entry(&tree, path))
            .collect();
        // Ours, rooted at each listed path's name: map it back under the tree.
        let mine: BTreeSet<String> = mine
            .into_iter()
            .map(|path| relocate(&tree, &path))
            .collect();
        assert_eq!(mine, theirs, "{option}");
        assert!(!mine.is_empty());
    }
}

/// Whether a path of ours (rooted at a listed path's name) is a directory
/// in the tree.
fn is_dir_entry(tree: &Path, path: &str) -> bool {
    tree.join(relocate(tree, path)).is_dir()
}

/// A path of ours (`notes.txt`, `sub/util.c`) as the path under the tree
/// it was read from (`data/keep/notes.txt`, `src/sub/util.c`).
fn relocate(tree: &Path, path: &str) -> String {
    let first = path.split('/').next().unwrap();
    for parent in ["", "src", "data/keep", "data"] {
        let candidate = tree.join(parent).join(first);
        if candidate.symlink_metadata().is_ok() {
            return Path::new(parent).join(path).display().to_string();
        }
    }
    panic!("{path} is not from the tree");
}

#[test]
fn one_file_system_stores_mount_points_empty_as_restic_does() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    build_tree(&tree);
    let mount = tree.join("mnt");
    fs::create_dir(&mount).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "excludes-test"])
        .arg(&mount)
        .status()
        .unwrap();
    assert!(status.success(), "mounting a tmpfs needs root");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.clone());
    fs::create_dir(mount.join("inside")).unwrap();
    fs::write(mount.join("inside/file"), b"on another file system").unwrap();
    fs::write(mount.join("top"), b"too").unwrap();
    let tree_arg = tree.to_str().unwrap();
    let restic = Restic::new(tmp.path());
    let repo = Repo::new(tmp.path().join("repo"), None);
    repo.init().ok();

    let all = ours(&repo, &[tree_arg]);
    assert!(all.contains("tree/mnt/inside/file"));
    for option in ["--one-file-system", "-x"] {
        let mine = ours(&repo, &[option, tree_arg]);
        assert_eq!(mine, restic.stored(&["--one-file-system", tree_arg], &tree));
        assert!(mine.contains("tree/mnt"));
        assert!(!mine.iter().any(|path| path.starts_with("tree/mnt/")));
    }
}

#[test]
fn dry_run_lists_what_a_backup_would_store_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    build_tree(&tree);
    let repo = Repo::new(tmp.path().join("repo"), None);
    repo.init().ok();
    let tree_arg = tree.to_str().unwrap();
    let args = ["--exclude-caches", "--exclude", "*.o", tree_arg];
    let mut dry = vec!["backup", "--dry-run", "--json"];
    dry.extend_from_slice(&args);
    let listing = repo.run(dry).ok().json();
    let parent = tree.parent().unwrap();
    let listed: BTreeSet<String> = listing["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            Path::new(item["path"].as_str().unwrap())
                .strip_prefix(parent)
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    assert!(repo.list().is_empty(), "a dry run wrote a backup");
    assert_eq!(listed, ours(&repo, &args));
    assert_eq!(
        listing["files"].as_u64().unwrap() as usize,
        listed
            .iter()
            .filter(|path| parent.join(path).symlink_metadata().unwrap().is_file())
            .count()
    );
}

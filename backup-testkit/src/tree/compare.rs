//! Exact comparisons of trees, and helpers that read whole trees.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::join;
use crate::MIB;

/// What [`diff_trees_with`] compares.
#[derive(Debug, Clone, Default)]
pub struct Comparison<'a> {
    /// Also modes and mtimes (to the nanosecond), not only names, types,
    /// contents and link targets.
    pub metadata: bool,
    /// Relative, `/`-separated paths left out on both sides.
    pub skip: &'a [&'a str],
}

/// Every difference between the trees `a` and `b`: names per directory,
/// type, size, content, mode, mtime (seconds and nanoseconds), symlink
/// target. The roots are compared too.
pub fn diff_trees(a: &Path, b: &Path) -> Vec<String> {
    diff_trees_with(
        a,
        b,
        &Comparison {
            metadata: true,
            skip: &[],
        },
    )
}

/// The differences between `a` and `b` that `comparison` asks for.
pub fn diff_trees_with(a: &Path, b: &Path, comparison: &Comparison<'_>) -> Vec<String> {
    let mut diffs = Vec::new();
    diff_node(a, b, "", comparison, &mut diffs);
    diffs
}

/// Panics listing the differences if the trees differ in anything
/// [`diff_trees`] compares.
pub fn assert_same_tree(a: &Path, b: &Path) {
    assert_no_diffs(a, b, diff_trees(a, b));
}

/// As [`assert_same_tree`], leaving out the relative paths in `skip`.
pub fn assert_same_tree_except(a: &Path, b: &Path, skip: &[&str]) {
    let comparison = Comparison {
        metadata: true,
        skip,
    };
    assert_no_diffs(a, b, diff_trees_with(a, b, &comparison));
}

/// Panics listing the differences if the trees differ in names, types,
/// contents or link targets (modes and times are not compared: for a tree
/// written again to compare with).
pub fn assert_same_contents(a: &Path, b: &Path) {
    assert_no_diffs(a, b, diff_trees_with(a, b, &Comparison::default()));
}

fn assert_no_diffs(a: &Path, b: &Path, diffs: Vec<String>) {
    assert!(
        diffs.is_empty(),
        "{} difference(s) between {} and {}; the first ones:\n{}",
        diffs.len(),
        a.display(),
        b.display(),
        diffs
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn kind(metadata: &fs::Metadata) -> &'static str {
    let file_type = metadata.file_type();
    if file_type.is_symlink() {
        "symlink"
    } else if file_type.is_dir() {
        "dir"
    } else if file_type.is_file() {
        "file"
    } else {
        "special"
    }
}

fn diff_node(a: &Path, b: &Path, rel: &str, comparison: &Comparison<'_>, diffs: &mut Vec<String>) {
    let show = if rel.is_empty() { "." } else { rel };
    let (ma, mb) = match (fs::symlink_metadata(a), fs::symlink_metadata(b)) {
        (Ok(ma), Ok(mb)) => (ma, mb),
        (ra, rb) => {
            diffs.push(format!(
                "{show:?}: cannot stat: {:?} / {:?}",
                ra.err(),
                rb.err()
            ));
            return;
        }
    };
    if kind(&ma) != kind(&mb) {
        diffs.push(format!("{show:?}: type {} vs {}", kind(&ma), kind(&mb)));
        return;
    }
    if comparison.metadata {
        if ma.mode() & 0o7777 != mb.mode() & 0o7777 {
            diffs.push(format!(
                "{show:?}: mode {:o} vs {:o}",
                ma.mode() & 0o7777,
                mb.mode() & 0o7777
            ));
        }
        if (ma.mtime(), ma.mtime_nsec()) != (mb.mtime(), mb.mtime_nsec()) {
            diffs.push(format!(
                "{show:?}: mtime {}.{:09} vs {}.{:09}",
                ma.mtime(),
                ma.mtime_nsec(),
                mb.mtime(),
                mb.mtime_nsec()
            ));
        }
    }
    match kind(&ma) {
        "file" => {
            if ma.len() != mb.len() {
                diffs.push(format!("{show:?}: size {} vs {}", ma.len(), mb.len()));
            } else if sha256_file(a) != sha256_file(b) {
                diffs.push(format!("{show:?}: content differs"));
            }
        }
        "symlink" => {
            let (ta, tb) = (fs::read_link(a).ok(), fs::read_link(b).ok());
            if ta != tb {
                diffs.push(format!("{show:?}: link target {ta:?} vs {tb:?}"));
            }
        }
        "dir" => {
            let names = |dir: &Path| -> BTreeSet<String> {
                read_dir(dir)
                    .into_iter()
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .filter(|name| !comparison.skip.contains(&join(rel, name).as_str()))
                    .collect()
            };
            let (na, nb) = (names(a), names(b));
            for missing in na.difference(&nb) {
                diffs.push(format!("{:?}: missing in the copy", join(rel, missing)));
            }
            for extra in nb.difference(&na) {
                diffs.push(format!("{:?}: extra in the copy", join(rel, extra)));
            }
            for name in na.intersection(&nb) {
                let child = join(rel, name);
                diff_node(&a.join(name), &b.join(name), &child, comparison, diffs);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// Reading and copying trees.

fn read_dir(dir: &Path) -> Vec<fs::DirEntry> {
    fs::read_dir(dir)
        .and_then(|entries| entries.collect::<std::io::Result<Vec<_>>>())
        .unwrap_or_else(|error| panic!("reading the directory {}: {error}", dir.display()))
}

/// SHA-256 of a file's content.
pub fn sha256_file(path: &Path) -> [u8; 32] {
    let mut file = fs::File::open(path)
        .unwrap_or_else(|error| panic!("opening {} to hash it: {error}", path.display()));
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; MIB as usize];
    loop {
        let n = file
            .read(&mut buffer)
            .unwrap_or_else(|error| panic!("reading {} to hash it: {error}", path.display()));
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    hasher.finalize().into()
}

/// Relative paths (`/`-separated) of everything under `root`, not `root`
/// itself; symlinks are not followed.
pub fn all_paths(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        for entry in read_dir(&dir) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = join(&rel, &name);
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push((entry.path(), child.clone()));
            }
            out.insert(child);
        }
    }
    out
}

/// Every regular file below `root` with its content, and every symlink with
/// its target, keyed by relative path; empty when `root` does not exist.
pub fn read_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    if !root.exists() {
        return out;
    }
    for rel in all_paths(root) {
        let path = root.join(&rel);
        let Ok(metadata) = fs::symlink_metadata(&path) else {
            continue;
        };
        if metadata.is_symlink() {
            let target = fs::read_link(&path).unwrap_or_default();
            out.insert(rel, target.to_string_lossy().into_owned().into_bytes());
        } else if metadata.is_file() {
            let content = fs::read(&path)
                .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
            out.insert(rel, content);
        }
    }
    out
}

/// The total size of the regular files below `root` (0 when it does not
/// exist).
pub fn disk_usage(root: &Path) -> u64 {
    if !root.exists() {
        return 0;
    }
    all_paths(root)
        .iter()
        .filter_map(|rel| fs::symlink_metadata(root.join(rel)).ok())
        .filter(|metadata| metadata.is_file())
        .map(|metadata| metadata.len())
        .sum()
}

/// Copies the files and directories below `from` into `to` (created if
/// needed); contents only, no metadata.
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|error| panic!("creating {}: {error}", to.display()));
    for entry in read_dir(from) {
        let target = to.join(entry.file_name());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target)
                .unwrap_or_else(|error| panic!("copying {}: {error}", entry.path().display()));
        }
    }
}

/// Regular files (relative paths) under `root` whose name contains `part`.
pub fn find_files_named(root: &Path, part: &str) -> Vec<String> {
    all_paths(root)
        .into_iter()
        .filter(|rel| {
            rel.rsplit('/')
                .next()
                .is_some_and(|name| name.contains(part))
        })
        .collect()
}

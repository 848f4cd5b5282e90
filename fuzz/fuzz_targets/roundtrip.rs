//! Backup → restore round trip of an arbitrary small directory tree.
//!
//! The input describes files (arbitrary names, contents, modes and mtimes),
//! directories and symlinks. The target writes them to a temporary
//! directory (skipping what the OS or the tree rules reject), backs it up
//! with `Repository::init` on a `MemorySink` and a `DirectorySnapshotter`
//! (encrypted or not), optionally changes one file and backs up again (the
//! second backup compares files against the first to skip unchanged ones),
//! restores the last backup to another temporary directory and compares
//! the two trees: entries, types, file contents, symlink targets, modes and
//! modification times must be identical. Any difference, or any error from
//! backup or restore, panics.
//!
//! Sizes are bounded (at most 32 entries, 4 levels, 4 MiB of content) so one
//! execution takes milliseconds.

#![no_main]

use std::collections::BTreeSet;
use std::fs::{File, FileTimes, Permissions};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arbitrary::Arbitrary;
use backup_core::DirectorySnapshotter;
use backup_core::{
    BackupOptions, BackupStatus, InitOptions, KdfParams, MemorySink, Repository, RestoreOptions,
};
use libfuzzer_sys::fuzz_target;

const MAX_ENTRIES: usize = 32;
const MAX_DEPTH: usize = 4;
const MAX_TOTAL_BYTES: usize = 4 << 20;
const MAX_REPEATED_BYTES: u32 = 2 << 20;

#[derive(Debug, Arbitrary)]
struct Input {
    encrypted: bool,
    items: Vec<Item>,
    /// Change one file and back up a second time before restoring.
    change: Option<Change>,
}

#[derive(Debug, Arbitrary)]
enum Item {
    File {
        name: String,
        content: Content,
        mode: u16,
        mtime: Time,
    },
    Dir {
        name: String,
        mode: u16,
        mtime: Time,
        children: Vec<Item>,
    },
    Symlink {
        name: String,
        target: String,
    },
}

#[derive(Debug, Arbitrary)]
enum Content {
    Bytes(Vec<u8>),
    /// `pattern` repeated up to `length` bytes: large files (several
    /// chunks) from small inputs.
    Repeated {
        pattern: Vec<u8>,
        length: u32,
    },
}

#[derive(Debug, Clone, Copy, Arbitrary)]
struct Time {
    seconds: i64,
    nanos: u32,
}

#[derive(Debug, Arbitrary)]
struct Change {
    /// Which file (modulo the number written).
    which: u8,
    content: Content,
    /// Put the old mtime back after writing (change detection must then
    /// rely on ctime).
    keep_mtime: bool,
    /// Replace the file by a new one (rename over it) instead of rewriting.
    replace: bool,
}

impl Content {
    fn bytes(&self, budget: &mut usize) -> Vec<u8> {
        let mut out = match self {
            Content::Bytes(bytes) => bytes.clone(),
            Content::Repeated { pattern, length } if !pattern.is_empty() => pattern
                .iter()
                .copied()
                .cycle()
                .take((length % MAX_REPEATED_BYTES) as usize)
                .collect(),
            Content::Repeated { .. } => Vec::new(),
        };
        out.truncate(*budget);
        *budget -= out.len();
        out
    }
}

impl Time {
    /// Within ±2^33 s of the epoch (years 1698 to 2242), which the format's
    /// i64 nanoseconds hold; times beyond them are not representable.
    fn system_time(self) -> SystemTime {
        let seconds = self.seconds % (1 << 33);
        let nanos = Duration::from_nanos(u64::from(self.nanos % 1_000_000_000));
        let whole = Duration::from_secs(seconds.unsigned_abs());
        if seconds >= 0 {
            UNIX_EPOCH + whole + nanos
        } else {
            UNIX_EPOCH - whole + nanos
        }
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("building the tokio runtime")
    })
}

/// Whether names are acceptable to both Linux and the tree rules.
fn usable_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\0'])
        && name.len() <= 255
}

struct Writer {
    entries: usize,
    budget: usize,
    /// Without root, modes are limited so that the backup can read
    /// everything and the comparison can too.
    root: bool,
    files: Vec<PathBuf>,
}

impl Writer {
    fn mode(&self, mode: u16, dir: bool) -> u32 {
        let mode = u32::from(mode) & 0o7777;
        match (self.root, dir) {
            (true, _) => mode,
            (false, false) => (mode & 0o777) | 0o600,
            (false, true) => (mode & 0o777) | 0o700,
        }
    }

    /// Creates `items` in `dir`; returns the directories made, deepest
    /// last, with the mode and time to apply once their content is written.
    fn write(&mut self, dir: &Path, items: &[Item], depth: usize, dirs: &mut Vec<DirTodo>) {
        let mut names = BTreeSet::new();
        for item in items {
            if self.entries >= MAX_ENTRIES {
                return;
            }
            let name = match item {
                Item::File { name, .. } | Item::Dir { name, .. } | Item::Symlink { name, .. } => {
                    name
                }
            };
            if !usable_name(name) || !names.insert(name.clone()) {
                continue;
            }
            let path = dir.join(name);
            match item {
                Item::File {
                    content,
                    mode,
                    mtime,
                    ..
                } => {
                    let bytes = content.bytes(&mut self.budget);
                    std::fs::write(&path, &bytes).expect("writing a source file");
                    let file = File::options().write(true).open(&path).expect("opening");
                    file.set_times(FileTimes::new().set_modified(mtime.system_time()))
                        .expect("setting a file's mtime");
                    file.set_permissions(Permissions::from_mode(self.mode(*mode, false)))
                        .expect("setting a file's mode");
                    self.files.push(path);
                }
                Item::Dir {
                    mode,
                    mtime,
                    children,
                    ..
                } => {
                    if depth >= MAX_DEPTH {
                        continue;
                    }
                    std::fs::create_dir(&path).expect("creating a source directory");
                    self.entries += 1;
                    self.write(&path, children, depth + 1, dirs);
                    dirs.push(DirTodo {
                        path,
                        mode: self.mode(*mode, true),
                        mtime: mtime.system_time(),
                    });
                    continue;
                }
                Item::Symlink { target, .. } => {
                    if target.is_empty() || target.contains('\0') || target.len() > 4095 {
                        continue;
                    }
                    std::os::unix::fs::symlink(target, &path).expect("creating a symlink");
                }
            }
            self.entries += 1;
        }
    }
}

struct DirTodo {
    path: PathBuf,
    mode: u32,
    mtime: SystemTime,
}

fn finish_dirs(dirs: &[DirTodo]) {
    // Children were pushed before their parents: apply in that order.
    for dir in dirs {
        let handle = File::open(&dir.path).expect("opening a directory");
        handle
            .set_times(FileTimes::new().set_modified(dir.mtime))
            .expect("setting a directory's mtime");
        std::fs::set_permissions(&dir.path, Permissions::from_mode(dir.mode))
            .expect("setting a directory's mode");
    }
}

/// Panics with the first difference between two trees.
fn compare(source: &Path, restored: &Path, racy: Option<&(PathBuf, Vec<u8>)>) {
    let a = std::fs::symlink_metadata(source).expect("source metadata");
    let b = std::fs::symlink_metadata(restored)
        .unwrap_or_else(|error| panic!("{} was not restored: {error}", source.display()));
    let what = source.display();
    assert_eq!(a.file_type(), b.file_type(), "{what}: type differs");
    assert_eq!(
        (a.mtime(), a.mtime_nsec()),
        (b.mtime(), b.mtime_nsec()),
        "{what}: mtime differs"
    );
    if a.file_type().is_symlink() {
        assert_eq!(
            std::fs::read_link(source).expect("reading a link"),
            std::fs::read_link(restored).expect("reading a restored link"),
            "{what}: symlink target differs"
        );
        return;
    }
    assert_eq!(
        a.mode() & 0o7777,
        b.mode() & 0o7777,
        "{what}: mode differs ({:o} restored as {:o})",
        a.mode() & 0o7777,
        b.mode() & 0o7777
    );
    if a.is_file() {
        let expected = std::fs::read(source).expect("reading a source file");
        let actual = std::fs::read(restored).expect("reading a restored file");
        if actual != expected {
            // See `change_file`: the one case where the old content is right.
            let old_is_fine = racy.is_some_and(|(path, old)| path == source && &actual == old);
            assert!(
                old_is_fine,
                "{what}: content differs ({} bytes restored as {})",
                expected.len(),
                actual.len()
            );
        }
        return;
    }
    let names = |dir: &Path| -> BTreeSet<std::ffi::OsString> {
        std::fs::read_dir(dir)
            .expect("listing a directory")
            .map(|entry| entry.expect("listing a directory").file_name())
            .collect()
    };
    let (left, right) = (names(source), names(restored));
    assert_eq!(left, right, "{what}: entries differ");
    for name in left {
        compare(&source.join(&name), &restored.join(&name), racy);
    }
}

/// Applies `change`; returns the path and old content of the changed file
/// when its size, mtime, ctime and inode all stayed the same. No stat-based
/// change detection can see such a change (it happens only on kernels with
/// coarse timestamps, a rewrite within one clock tick), so there either
/// content is a correct restore.
fn change_file(
    change: &Change,
    files: &[PathBuf],
    budget: &mut usize,
    scratch: &Path,
) -> Option<(PathBuf, Vec<u8>)> {
    let path = files.get(usize::from(change.which) % files.len().max(1))?;
    let before = std::fs::symlink_metadata(path).expect("stat before change");
    let old = std::fs::read(path).expect("reading before change");
    let bytes = change.content.bytes(budget);
    if change.replace {
        // Outside the source tree, so that no name there is taken.
        let temporary = scratch.join("replacement");
        std::fs::write(&temporary, &bytes).expect("writing a replacement");
        std::fs::set_permissions(&temporary, before.permissions()).expect("chmod");
        std::fs::rename(&temporary, path).expect("renaming a replacement");
    } else {
        // Not `fs::write`: that would need write permission on 0o444 files
        // when not root; the mode is restored below.
        std::fs::set_permissions(path, Permissions::from_mode(0o600)).expect("chmod");
        std::fs::write(path, &bytes).expect("rewriting a file");
        std::fs::set_permissions(path, before.permissions()).expect("chmod");
    }
    if change.keep_mtime {
        File::options()
            .write(true)
            .open(path)
            .or_else(|_| File::open(path))
            .expect("opening a changed file")
            .set_times(FileTimes::new().set_modified(before.modified().expect("mtime")))
            .expect("putting the mtime back");
    }
    let after = std::fs::symlink_metadata(path).expect("stat after change");
    let key = |m: &std::fs::Metadata| {
        (
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
            m.ino(),
        )
    };
    (key(&before) == key(&after)).then(|| (path.clone(), old))
}

async fn back_up(repo: &Repository, source: &Path) {
    let options = BackupOptions::default().with_set("fuzz");
    let summary = repo
        .backup(
            &DirectorySnapshotter::new(vec![source.to_path_buf()]),
            options,
        )
        .await
        .unwrap_or_else(|error| panic!("backup failed: {error}"));
    assert_eq!(
        summary.manifest.status,
        BackupStatus::Completed,
        "backup partially failed: {:?}",
        summary.manifest.errors
    );
}

fuzz_target!(|input: Input| {
    let place = tempfile::tempdir().expect("a temporary directory");
    let source = place.path().join("src");
    let target = place.path().join("dst");
    std::fs::create_dir(&source).expect("creating the source");
    let root = std::fs::metadata(place.path())
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    let mut writer = Writer {
        entries: 0,
        budget: MAX_TOTAL_BYTES,
        root,
        files: Vec::new(),
    };
    let mut dirs = Vec::new();
    writer.write(&source, &input.items, 0, &mut dirs);
    finish_dirs(&dirs);

    let options = if input.encrypted {
        InitOptions::default().with_password(b"fuzz-password".to_vec()).with_kdf(KdfParams::insecure_for_tests())
    } else {
        InitOptions::default()
    };
    let racy = runtime().block_on(async {
        let repo = Repository::init(Arc::new(MemorySink::new()), options)
            .await
            .unwrap_or_else(|error| panic!("init failed: {error}"));
        back_up(&repo, &source).await;
        let mut racy = None;
        if let Some(change) = &input.change {
            racy = change_file(change, &writer.files, &mut writer.budget, place.path());
            // Rewriting changed the directory's mtime only when replacing;
            // either way the second backup records what is there now.
            back_up(&repo, &source).await;
        }
        let latest = repo
            .find_backup("latest", Some("fuzz"))
            .await
            .unwrap_or_else(|error| panic!("finding the backup failed: {error}"));
        std::fs::create_dir(&target).expect("creating the restore target");
        repo.restore(&latest, &target, &RestoreOptions::default())
            .await
            .unwrap_or_else(|error| panic!("restore failed: {error}"));
        racy
    });
    compare(&source, &target.join("src"), racy.as_ref());

    // Let the temporary directory go even where a mode forbids writing.
    if !root {
        for dir in &dirs {
            let _ = std::fs::set_permissions(&dir.path, Permissions::from_mode(0o700));
        }
    }
});

//! A deterministic, hostile directory tree, and exact comparisons of trees.
//!
//! [`generate_tree`] builds what a backup tool meets at its worst: Unicode
//! names (NFC and NFD, right-to-left scripts, emoji), names with spaces,
//! newlines, quotes and glob characters, names of 255 bytes, twelve levels
//! of nesting, empty directories, setuid and sticky modes, mtimes before
//! 1970 and at the last nanosecond, symlinks (relative, absolute, dangling,
//! looping, to directories), duplicate contents and large files.
//! [`diff_trees`] lists every difference between two trees: names, types,
//! sizes, contents, modes, mtimes to the nanosecond and link targets.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use filetime::FileTime;
use sha2::{Digest, Sha256};

use crate::rng::{random_bytes, text_bytes, write_random_file, TestRng};
use crate::{KIB, MIB};

/// What [`generate_tree`] builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeSpec {
    /// Seed of every random choice: the same spec builds the same tree.
    pub seed: u64,
    /// Regular files of the random part (about 40 fixed files come on top).
    pub files: usize,
    /// Add the fixed set of large files (about 27 MiB: text, random, exact
    /// sizes, zeros, a duplicate).
    pub large: bool,
    /// One extra incompressible file of this size, `large/big.bin`.
    pub big_file: Option<u64>,
}

impl TreeSpec {
    /// `files` random files from `seed`, without the large ones.
    pub fn new(seed: u64, files: usize) -> TreeSpec {
        TreeSpec {
            seed,
            files,
            large: false,
            big_file: None,
        }
    }

    /// With the fixed set of large files.
    pub fn with_large_files(self) -> TreeSpec {
        TreeSpec {
            large: true,
            ..self
        }
    }

    /// With one more incompressible file of `size` bytes.
    pub fn with_big_file(self, size: u64) -> TreeSpec {
        TreeSpec {
            big_file: Some(size),
            ..self
        }
    }
}

/// What [`generate_tree`] built.
#[derive(Debug, Clone, Default)]
pub struct TreeStats {
    /// Regular files.
    pub files: u64,
    /// Bytes in the regular files.
    pub bytes: u64,
    /// Directories including the root.
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Relative paths of the regular files.
    pub file_paths: Vec<String>,
}

const JA: &[&str] = &[
    "日本語",
    "ファイル",
    "テスト",
    "データ",
    "東京",
    "設定",
    "バックアップ",
    "ログ",
];
const RU: &[&str] = &[
    "Привет",
    "мир",
    "файл",
    "данные",
    "отчёт",
    "Ёлка",
    "Каталог",
];
const EMOJI: &[&str] = &["🎉", "📁", "🦀", "👩\u{200d}💻", "🇯🇵", "✨", "🔥"];
const ACCENT: &[&str] = &[
    "e\u{301}te\u{301}",
    "\u{e9}t\u{e9}",
    "man\u{303}ana",
    "cafe\u{301}",
    "Zu\u{308}rich",
    "A\u{30a}ngstro\u{308}m",
];
const ASCII: &[&str] = &[
    "alpha",
    "beta",
    "gamma",
    "data",
    "report",
    "notes",
    "config",
    "x",
    "README",
    "Makefile",
    "-dash",
    "UPPER",
    "mixed_Case",
    "v1.2.3",
];
const MODES: &[u32] = &[
    0o644, 0o644, 0o644, 0o644, 0o600, 0o600, 0o640, 0o755, 0o400, 0o444, 0o664, 0o2750, 0o4755,
];
const DIR_MODES: &[u32] = &[
    0o755, 0o755, 0o755, 0o755, 0o700, 0o750, 0o555, 0o1777, 0o2775,
];

fn random_name(rng: &mut TestRng) -> String {
    let n = rng.below(1000);
    match rng.below(12) {
        0..=4 => format!("{}-{n}", rng.pick(ASCII)),
        5 => format!("{}{}_{n}", rng.pick(JA), rng.pick(JA)),
        6 => format!("{} {}-{n}", rng.pick(RU), rng.pick(RU)),
        7 => format!("{}{}{n}", rng.pick(EMOJI), rng.pick(ASCII)),
        8 => format!("{}-{n}", rng.pick(ACCENT)),
        9 => format!("my file {n}"),
        10 => format!(" leading {n}"),
        _ => format!("trailing {n} "),
    }
}

/// A random name not in `taken` (the caller claims it).
fn unique_name(rng: &mut TestRng, taken: &HashSet<String>, ext: &str) -> String {
    let base = random_name(rng);
    let mut name = format!("{base}{ext}");
    let mut counter = 0;
    while taken.contains(&name) {
        counter += 1;
        name = format!("{base}~{counter}{ext}");
    }
    name
}

fn past_mtime(rng: &mut TestRng) -> FileTime {
    // 2000-01-01 .. ~2022, with nanoseconds.
    FileTime::from_unix_time(
        946_684_800 + rng.below(700_000_000) as i64,
        rng.below(1_000_000_000) as u32,
    )
}

#[derive(Clone, Copy)]
enum Content {
    Empty,
    Text(u64),
    Random(u64),
    Zeros,
}

fn content_bytes(content: Content, len: usize) -> Vec<u8> {
    match content {
        Content::Empty => Vec::new(),
        Content::Text(seed) => text_bytes(seed, len),
        Content::Random(seed) => random_bytes(seed, len),
        Content::Zeros => vec![0u8; len],
    }
}

struct Builder {
    root: PathBuf,
    rng: TestRng,
    stats: TreeStats,
    /// Relative dir path -> names taken in it.
    taken: BTreeMap<String, HashSet<String>>,
    /// Directories (relative) with their final mode and mtime.
    dirs: Vec<(String, u32, FileTime)>,
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

impl Builder {
    fn abs(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    fn name_in(&mut self, dir: &str, ext: &str) -> String {
        let taken = self.taken.entry(dir.to_string()).or_default();
        unique_name(&mut self.rng, taken, ext)
    }

    fn claim(&mut self, dir: &str, name: &str) {
        let fresh = self
            .taken
            .entry(dir.to_string())
            .or_default()
            .insert(name.to_string());
        assert!(fresh, "generator bug: {dir}/{name} twice");
    }

    fn mkdir(&mut self, parent: &str, name: &str, mode: u32) -> String {
        self.claim(parent, name);
        let rel = join(parent, name);
        fs::create_dir(self.abs(&rel)).expect("create dir");
        let mtime = past_mtime(&mut self.rng);
        self.dirs.push((rel.clone(), mode, mtime));
        self.stats.dirs += 1;
        rel
    }

    fn file(&mut self, dir: &str, name: &str, content: Content, len: u64, mode: u32) {
        let mtime = past_mtime(&mut self.rng);
        self.file_at(dir, name, content, len, mode, mtime);
    }

    fn file_at(
        &mut self,
        dir: &str,
        name: &str,
        content: Content,
        len: u64,
        mode: u32,
        mtime: FileTime,
    ) {
        self.claim(dir, name);
        let rel = join(dir, name);
        let path = self.abs(&rel);
        match content {
            Content::Random(seed) if len > 8 * MIB => write_random_file(&path, seed, len),
            _ => fs::write(&path, content_bytes(content, len as usize)).expect("write file"),
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        filetime::set_file_times(&path, mtime, mtime).expect("set file times");
        self.stats.files += 1;
        self.stats.bytes += len;
        self.stats.file_paths.push(rel);
    }

    fn symlink(&mut self, dir: &str, name: &str, target: &str) {
        self.claim(dir, name);
        let path = self.abs(&join(dir, name));
        std::os::unix::fs::symlink(target, &path).expect("symlink");
        let mtime = past_mtime(&mut self.rng);
        filetime::set_symlink_file_times(&path, mtime, mtime).expect("symlink times");
        self.stats.symlinks += 1;
    }
}

/// The symlink of a generated tree whose target is an absolute path inside
/// it: the one entry that differs between two trees of the same spec
/// generated at different places.
pub const ABSOLUTE_LINK: &str = "link-absolute-in-tree";

/// Builds a deterministic, hostile tree under `root` (which must not exist)
/// and says what it built.
///
/// # Panics
///
/// When `root` exists or a file cannot be written.
pub fn generate_tree(root: &Path, spec: &TreeSpec) -> TreeStats {
    fs::create_dir(root).expect("create tree root");
    let mut b = Builder {
        root: root.to_path_buf(),
        rng: TestRng::new(spec.seed),
        stats: TreeStats {
            dirs: 1,
            ..TreeStats::default()
        },
        taken: BTreeMap::new(),
        dirs: Vec::new(),
    };
    let root_mtime = past_mtime(&mut b.rng);

    // Directories for files: random nesting up to 7 levels.
    let mut candidates: Vec<(String, usize)> = vec![(String::new(), 0)];
    let dir_count = (spec.files / 25).max(4);
    for _ in 0..dir_count {
        let (parent, depth) = loop {
            let (parent, depth) = b.rng.pick(&candidates).clone();
            if depth < 7 {
                break (parent, depth);
            }
        };
        let name = b.name_in(&parent, "");
        let mode = *b.rng.pick(DIR_MODES);
        let rel = b.mkdir(&parent, &name, mode);
        candidates.push((rel, depth + 1));
    }
    // A deep chain of 12 levels with a file at the bottom.
    let mut deep = b.mkdir("", "deep", 0o755);
    for level in 1..=12 {
        deep = b.mkdir(&deep, &format!("level {level} уровень"), 0o755);
    }
    b.file(&deep, "bottom.txt", Content::Text(11), 777, 0o644);
    // Fixed special directories.
    b.mkdir("", "private", 0o700);
    b.file("private", "secret.txt", Content::Text(12), 100, 0o600);
    b.mkdir("", "日本語ディレクトリ", 0o755);
    b.mkdir("", "Каталог с пробелами", 0o750);
    b.mkdir("", "emoji 📁🦀", 0o755);
    b.mkdir("", ".hidden-dir", 0o755);
    // Empty directories, including nested ones and one with a hostile mode.
    b.mkdir("", "empty", 0o755);
    b.mkdir("empty", "nested empty", 0o700);
    b.mkdir("empty/nested empty", "空", 0o555);
    b.mkdir("日本語ディレクトリ", "空のフォルダ", 0o755);
    b.mkdir("Каталог с пробелами", "пусто", 0o1777);
    let empty_parent = candidates
        .get(candidates.len() / 2)
        .map(|(d, _)| d.clone())
        .unwrap_or_default();
    b.mkdir(&empty_parent, "empty-leaf", 0o711);

    // Files with hostile names.
    let specials: &[&str] = &[
        "日本語のファイル.txt",
        "Привет мир.txt",
        "🎉party🎈.bin",
        "e\u{301}te\u{301}.txt",
        "\u{e9}t\u{e9}.txt",
        " leading space.txt",
        "trailing space.txt ",
        "many   spaces   here.txt",
        "line\nbreak.txt",
        "tab\tname.txt",
        "quote\"s and 'apostrophes'.txt",
        "back\\slash.txt",
        "colon:semi;comma,.txt",
        "star*and?question[1]{a,b}.txt",
        ".hidden-file",
        "-starts-with-dash",
        "#hash%percent&amp",
    ];
    for (i, name) in specials.iter().enumerate() {
        b.file(
            "emoji 📁🦀",
            name,
            Content::Text(100 + i as u64),
            (i as u64 + 1) * 37,
            0o644,
        );
    }
    let long_ascii = format!("{}.txt", "a".repeat(251));
    b.file("", &long_ascii, Content::Text(200), 10, 0o644);
    let long_ja = "日".repeat(85); // 255 bytes
    b.file(
        "日本語ディレクトリ",
        &long_ja,
        Content::Random(201),
        300,
        0o640,
    );
    // Times: before 1970, exact seconds, last nanosecond.
    b.file_at(
        "",
        "pre-epoch.txt",
        Content::Text(300),
        50,
        0o644,
        FileTime::from_unix_time(-94_694_407, 123_456_789),
    );
    b.file_at(
        "",
        "whole-second.txt",
        Content::Text(301),
        50,
        0o644,
        FileTime::from_unix_time(1_000_000_000, 0),
    );
    b.file_at(
        "",
        "last-nanosecond.bin",
        Content::Random(302),
        50,
        0o600,
        FileTime::from_unix_time(1_234_567_890, 999_999_999),
    );
    b.file("", "empty-file", Content::Empty, 0, 0o644);
    b.file("private", "read-only-empty", Content::Empty, 0, 0o400);

    if spec.large {
        b.mkdir("", "large", 0o755);
        b.file("large", "text-6MiB.log", Content::Text(400), 6 * MIB, 0o644);
        b.file(
            "large",
            "random-9MiB.bin",
            Content::Random(401),
            9 * MIB + 3,
            0o644,
        );
        b.file(
            "large",
            "exact-512KiB.bin",
            Content::Random(402),
            512 * KIB,
            0o644,
        );
        b.file("large", "exact-1MiB.bin", Content::Random(403), MIB, 0o600);
        b.file("large", "zeros-4MiB.bin", Content::Zeros, 4 * MIB, 0o644);
        // The same 1 MiB twice: deduplicated.
        b.file(
            "large",
            "copy-of-1MiB.bin",
            Content::Random(403),
            MIB,
            0o644,
        );
    }
    if let Some(size) = spec.big_file {
        if !spec.large {
            b.mkdir("", "large", 0o755);
        }
        b.file("large", "big.bin", Content::Random(500), size, 0o644);
    }

    // The random part.
    let mut earlier: Vec<(Content, u64, &'static str)> = Vec::new();
    for _ in 0..spec.files {
        let dir = b.rng.pick(&candidates).0.clone();
        let size = match b.rng.below(100) {
            0..=4 => 0,
            5..=64 => b.rng.range(1, 4096),
            65..=92 => b.rng.range(4096, 32 * KIB),
            93..=97 => b.rng.range(32 * KIB, 256 * KIB),
            _ => b.rng.range(256 * KIB, 768 * KIB),
        };
        let seed = b.rng.next_u64();
        let (content, size, ext) = match b.rng.below(20) {
            _ if size == 0 => (Content::Empty, 0, ""),
            0 if !earlier.is_empty() => *b.rng.pick(&earlier),
            1..=10 => {
                let ext = *b.rng.pick(&[".txt", ".log", ".md", ".csv"]);
                (Content::Text(seed), size, ext)
            }
            _ => {
                let ext = *b.rng.pick(&[".bin", ".dat", ""]);
                (Content::Random(seed), size, ext)
            }
        };
        earlier.push((content, size, ext));
        let name = b.name_in(&dir, ext);
        let mode = *b.rng.pick(MODES);
        b.file(&dir, &name, content, size, mode);
    }

    // Symlinks: relative to files, absolute, dangling, to directories, loops.
    let files = b.stats.file_paths.clone();
    let links = (spec.files / 40).max(3);
    for i in 0..links {
        let dir = b.rng.pick(&candidates).0.clone();
        let depth = if dir.is_empty() {
            0
        } else {
            dir.split('/').count()
        };
        let target_file = b.rng.pick(&files).clone();
        let target = format!("{}{target_file}", "../".repeat(depth));
        let name = format!("link-{i}");
        if b.taken.get(&dir).is_some_and(|t| t.contains(&name)) {
            continue;
        }
        b.symlink(&dir, &name, &target);
    }
    let absolute_in_tree = root.join(&files[0]).display().to_string();
    b.symlink("", "link-absolute-system", "/etc/hostname");
    b.symlink("", ABSOLUTE_LINK, &absolute_in_tree);
    b.symlink("", "link-dangling", "does/not/exist/ファイル");
    b.symlink("", "link-to-dir", "日本語ディレクトリ");
    b.symlink(
        "emoji 📁🦀",
        "link-unicode",
        "../Каталог с пробелами/🦀 target",
    );
    b.symlink("", "link-self-loop", "link-self-loop");
    b.symlink("", "link-dot-dot", "../../outside/of/tree");
    b.symlink("deep", "link-long", &"x/".repeat(600));

    // Directory modes and times last, deepest first, then the root.
    let mut dirs = std::mem::take(&mut b.dirs);
    dirs.sort_by_key(|(rel, _, _)| std::cmp::Reverse(rel.matches('/').count()));
    for (rel, mode, mtime) in dirs {
        let path = b.abs(&rel);
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod dir");
        filetime::set_file_times(&path, mtime, mtime).expect("dir times");
    }
    fs::set_permissions(root, fs::Permissions::from_mode(0o755)).expect("chmod root");
    filetime::set_file_times(root, root_mtime, root_mtime).expect("root times");
    b.stats
}

/// Builds `count` incompressible files of `size` bytes from `seed`, spread
/// over up to six directories below `root`; returns their total size.
pub fn generate_bulk(root: &Path, seed: u64, count: usize, size: u64) -> u64 {
    fs::create_dir_all(root).expect("create bulk root");
    for i in 0..count {
        let dir = root.join(format!("part-{}", i % 6));
        fs::create_dir_all(&dir).expect("create bulk dir");
        write_random_file(
            &dir.join(format!("file-{i:03}.bin")),
            seed.wrapping_add(i as u64),
            size,
        );
    }
    count as u64 * size
}

// ---------------------------------------------------------------------------
// Comparison.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_builds_the_same_tree_twice_and_another_seed_another() {
        let place = tempfile::tempdir().expect("temporary directory");
        let (a, b, c) = (
            place.path().join("a"),
            place.path().join("b"),
            place.path().join("c"),
        );
        let stats = generate_tree(&a, &TreeSpec::new(1, 60));
        generate_tree(&b, &TreeSpec::new(1, 60));
        generate_tree(&c, &TreeSpec::new(2, 60));
        // The one absolute link into the tree names its root.
        assert_same_tree_except(&a, &b, &[ABSOLUTE_LINK]);
        assert!(!diff_trees(&a, &c).is_empty());
        assert_eq!(stats.files as usize, stats.file_paths.len());
        assert!(stats.symlinks >= 3 && stats.dirs > 10, "{stats:?}");
        assert_eq!(disk_usage(&a), stats.bytes);
    }

    #[test]
    fn a_changed_byte_mode_or_mtime_is_a_difference() {
        let place = tempfile::tempdir().expect("temporary directory");
        let (a, b) = (place.path().join("a"), place.path().join("b"));
        let stats = generate_tree(&a, &TreeSpec::new(3, 30));
        generate_tree(&b, &TreeSpec::new(3, 30));
        let victim = stats
            .file_paths
            .iter()
            .find(|rel| {
                fs::metadata(b.join(rel)).is_ok_and(|m| m.len() > 0 && m.mode() & 0o200 != 0)
            })
            .expect("a writable, non-empty file");
        let path = b.join(victim);
        let mut bytes = fs::read(&path).expect("reading");
        bytes[0] ^= 1;
        fs::write(&path, bytes).expect("writing");
        let diffs = diff_trees(&a, &b);
        assert!(
            diffs.iter().any(|d| d.contains("content differs")),
            "{diffs:?}"
        );
        assert!(diffs.iter().any(|d| d.contains("mtime")), "{diffs:?}");
        // Contents only: still the changed byte, not the mtime.
        let contents = Comparison {
            metadata: false,
            skip: &[ABSOLUTE_LINK],
        };
        let contents = diff_trees_with(&a, &b, &contents);
        assert_eq!(contents.len(), 1, "{contents:?}");
        let skip = [victim.as_str(), ABSOLUTE_LINK];
        let comparison = Comparison {
            metadata: true,
            skip: &skip,
        };
        assert!(diff_trees_with(&a, &b, &comparison)
            .iter()
            .all(|d| !d.contains(victim.as_str())));
    }
}

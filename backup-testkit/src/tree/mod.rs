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

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use filetime::FileTime;

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

pub(crate) fn join(dir: &str, name: &str) -> String {
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

mod compare;
#[cfg(test)]
mod tests;

pub use compare::*;

//! Helpers for the end-to-end tests: a deterministic tree generator, an exact
//! tree comparison, a runner for the `backupctl` binary and repository
//! object utilities.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use filetime::FileTime;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * 1024;

// ---------------------------------------------------------------------------
// Deterministic pseudo-random numbers.

/// xorshift64* generator: deterministic, fast enough in a debug build.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Never zero, and well mixed even for small seeds.
        Rng((seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo)
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&last[..n]);
    }
}

/// `len` incompressible bytes from `seed`.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    Rng::new(seed).fill(&mut out);
    out
}

const WORDS: &[&str] = &[
    "the",
    "backup",
    "of",
    "a",
    "repository",
    "is",
    "verified",
    "chunk",
    "index",
    "pack",
    "manifest",
    "restore",
    "data",
    "file",
    "directory",
    "snapshot",
    "encrypted",
    "log",
    "error",
    "warning",
    "info",
    "request",
    "response",
    "user",
    "session",
    "GET",
    "POST",
    "/api/v1/items",
    "200",
    "404",
    "500",
    "latency_ms=",
    "time",
    "and",
    "with",
    "from",
    "to",
    "in",
    "server",
    "client",
    "東京",
    "данные",
    "🦀",
];

/// `len` bytes of compressible, log-like text from `seed`.
pub fn text_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 32);
    let mut line = 0u64;
    while out.len() < len {
        line += 1;
        out.extend_from_slice(format!("{line:08} ").as_bytes());
        let words = rng.range(4, 16);
        for _ in 0..words {
            out.extend_from_slice(rng.pick(WORDS).as_bytes());
            out.push(b' ');
        }
        out.push(b'\n');
    }
    out.truncate(len);
    out
}

/// Writes `len` incompressible bytes from `seed` to `path`, streaming.
pub fn write_random_file(path: &Path, seed: u64, len: u64) {
    let mut rng = Rng::new(seed);
    let mut file = fs::File::create(path).expect("create random file");
    let mut buffer = vec![0u8; MIB as usize];
    let mut left = len;
    while left > 0 {
        let n = left.min(buffer.len() as u64) as usize;
        rng.fill(&mut buffer[..n]);
        file.write_all(&buffer[..n]).expect("write random file");
        left -= n as u64;
    }
}

// ---------------------------------------------------------------------------
// Tree generator.

/// What [`generate_tree`] builds.
#[derive(Debug, Clone)]
pub struct TreeSpec {
    pub seed: u64,
    /// Regular files of the random part (special files come on top).
    pub files: usize,
    /// Add the fixed set of large files (text, random, exact sizes, zeros).
    pub large: bool,
    /// One extra incompressible file of this size.
    pub big_file: Option<u64>,
}

/// What [`generate_tree`] built.
#[derive(Debug, Clone, Default)]
pub struct TreeStats {
    pub files: u64,
    pub bytes: u64,
    /// Directories including the root.
    pub dirs: u64,
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

fn random_name(rng: &mut Rng) -> String {
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
fn unique_name(rng: &mut Rng, taken: &HashSet<String>, ext: &str) -> String {
    let base = random_name(rng);
    let mut name = format!("{base}{ext}");
    let mut counter = 0;
    while taken.contains(&name) {
        counter += 1;
        name = format!("{base}~{counter}{ext}");
    }
    name
}

fn past_mtime(rng: &mut Rng) -> FileTime {
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
    rng: Rng,
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

/// Builds a deterministic, hostile tree under `root` (which must not exist).
pub fn generate_tree(root: &Path, spec: &TreeSpec) -> TreeStats {
    fs::create_dir(root).expect("create tree root");
    let mut b = Builder {
        root: root.to_path_buf(),
        rng: Rng::new(spec.seed),
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
    b.symlink("", "link-absolute-in-tree", &absolute_in_tree);
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

/// Builds `count` incompressible files of `size` bytes spread over a few
/// directories; returns the total bytes.
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
// Tree comparison.

/// SHA-256 of a file's content.
pub fn sha256_file(path: &Path) -> [u8; 32] {
    let mut file = fs::File::open(path).expect("open for hashing");
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; MIB as usize];
    loop {
        let n = file.read(&mut buffer).expect("read for hashing");
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    hasher.finalize().into()
}

fn kind(metadata: &fs::Metadata) -> &'static str {
    let t = metadata.file_type();
    if t.is_symlink() {
        "symlink"
    } else if t.is_dir() {
        "dir"
    } else if t.is_file() {
        "file"
    } else {
        "special"
    }
}

/// Every difference between the trees `a` and `b`: type, size, content,
/// mode, mtime (s and ns), symlink target, names per directory. Paths in
/// `skip` (relative, `/`-separated) are ignored on both sides.
pub fn diff_trees_except(a: &Path, b: &Path, skip: &[&str]) -> Vec<String> {
    let mut diffs = Vec::new();
    diff_node(a, b, "", skip, &mut diffs);
    diffs
}

/// [`diff_trees_except`] without exceptions.
pub fn diff_trees(a: &Path, b: &Path) -> Vec<String> {
    diff_trees_except(a, b, &[])
}

fn diff_node(a: &Path, b: &Path, rel: &str, skip: &[&str], diffs: &mut Vec<String>) {
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
                fs::read_dir(dir)
                    .expect("read_dir")
                    .map(|e| {
                        e.expect("dir entry")
                            .file_name()
                            .into_string()
                            .expect("UTF-8 name")
                    })
                    .filter(|name| !skip.contains(&join(rel, name).as_str()))
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
                diff_node(&a.join(name), &b.join(name), &join(rel, name), skip, diffs);
            }
        }
        _ => {}
    }
}

/// Panics listing the differences if the trees differ.
pub fn assert_same_tree(a: &Path, b: &Path) {
    assert_same_tree_except(a, b, &[]);
}

/// As [`assert_same_tree`], ignoring `skip`.
pub fn assert_same_tree_except(a: &Path, b: &Path, skip: &[&str]) {
    let diffs = diff_trees_except(a, b, skip);
    assert!(
        diffs.is_empty(),
        "{} difference(s) between {} and {}; first ones:\n{}",
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

/// Relative paths (`/`-separated) of everything under `root`, not `root`
/// itself.
pub fn all_paths(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read_dir") {
            let entry = entry.expect("entry");
            let name = entry.file_name().into_string().expect("UTF-8 name");
            let child_rel = join(&rel, &name);
            if entry.file_type().expect("file type").is_dir() {
                stack.push((entry.path(), child_rel.clone()));
            }
            out.insert(child_rel);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Running backupctl.

/// The outcome of one `backupctl` run.
#[derive(Debug)]
pub struct Out {
    pub args: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Out {
    /// Asserts exit status 0.
    pub fn ok(self) -> Out {
        assert_eq!(
            self.code,
            0,
            "backupctl {} failed:\n{}",
            self.args,
            self.describe()
        );
        self
    }

    /// Asserts a non-zero exit status.
    pub fn fails(self) -> Out {
        assert_ne!(
            self.code,
            0,
            "backupctl {} succeeded:\n{}",
            self.args,
            self.describe()
        );
        self
    }

    pub fn describe(&self) -> String {
        format!(
            "exit {} after {:.1?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code,
            self.elapsed,
            truncate(&self.stdout),
            truncate(&self.stderr)
        )
    }

    /// stdout parsed as one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|error| {
            panic!(
                "backupctl {}: stdout is not JSON ({error}):\n{}",
                self.args,
                self.describe()
            )
        })
    }
}

fn truncate(text: &str) -> String {
    if text.len() <= 6000 {
        return text.to_string();
    }
    let mut cut = 6000;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} bytes)", &text[..cut], text.len())
}

/// A `backupctl` command with a clean environment.
pub fn backupctl() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_backupctl"));
    for var in [
        "BACKUP_REPO",
        "BACKUP_PASSWORD",
        "BACKUP_PASSWORD_FILE",
        "BACKUP_LOG",
        "BACKUP_WRITER",
    ] {
        command.env_remove(var);
    }
    command.stdin(Stdio::null());
    command
}

/// Runs a prepared command and collects its output.
pub fn run_command(mut command: Command) -> Out {
    let args = command
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let started = Instant::now();
    let output = command.output().expect("run backupctl");
    Out {
        args,
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// A repository under test, with its password (given in the environment).
#[derive(Debug, Clone)]
pub struct Repo {
    pub path: PathBuf,
    pub password: Option<String>,
}

impl Repo {
    pub fn new(path: PathBuf, password: Option<&str>) -> Repo {
        Repo {
            path,
            password: password.map(str::to_string),
        }
    }

    /// `backupctl SUBCOMMAND --repo PATH ARGS` with the password in the
    /// environment.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        // `--repo` right after the subcommand, so that callers may append
        // more arguments (including option values) to the command.
        let mut args: Vec<std::ffi::OsString> =
            args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let at = args.len().min(1);
        args.insert(at, "--repo".into());
        args.insert(at + 1, self.path.clone().into_os_string());
        let mut command = backupctl();
        command.args(args);
        if let Some(password) = &self.password {
            command.env("BACKUP_PASSWORD", password);
        }
        command
    }

    pub fn run<I, S>(&self, args: I) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_command(self.command(args))
    }

    /// `init`, encrypted when the repository has a password.
    pub fn init(&self) {
        if self.password.is_some() {
            self.run(["init"]).ok();
        } else {
            self.run(["init", "--no-encryption"]).ok();
        }
    }

    /// `backup --json ARGS`, asserting success; returns the JSON summary.
    pub fn backup<I, S>(&self, args: I) -> Value
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = self.command(["backup", "--json"]);
        command.args(args);
        let out = run_command(command).ok();
        let json = out.json();
        assert_eq!(json["status"], "completed", "{}", out.describe());
        json
    }

    /// `list --json`: the backups.
    pub fn list(&self) -> Vec<Value> {
        let out = self.run(["list", "--json"]).ok();
        out.json()
            .as_array()
            .cloned()
            .expect("list --json is an array")
    }

    /// `restore BACKUP --target TARGET ARGS`.
    pub fn restore(&self, backup: &str, target: &Path, extra: &[&str]) -> Out {
        let mut command = self.command(["restore", backup, "--target"]);
        command.arg(target).args(extra);
        run_command(command)
    }
}

/// A number field of a JSON object.
pub fn num(value: &Value, key: &str) -> u64 {
    value[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a number in {value}"))
}

// ---------------------------------------------------------------------------
// Repository objects.

/// Every object of a local repository: (key, file path), sorted by key.
/// Temporary files of interrupted puts are included, keyed as they are.
pub fn repo_objects(repo: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = all_paths(repo)
        .into_iter()
        .map(|rel| (rel.clone(), repo.join(&rel)))
        .filter(|(_, path)| path.is_file())
        .collect();
    out.sort();
    out
}

/// Whether `key` names a pack: `data/<2 hex>/<64 hex>`.
pub fn is_pack_key(key: &str) -> bool {
    let parts: Vec<&str> = key.split('/').collect();
    parts.len() == 3
        && parts[0] == "data"
        && parts[2].len() == 64
        && parts[2].bytes().all(|c| c.is_ascii_hexdigit())
        && parts[2].starts_with(parts[1])
}

/// The packs of a repository with their sizes.
pub fn packs(repo: &Path) -> BTreeMap<String, u64> {
    let data = repo.join("data");
    if !data.exists() {
        return BTreeMap::new();
    }
    let mut out = BTreeMap::new();
    for dir in fs::read_dir(&data).expect("read data/").flatten() {
        let Ok(entries) = fs::read_dir(dir.path()) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let key = format!("data/{}/{name}", dir.file_name().to_string_lossy());
            if is_pack_key(&key) {
                if let Ok(metadata) = entry.metadata() {
                    out.insert(key, metadata.len());
                }
            }
        }
    }
    out
}

/// Copies a directory tree of plain files and directories.
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create copy dir");
    for entry in fs::read_dir(from).expect("read_dir for copy") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// Flips every bit of the byte at `position` of `path`.
pub fn flip_byte(path: &Path, position: usize) {
    let mut bytes = fs::read(path).expect("read object");
    bytes[position] ^= 0xFF;
    fs::write(path, bytes).expect("write object");
}

/// Offsets of `needle` in `haystack`.
pub fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    if needle.is_empty() || haystack.len() < needle.len() {
        return out;
    }
    let first = needle[0];
    let last_start = haystack.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        match haystack[i..=last_start].iter().position(|&b| b == first) {
            Some(p) => {
                let at = i + p;
                if &haystack[at..at + needle.len()] == needle {
                    out.push(at);
                }
                i = at + 1;
            }
            None => break,
        }
    }
    out
}

/// Regular files (relative paths) under `root` whose name contains `part`.
pub fn find_temp_files(root: &Path, part: &str) -> Vec<String> {
    all_paths(root)
        .into_iter()
        .filter(|rel| {
            rel.rsplit('/')
                .next()
                .is_some_and(|name| name.contains(part))
        })
        .collect()
}

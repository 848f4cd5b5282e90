//! Choosing what of a directory tree is backed up, with restic's exclude
//! options and their meaning.
//!
//! - An exclude pattern is matched against the absolute path of each file
//!   and directory met during the walk, split at `/`. A pattern that starts
//!   with `/` must match from the root; any other matches any run of whole
//!   components (`cache` leaves out every file or directory named `cache`,
//!   `src/*.o` every `.o` directly below a `src`). Each component is a glob
//!   as Go's `filepath.Match` takes it (`*`, `?`, `[a-z]`, `[^a-z]`, `\`
//!   escapes); `**` stands for any number of components. A directory left
//!   out is not walked.
//! - `iexclude` patterns match without regard to case.
//! - An exclude file holds one pattern per line; blank lines and lines
//!   starting with `#` are skipped, surrounding white space is trimmed and
//!   `$VAR` / `${VAR}` are replaced from the environment.
//! - `exclude_if_present(NAME[:HEADER])`: a directory holding a file `NAME`
//!   (that starts with `HEADER`, when one is given) is stored with that file
//!   only. `exclude_caches` is `CACHEDIR.TAG` with the signature of the
//!   [Cache Directory Tagging Specification](https://bford.info/cachedir/).
//! - `exclude_larger_than(N)`: everything but directories larger than `N`
//!   bytes is left out.
//! - `one_file_system`: nothing on another file system than the backed-up
//!   path's is stored, but for the mount points themselves, stored as empty
//!   directories.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The signature a `CACHEDIR.TAG` file starts with.
pub const CACHEDIR_TAG_SIGNATURE: &str = "Signature: 8a477f597d28d172789f06886806bc55";

/// What of a directory tree is backed up: restic's `--exclude`,
/// `--iexclude`, `--exclude-file`, `--exclude-if-present`,
/// `--exclude-caches`, `--exclude-larger-than` and `--one-file-system`
/// (the module documentation gives their meaning).
///
/// # Examples
///
/// ```
/// use backup_core::Selection;
/// let selection = Selection::new()
///     .exclude("*.tmp")?
///     .iexclude("/srv/data/CACHE")?
///     .exclude_caches()
///     .exclude_larger_than(1 << 30);
/// assert!(!selection.is_empty());
/// # Ok::<(), backup_core::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    patterns: Vec<Pattern>,
    tags: Vec<TagFile>,
    larger_than: Option<u64>,
    one_file_system: bool,
}

/// An exclude pattern, split into components.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    /// As given, for messages.
    text: String,
    /// Matches from the root only.
    anchored: bool,
    /// Compares lower-cased.
    ignore_case: bool,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// `**`: any number of components.
    Any,
    /// One component's glob.
    Glob(Vec<char>),
}

/// A file whose presence leaves out the rest of its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TagFile {
    name: String,
    header: Option<Vec<u8>>,
}

/// What becomes of one item of a walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Stored (a directory with what it holds).
    Keep,
    /// Left out.
    Skip,
    /// A directory stored without its contents (a mount point).
    Empty,
}

impl Selection {
    /// Everything is backed up.
    pub fn new() -> Self {
        Selection::default()
    }

    /// Whether nothing is left out.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
            && self.tags.is_empty()
            && self.larger_than.is_none()
            && !self.one_file_system
    }

    /// Leaves out what `pattern` matches.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an empty or malformed pattern
    /// (unclosed `[`, a trailing `\`) or a negated one (`!...`), which is
    /// not supported.
    pub fn exclude(self, pattern: &str) -> Result<Self> {
        self.with_pattern(pattern, false)
    }

    /// Leaves out what `pattern` matches, whatever the case.
    ///
    /// # Errors
    ///
    /// As [`exclude`](Self::exclude).
    pub fn iexclude(self, pattern: &str) -> Result<Self> {
        self.with_pattern(pattern, true)
    }

    /// Leaves out what the patterns of the file at `path` match (see the
    /// module documentation for its syntax).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file cannot be read; as
    /// [`exclude`](Self::exclude) for its patterns.
    pub fn exclude_file(self, path: &Path) -> Result<Self> {
        self.with_pattern_file(path, false)
    }

    /// As [`exclude_file`](Self::exclude_file), whatever the case.
    ///
    /// # Errors
    ///
    /// As [`exclude_file`](Self::exclude_file).
    pub fn iexclude_file(self, path: &Path) -> Result<Self> {
        self.with_pattern_file(path, true)
    }

    /// Stores only the file `NAME` of a directory that holds it, given as
    /// `NAME` or `NAME:HEADER` (the file must then start with `HEADER`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when `NAME` is empty or holds a `/`.
    pub fn exclude_if_present(mut self, spec: &str) -> Result<Self> {
        let (name, header) = match spec.split_once(':') {
            Some((name, header)) => (name, Some(header.as_bytes().to_vec())),
            None => (spec, None),
        };
        if name.is_empty() || name.contains('/') {
            return Err(Error::InvalidArgument(format!(
                "exclude-if-present {spec:?}: give a file name, optionally followed by :HEADER"
            )));
        }
        self.tags.push(TagFile {
            name: name.to_string(),
            header,
        });
        Ok(self)
    }

    /// Stores only the `CACHEDIR.TAG` of a directory tagged as a cache.
    pub fn exclude_caches(mut self) -> Self {
        self.tags.push(TagFile {
            name: "CACHEDIR.TAG".into(),
            header: Some(CACHEDIR_TAG_SIGNATURE.as_bytes().to_vec()),
        });
        self
    }

    /// Leaves out everything but directories larger than `bytes`.
    pub fn exclude_larger_than(mut self, bytes: u64) -> Self {
        self.larger_than = Some(bytes);
        self
    }

    /// Stays on each backed-up path's file system (mount points are stored
    /// as empty directories).
    pub fn one_file_system(mut self, yes: bool) -> Self {
        self.one_file_system = yes;
        self
    }

    pub(crate) fn one_file_system_on(&self) -> bool {
        self.one_file_system
    }

    fn with_pattern(mut self, pattern: &str, ignore_case: bool) -> Result<Self> {
        self.patterns.push(Pattern::parse(pattern, ignore_case)?);
        Ok(self)
    }

    fn with_pattern_file(mut self, path: &Path, ignore_case: bool) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| Error::io("cannot read the exclude file", path, source))?;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let pattern = expand_env(line);
            self.patterns.push(
                Pattern::parse(&pattern, ignore_case).map_err(|error| {
                    Error::InvalidArgument(format!("{}: {error}", path.display()))
                })?,
            );
        }
        Ok(self)
    }

    /// What becomes of the item at `path` (absolute), found with
    /// `metadata`, in a walk of a tree whose root is on device `root_dev`.
    pub(crate) fn verdict(
        &self,
        path: &Path,
        metadata: &std::fs::Metadata,
        root_dev: u64,
    ) -> Verdict {
        if !self.patterns.is_empty() {
            let text = path.to_string_lossy();
            let lower = if self.patterns.iter().any(|pattern| pattern.ignore_case) {
                text.to_lowercase()
            } else {
                String::new()
            };
            let exact: Vec<&str> = components(&text);
            let folded: Vec<&str> = components(&lower);
            if self
                .patterns
                .iter()
                .any(|pattern| pattern.matches(if pattern.ignore_case { &folded } else { &exact }))
            {
                return Verdict::Skip;
            }
        }
        if let Some(limit) = self.larger_than {
            if !metadata.is_dir() && metadata.len() > limit {
                return Verdict::Skip;
            }
        }
        if self.one_file_system && metadata.dev() != root_dev {
            return if metadata.is_dir() {
                Verdict::Empty
            } else {
                Verdict::Skip
            };
        }
        Verdict::Keep
    }

    /// Of the names of the directory `dir`'s entries, those kept when a
    /// tag file leaves out the rest, or `None` when none does.
    pub(crate) fn tagged(&self, dir: &Path, names: &[&str]) -> Option<Vec<String>> {
        let present: Vec<&TagFile> = self
            .tags
            .iter()
            .filter(|tag| names.contains(&tag.name.as_str()) && tag.marks(dir))
            .collect();
        if present.is_empty() {
            return None;
        }
        Some(
            names
                .iter()
                .filter(|name| present.iter().all(|tag| tag.name == **name))
                .map(|name| name.to_string())
                .collect(),
        )
    }

    /// Walks the tree at `root` as a backup does, calling `visit` for each
    /// item stored below it (not `root` itself), parents before children.
    /// Items that cannot be read are passed over.
    pub(crate) fn walk(&self, root: &Path, visit: &mut dyn FnMut(&Path, &std::fs::Metadata)) {
        let Ok(metadata) = std::fs::symlink_metadata(root) else {
            return;
        };
        let root_dev = metadata.dev();
        let mut stack = Vec::new();
        if metadata.is_dir() {
            stack.push(root.to_path_buf());
        }
        while let Some(dir) = stack.pop() {
            let Ok(reader) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut names: Vec<String> = reader
                .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .collect();
            names.sort();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            if let Some(kept) = self.tagged(&dir, &refs) {
                names = kept;
            }
            let mut below = Vec::new();
            for name in names {
                let path = dir.join(&name);
                let Ok(metadata) = std::fs::symlink_metadata(&path) else {
                    continue;
                };
                match self.verdict(&path, &metadata, root_dev) {
                    Verdict::Skip => continue,
                    Verdict::Empty => visit(&path, &metadata),
                    Verdict::Keep => {
                        visit(&path, &metadata);
                        if metadata.is_dir() {
                            below.push(path);
                        }
                    }
                }
            }
            stack.extend(below.into_iter().rev());
        }
    }
}

impl TagFile {
    fn marks(&self, dir: &Path) -> bool {
        let path = dir.join(&self.name);
        match &self.header {
            None => std::fs::symlink_metadata(&path).is_ok(),
            Some(header) => {
                use std::io::Read;
                let Ok(file) = std::fs::File::open(&path) else {
                    return false;
                };
                let mut start = Vec::with_capacity(header.len());
                file.take(header.len() as u64)
                    .read_to_end(&mut start)
                    .is_ok()
                    && start == *header
            }
        }
    }
}

/// The components of an absolute path, without the root.
fn components(path: &str) -> Vec<&str> {
    path.split('/').filter(|part| !part.is_empty()).collect()
}

impl Pattern {
    fn parse(text: &str, ignore_case: bool) -> Result<Pattern> {
        let bad = |why: &str| Error::InvalidArgument(format!("exclude pattern {text:?}: {why}"));
        if text.starts_with('!') {
            return Err(bad("negated patterns are not supported"));
        }
        let folded;
        let source = if ignore_case {
            folded = text.to_lowercase();
            folded.as_str()
        } else {
            text
        };
        let mut parts = Vec::new();
        for part in source.split('/') {
            match part {
                "" | "." => {}
                "**" => parts.push(Part::Any),
                glob => {
                    let glob: Vec<char> = glob.chars().collect();
                    check_glob(&glob).map_err(bad)?;
                    parts.push(Part::Glob(glob));
                }
            }
        }
        if parts.is_empty() {
            return Err(bad("an empty pattern matches nothing"));
        }
        Ok(Pattern {
            text: text.to_string(),
            anchored: text.starts_with('/'),
            ignore_case,
            parts,
        })
    }

    fn matches(&self, path: &[&str]) -> bool {
        if self.anchored {
            match_prefix(&self.parts, path)
        } else {
            (0..path.len()).any(|offset| match_prefix(&self.parts, &path[offset..]))
        }
    }
}

/// Whether `parts` match the first components of `path`.
fn match_prefix(parts: &[Part], path: &[&str]) -> bool {
    match parts.split_first() {
        None => true,
        Some((Part::Any, rest)) => (0..=path.len()).any(|skip| match_prefix(rest, &path[skip..])),
        Some((Part::Glob(glob), rest)) => match path.split_first() {
            Some((first, others)) => {
                let name: Vec<char> = first.chars().collect();
                glob_match(glob, &name) && match_prefix(rest, others)
            }
            None => false,
        },
    }
}

/// Checks a component glob is well formed, as Go's `filepath.Match` does.
fn check_glob(glob: &[char]) -> std::result::Result<(), &'static str> {
    let mut at = 0;
    while at < glob.len() {
        match glob[at] {
            '\\' => {
                if at + 1 >= glob.len() {
                    return Err("a trailing \\ escapes nothing");
                }
                at += 2;
            }
            '[' => at = class_end(glob, at).ok_or("unclosed [")?,
            _ => at += 1,
        }
    }
    Ok(())
}

/// The position after the character class that opens at `start`.
fn class_end(glob: &[char], start: usize) -> Option<usize> {
    let mut at = start + 1;
    if glob.get(at) == Some(&'^') {
        at += 1;
    }
    let mut first = true;
    loop {
        match glob.get(at)? {
            ']' if !first => return Some(at + 1),
            ']' => return None,
            '\\' => at += 2,
            _ => at += 1,
        }
        first = false;
    }
}

/// Whether the character class opening at `start` takes `c`.
fn class_takes(glob: &[char], start: usize, end: usize, c: char) -> bool {
    let mut at = start + 1;
    let negated = glob.get(at) == Some(&'^');
    if negated {
        at += 1;
    }
    let mut taken = false;
    let close = end - 1;
    while at < close {
        let (low, next) = escaped(glob, at);
        let (high, next) = if glob.get(next) == Some(&'-') && next + 1 < close {
            escaped(glob, next + 1)
        } else {
            (low, next)
        };
        if low <= c && c <= high {
            taken = true;
        }
        at = next;
    }
    taken != negated
}

fn escaped(glob: &[char], at: usize) -> (char, usize) {
    if glob[at] == '\\' && at + 1 < glob.len() {
        (glob[at + 1], at + 2)
    } else {
        (glob[at], at + 1)
    }
}

/// Go's `filepath.Match` on one component.
fn glob_match(glob: &[char], name: &[char]) -> bool {
    match glob.first() {
        None => name.is_empty(),
        Some('*') => (0..=name.len()).any(|skip| glob_match(&glob[1..], &name[skip..])),
        Some('?') => !name.is_empty() && glob_match(&glob[1..], &name[1..]),
        Some('[') => {
            let Some(end) = class_end(glob, 0) else {
                return false;
            };
            !name.is_empty()
                && class_takes(glob, 0, end, name[0])
                && glob_match(&glob[end..], &name[1..])
        }
        Some(_) => {
            let (c, next) = escaped(glob, 0);
            name.first() == Some(&c) && glob_match(&glob[next..], &name[1..])
        }
    }
}

/// Replaces `$VAR` and `${VAR}` with the environment's values (empty when
/// unset), as restic does in exclude files.
fn expand_env(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let mut name = String::new();
        if chars.peek() == Some(&'{') {
            chars.next();
            for c in chars.by_ref() {
                if c == '}' {
                    break;
                }
                name.push(c);
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' {
                    name.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            if name.is_empty() {
                out.push('$');
                continue;
            }
        }
        out.push_str(&std::env::var(&name).unwrap_or_default());
    }
    out
}

/// How a `files-from` list is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilesFrom {
    /// One pattern per line, blank lines and `#` comments skipped, each
    /// expanded as a glob (restic's `--files-from`).
    Patterns,
    /// One path per line, taken as written; blank lines skipped
    /// (`--files-from-verbatim`).
    Verbatim,
    /// Paths separated by NUL bytes, as `find -print0` writes them
    /// (`--files-from-raw`).
    Raw,
}

/// The paths a `files-from` list at `path` names, read as `how` says.
///
/// # Errors
///
/// [`Error::Io`] when the list cannot be read; [`Error::InvalidArgument`]
/// for a malformed pattern or a path that is not UTF-8.
pub fn files_from(path: &Path, how: FilesFrom) -> Result<Vec<PathBuf>> {
    let bytes = std::fs::read(path).map_err(|source| Error::io("cannot read", path, source))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        Error::InvalidArgument(format!("{}: the list is not UTF-8", path.display()))
    })?;
    let mut out = Vec::new();
    match how {
        FilesFrom::Raw => out.extend(
            text.split('\0')
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
        ),
        FilesFrom::Verbatim => out.extend(
            text.lines()
                .filter(|line| !line.is_empty())
                .map(PathBuf::from),
        ),
        FilesFrom::Patterns => {
            for line in text.lines() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let found = glob_paths(line)?;
                if found.is_empty() {
                    // As a shell does: a pattern that matches nothing is
                    // taken as written, and fails when backed up.
                    out.push(PathBuf::from(line));
                }
                out.extend(found);
            }
        }
    }
    Ok(out)
}

/// The existing paths a glob pattern matches, sorted.
fn glob_paths(pattern: &str) -> Result<Vec<PathBuf>> {
    let bad = |why: &str| Error::InvalidArgument(format!("pattern {pattern:?}: {why}"));
    let absolute = pattern.starts_with('/');
    let mut found = vec![if absolute {
        PathBuf::from("/")
    } else {
        PathBuf::new()
    }];
    for part in pattern.split('/').filter(|part| !part.is_empty()) {
        let glob: Vec<char> = part.chars().collect();
        check_glob(&glob).map_err(bad)?;
        let literal = !glob.iter().any(|c| matches!(c, '*' | '?' | '[' | '\\'));
        let mut next = Vec::new();
        for base in found {
            if literal {
                let path = base.join(part);
                if std::fs::symlink_metadata(&path).is_ok() {
                    next.push(path);
                }
                continue;
            }
            let listed = if base.as_os_str().is_empty() {
                Path::new(".")
            } else {
                base.as_path()
            };
            let Ok(reader) = std::fs::read_dir(listed) else {
                continue;
            };
            let mut names: Vec<String> = reader
                .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .filter(|name| {
                    let chars: Vec<char> = name.chars().collect();
                    glob_match(&glob, &chars)
                })
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|name| base.join(name)));
        }
        found = next;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, path: &str) -> bool {
        Pattern::parse(pattern, false)
            .unwrap()
            .matches(&components(path))
    }

    #[test]
    fn patterns_match_as_restic_matches_them() {
        assert!(matches("*.log", "/srv/app/x.log"));
        assert!(!matches("*.log", "/srv/app/x.log.1"));
        assert!(matches("cache", "/srv/cache"));
        assert!(matches("cache", "/srv/cache/a/b"));
        assert!(matches("app/*.log", "/srv/app/x.log"));
        assert!(!matches("app/*.log", "/srv/app/sub/x.log"));
        assert!(matches("app/**/*.log", "/srv/app/sub/deep/x.log"));
        assert!(matches("app/**/*.log", "/srv/app/x.log"));
        assert!(matches("/srv/app", "/srv/app/x"));
        assert!(!matches("/app", "/srv/app"));
        assert!(matches("f?o[0-9]", "/a/foo7"));
        assert!(!matches("f?o[^0-9]", "/a/foo7"));
        assert!(matches("\\*", "/a/*"));
        assert!(!matches("\\*", "/a/b"));
        assert!(matches("**", "/a"));
        assert!(Pattern::parse("[a", false).is_err());
        assert!(Pattern::parse("a\\", false).is_err());
        assert!(Pattern::parse("!a", false).is_err());
        assert!(Pattern::parse("/", false).is_err());
        let folded = Pattern::parse("*.JPG", true).unwrap();
        assert!(folded.matches(&components("/p/x.jpg")));
    }

    #[test]
    fn environment_variables_are_expanded() {
        std::env::set_var("SELECT_TEST_DIR", "/srv");
        assert_eq!(expand_env("$SELECT_TEST_DIR/a"), "/srv/a");
        assert_eq!(expand_env("${SELECT_TEST_DIR}x"), "/srvx");
        assert_eq!(expand_env("a$"), "a$");
        assert_eq!(expand_env("$SELECT_TEST_UNSET_X/b"), "/b");
    }
}

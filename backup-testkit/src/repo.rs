//! Looking at (and damaging) a repository's objects on disk: a local
//! repository, or the directory of a server that keeps objects as files;
//! and verifying a repository through the library.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use backup_core::{Repository, VerifyOptions, VerifyReport};

use crate::tree::all_paths;

/// Verifies `repo` reading every pack's data, and returns the report.
///
/// # Panics
///
/// When verifying fails to run at all (a problem found is in the report).
pub async fn verify_data(repo: &Repository) -> VerifyReport {
    let options = VerifyOptions::default().with_read_data(true);
    repo.verify(&options)
        .await
        .unwrap_or_else(|error| panic!("verify --read-data could not run: {error}"))
}

/// Every object below `repo`: (key, file path), sorted by key. Temporary
/// files of interrupted puts are included, keyed as they are.
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

/// The packs below `repo`, with their sizes (none when there is no `data/`).
pub fn packs(repo: &Path) -> BTreeMap<String, u64> {
    let data = repo.join("data");
    let mut out = BTreeMap::new();
    let Ok(dirs) = fs::read_dir(&data) else {
        return out;
    };
    for dir in dirs.flatten() {
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

/// The bytes of all packs below `repo`.
pub fn pack_bytes(repo: &Path) -> u64 {
    packs(repo).values().sum()
}

/// Flips every bit of the byte at `position` of the file `path`.
///
/// # Panics
///
/// When the file cannot be read or written, or is too short.
pub fn flip_byte(path: &Path, position: usize) {
    let mut bytes =
        fs::read(path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    let byte = bytes
        .get_mut(position)
        .unwrap_or_else(|| panic!("{} has no byte {position}", path.display()));
    *byte ^= 0xFF;
    fs::write(path, bytes).unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
}

/// Offsets of every occurrence of `needle` in `haystack`.
pub fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let Some(&first) = needle.first() else {
        return out;
    };
    let Some(last_start) = haystack.len().checked_sub(needle.len()) else {
        return out;
    };
    // Jump from one occurrence of the first byte to the next: fast on
    // incompressible data even in a debug build.
    let mut from = 0;
    while from <= last_start {
        let Some(offset) = haystack[from..=last_start].iter().position(|&b| b == first) else {
            break;
        };
        let at = from + offset;
        if &haystack[at..at + needle.len()] == needle {
            out.push(at);
        }
        from = at + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needles_are_found_where_they_are() {
        assert_eq!(find_all(b"abcabca", b"ca"), vec![2, 5]);
        assert_eq!(find_all(b"aaa", b"aa"), vec![0, 1]);
        assert!(find_all(b"abc", b"").is_empty());
        assert!(find_all(b"a", b"abc").is_empty());
    }

    #[test]
    fn pack_keys_are_recognised() {
        let name = "ab".to_owned() + &"0".repeat(62);
        assert!(is_pack_key(&format!("data/ab/{name}")));
        assert!(!is_pack_key(&format!("data/cd/{name}")));
        assert!(!is_pack_key("index/ab"));
    }
}

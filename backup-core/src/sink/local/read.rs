//! Reading objects and listing the files below the root.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::Path;

use bytes::Bytes;

use crate::sink::support::{clamp_range, is_temp_name, list_descends, list_start};
use crate::sink::ObjectMeta;
use crate::{Error, Result};

/// Whether an io error means "no object here".
pub(super) fn is_missing(error: &io::Error) -> bool {
    // NotADirectory: a parent path is a file, so the key cannot exist.
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Maps an error of a read-side operation.
pub(super) fn read_error(
    context: &'static str,
    key: &str,
    path: &Path,
    source: io::Error,
) -> Error {
    if is_missing(&source) {
        Error::NotFound {
            key: key.to_owned(),
        }
    } else {
        Error::io(context, path, source)
    }
}

/// Reads the whole object or `range` of it.
pub(super) fn read_file(key: &str, path: &Path, range: Option<Range<u64>>) -> Result<Bytes> {
    let mut file = File::open(path).map_err(|e| read_error("opening object", key, path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| read_error("reading metadata of", key, path, e))?;
    if !meta.is_file() {
        return Err(Error::NotFound {
            key: key.to_owned(),
        });
    }
    let range = match range {
        Some(range) => clamp_range(key, range, meta.len())?,
        None => 0..meta.len(),
    };
    let len = usize::try_from(range.end - range.start).map_err(|_| {
        Error::InvalidArgument(format!(
            "range of {key} is too large for this platform's memory"
        ))
    })?;
    if range.start > 0 {
        file.seek(SeekFrom::Start(range.start))
            .map_err(|e| Error::io("seeking in object", path, e))?;
    }
    let mut buffer = vec![0; len];
    file.read_exact(&mut buffer)
        .map_err(|e| Error::io("reading object", path, e))?;
    Ok(Bytes::from(buffer))
}

/// Lists the files below `root` whose keys start with `prefix`.
pub(super) fn list_files(root: &Path, prefix: &str) -> Result<Vec<ObjectMeta>> {
    let Some(dir_key) = list_start(prefix) else {
        return Ok(Vec::new());
    };
    let mut start = root.to_path_buf();
    if !dir_key.is_empty() {
        start.extend(dir_key.split('/'));
    }
    let start_key = if dir_key.is_empty() {
        String::new()
    } else {
        format!("{dir_key}/")
    };

    let mut objects = Vec::new();
    // Directories still to read, with the key prefix of their entries.
    let mut pending = vec![(start, start_key)];
    while let Some((dir, dir_key)) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            // Missing (or removed meanwhile, or a file): nothing below it.
            Err(e) if is_missing(&e) => continue,
            Err(e) => return Err(Error::io("listing directory", dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("listing directory", &dir, e))?;
            // Names that are not UTF-8 cannot be keys we wrote.
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let key = format!("{dir_key}{name}");
            let path = entry.path();
            let file_type = match entry.file_type() {
                Ok(file_type) => file_type,
                Err(e) if is_missing(&e) => continue,
                Err(e) => return Err(Error::io("listing directory", path, e)),
            };
            let (is_dir, is_file) = if file_type.is_symlink() {
                // Follow links, as get and put do.
                match fs::metadata(&path) {
                    Ok(meta) => (meta.is_dir(), meta.is_file()),
                    Err(e) if is_missing(&e) => continue,
                    Err(e) => return Err(Error::io("listing directory", path, e)),
                }
            } else {
                (file_type.is_dir(), file_type.is_file())
            };
            if is_dir {
                let sub_key = format!("{key}/");
                if list_descends(&sub_key, prefix) {
                    pending.push((path, sub_key));
                }
            } else if is_file && !is_temp_name(&name) && key.starts_with(prefix) {
                let size = match fs::metadata(&path) {
                    Ok(meta) => meta.len(),
                    // Deleted since the directory was read.
                    Err(e) if is_missing(&e) => continue,
                    Err(e) => return Err(Error::io("reading metadata of", path, e)),
                };
                objects.push(ObjectMeta { key, size });
            }
        }
    }
    objects.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    Ok(objects)
}

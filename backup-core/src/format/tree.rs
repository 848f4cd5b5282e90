//! Directory metadata.
//!
//! A directory is serialised as JSON Lines, one [`Node`] per line, sorted by
//! name, and the serialisation is split by the content-defined chunker (with
//! small chunk sizes) into tree blobs. A directory is referenced by the list
//! of its tree chunk ids, so an unchanged directory costs nothing to store
//! again, and a change to one entry of a huge directory rewrites only the
//! chunk or two around it.

use serde::{Deserialize, Serialize};

use crate::{Error, Id, Result};

/// What a node is. Other kinds (devices, FIFOs, sockets) are not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A regular file, or a byte stream stored as a file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
}

/// One entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// File name: UTF-8, not empty, no `/` or NUL, not `.` or `..`.
    pub name: String,
    /// File, directory or symlink.
    #[serde(rename = "type")]
    pub kind: NodeKind,
    /// Permission bits (`mode & 0o7777`).
    pub mode: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Size in bytes (files only).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    /// Owner user id, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Owner group id, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// Inode number at backup time (change detection only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inode: Option<u64>,
    /// Status change time at backup time, ns (change detection only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctime_ns: Option<i64>,
    /// Files with more than one hard link: the link count at backup time
    /// (manifest version 2). Nodes with the same `dev` and `inode` and a
    /// `links` are one file, restored as hard links of each other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<u64>,
    /// The device the file was on at backup time, with `links` (manifest
    /// version 2; hard links only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<u64>,
    /// Chunk ids of the content, in order (files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<Id>,
    /// Tree chunk ids of the directory's own listing (directories).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<Vec<Id>>,
    /// Link target (symlinks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Extended attributes, POSIX ACLs among them
    /// (`system.posix_acl_access`, `system.posix_acl_default`), sorted by
    /// name (manifest version 2; files and directories).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<Xattr>,
}

/// One extended attribute of a file or directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    /// Its name, with its namespace (`user.mime_type`,
    /// `system.posix_acl_access`).
    pub name: String,
    /// Its value, as bytes (hex in the listing).
    #[serde(with = "hex_bytes")]
    pub value: Vec<u8>,
}

/// The longest extended attribute value read or restored (the Linux limit).
pub const MAX_XATTR_VALUE: usize = 64 * 1024;

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &[u8], out: S) -> Result<S::Ok, S::Error> {
        out.serialize_str(&hex::encode(value))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(input: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(input)?;
        if text.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(serde::de::Error::custom("hex must be lowercase"));
        }
        hex::decode(text.as_bytes()).map_err(serde::de::Error::custom)
    }
}

impl Node {
    /// Whether this node holds a field of manifest version 2 (hard links,
    /// extended attributes), which readers of version 1 do not know.
    pub fn needs_version_2(&self) -> bool {
        self.links.is_some() || self.dev.is_some() || !self.xattrs.is_empty()
    }
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// Checks a file name is safe to join to a directory path.
///
/// # Errors
///
/// [`Error::UnsafePath`] saying why.
///
/// # Examples
///
/// ```
/// use backup_core::internals::tree::validate_name;
/// assert!(validate_name("report.txt").is_ok());
/// assert!(validate_name("..").is_err());
/// assert!(validate_name("a/b").is_err());
/// ```
pub fn validate_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("empty name")
    } else if name == "." || name == ".." {
        Some("'.' and '..' are not allowed")
    } else if name.contains('/') {
        Some("a name may not contain '/'")
    } else if name.contains('\0') {
        Some("a name may not contain NUL")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::UnsafePath {
            path: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Serialises a directory's nodes (sorted by name) as JSON Lines.
///
/// # Errors
///
/// [`Error::InvalidArgument`] if two nodes share a name.
pub fn encode(nodes: &mut [Node]) -> Result<Vec<u8>> {
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(pair) = nodes
        .windows(2)
        .find(|pair| pair.first().map(|n| &n.name) == pair.get(1).map(|n| &n.name))
    {
        let name = pair.first().map(|n| n.name.clone()).unwrap_or_default();
        return Err(Error::InvalidArgument(format!(
            "duplicate entry {name:?} in a directory"
        )));
    }
    let mut out = Vec::new();
    for node in nodes.iter() {
        serde_json::to_writer(&mut out, node).map_err(|error| {
            Error::InvalidArgument(format!("encoding {:?}: {error}", node.name))
        })?;
        out.push(b'\n');
    }
    Ok(out)
}

/// Parses and validates a directory listing.
///
/// Refuses unsafe names, duplicate or unsorted names, and nodes whose fields
/// do not fit their kind, so that restore never has to trust a tree.
///
/// # Errors
///
/// [`Error::Corrupt`] naming `what` (the directory's path) and the line.
pub fn decode(what: &str, bytes: &[u8]) -> Result<Vec<Node>> {
    let mut nodes: Vec<Node> = Vec::new();
    let mut offset = 0u64;
    for line in bytes.split(|byte| *byte == b'\n') {
        let line_offset = offset;
        offset += line.len() as u64 + 1;
        if line.is_empty() {
            continue;
        }
        let corrupt =
            |detail: String| Error::corrupt(format!("tree of {what:?}"), line_offset, detail);
        let node: Node = serde_json::from_slice(line)
            .map_err(|error| corrupt(format!("invalid entry: {error}")))?;
        validate_name(&node.name).map_err(|error| corrupt(error.to_string()))?;
        if let Some(previous) = nodes.last() {
            if previous.name >= node.name {
                return Err(corrupt(format!(
                    "entry {:?} is duplicated or out of order",
                    node.name
                )));
            }
        }
        let consistent = match node.kind {
            NodeKind::File => node.subtree.is_none() && node.target.is_none(),
            NodeKind::Dir => {
                node.subtree.is_some()
                    && node.content.is_empty()
                    && node.target.is_none()
                    && node.size == 0
            }
            NodeKind::Symlink => {
                node.target.is_some()
                    && node.content.is_empty()
                    && node.subtree.is_none()
                    && node.size == 0
            }
        };
        // Hard-link fields: files only, both or neither, two links or more;
        // extended attributes: files and directories.
        let links_fit = match node.kind {
            NodeKind::File => {
                node.links.is_some() == node.dev.is_some()
                    && node.links.is_none_or(|links| links >= 2)
            }
            NodeKind::Dir | NodeKind::Symlink => node.links.is_none() && node.dev.is_none(),
        };
        let xattrs_fit = node.kind != NodeKind::Symlink || node.xattrs.is_empty();
        if !consistent || !links_fit || !xattrs_fit || node.mode > 0o7777 {
            return Err(corrupt(format!(
                "entry {:?} has fields that do not fit its type",
                node.name
            )));
        }
        if let Some(bad) = node.xattrs.iter().find(|xattr| {
            xattr.name.is_empty()
                || xattr.name.contains('\0')
                || xattr.value.len() > MAX_XATTR_VALUE
        }) {
            return Err(corrupt(format!(
                "entry {:?} has an invalid extended attribute {:?}",
                node.name, bad.name
            )));
        }
        if node
            .xattrs
            .windows(2)
            .any(|pair| pair[0].name >= pair[1].name)
        {
            return Err(corrupt(format!(
                "entry {:?} has extended attributes duplicated or out of order",
                node.name
            )));
        }
        nodes.push(node);
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str) -> Node {
        Node {
            name: name.into(),
            kind: NodeKind::File,
            mode: 0o644,
            mtime_ns: 1,
            size: 0,
            uid: None,
            gid: None,
            inode: None,
            ctime_ns: None,
            content: vec![],
            subtree: None,
            target: None,
            links: None,
            dev: None,
            xattrs: Vec::new(),
        }
    }

    #[test]
    fn round_trip_sorted_and_hostile_names_refused() {
        let mut nodes = vec![file("b"), file("a"), file("日本")];
        let bytes = encode(&mut nodes).unwrap();
        assert_eq!(decode("/", &bytes).unwrap(), nodes);
        for bad in ["..", "a/b", ""] {
            let line = serde_json::to_vec(&file(bad)).unwrap();
            assert!(decode("/", &line).is_err(), "{bad:?} accepted");
        }
        let mut dup = serde_json::to_vec(&file("a")).unwrap();
        dup.push(b'\n');
        dup.extend(serde_json::to_vec(&file("a")).unwrap());
        assert!(decode("/", &dup).is_err());
        assert!(encode(&mut [file("x"), file("x")]).is_err());
    }

    #[test]
    fn hard_link_and_xattr_fields_round_trip_and_misfits_are_refused() {
        let mut linked = file("a");
        linked.links = Some(2);
        linked.dev = Some(2049);
        linked.inode = Some(77);
        linked.xattrs = vec![
            Xattr {
                name: "system.posix_acl_access".into(),
                value: vec![2, 0, 0, 0],
            },
            Xattr {
                name: "user.z".into(),
                value: b"last".to_vec(),
            },
        ];
        assert!(linked.needs_version_2());
        assert!(!file("b").needs_version_2());
        let bytes = encode(&mut [linked.clone()]).unwrap();
        let line = String::from_utf8(bytes.clone()).unwrap();
        assert!(line.contains(r#""links":2,"dev":2049"#), "{line}");
        assert!(line.ends_with(r#""xattrs":[{"name":"system.posix_acl_access","value":"02000000"},{"name":"user.z","value":"6c617374"}]}
"#), "{line}");
        assert_eq!(decode("/", &bytes).unwrap(), vec![linked.clone()]);
        // An old listing reads as it did: no new field, same bytes.
        let plain = encode(&mut [file("b")]).unwrap();
        assert_eq!(
            plain,
            br#"{"name":"b","type":"file","mode":420,"mtime_ns":1}
"#
        );
        let refused = |node: &Node| decode("/", &serde_json::to_vec(node).unwrap()).is_err();
        let mut one_link = linked.clone();
        one_link.links = Some(1);
        assert!(refused(&one_link));
        let mut no_dev = linked.clone();
        no_dev.dev = None;
        assert!(refused(&no_dev));
        let mut unsorted = linked.clone();
        unsorted.xattrs.reverse();
        assert!(refused(&unsorted));
        let mut symlink = file("l");
        symlink.kind = NodeKind::Symlink;
        symlink.target = Some("a".into());
        symlink.xattrs = linked.xattrs.clone();
        assert!(refused(&symlink));
        let mut dir = file("d");
        dir.kind = NodeKind::Dir;
        dir.subtree = Some(vec![]);
        dir.links = Some(2);
        dir.dev = Some(1);
        assert!(refused(&dir));
        let upper = br#"{"name":"a","type":"file","mode":420,"mtime_ns":1,"xattrs":[{"name":"user.a","value":"AB"}]}"#;
        assert!(decode("/", upper).is_err());
    }
}

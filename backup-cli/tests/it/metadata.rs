//! What a file is besides its bytes: hard links, extended attributes,
//! POSIX ACLs and sparse files survive a backup and a restore
//! (`getfattr` and `getfacl` from Debian's attr and acl packages, installed
//! by scripts/install-test-servers.sh, compare them); and a file that
//! changes on every read is reported, never stored half old, half new.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::Repo;

const PASSWORD: &str = "metadata test password";

/// Runs `program ARGS` in `dir`, asserting success; its stdout.
fn output_in(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|error| panic!("{program}: {error}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Each regular file's link count and the group of paths that share its
/// inode (names relative to `root`).
fn link_groups(root: &Path) -> BTreeMap<String, (u64, Vec<String>)> {
    let mut by_inode: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut counts = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let metadata = fs::symlink_metadata(&path).unwrap();
            let relative = path.strip_prefix(root).unwrap().display().to_string();
            if metadata.is_dir() {
                stack.push(path);
            } else if metadata.is_file() {
                by_inode
                    .entry(metadata.ino())
                    .or_default()
                    .push(relative.clone());
                counts.insert(relative, (metadata.nlink(), metadata.ino()));
            }
        }
    }
    counts
        .into_iter()
        .map(|(path, (links, inode))| {
            let mut group = by_inode[&inode].clone();
            group.sort();
            (path, (links, group))
        })
        .collect()
}

#[test]
fn hard_links_xattrs_acls_and_sparse_files_round_trip() {
    let scratch = tempfile::tempdir().unwrap();
    let source = scratch.path().join("tree");
    fs::create_dir_all(source.join("sub/deeper")).unwrap();
    fs::create_dir_all(source.join("shared")).unwrap();

    // Three names of one file, two of another, and a file alone.
    fs::write(source.join("original.txt"), b"one file, three names\n").unwrap();
    fs::hard_link(source.join("original.txt"), source.join("sub/second.txt")).unwrap();
    fs::hard_link(
        source.join("original.txt"),
        source.join("sub/deeper/third.txt"),
    )
    .unwrap();
    fs::write(source.join("pair-a.bin"), vec![9u8; 100_000]).unwrap();
    fs::hard_link(source.join("pair-a.bin"), source.join("sub/pair-b.bin")).unwrap();
    fs::write(source.join("alone.txt"), b"no other name").unwrap();

    // Extended attributes on a file and a directory, ACLs on both (a
    // default ACL on the directory).
    for (path, name, value) in [
        ("alone.txt", "user.mime_type", "text/plain"),
        ("alone.txt", "user.checksum", "0xdeadbeef"),
        ("sub", "user.project", "metadata"),
    ] {
        output_in(&source, "setfattr", &["-n", name, "-v", value, path]);
    }
    output_in(
        &source,
        "setfacl",
        &["-m", "u:nobody:r--,g:daemon:rw-", "original.txt"],
    );
    output_in(&source, "setfacl", &["-m", "u:nobody:rwx", "shared"]);
    output_in(&source, "setfacl", &["-d", "-m", "g:daemon:r-x", "shared"]);
    fs::write(
        source.join("shared/inside.txt"),
        b"inherits the default ACL",
    )
    .unwrap();

    // A sparse file: 64 MiB long, 1 MiB of data in the middle, a hole at
    // the end.
    let sparse_size = 64 << 20;
    {
        let mut file = fs::File::create(source.join("sparse.img")).unwrap();
        file.set_len(sparse_size).unwrap();
        file.seek(SeekFrom::Start(20 << 20)).unwrap();
        file.write_all(&vec![0xA5u8; 1 << 20]).unwrap();
    }
    let sparse_blocks = fs::metadata(source.join("sparse.img")).unwrap().blocks();
    assert!(
        sparse_blocks * 512 < 4 << 20,
        "the source is not sparse here"
    );

    let repo = Repo::new(scratch.path().join("repo"), Some(PASSWORD));
    repo.init();
    let summary = repo.backup([source.as_os_str()]);
    let id = summary["id"].as_str().unwrap().to_owned();
    let show = repo.run(["show", "--json", &id]).ok().json();
    assert_eq!(
        show["version"], 2,
        "a backup with hard links and xattrs: {show}"
    );

    let target = scratch.path().join("restored");
    let out = repo.restore(&id, &target, &["--json"]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let restored = target.join("tree");

    // Hard links: the same link counts and the same groups of names.
    let (before, after) = (link_groups(&source), link_groups(&restored));
    assert_eq!(after, before);
    assert_eq!(after["original.txt"].0, 3);
    assert_eq!(after["sub/pair-b.bin"].1, ["pair-a.bin", "sub/pair-b.bin"]);
    // Extended attributes and ACLs: what getfattr and getfacl print.
    let dump = |root: &Path| output_in(root, "getfattr", &["-R", "-d", "-m", "-", "."]);
    let acls = |root: &Path| output_in(root, "getfacl", &["-R", "."]);
    let (xattrs, acl) = (dump(&source), acls(&source));
    assert!(xattrs.contains("user.mime_type=\"text/plain\""), "{xattrs}");
    assert!(acl.contains("default:group:daemon:r-x"), "{acl}");
    assert_eq!(dump(&restored), xattrs);
    assert_eq!(acls(&restored), acl);
    // The sparse file: the same bytes, in well under its size on disk.
    let restored_sparse = restored.join("sparse.img");
    let metadata = fs::metadata(&restored_sparse).unwrap();
    assert_eq!(metadata.len(), sparse_size);
    assert!(
        metadata.blocks() * 512 < sparse_size / 8,
        "restored sparse file takes {} bytes",
        metadata.blocks() * 512
    );
    assert_eq!(
        fs::read(&restored_sparse).unwrap(),
        fs::read(source.join("sparse.img")).unwrap()
    );

    // A backup of a tree without any of them stays readable by readers of
    // manifest version 1.
    let plain = scratch.path().join("plain");
    fs::create_dir(&plain).unwrap();
    fs::write(plain.join("file.txt"), b"nothing special").unwrap();
    let summary = repo.backup([plain.as_os_str()]);
    let show = repo
        .run(["show", "--json", summary["id"].as_str().unwrap()])
        .ok()
        .json();
    assert_eq!(show["version"], 1, "{show}");
}

#[test]
fn a_file_rewritten_during_every_read_is_reported_not_stored() {
    let scratch = tempfile::tempdir().unwrap();
    let source = scratch.path().join("tree");
    fs::create_dir(&source).unwrap();
    fs::write(source.join("steady.txt"), b"never changes").unwrap();
    let busy = source.join("busy.log");
    let size = 48 << 20;
    fs::write(&busy, vec![b'A'; size]).unwrap();

    // A writer that rewrites the file in place, with a new letter on every
    // pass, until the backup is over.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, busy) = (stop.clone(), busy.clone());
        std::thread::spawn(move || {
            let file = fs::OpenOptions::new().write(true).open(&busy).unwrap();
            let mut letter = b'A';
            let block = 1 << 20;
            while !stop.load(Ordering::Relaxed) {
                letter = if letter == b'Z' { b'A' } else { letter + 1 };
                let data = vec![letter; block];
                // Whole passes only: once stopped, the file is one letter.
                for at in (0..size).step_by(block) {
                    file.write_all_at(&data, at as u64).unwrap();
                }
            }
        })
    };
    let repo = Repo::new(scratch.path().join("repo"), Some(PASSWORD));
    repo.init();
    let out = repo.run(["backup".as_ref(), "--json".as_ref(), source.as_os_str()]);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    // Partly failed: the busy file is named, with why.
    assert_eq!(out.code, Some(3), "{}", out.describe());
    let summary = out.json();
    let errors = summary["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{summary}");
    assert!(errors[0]["path"].as_str().unwrap().ends_with("busy.log"));
    assert_eq!(errors[0]["kind"], "changed", "{summary}");
    let id = summary["id"].as_str().unwrap();
    let target = scratch.path().join("restored");
    let restore = repo.restore(id, &target, &[]);
    assert_eq!(restore.code, Some(0), "{}", restore.describe());
    assert_eq!(
        fs::read(target.join("tree/steady.txt")).unwrap(),
        b"never changes"
    );
    assert!(!target.join("tree/busy.log").exists());

    // Once it is quiet it is stored, and is one version of the file, all
    // one letter.
    let summary = repo.backup([source.as_os_str()]);
    let again = scratch.path().join("again");
    let restore = repo.restore(summary["id"].as_str().unwrap(), &again, &[]);
    assert_eq!(restore.code, Some(0), "{}", restore.describe());
    let content = fs::read(again.join("tree/busy.log")).unwrap();
    assert_eq!(content.len(), size);
    assert!(content.iter().all(|byte| *byte == content[0]));
}

use std::os::unix::fs::FileExt as _;

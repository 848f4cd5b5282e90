//! The generator and the comparisons, on real trees.

use std::os::unix::fs::MetadataExt;

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
        .find(|rel| fs::metadata(b.join(rel)).is_ok_and(|m| m.len() > 0 && m.mode() & 0o200 != 0))
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

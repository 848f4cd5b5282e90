//! Bandwidth limits end to end: `--limit-upload` on a backup and
//! `--limit-download` on a restore of 50 MiB of incompressible data into
//! and out of a local repository, each rate measured as the bytes the
//! repository took (or holds) over the time of the transfer; and the
//! environment's `BACKUP_LIMIT_UPLOAD`.
//!
//! The repository is unencrypted, so that no key derivation adds to a
//! command's time, and the limited transfers take 25 s and 12.5 s: start-up
//! and the bucket's first quarter second are a few percent of that, inside
//! the 10% the rates are held to even on a loaded machine.

use std::path::Path;
use std::time::Instant;

use backup_testkit::backupctl::{num, Backupctl};
use backup_testkit::repo::repo_objects;
use backup_testkit::tree::{assert_same_contents, generate_bulk};
use backup_testkit::{KIB, MIB};

use crate::Repo;

/// The bytes of every object of the repository at `repo`.
fn stored_bytes(repo: &Path) -> u64 {
    repo_objects(repo)
        .iter()
        .map(|(_, path)| std::fs::metadata(path).unwrap().len())
        .sum()
}

/// Asserts that `bytes` over `seconds` is within 10% of `kib_per_second`.
fn assert_rate(what: &str, bytes: u64, seconds: f64, kib_per_second: u64) {
    let rate = bytes as f64 / seconds / KIB as f64;
    println!(
        "{what}: {:.1} MiB in {seconds:.2} s: {rate:.0} KiB/s (limit {kib_per_second} KiB/s)",
        bytes as f64 / MIB as f64
    );
    let expected = kib_per_second as f64;
    assert!(
        (rate - expected).abs() <= expected * 0.10,
        "{what}: {rate:.0} KiB/s is not within 10% of the limit of {kib_per_second} KiB/s \
         ({bytes} bytes in {seconds:.2} s)"
    );
}

#[test]
fn backup_and_restore_keep_to_their_limits() {
    let place = tempfile::tempdir().unwrap();
    let source = place.path().join("source");
    // Ten files of 5 MiB: a few packs, each streamed to the repository.
    let size = generate_bulk(&source, 0x11_417, 10, 5 * MIB);
    let repo = Repo::new(place.path().join("repo"), None);
    repo.init();
    let before = stored_bytes(&repo.path);

    let summary = repo.backup([
        "--limit-upload".as_ref(),
        "2048".as_ref(),
        source.as_os_str(),
    ]);
    let uploaded = stored_bytes(&repo.path) - before;
    assert!(uploaded >= size, "{uploaded} bytes stored for {size}");
    assert!(num(&summary, "bytes_added") >= size, "{summary}");
    // The backup's own clock: from its start to its manifest, without the
    // process's start-up.
    let seconds = summary["duration_seconds"].as_f64().unwrap();
    assert_rate("backup --limit-upload 2048", uploaded, seconds, 2048);

    let target = place.path().join("restored");
    let id = summary["id"].as_str().unwrap();
    let started = Instant::now();
    repo.restore(id, &target, &["--limit-download", "4096"])
        .ok();
    let seconds = started.elapsed().as_secs_f64();
    // A restore reads every pack once, and the index, manifest and trees:
    // the whole repository, but for its config.
    assert_rate(
        "restore --limit-download 4096",
        stored_bytes(&repo.path),
        seconds,
        4096,
    );
    assert_same_contents(&source, &target.join("source"));
}

#[test]
fn limits_come_from_the_environment_too_and_must_be_numbers() {
    let place = tempfile::tempdir().unwrap();
    let source = place.path().join("source");
    // 1 MiB at 512 KiB/s: at least 1.5 s, less the burst of 128 KiB.
    generate_bulk(&source, 0x11_418, 1, MIB);
    let repo = Repo::new(place.path().join("repo"), None);
    repo.init();
    let limited = Backupctl::clone(&repo).env("BACKUP_LIMIT_UPLOAD", "512");
    let summary = limited.backup([source.as_os_str()]);
    let seconds = summary["duration_seconds"].as_f64().unwrap();
    assert!(
        seconds >= 1.6,
        "1 MiB at BACKUP_LIMIT_UPLOAD=512 took {seconds} s"
    );

    for option in ["--limit-upload", "--limit-download"] {
        let out = repo.run(["list", option, "fast"]).fails();
        assert!(
            out.stderr.contains(option) && out.stderr.contains("fast"),
            "{}",
            out.describe()
        );
    }
}

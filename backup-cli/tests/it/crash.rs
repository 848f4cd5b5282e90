//! The crash test: `backupctl backup` killed with SIGKILL at random moments
//! of its progress, many times, on a local repository and on S3 (s3s-fs on
//! 127.0.0.1).
//!
//! After each kill: the repository verifies (`verify --read-data`), the
//! earlier backup restores exactly, the killed backup is not listed, and a
//! rerun completes, restores exactly and reuses what the killed run already
//! stored: after a kill past the halfway point, the rerun uploads less than
//! half the data again.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use backup_testkit::backupctl::{num, Backupctl};
use backup_testkit::repo::pack_bytes;
use backup_testkit::server::s3::start_s3s_fs;
use backup_testkit::tree::{assert_same_tree, generate_bulk};
use backup_testkit::{TestRng, KIB, MIB};

use crate::backupctl;

struct Target {
    name: &'static str,
    cli: Backupctl,
    /// Where the repository's objects are on disk.
    objects: PathBuf,
}

/// The trials of one target. Returns a line per trial.
fn trials(target: &Target, scratch: &Path, count: u64, seed: u64) -> Vec<String> {
    let small = scratch.join("small");
    generate_bulk(&small, seed ^ 0xABCD, 3, 64 * KIB);
    let cli = &target.cli;
    cli.init(false);
    let first = cli.backup([small.as_os_str()]);
    let first_id = first["id"].as_str().unwrap().to_string();

    let mut rng = TestRng::new(seed);
    let mut lines = Vec::new();
    let mut past_half = 0;
    let mut seen = std::collections::HashSet::new();
    for trial in 0..count {
        // Fresh content each trial, so the rerun's reuse comes only from
        // what the killed run stored.
        let version = scratch.join(format!("big-{trial}"));
        let total = generate_bulk(&version, seed + 1000 + trial, 24, 4 * MIB);
        // The backup is killed when the data it stored first passes a
        // random share of the whole: below half in odd trials (from the
        // very start, before anything is stored), above half in even ones
        // (up to the end, while the manifest is written or the process
        // exits).
        let share = rng.below(1000) as f64 / 1000.0;
        let share = if trial % 2 == 1 {
            share / 2.0
        } else {
            0.5 + share / 2.0
        };
        let before = pack_bytes(&target.objects);
        let listed_before = cli.run(["list", "--json"]).json().as_array().unwrap().len();

        let threshold = before + (total as f64 * share) as u64;
        let mut child = cli.spawn([
            "backup".as_ref(),
            "--set".as_ref(),
            "big".as_ref(),
            version.as_os_str(),
        ]);
        while pack_bytes(&target.objects) < threshold && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().ok();
        child.wait().unwrap();
        let stored = pack_bytes(&target.objects) - before;

        let verify = cli.run(["verify", "--read-data", "--json"]);
        assert_eq!(
            verify.code,
            Some(0),
            "{} trial {trial}: verify after the kill: {}{}",
            target.name,
            verify.stdout,
            verify.stderr
        );
        // Killed before its manifest was stored, the backup is invisible;
        // after (while it was tidying up or exiting), it is complete: it
        // verified above and its restore is checked below like the rerun's.
        let listed = cli.run(["list", "--json"]).json();
        let listed = listed.as_array().unwrap();
        let finished = listed.len() == listed_before + 1;
        assert!(
            listed.len() == listed_before || finished,
            "{} trial {trial}: {} backups listed, {listed_before} before",
            target.name,
            listed.len()
        );
        if finished {
            let newest = listed
                .iter()
                .find(|backup| backup["set"] == "big" && !seen.contains(&backup["id"]))
                .expect("the finished backup is listed");
            let restored = scratch.join(format!("restored-killed-{trial}"));
            let out = cli.run([
                "restore".as_ref(),
                std::ffi::OsStr::new(newest["id"].as_str().unwrap()),
                "--target".as_ref(),
                restored.as_os_str(),
            ]);
            assert_eq!(out.code, Some(0), "{}", out.stderr);
            assert_same_tree(&version, &restored.join(version.file_name().unwrap()));
            fs::remove_dir_all(&restored).unwrap();
        }
        for backup in listed {
            seen.insert(backup["id"].clone());
        }
        let restored = scratch.join(format!("restored-first-{trial}"));
        let out = cli.run([
            "restore".as_ref(),
            first_id.as_ref(),
            "--target".as_ref(),
            restored.as_os_str(),
        ]);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        assert_same_tree(&small, &restored.join("small"));
        fs::remove_dir_all(&restored).unwrap();

        let rerun = cli.run([
            "backup".as_ref(),
            "--json".as_ref(),
            "--set".as_ref(),
            "big".as_ref(),
            version.as_os_str(),
        ]);
        assert_eq!(rerun.code, Some(0), "{}", rerun.stderr);
        let rerun = rerun.json();
        seen.insert(rerun["id"].clone());
        let added = num(&rerun, "bytes_added");
        let restored = scratch.join(format!("restored-big-{trial}"));
        let out = cli.run([
            "restore".as_ref(),
            std::ffi::OsStr::new(rerun["id"].as_str().unwrap()),
            "--target".as_ref(),
            restored.as_os_str(),
        ]);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        let name = version.file_name().unwrap();
        assert_same_tree(&version, &restored.join(name));
        fs::remove_dir_all(&restored).unwrap();

        // What the killed run stored is reused: the rerun adds at most the
        // rest (plus one pack of slack for a pack cut short by the kill).
        let slack = 17 * MIB;
        assert!(
            added <= total.saturating_sub(stored) + slack,
            "{} trial {trial}: the killed run stored {stored} bytes of {total}, the rerun added {added}",
            target.name
        );
        if stored > total / 2 + slack {
            past_half += 1;
            assert!(
                added < total / 2,
                "{} trial {trial}: killed past halfway ({stored} of {total} bytes stored), the rerun added {added}",
                target.name
            );
        }
        let line = format!(
            "{} trial {trial}: killed at {:.0}%{} with {:.1} MiB of {:.0} MiB stored; verify ok; rerun added {:.1} MiB",
            target.name,
            share * 100.0,
            if finished { " (its manifest was already stored)" } else { "" },
            stored as f64 / MIB as f64,
            total as f64 / MIB as f64,
            added as f64 / MIB as f64,
        );
        println!("{line}");
        lines.push(line);
        fs::remove_dir_all(&version).unwrap();
    }
    println!(
        "{}: {count} kills at random moments, {past_half} past halfway",
        target.name
    );
    lines
}

#[test]
fn killed_at_random_moments_on_a_local_repository() {
    let scratch = tempfile::tempdir().unwrap();
    let repo = scratch.path().join("repo");
    let target = Target {
        name: "local",
        cli: backupctl().global(["--repo".as_ref(), repo.as_os_str()]),
        objects: repo.clone(),
    };
    let lines = trials(&target, scratch.path(), 12, 0x10CA1);
    assert_eq!(lines.len(), 12);
}

#[test]
fn killed_at_random_moments_on_s3() {
    let s3 = start_s3s_fs();
    let scratch = tempfile::tempdir().unwrap();
    let target = Target {
        name: "s3",
        cli: backupctl().s3_repo(&s3, "repo"),
        objects: s3.bucket_dir().join("repo"),
    };
    let lines = trials(&target, scratch.path(), 8, 0x53);
    assert_eq!(lines.len(), 8);
}

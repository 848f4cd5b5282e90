//! The crash test: `backupctl backup` killed with SIGKILL at random moments,
//! many times, on a local repository and on S3 (s3s-fs on 127.0.0.1).
//!
//! After each kill: the repository verifies (`verify --read-data`), the
//! earlier backup restores exactly, the killed backup is not listed, and a
//! rerun completes, restores exactly and reuses what the killed run already
//! stored: after a kill past the halfway point, the rerun uploads less than
//! half the data again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod remote_support;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use remote_support::{assert_same_tree, num, start_s3s_fs, Backupctl, MIB};

/// Incompressible files: `count` files of `size` bytes from `seed`.
fn write_bulk(dir: &Path, seed: u64, count: u64, size: u64) -> u64 {
    fs::create_dir_all(dir).unwrap();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut buffer = vec![0u8; size as usize];
    for index in 0..count {
        for word in buffer.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes()[..word.len()]);
        }
        fs::File::create(dir.join(format!("part-{index:03}.bin")))
            .unwrap()
            .write_all(&buffer)
            .unwrap();
    }
    count * size
}

/// Bytes of pack objects under `root` (a local repository or a bucket's
/// repository directory).
fn pack_bytes(root: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![root.join("data")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if meta.is_dir() {
                stack.push(entry.path());
            } else if name.len() == 64 {
                total += meta.len();
            }
        }
    }
    total
}

struct Target {
    name: &'static str,
    cli: Backupctl,
    /// Where the repository's objects are on disk.
    objects: PathBuf,
}

/// The trials of one target. Returns a line per trial.
fn trials(target: &Target, scratch: &Path, count: u64, seed: u64) -> Vec<String> {
    let small = scratch.join("small");
    write_bulk(&small, seed ^ 0xABCD, 3, 64 * 1024);
    let big = scratch.join("big");
    let total = write_bulk(&big, seed, 24, 4 * MIB);
    let cli = &target.cli;

    // A clean run, to know how long a whole backup takes.
    let out = cli.run(["init", "--no-encryption"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let first = cli.run(["backup".as_ref(), "--json".as_ref(), small.as_os_str()]);
    let first_id = first.json()["id"].as_str().unwrap().to_string();
    let clock = Instant::now();
    let reference = cli.run([
        "backup".as_ref(),
        "--json".as_ref(),
        "--set".as_ref(),
        "reference".as_ref(),
        big.as_os_str(),
    ]);
    assert_eq!(reference.code, Some(0), "{}", reference.stderr);
    let full = clock.elapsed();

    let mut rng = seed | 1;
    let mut lines = Vec::new();
    let mut past_half = 0;
    let mut seen = std::collections::HashSet::new();
    for trial in 0..count {
        // Fresh content each trial, so the rerun's reuse comes only from
        // what the killed run stored.
        let version = scratch.join(format!("big-{trial}"));
        let _ = fs::remove_dir_all(&big);
        let total = total.min(write_bulk(&version, seed + 1000 + trial, 24, 4 * MIB));
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // Odd trials: a random moment within the time a whole backup
        // takes. Even trials: the moment the stored data first passes a
        // random share between half and all of it.
        let share = (rng % 1000) as f64 / 1000.0;
        let before = pack_bytes(&target.objects);
        let listed_before = cli.run(["list", "--json"]).json().as_array().unwrap().len();

        let mut child = cli.spawn([
            "backup".as_ref(),
            "--set".as_ref(),
            "big".as_ref(),
            version.as_os_str(),
        ]);
        let started = Instant::now();
        let (deadline, threshold) = if trial % 2 == 1 {
            (full.mul_f64(share * 1.1), u64::MAX)
        } else {
            (
                Duration::from_secs(120),
                before + (total as f64 * (0.5 + share / 2.0)) as u64,
            )
        };
        while started.elapsed() < deadline
            && pack_bytes(&target.objects) < threshold
            && child.try_wait().unwrap().is_none()
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().ok();
        child.wait().unwrap();
        let delay = started.elapsed();
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
            "{} trial {trial}: killed after {delay:.2?}{} with {:.1} MiB of {:.0} MiB stored; verify ok; rerun added {:.1} MiB",
            target.name,
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
        "{}: {count} kills at random moments (a whole backup takes {full:.2?}), {past_half} past halfway",
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
        cli: Backupctl::new(scratch.path()).global(["--repo".as_ref(), repo.as_os_str()]),
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
        cli: Backupctl::new(scratch.path())
            .env("AWS_ACCESS_KEY_ID", &s3.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &s3.secret_key)
            .env("AWS_REGION", "us-east-1")
            .global(["--repo", &format!("s3://{}/repo", s3.bucket)])
            .global(["--endpoint", &s3.server.endpoint(), "--allow-http"]),
        objects: s3.bucket_dir().join("repo"),
    };
    let lines = trials(&target, scratch.path(), 8, 0x53);
    assert_eq!(lines.len(), 8);
}

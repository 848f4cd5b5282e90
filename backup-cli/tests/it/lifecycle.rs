//! Lifecycle through `backupctl`: forget and prune, prune beside running
//! backups, collisions between writers, progress output, the scheduler.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backup_testkit::backupctl::{Backupctl, Out};
use backup_testkit::process::wait_for;
use backup_testkit::rng::random_bytes;
use backup_testkit::tree::{assert_same_contents, disk_usage};

use crate::Repo;

/// `backupctl ARGS` on the repository at `repo`.
fn run(args: &[&str], repo: &Path) -> Out {
    Repo::new(repo.to_path_buf(), None).run(args)
}

/// [`run`], asserting success; its stdout.
fn ok(args: &[&str], repo: &Path) -> String {
    run(args, repo).ok().stdout
}

/// [`ok`] with `--json`, parsed.
fn json(args: &[&str], repo: &Path) -> serde_json::Value {
    let mut args = args.to_vec();
    args.push("--json");
    run(&args, repo).ok().json()
}

/// A small tree whose content depends on `generation`.
fn write_generation(root: &Path, generation: u64, files: u64, size: usize) {
    let _ = std::fs::remove_dir_all(root);
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/constant.txt"), b"always the same\n").unwrap();
    for index in 0..files {
        std::fs::write(
            root.join(format!("file-{index}.bin")),
            random_bytes(generation * 1000 + index + 1, size),
        )
        .unwrap();
    }
}

/// Restores every listed backup and checks it against the generation it
/// was made from (recorded in its `generation` tag).
fn assert_every_backup_restores(repo: &Path, place: &Path) -> usize {
    let backups = json(&["list"], repo);
    let backups = backups.as_array().unwrap();
    for backup in backups {
        let id = backup["id"].as_str().unwrap();
        let generation: u64 = backup["tags"]["generation"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let expected = place.join(format!("expected-{generation}"));
        if !expected.exists() {
            write_generation(&expected, generation, 4, 600_000);
        }
        let target = place.join(format!("check-{id}"));
        ok(&["restore", id, "--target", target.to_str().unwrap()], repo);
        let restored_root = std::fs::read_dir(&target)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        assert_same_contents(&expected, &restored_root);
        std::fs::remove_dir_all(&target).unwrap();
    }
    backups.len()
}

#[test]
fn forget_with_prune_shrinks_and_kept_backups_restore() {
    let place = tempfile::tempdir().unwrap();
    let repo = place.path().join("repo");
    let source = place.path().join("source");
    ok(&["init", "--no-encryption"], &repo);
    for generation in 0..6u64 {
        write_generation(&source, generation, 4, 600_000);
        let time = format!("2026-01-{:02}T10:00:00Z", generation + 1);
        let tag = format!("generation={generation}");
        ok(
            &[
                "backup",
                "--time",
                &time,
                "--tag",
                &tag,
                source.to_str().unwrap(),
            ],
            &repo,
        );
    }
    let before = disk_usage(&repo);
    let decisions = json(
        &["forget", "--keep-last", "2", "--prune", "--grace", "0s"],
        &repo,
    );
    let forgotten: Vec<_> = decisions["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["keep"] == false)
        .collect();
    assert_eq!(forgotten.len(), 4, "{decisions}");
    assert!(
        forgotten
            .iter()
            .all(|d| !d["reasons"].as_array().unwrap().is_empty()),
        "every decision has a reason"
    );
    let after = disk_usage(&repo);
    println!("forget --keep-last 2 --prune: repository {before} -> {after} bytes");
    assert!(
        after * 2 < before,
        "the repository shrank: {before} -> {after}"
    );
    ok(&["verify", "--read-data"], &repo);
    assert_eq!(assert_every_backup_restores(&repo, place.path()), 2);
}

#[test]
fn prune_beside_running_backups_never_breaks_a_backup() {
    let place = tempfile::tempdir().unwrap();
    let repo = place.path().join("repo");
    ok(&["init", "--no-encryption"], &repo);
    let rounds = 10u64;
    let mut prunes = 0;
    for round in 0..rounds {
        let source = place.path().join(format!("source-{round}"));
        write_generation(&source, round, 4, 600_000);
        // Garbage for prune to find: forget all but the newest two.
        if round >= 2 {
            ok(&["forget", "--keep-last", "2"], &repo);
        }
        let tag = format!("generation={round}");
        let writer = Repo::new(repo.clone(), None);
        let mut backup = writer
            .command(["backup", "--tag", &tag, source.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Prune over and over while the backup runs (and once after).
        loop {
            let finished = backup.try_wait().unwrap().is_some();
            ok(&["prune", "--grace", "0s", "--repack-unused", "1%"], &repo);
            prunes += 1;
            if finished {
                break;
            }
        }
        let output = backup.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "backup failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        ok(&["verify", "--read-data"], &repo);
        assert_every_backup_restores(&repo, place.path());
    }
    println!("{rounds} backups ran beside {prunes} prunes; every backup verified and restored after each round");
}

/// Several backup processes at once (three writers, two of them storing
/// identical data, so that they race to store the same chunks), with prunes
/// running beside them and forget between rounds, repeated.
#[test]
fn several_writers_and_prunes_at_once() {
    let place = tempfile::tempdir().unwrap();
    let repo = place.path().join("repo");
    ok(&["init", "--no-encryption"], &repo);
    let rounds = 12u64;
    let writers = 3u64;
    let (mut prunes, mut backups) = (0, 0);
    for round in 0..rounds {
        if round >= 2 {
            ok(&["forget", "--keep-last", "2"], &repo);
        }
        let mut children = Vec::new();
        for writer in 0..writers {
            // Writers 0 and 2 back up the same content.
            let generation = 100 + round * 10 + writer % 2;
            let source = place.path().join(format!("source-{round}-{writer}"));
            write_generation(&source, generation, 4, 600_000);
            let tag = format!("generation={generation}");
            let set = format!("writer-{writer}");
            children.push(
                Repo::new(repo.clone(), None)
                    .command(["backup", "--set", &set, "--writer", &set, "--tag", &tag])
                    .arg(&source)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap(),
            );
        }
        loop {
            let mut running = 0;
            for child in children.iter_mut() {
                if child.try_wait().unwrap().is_none() {
                    running += 1;
                }
            }
            ok(&["prune", "--grace", "0s", "--repack-unused", "1%"], &repo);
            prunes += 1;
            if running == 0 {
                break;
            }
        }
        for child in children {
            let output = child.wait_with_output().unwrap();
            assert!(
                output.status.success(),
                "round {round}: a backup failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            backups += 1;
        }
        ok(&["verify", "--read-data"], &repo);
        assert_every_backup_restores(&repo, place.path());
    }
    println!(
        "concurrency: {rounds} rounds, {backups} backups by {writers} processes at once beside {prunes} prunes; \
         every backup verified and restored after each round"
    );
}

#[test]
fn second_writer_of_a_set_stops_with_a_collision_naming_both() {
    let place = tempfile::tempdir().unwrap();
    let repo = place.path().join("repo");
    let source = place.path().join("source");
    write_generation(&source, 1, 2, 10_000);
    ok(&["init", "--no-encryption"], &repo);
    ok(
        &[
            "backup",
            "--set",
            "etcd",
            "--writer",
            "cluster-a",
            "--check-collision",
            source.to_str().unwrap(),
        ],
        &repo,
    );
    // The same writer again is fine.
    ok(
        &[
            "backup",
            "--set",
            "etcd",
            "--writer",
            "cluster-a",
            "--check-collision",
            source.to_str().unwrap(),
        ],
        &repo,
    );
    let output = run(
        &[
            "backup",
            "--set",
            "etcd",
            "--writer",
            "cluster-b",
            "--check-collision",
            source.to_str().unwrap(),
        ],
        &repo,
    );
    let stderr = &output.stderr;
    assert!(
        output.code.is_some_and(|code| code != 0),
        "{}",
        output.describe()
    );
    assert!(
        stderr.contains("collision")
            && stderr.contains("cluster-a")
            && stderr.contains("cluster-b"),
        "{stderr}"
    );
    assert_eq!(
        json(&["list", "--set", "etcd"], &repo)
            .as_array()
            .unwrap()
            .len(),
        2,
        "nothing written by the second writer"
    );
}

#[test]
fn progress_is_json_lines_or_a_live_bar() {
    let place = tempfile::tempdir().unwrap();
    let repo = place.path().join("repo");
    let source = place.path().join("source");
    write_generation(&source, 3, 12, 8_000_000);
    ok(&["init", "--no-encryption"], &repo);
    let output = run(
        &["backup", "--progress", "json", source.to_str().unwrap()],
        &repo,
    );
    let output = output.ok();
    let events: Vec<serde_json::Value> = output
        .stderr
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    assert!(events.len() >= 2, "{events:?}");
    let last = events.last().unwrap();
    assert_eq!(last["phase"], "completed");
    assert_eq!(last["percent"], 100.0);
    assert_eq!(last["files_done"], 13);
    let running: Vec<f64> = events
        .iter()
        .filter(|e| e["phase"] == "running")
        .filter_map(|e| e["percent"].as_f64())
        .collect();
    assert!(
        running.windows(2).all(|w| w[0] <= w[1]),
        "percent never goes back: {running:?}"
    );
    println!(
        "{} progress events; running percents {:?}",
        events.len(),
        running
    );

    // Under a terminal the default is a live bar, redrawn in place.
    let command = format!(
        "{} backup --repo {} --force {}",
        env!("CARGO_BIN_EXE_backupctl"),
        repo.display(),
        source.display()
    );
    let output = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("COLUMNS", "120")
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{screen}");
    assert!(
        screen.contains('\r') || screen.contains("\u{1b}["),
        "the bar redraws in place: {screen:?}"
    );
    assert!(
        screen.contains("files"),
        "the bar shows file counts: {screen:?}"
    );
}

#[test]
fn schedule_runs_backups_applies_retention_and_stops_cleanly() {
    let place = tempfile::tempdir().unwrap();
    let repo = place.path().join("repo");
    let source = place.path().join("source");
    write_generation(&source, 5, 2, 10_000);
    ok(&["init", "--no-encryption"], &repo);
    let config = place.path().join("schedule.toml");
    std::fs::write(
        &config,
        format!(
            "[[job]]\nname = \"files\"\ncron = \"*/2 * * * * *\"\nrepository = \"{}\"\nsource = {{ type = \"directory\", paths = [\"{}\"] }}\nretention = {{ keep_last = 2 }}\n",
            repo.display(),
            source.display()
        ),
    )
    .unwrap();
    let mut scheduler = crate::backupctl()
        .command(["schedule", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its events, as they come.
    let stdout = scheduler.stdout.take().unwrap();
    let events: Arc<Mutex<Vec<String>>> = Arc::default();
    let reader = {
        let events = Arc::clone(&events);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                events.lock().unwrap().push(line);
            }
        })
    };
    let succeeded = || {
        events
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.contains("\"run_succeeded\""))
            .count()
    };
    let manifests = |repo: &PathBuf| {
        std::fs::read_dir(repo.join("manifests"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    // Until four runs (every 2 s) succeeded and retention was seen at
    // work; the repository never holds more than one backup too many.
    let lister = Repo::new(repo.clone(), None);
    let mut saw_retention = false;
    wait_for(
        "four successful scheduled runs with retention applied",
        Duration::from_secs(600),
        || {
            std::thread::sleep(Duration::from_millis(500));
            assert!(
                scheduler.try_wait().unwrap().is_none(),
                "the scheduler stopped: {:?}",
                events.lock().unwrap()
            );
            let list = lister.run(["list", "--json"]);
            if let Ok(list) = serde_json::from_str::<serde_json::Value>(&list.stdout) {
                let count = list.as_array().map(Vec::len).unwrap_or(0);
                assert!(
                    count <= 3,
                    "retention keeps 2 (3 while a run is between backup and forget)"
                );
                if count == 2 && manifests(&repo) == 2 {
                    saw_retention = true;
                }
            }
            (saw_retention && succeeded() >= 4).then_some(())
        },
    );
    // SIGTERM: the running backup finishes, then the process exits 0.
    let pid = scheduler.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let output = scheduler.wait_with_output().unwrap();
    reader.join().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let events = events.lock().unwrap().join("\n");
    println!("scheduler: {} successful runs", succeeded());
    assert!(
        events.contains("\"run_succeeded\""),
        "the events name the successful runs: {events}"
    );
    ok(&["verify"], &repo);
}

#[test]
fn restore_selects_latest_completed_a_named_backup_or_skips_per_set() {
    let place = tempfile::tempdir().unwrap();
    let repo = place.path().join("repo");
    ok(&["init", "--no-encryption"], &repo);
    let mut ids = std::collections::BTreeMap::new();
    for (set, generation) in [
        ("alpha", 1u64),
        ("alpha", 2),
        ("beta", 3),
        ("beta", 4),
        ("gamma", 5),
    ] {
        let source = place.path().join(format!("src-{set}"));
        write_generation(&source, generation, 2, 50_000);
        let summary = json(&["backup", "--set", set, source.to_str().unwrap()], &repo);
        ids.insert(generation, summary["id"].as_str().unwrap().to_string());
    }
    // A newer alpha backup that could not read a file is not `latest`.
    let source = place.path().join("src-alpha");
    write_generation(&source, 6, 2, 50_000);
    let bad = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"bad-\xff-name");
    std::fs::write(source.join(bad), b"x").unwrap();
    let output = run(
        &["backup", "--set", "alpha", source.to_str().unwrap()],
        &repo,
    );
    assert_eq!(output.code, Some(3), "partially failed backup exits 3");

    let target = place.path().join("restored");
    let beta_first = &ids[&3][..10];
    let selection = json(
        &[
            "restore",
            "--select",
            "alpha=latest",
            "--select",
            &format!("beta={beta_first}"),
            "--select",
            "gamma=skip",
            "--target",
            target.to_str().unwrap(),
        ],
        &repo,
    );
    let sets = selection["sets"].as_array().unwrap();
    assert_eq!(
        sets[0]["backup"],
        ids[&2].as_str(),
        "alpha: newest completed backup"
    );
    assert_eq!(
        sets[1]["backup"],
        ids[&3].as_str(),
        "beta: the named backup"
    );
    assert!(sets[2]["backup"].is_null(), "gamma skipped");
    for (set, generation) in [("alpha", 2u64), ("beta", 3)] {
        let expected = place.path().join(format!("expected-{set}"));
        write_generation(&expected, generation, 2, 50_000);
        assert_same_contents(&expected, &target.join(set).join(format!("src-{set}")));
    }
    assert!(!target.join("gamma").exists());
    // A selection naming another set's backup restores nothing.
    let wrong = run(
        &[
            "restore",
            "--select",
            &format!("alpha={beta_first}"),
            "--target",
            place.path().join("none").to_str().unwrap(),
        ],
        &repo,
    );
    wrong.fails();
    assert!(!place.path().join("none").exists());
}

/// `command` run as if on a host named `host`: in a UTS namespace of its
/// own (as root; otherwise in a user namespace too), where it sets the host
/// name before it starts. Each run of a Kubernetes CronJob is such a new
/// host: a pod with a new name.
fn on_host(command: &Command, host: &str) -> Command {
    let root = Command::new("unshare")
        .args(["--uts", "true"])
        .status()
        .is_ok_and(|status| status.success());
    let mut wrapped = Command::new("unshare");
    if !root {
        wrapped.args(["--user", "--map-root-user"]);
    }
    wrapped
        .args(["--uts", "sh", "-c", "hostname \"$0\" && exec \"$@\"", host])
        .arg(command.get_program())
        .args(command.get_args())
        .stdin(Stdio::null());
    for (name, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(name, value),
            None => wrapped.env_remove(name),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}

#[test]
fn a_cronjob_on_new_pods_with_one_writer_id_records_every_run_and_a_second_id_collides() {
    let place = tempfile::tempdir().unwrap();
    let path = place.path().join("repo");
    let source = place.path().join("source");
    ok(&["init", "--no-encryption"], &path);
    // What a CronJob's pod has: a Kubernetes environment and BACKUP_WRITER
    // set in the pod template; the host name is the pod's.
    let in_cluster = |writer: Option<&str>| {
        let repo = Repo::new(path.clone(), None);
        let mut runner = (*repo).clone().env("KUBERNETES_SERVICE_HOST", "10.96.0.1");
        if let Some(writer) = writer {
            runner = runner.env("BACKUP_WRITER", writer);
        }
        runner
    };
    let backup = |runner: &Backupctl, host: &str| {
        let command = runner.command([
            "backup",
            "--set",
            "etcd",
            "--check-collision",
            "--json",
            source.to_str().unwrap(),
        ]);
        runner.run_command(on_host(&command, host))
    };
    for (run, pod) in [
        "etcd-backup-28913400-x7k2p",
        "etcd-backup-28913520-9qv4m",
        "etcd-backup-28913640-lm2zd",
    ]
    .iter()
    .enumerate()
    {
        write_generation(&source, run as u64 + 1, 2, 10_000);
        let out = backup(&in_cluster(Some("prod-eu-1")), pod).ok();
        let summary = out.json();
        assert_eq!(summary["writer"], "prod-eu-1", "{}", out.describe());
        assert_eq!(summary["hostname"], *pod, "{}", out.describe());
    }
    let backups = json(&["list", "--set", "etcd"], &path);
    let backups = backups.as_array().unwrap();
    assert_eq!(
        backups.len(),
        3,
        "three runs, three backups, no collision: {backups:?}"
    );

    // Another cluster's job writing the same set collides, naming both.
    let out = backup(&in_cluster(Some("prod-us-1")), "other-backup-1-abcde");
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("collision")
            && out.stderr.contains("prod-eu-1")
            && out.stderr.contains("prod-us-1"),
        "{}",
        out.describe()
    );
    // Without a writer id, a collision-checked backup in Kubernetes is
    // refused: the pod's name would collide with every earlier run.
    let out = backup(&in_cluster(None), "etcd-backup-28913760-zz9aa");
    assert_ne!(out.code, Some(0), "{}", out.describe());
    assert!(out.stderr.contains("BACKUP_WRITER"), "{}", out.describe());
    assert_eq!(
        json(&["list", "--set", "etcd"], &path)
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

/// `forget --keep-* unlimited` (restic 0.17's spelling) keeps what `-1`
/// keeps, for every count option; a count that is neither is refused,
/// naming the option and the value.
#[test]
fn forget_takes_unlimited_as_minus_one() {
    let place = tempfile::tempdir().unwrap();
    let repo = place.path().join("repo");
    let source = place.path().join("source");
    ok(&["init", "--no-encryption"], &repo);
    // Two backups on each of three days: a daily rule keeps the newest of
    // each day, and (restic 0.16+) the oldest backup, since an unlimited
    // count is never used up.
    write_generation(&source, 0, 1, 1000);
    for time in [
        "2026-01-01T08:00:00Z",
        "2026-01-01T20:00:00Z",
        "2026-01-02T08:00:00Z",
        "2026-01-02T20:00:00Z",
        "2026-01-03T08:00:00Z",
        "2026-01-03T20:00:00Z",
    ] {
        ok(&["backup", "--time", time, source.to_str().unwrap()], &repo);
    }
    let kept = |option: &str, count: &str| -> Vec<String> {
        let decisions = json(&["forget", "--dry-run", option, count], &repo);
        let mut kept: Vec<String> = decisions["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|decision| decision["keep"] == true)
            .map(|decision| decision["time"].as_str().unwrap().to_owned())
            .collect();
        kept.sort();
        kept
    };
    let daily = kept("--keep-daily", "unlimited");
    assert_eq!(
        daily,
        [
            "2026-01-01T08:00:00+00:00",
            "2026-01-01T20:00:00+00:00",
            "2026-01-02T20:00:00+00:00",
            "2026-01-03T20:00:00+00:00"
        ]
    );
    assert_eq!(daily, kept("--keep-daily", "-1"));
    for option in [
        "--keep-last",
        "--keep-hourly",
        "--keep-weekly",
        "--keep-monthly",
        "--keep-yearly",
    ] {
        assert_eq!(kept(option, "unlimited"), kept(option, "-1"), "{option}");
    }
    assert_eq!(kept("--keep-last", "unlimited").len(), 6);

    let out = run(&["forget", "--keep-daily", "many"], &repo).fails();
    assert!(
        out.stderr.contains("--keep-daily")
            && out.stderr.contains("many")
            && out.stderr.contains("unlimited"),
        "{}",
        out.describe()
    );
    // Nothing was forgotten by the refused command.
    assert_eq!(json(&["list"], &repo).as_array().unwrap().len(), 6);
}

//! PostgreSQL's continuous archiving through `backupctl wal-push` and
//! point-in-time restore through `backupctl restore --target-time` and
//! `wal-fetch`, against a real server; WAL retention and gap reports.
//!
//! The server runs `archive_command` and `restore_command` as its own user,
//! so every `backupctl` here runs as that user too (`postgres` when the
//! tests run as root), on a repository that user owns.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use backup_testkit::server::postgres::{self, give_to_server_user, Postgres, PostgresOptions};
use backup_testkit::server::run_checked;
use serde_json::Value;

struct Place {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Place {
    fn new() -> Place {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.path().join("password"), "pitr secret\n").unwrap();
        give_to_server_user(dir.path());
        Place {
            dir,
            bin: PathBuf::from(env!("CARGO_BIN_EXE_backupctl")),
        }
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn password(&self) -> PathBuf {
        self.dir.path().join("password")
    }

    /// `backupctl ARGS --repo R --password-file F`, as the server's user.
    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut command = postgres::as_server_user(&self.bin);
        command
            .args(args)
            .arg("--repo")
            .arg(self.repo())
            .arg("--password-file")
            .arg(self.password())
            .env_remove("BACKUP_PASSWORD")
            .env_remove("BACKUP_REPO");
        command
    }

    fn run(&self, args: &[&str]) -> String {
        run_checked(&mut self.command(args))
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.run(args)).unwrap()
    }

    /// What PostgreSQL's `archive_command` runs.
    fn archive_command(&self) -> String {
        format!(
            "'{}' wal-push --repo '{}' --password-file '{}' --set pg %p",
            self.bin.display(),
            self.repo().display(),
            self.password().display()
        )
    }

    fn wal_files(&self) -> Vec<String> {
        let listed = self.json(&["list", "--json"]);
        let mut names: Vec<String> = listed
            .as_array()
            .unwrap()
            .iter()
            .filter(|backup| backup["set"] == "pg/wal")
            .map(|backup| backup["facts"]["wal_file"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    }
}

/// Writes, switches to a new WAL segment and waits until the server archived the
/// one it left.
fn archive_current_segment(pg: &Postgres) -> String {
    // A switch with nothing written since the last one does nothing.
    pg.sql(
        "postgres",
        "CREATE TABLE IF NOT EXISTS wal_filler (x int); INSERT INTO wal_filler VALUES (1)",
    );
    let segment = pg.sql("postgres", "SELECT pg_walfile_name(pg_switch_wal())");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let status = pg.sql(
            "postgres",
            "SELECT coalesce(last_archived_wal, ''), failed_count FROM pg_stat_archiver",
        );
        let (archived, failed) = status.split_once('|').unwrap();
        assert_eq!(failed, "0", "archive_command failed:\n{}", pg.log_tail());
        if archived >= segment.as_str() {
            return segment;
        }
        assert!(
            Instant::now() < deadline,
            "{segment} was never archived:\n{}",
            pg.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_until_promoted(pg: &Postgres) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while pg.sql("postgres", "SELECT pg_is_in_recovery()") != "f" {
        assert!(
            Instant::now() < deadline,
            "recovery never ended:\n{}",
            pg.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn rfc3339(pg: &Postgres, sql: &str) -> String {
    pg.sql(
        "postgres",
        &format!("SELECT to_char(({sql}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"),
    )
}

#[test]
fn a_point_in_time_restore_gives_exactly_the_rows_up_to_the_target_time() {
    let place = Place::new();
    place.run(&["init"]);
    let mut pg = Postgres::start_with(PostgresOptions {
        settings: vec![
            ("wal_level".into(), "replica".into()),
            ("archive_mode".into(), "on".into()),
            ("archive_command".into(), place.archive_command()),
        ],
        ..PostgresOptions::default()
    });
    pg.sql(
        "postgres",
        "CREATE TABLE ticks (n int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())",
    );
    let bin_dir = postgres::bin_dir();
    let base = place.json(&[
        "backup",
        "--json",
        "--set",
        "pg",
        "--source",
        "postgres",
        "--pg-url",
        &pg.url(),
        "--pg-bin-dir",
        bin_dir.to_str().unwrap(),
    ]);
    assert_eq!(base["facts"]["mode"], "physical");

    // One row per 100 ms, each with its commit time.
    for n in 0..40 {
        pg.sql("postgres", &format!("INSERT INTO ticks (n) VALUES ({n})"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let last = archive_current_segment(&pg);
    // Between row 19's time and row 20's.
    let target = rfc3339(
        &pg,
        "SELECT a.at + (b.at - a.at) / 2 FROM ticks a, ticks b WHERE a.n = 19 AND b.n = 20",
    );
    let archived = place.wal_files();
    assert!(archived.contains(&last), "{last} not in {archived:?}");

    // Pushing an archived segment again with the same contents succeeds;
    // with other contents it fails and writes nothing.
    let copy_dir = place.dir.path().join("copies");
    std::fs::create_dir(&copy_dir).unwrap();
    give_to_server_user(&copy_dir);
    let same = copy_dir.join(&last);
    let mut fetch = place.command(&["wal-fetch", "--set", "pg", &last, same.to_str().unwrap()]);
    run_checked(&mut fetch);
    place.run(&["wal-push", "--set", "pg", same.to_str().unwrap()]);
    let mut bytes = std::fs::read(&same).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&same, &bytes).unwrap();
    let conflicting = place
        .command(&["wal-push", "--set", "pg", same.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!conflicting.status.success());
    let message = String::from_utf8_lossy(&conflicting.stderr);
    assert!(message.contains("already archived"), "{message}");
    assert_eq!(place.wal_files(), archived);
    // A name that is not archived: wal-fetch exits 1, as restore_command must.
    let missing = place
        .command(&[
            "wal-fetch",
            "--set",
            "pg",
            "0000000100000000000000FF",
            "/dev/null",
        ])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));

    // Server and data gone; restore to the target time.
    let old_data = pg.data_dir().to_path_buf();
    pg.kill();
    std::fs::remove_dir_all(&old_data).unwrap();
    let data_dir = place.dir.path().join("restored");
    let restored = place.run(&[
        "restore",
        "latest",
        "--set",
        "pg",
        "--to",
        "postgres",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--target-time",
        &target,
        "--pg-bin-dir",
        bin_dir.to_str().unwrap(),
    ]);
    assert!(restored.contains("recovery_target"), "{restored}");
    assert!(data_dir.join("recovery.signal").is_file());
    let recovered = Postgres::start_on(&data_dir, PostgresOptions::default());
    wait_until_promoted(&recovered);
    let rows = recovered.sql(
        "postgres",
        "SELECT string_agg(n::text, ',' ORDER BY n) FROM ticks",
    );
    let expected: Vec<String> = (0..20).map(|n| n.to_string()).collect();
    assert_eq!(rows, expected.join(","), "{}", recovered.log_tail());
    assert!(
        recovered
            .log()
            .contains("recovery stopping before commit of transaction"),
        "{}",
        recovered.log_tail()
    );
}

#[test]
fn wal_retention_follows_the_kept_base_backups_and_verify_reports_gaps() {
    let place = Place::new();
    place.run(&["init"]);
    let pg = Postgres::start_with(PostgresOptions {
        settings: vec![
            ("wal_level".into(), "replica".into()),
            ("archive_mode".into(), "on".into()),
            ("archive_command".into(), place.archive_command()),
        ],
        ..PostgresOptions::default()
    });
    let bin_dir = postgres::bin_dir();
    let base_backup = || {
        place.json(&[
            "backup",
            "--json",
            "--set",
            "pg",
            "--source",
            "postgres",
            "--pg-url",
            &pg.url(),
            "--pg-bin-dir",
            bin_dir.to_str().unwrap(),
        ])
    };
    let first = base_backup();
    archive_current_segment(&pg);
    archive_current_segment(&pg);
    let second = base_backup();
    archive_current_segment(&pg);
    let second_start = second["facts"]["wal_start"].as_str().unwrap().to_string();
    let before = place.wal_files();
    assert!(
        before
            .iter()
            .any(|name| name.len() == 24 && name.as_str() < second_start.as_str()),
        "{before:?}"
    );
    let verified = place.run(&["verify"]);
    assert!(verified.contains("no errors found"), "{verified}");

    // Keep one base backup: the WAL before its first segment goes, the
    // rest stays.
    place.run(&["forget", "--set", "pg", "--keep-last", "1"]);
    let after = place.wal_files();
    assert!(!after.is_empty());
    for name in &after {
        assert!(
            name.as_str() >= second_start.as_str() || name.ends_with(".history"),
            "{name} survived, though older than {second_start}: {after:?}"
        );
    }
    assert!(after.iter().any(|name| name == &second_start), "{after:?}");
    let listed = place.json(&["list", "--json"]);
    assert!(
        !listed
            .as_array()
            .unwrap()
            .iter()
            .any(|backup| backup["id"] == first["id"]),
        "the first base backup was kept"
    );

    // A segment lost from the archive, with later ones archived, is a gap
    // verify reports.
    archive_current_segment(&pg);
    archive_current_segment(&pg);
    let now = place.wal_files();
    let lost = now
        .iter()
        .find(|name| name.len() == 24 && name.as_str() > second_start.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("no segment after {second_start} in {now:?}"));
    assert!(
        now.iter()
            .any(|name| name.len() == 24 && name.as_str() > lost.as_str()),
        "{now:?}"
    );
    let listed = place.json(&["list", "--json"]);
    let id = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|backup| backup["facts"]["wal_file"] == lost.as_str())
        .map(|backup| backup["id"].as_str().unwrap().to_string())
        .unwrap();
    remove_backup(&place.repo(), &id);
    let report = place.command(&["verify"]).output().unwrap();
    assert!(!report.status.success());
    let stderr = String::from_utf8_lossy(&report.stderr);
    assert!(
        stderr.contains(&format!(
            "WAL gap in set pg: 1 segment(s) missing, {lost} to {lost}"
        )),
        "{stderr}"
    );
}

/// Deletes a backup's manifest object, as a lost object would be.
fn remove_backup(repo: &Path, id: &str) {
    let manifest = repo.join("manifests").join(id);
    std::fs::remove_file(&manifest)
        .unwrap_or_else(|error| panic!("removing {}: {error}", manifest.display()));
}

#[test]
fn wal_pushes_running_at_once_each_store_their_file_and_the_same_file_twice_is_one() {
    let place = Place::new();
    place.run(&["init"]);
    let files = place.dir.path().join("pg_wal");
    std::fs::create_dir(&files).unwrap();
    let names: Vec<String> = (1..=6)
        .map(|n| format!("0000000100000000000000{n:02X}"))
        .collect();
    for (seed, name) in names.iter().enumerate() {
        let contents = backup_testkit::rng::random_bytes(seed as u64, 1 << 20);
        std::fs::write(files.join(name), contents).unwrap();
    }
    give_to_server_user(&files);
    // Six pushes at once, and the first file pushed a second time beside
    // them, as PostgreSQL retries an archive_command it thinks failed.
    let mut pushes: Vec<std::process::Child> = names
        .iter()
        .chain(std::iter::once(&names[0]))
        .map(|name| {
            let path = files.join(name);
            place
                .command(&["wal-push", "--set", "pg", path.to_str().unwrap()])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for push in &mut pushes {
        assert!(push.wait().unwrap().success());
    }
    let mut archived = place.wal_files();
    archived.dedup();
    assert_eq!(archived, names);
    for name in &names {
        let out = place.dir.path().join(format!("fetched-{name}"));
        place.run(&["wal-fetch", "--set", "pg", name, out.to_str().unwrap()]);
        assert_eq!(
            std::fs::read(&out).unwrap(),
            std::fs::read(files.join(name)).unwrap(),
            "{name}"
        );
    }
    let verified = place.run(&["verify", "--read-data"]);
    assert!(verified.contains("no errors found"), "{verified}");
}

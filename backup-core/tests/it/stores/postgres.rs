//! The PostgreSQL snapshotters and restorers against real servers (Debian's
//! `postgresql`), started on 127.0.0.1 in temporary directories: pgbench
//! and a sequence writer writing during the backup, the server and its
//! data destroyed, the backup restored into a fresh one and read back.

use async_trait::async_trait;
use backup_core::snapshot_conformance::{run_snapshotter_suite, FailingSource, SnapshotterFixture};
use backup_core::{
    Backup, BackupOptions, PostgresMode, PostgresRestorer, PostgresSnapshotter, Repository,
    Snapshotter,
};
use backup_testkit::server::postgres::{self, Postgres, PostgresOptions};
use backup_testkit::server::RefusedPort;

use super::{assert_gap_free_prefix, local_repo, SequenceWriter};

fn snapshotter(url: &str, mode: PostgresMode) -> PostgresSnapshotter {
    PostgresSnapshotter::new(url)
        .with_mode(mode)
        .with_bin_dir(postgres::bin_dir())
}

/// `seq(n)` and a writer inserting 0, 1, 2... one transaction each.
fn start_sequence_writer(pg: &Postgres) -> SequenceWriter {
    pg.sql("postgres", "CREATE TABLE seq (n bigint PRIMARY KEY)");
    let url = pg.url();
    SequenceWriter::start(move |n| {
        std::process::Command::new(postgres::bin_dir().join("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &url, "-c"])
            .arg(format!("INSERT INTO seq VALUES ({n})"))
            .status()
            .is_ok_and(|status| status.success())
    })
}

fn sequence(pg: &Postgres) -> Vec<u64> {
    pg.sql("postgres", "SELECT n FROM seq")
        .lines()
        .map(|line| line.parse().unwrap())
        .collect()
}

/// pgbench's invariant: every transaction moves `delta` into an account and
/// records it in the history, in one transaction.
fn assert_pgbench_consistent(pg: &Postgres, accounts: u64) {
    let counted: u64 = pg
        .sql("postgres", "SELECT count(*) FROM pgbench_accounts")
        .parse()
        .unwrap();
    assert_eq!(counted, accounts);
    let balances = pg.sql(
        "postgres",
        "SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts",
    );
    let history = pg.sql(
        "postgres",
        "SELECT coalesce(sum(delta), 0) FROM pgbench_history",
    );
    assert_eq!(balances, history, "accounts and history disagree");
    let tellers = pg.sql(
        "postgres",
        "SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers",
    );
    assert_eq!(tellers, history, "tellers and history disagree");
}

/// Runs pgbench's TPC-B-like transactions for `seconds` on a thread.
fn pgbench_running(pg: &Postgres, seconds: u32) -> std::thread::JoinHandle<String> {
    let url = pg.url();
    std::thread::spawn(move || {
        Postgres::run(
            "pgbench",
            &["-n", "-c", "2", "-T", &seconds.to_string(), &url],
        )
    })
}

async fn back_up(repo: &Repository, source: &PostgresSnapshotter) -> Backup {
    let summary = repo
        .backup(source, BackupOptions::default().with_set("pg"))
        .await
        .expect("the PostgreSQL backup");
    Backup {
        id: summary.id,
        manifest: summary.manifest,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_physical_backup_under_writers_restores_to_one_consistent_point_and_verifies() {
    let mut pg = Postgres::start();
    Postgres::run("pgbench", &["-i", "-q", "-s", "2", &pg.url()]);
    let system_identifier = pg.sql(
        "postgres",
        "SELECT system_identifier FROM pg_control_system()",
    );
    let writer = start_sequence_writer(&pg);
    writer.wait_for(20);
    let bench = pgbench_running(&pg, 6);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let before = writer.written();
    let (_dir, repo) = local_repo().await;
    let backup = back_up(&repo, &snapshotter(&pg.url(), PostgresMode::Physical)).await;
    let after = writer.written();
    writer.wait_for(after + 10);
    let after = writer.stop();
    bench.join().unwrap();

    let facts = &backup.manifest.facts;
    assert_eq!(backup.manifest.source.kind, "postgres");
    assert_eq!(facts["mode"], "physical");
    assert_eq!(facts["system_identifier"], system_identifier.as_str());
    assert_eq!(facts["timeline"], 1);
    for fact in [
        "start_lsn",
        "stop_lsn",
        "wal_start",
        "wal_stop",
        "backup_label",
        "server_version",
    ] {
        assert!(facts.contains_key(fact), "no {fact} in {facts:?}");
    }
    assert!(facts["backup_label"]
        .as_str()
        .unwrap()
        .contains("START WAL LOCATION"));

    // The server and its data are gone.
    let old_data = pg.data_dir().to_path_buf();
    pg.kill();
    std::fs::remove_dir_all(&old_data).unwrap();

    let place = tempfile::tempdir().unwrap();
    let data_dir = place.path().join("restored");
    let restorer = PostgresRestorer::physical(&data_dir).with_bin_dir(postgres::bin_dir());
    let report = repo.restore_into(&backup, &restorer).await.unwrap();
    assert_eq!(report.kind, "postgres");
    assert!(data_dir.join("backup_label").is_file());
    assert!(data_dir.join("backup_manifest").is_file());
    let verified = Postgres::run("pg_verifybackup", &[data_dir.to_str().unwrap()]);
    assert!(
        verified.contains("backup successfully verified"),
        "{verified}"
    );

    let restored = Postgres::start_on(&data_dir, PostgresOptions::default());
    assert_gap_free_prefix(sequence(&restored), before..=after);
    assert_pgbench_consistent(&restored, 200_000);
    assert_eq!(
        restored.sql(
            "postgres",
            "SELECT system_identifier FROM pg_control_system()"
        ),
        system_identifier
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_logical_backup_under_writers_restores_into_a_fresh_server() {
    let mut pg = Postgres::start();
    Postgres::run("pgbench", &["-i", "-q", "-s", "1", &pg.url()]);
    pg.sql("postgres", "CREATE ROLE app_reader LOGIN");
    pg.sql("postgres", "CREATE DATABASE \"shop floor\"");
    pg.sql(
        "shop floor",
        "CREATE TABLE items (id int PRIMARY KEY, name text); \
         INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 500) i; \
         GRANT SELECT ON items TO app_reader",
    );
    let writer = start_sequence_writer(&pg);
    writer.wait_for(20);
    let bench = pgbench_running(&pg, 4);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let before = writer.written();
    let (_dir, repo) = local_repo().await;
    let backup = back_up(&repo, &snapshotter(&pg.url(), PostgresMode::Logical)).await;
    let after = writer.written();
    writer.wait_for(after + 10);
    let after = writer.stop();
    bench.join().unwrap();
    assert_eq!(backup.manifest.facts["mode"], "logical");
    assert_eq!(
        backup.manifest.facts["databases"],
        serde_json::json!(["postgres", "shop floor"])
    );
    let stored: Vec<String> = repo
        .ls(&backup)
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.path)
        .collect();
    assert_eq!(stored, ["globals.sql", "postgres.dump", "shop floor.dump"]);

    let old_data = pg.data_dir().to_path_buf();
    pg.kill();
    std::fs::remove_dir_all(&old_data).unwrap();

    let fresh = Postgres::start();
    let restorer = PostgresRestorer::logical(fresh.url()).with_bin_dir(postgres::bin_dir());
    let report = repo.restore_into(&backup, &restorer).await.unwrap();
    assert_eq!(
        report.details["databases"],
        serde_json::json!(["postgres", "shop floor"])
    );
    assert_gap_free_prefix(sequence(&fresh), before..=after);
    assert_pgbench_consistent(&fresh, 100_000);
    assert_eq!(fresh.sql("shop floor", "SELECT count(*) FROM items"), "500");
    assert_eq!(
        fresh.sql(
            "shop floor",
            "SELECT has_table_privilege('app_reader', 'items', 'SELECT')"
        ),
        "t"
    );

    // Restoring again over the restored data is refused before anything is
    // written.
    let again = repo.restore_into(&backup, &restorer).await.unwrap_err();
    assert!(
        matches!(again, backup_core::Error::RestoreRefused { .. }),
        "{again}"
    );
    assert!(again.to_string().contains("postgres"), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_base_backup_cut_off_halfway_fails_with_the_server_s_message_and_records_nothing() {
    let pg = Postgres::start();
    Postgres::run("pgbench", &["-i", "-q", "-s", "12", &pg.url()]);
    let (_dir, repo) = local_repo().await;
    let killer = {
        let url = pg.url();
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while std::time::Instant::now() < deadline {
                let output = std::process::Command::new(postgres::bin_dir().join("psql"))
                    .args(["-X", "-A", "-t", "-d", &url, "-c"])
                    .arg(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_progress_basebackup \
                         WHERE backup_streamed > 20000000",
                    )
                    .output()
                    .unwrap();
                if String::from_utf8_lossy(&output.stdout).trim() == "t" {
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            false
        })
    };
    let error = repo
        .backup(
            &snapshotter(&pg.url(), PostgresMode::Physical),
            BackupOptions::default().with_set("pg"),
        )
        .await
        .unwrap_err();
    assert!(killer.join().unwrap(), "the base backup was never cut off");
    let message = error.to_string();
    assert!(message.contains("pg_basebackup"), "{message}");
    assert!(
        message.contains("terminating") || message.contains("closed the connection"),
        "{message}"
    );
    assert!(repo.list().await.unwrap().is_empty());
    assert!(pg
        .sql("postgres", "SELECT slot_name FROM pg_replication_slots")
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dump_cut_off_halfway_fails_with_the_server_s_message_and_records_nothing() {
    let pg = Postgres::start();
    Postgres::run("pgbench", &["-i", "-q", "-s", "12", &pg.url()]);
    let (_dir, repo) = local_repo().await;
    let killer = {
        let url = pg.url();
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while std::time::Instant::now() < deadline {
                let output = std::process::Command::new(postgres::bin_dir().join("psql"))
                    .args(["-X", "-A", "-t", "-d", &url, "-c"])
                    .arg(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE \
                         application_name = 'pg_dump' AND query LIKE 'COPY public.pgbench_accounts%'",
                    )
                    .output()
                    .unwrap();
                if String::from_utf8_lossy(&output.stdout).trim() == "t" {
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            false
        })
    };
    let error = repo
        .backup(
            &snapshotter(&pg.url(), PostgresMode::Logical).with_globals(false),
            BackupOptions::default().with_set("pg"),
        )
        .await
        .unwrap_err();
    assert!(killer.join().unwrap(), "the dump was never cut off");
    let message = error.to_string();
    assert!(message.contains("pg_dump"), "{message}");
    assert!(
        message.contains("terminating connection due to administrator command"),
        "{message}"
    );
    assert!(repo.list().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restore_into_a_used_directory_or_the_wrong_kind_of_target_is_refused() {
    let pg = Postgres::start();
    let (_dir, repo) = local_repo().await;
    let backup = back_up(&repo, &snapshotter(&pg.url(), PostgresMode::Physical)).await;

    let place = tempfile::tempdir().unwrap();
    std::fs::write(place.path().join("PG_VERSION"), "15\n").unwrap();
    let error = repo
        .restore_into(&backup, &PostgresRestorer::physical(place.path()))
        .await
        .unwrap_err();
    assert!(
        matches!(error, backup_core::Error::RestoreRefused { .. }),
        "{error}"
    );

    // A physical backup does not go into a server, nor a logical one into a
    // data directory.
    let error = repo
        .restore_into(&backup, &PostgresRestorer::logical(pg.url()))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("data directory"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scheduled_base_backup_s_retention_forgets_the_wal_no_kept_base_backup_needs() {
    let pg = Postgres::start();
    let (dir, repo) = local_repo().await;
    let archive = backup_core::WalArchive::new(&repo, "pg");
    // WAL from before any base backup, and WAL from far after.
    for name in [
        "000000010000000000000001",
        "0000000100000000000000FF",
        "00000002.history",
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, name.as_bytes()).unwrap();
        archive.push(&path).await.unwrap();
    }
    let keep = backup_core::KeepPolicy {
        keep_last: Some(1),
        ..backup_core::KeepPolicy::default()
    };
    let source = snapshotter(&pg.url(), PostgresMode::Physical);
    for _ in 0..2 {
        backup_core::schedule::run_backup_job(
            &repo,
            &source,
            BackupOptions::default().with_set("pg"),
            &keep,
            None,
        )
        .await
        .unwrap();
    }
    let bases: Vec<Backup> = repo
        .list()
        .await
        .unwrap()
        .into_iter()
        .filter(|backup| backup.manifest.set == "pg")
        .collect();
    assert_eq!(bases.len(), 1);
    let first_needed = bases[0].manifest.facts["wal_start"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        first_needed.as_str() > "000000010000000000000001",
        "{first_needed}"
    );
    let left: Vec<String> = archive
        .files()
        .await
        .unwrap()
        .into_iter()
        .map(|file| file.name)
        .collect();
    assert_eq!(left, ["0000000100000000000000FF", "00000002.history"]);
}

/// The conformance suite, for both modes.
struct PostgresFixture {
    pg: Postgres,
    secured: Postgres,
    refused: RefusedPort,
    mode: PostgresMode,
    dir: tempfile::TempDir,
}

impl PostgresFixture {
    fn new(mode: PostgresMode) -> PostgresFixture {
        let pg = Postgres::start();
        pg.sql(
            "postgres",
            "CREATE TABLE kept (n int); INSERT INTO kept VALUES (1), (2), (3)",
        );
        PostgresFixture {
            pg,
            secured: Postgres::start_with(PostgresOptions {
                password: Some("right".into()),
                ..PostgresOptions::default()
            }),
            refused: RefusedPort::new(),
            mode,
            dir: tempfile::tempdir().unwrap(),
        }
    }
}

#[async_trait]
impl SnapshotterFixture for PostgresFixture {
    fn working(&self) -> Box<dyn Snapshotter> {
        Box::new(snapshotter(&self.pg.url(), self.mode))
    }

    fn failing(&self) -> Vec<FailingSource> {
        vec![
            FailingSource {
                case: "postgres down".into(),
                snapshotter: Box::new(snapshotter(
                    &format!(
                        "postgresql://postgres@127.0.0.1:{}/postgres",
                        self.refused.port()
                    ),
                    self.mode,
                )),
                message: "Connection refused".into(),
            },
            FailingSource {
                case: "a wrong postgres password".into(),
                snapshotter: Box::new(
                    snapshotter(
                        &format!(
                            "postgresql://postgres@127.0.0.1:{}/postgres",
                            self.secured.port()
                        ),
                        self.mode,
                    )
                    .with_password("wrong"),
                ),
                message: "password authentication failed for user \"postgres\"".into(),
            },
        ]
    }

    fn expected_facts(&self) -> Vec<&'static str> {
        match self.mode {
            PostgresMode::Physical => vec![
                "mode",
                "server_version",
                "system_identifier",
                "timeline",
                "start_lsn",
                "stop_lsn",
                "wal_start",
                "wal_stop",
                "backup_label",
            ],
            _ => vec!["mode", "server_version", "databases", "format", "globals"],
        }
    }

    async fn leftovers(&self) -> Vec<String> {
        let mut left: Vec<String> = self
            .pg
            .sql(
                "postgres",
                "SELECT 'slot ' || slot_name FROM pg_replication_slots",
            )
            .lines()
            .map(str::to_string)
            .collect();
        left.extend(
            self.pg
                .sql(
                    "postgres",
                    "SELECT 'session ' || application_name FROM pg_stat_activity WHERE \
                     application_name IN ('pg_basebackup', 'pg_dump', 'pg_dumpall') OR \
                     backend_type = 'walsender'",
                )
                .lines()
                .map(str::to_string),
        );
        left
    }

    async fn check_consistent(&self, repo: &Repository, backup: &Backup) -> Result<(), String> {
        let kept = match self.mode {
            PostgresMode::Physical => {
                let data_dir = self.dir.path().join(format!("restored-{}", backup.id));
                repo.restore_into(backup, &PostgresRestorer::physical(&data_dir))
                    .await
                    .map_err(|error| error.to_string())?;
                let restored = Postgres::start_on(&data_dir, PostgresOptions::default());
                restored.sql(
                    "postgres",
                    "SELECT string_agg(n::text, ',' ORDER BY n) FROM kept",
                )
            }
            _ => {
                let fresh = Postgres::start();
                repo.restore_into(
                    backup,
                    &PostgresRestorer::logical(fresh.url()).with_bin_dir(postgres::bin_dir()),
                )
                .await
                .map_err(|error| error.to_string())?;
                fresh.sql(
                    "postgres",
                    "SELECT string_agg(n::text, ',' ORDER BY n) FROM kept",
                )
            }
        };
        (kept == "1,2,3")
            .then_some(())
            .ok_or_else(|| format!("restored {kept:?}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_physical_postgres_snapshotter_keeps_the_contract() {
    run_snapshotter_suite(&PostgresFixture::new(PostgresMode::Physical)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_logical_postgres_snapshotter_keeps_the_contract() {
    run_snapshotter_suite(&PostgresFixture::new(PostgresMode::Logical)).await;
}

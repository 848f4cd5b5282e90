//! The MariaDB snapshotters and restorers against real servers (Debian's
//! `mariadb-server` and `mariadb-backup`) on 127.0.0.1: a writer writing
//! during the backup, the server and its data destroyed, the backup
//! restored into a fresh server (logical) or data directory (physical).

use async_trait::async_trait;
use backup_core::snapshot_conformance::{run_snapshotter_suite, FailingSource, SnapshotterFixture};
use backup_core::{
    Backup, BackupOptions, MariadbMode, MariadbRestorer, MariadbSnapshotter, Repository,
    Snapshotter,
};
use backup_testkit::server::mariadb::Mariadb;
use backup_testkit::server::RefusedPort;

use super::{assert_gap_free_prefix, local_repo, SequenceWriter};

/// `app.seq(n)` and a writer inserting 0, 1, 2... one transaction each,
/// beside a table of 20 000 rows.
fn prepare(db: &Mariadb) -> SequenceWriter {
    db.sql(
        "CREATE DATABASE app; \
         CREATE TABLE app.seq (n bigint PRIMARY KEY) ENGINE=InnoDB; \
         CREATE TABLE app.bulk (id int PRIMARY KEY, body varchar(200)) ENGINE=InnoDB; \
         SET max_recursive_iterations = 100000; \
         INSERT INTO app.bulk WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s \
         WHERE i < 20000) SELECT i, repeat(md5(i), 6) FROM s; \
         CREATE PROCEDURE app.seq_count() SELECT count(*) FROM app.seq; \
         CREATE USER reader@'%' IDENTIFIED BY 'reads'; GRANT SELECT ON app.* TO reader@'%'",
    );
    let port = db.port();
    SequenceWriter::start(move |n| {
        std::process::Command::new("mariadb")
            .args([
                "--no-defaults",
                "--host=127.0.0.1",
                "--protocol=TCP",
                "--user=root",
            ])
            .arg(format!("--port={port}"))
            .arg("-e")
            .arg(format!("INSERT INTO app.seq VALUES ({n})"))
            .status()
            .is_ok_and(|status| status.success())
    })
}

fn sequence(db: &Mariadb) -> Vec<u64> {
    db.sql("SELECT n FROM app.seq")
        .lines()
        .map(|line| line.parse().unwrap())
        .collect()
}

async fn back_up(repo: &Repository, source: &MariadbSnapshotter) -> Backup {
    let summary = repo
        .backup(source, BackupOptions::default().with_set("mariadb"))
        .await
        .expect("the MariaDB backup");
    Backup {
        id: summary.id,
        manifest: summary.manifest,
    }
}

async fn round_trip(mode: MariadbMode) {
    let mut db = Mariadb::start();
    let writer = prepare(&db);
    writer.wait_for(20);
    let before = writer.written();
    let (_dir, repo) = local_repo().await;
    let backup = back_up(&repo, &MariadbSnapshotter::new(db.url()).with_mode(mode)).await;
    let after = writer.written();
    writer.wait_for(after + 10);
    let after = writer.stop();
    let facts = &backup.manifest.facts;
    assert_eq!(backup.manifest.source.kind, "mariadb");
    assert_eq!(facts["mode"], mode.as_str());
    assert!(
        facts["binlog_file"]
            .as_str()
            .unwrap()
            .starts_with("binlog."),
        "{facts:?}"
    );
    assert!(facts["binlog_position"].as_u64().unwrap() > 0, "{facts:?}");
    assert!(
        facts["gtid"].as_str().unwrap().starts_with("0-1-"),
        "{facts:?}"
    );
    assert!(facts["server_version"]
        .as_str()
        .unwrap()
        .contains("MariaDB"));

    let old_data = db.data_dir().to_path_buf();
    db.kill();
    std::fs::remove_dir_all(&old_data).unwrap();

    let place = tempfile::tempdir().unwrap();
    let restored = match mode {
        MariadbMode::Logical => {
            let fresh = Mariadb::start();
            repo.restore_into(&backup, &MariadbRestorer::logical(fresh.url()))
                .await
                .unwrap();
            // Restoring again over it is refused before anything is written.
            let again = repo
                .restore_into(&backup, &MariadbRestorer::logical(fresh.url()))
                .await
                .unwrap_err();
            assert!(
                matches!(again, backup_core::Error::RestoreRefused { .. }),
                "{again}"
            );
            fresh
        }
        _ => {
            let data_dir = place.path().join("data");
            repo.restore_into(&backup, &MariadbRestorer::physical(&data_dir))
                .await
                .unwrap();
            Mariadb::start_on(&data_dir)
        }
    };
    assert_gap_free_prefix(sequence(&restored), before..=after);
    assert_eq!(restored.sql("SELECT count(*) FROM app.bulk"), "20000");
    assert_eq!(
        restored.sql("SELECT sum(length(body)) FROM app.bulk"),
        (20_000 * 192).to_string()
    );
    assert_eq!(
        restored.sql("CALL app.seq_count()"),
        sequence(&restored).len().to_string()
    );
    assert!(restored
        .sql("SHOW GRANTS FOR reader@'%'")
        .contains("GRANT SELECT ON `app`.*"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_logical_backup_under_a_writer_replays_into_a_fresh_server() {
    round_trip(MariadbMode::Logical).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_physical_backup_under_a_writer_is_prepared_into_a_fresh_data_directory() {
    round_trip(MariadbMode::Physical).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dump_cut_off_halfway_fails_with_the_server_s_message_and_records_nothing() {
    let db = Mariadb::start();
    db.sql(
        "CREATE DATABASE big; \
         CREATE TABLE big.rows (id int PRIMARY KEY, body varchar(1000)) ENGINE=InnoDB; \
         SET max_recursive_iterations = 1000000; \
         INSERT INTO big.rows WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s \
         WHERE i < 200000) SELECT i, repeat(md5(i), 30) FROM s",
    );
    let (_dir, repo) = local_repo().await;
    let killer = {
        let port = db.port();
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while std::time::Instant::now() < deadline {
                let output = std::process::Command::new("mariadb")
                    .args([
                        "--no-defaults",
                        "--host=127.0.0.1",
                        "--protocol=TCP",
                        "--user=root",
                    ])
                    .arg(format!("--port={port}"))
                    .args(["--batch", "--skip-column-names", "-e"])
                    .arg(
                        "SELECT id FROM information_schema.processlist WHERE info LIKE \
                         'SELECT /*!40001 SQL_NO_CACHE */%rows%'",
                    )
                    .output()
                    .unwrap();
                let id = String::from_utf8_lossy(&output.stdout).trim().to_string();
                if let Some(id) = id.lines().next().filter(|id| !id.is_empty()) {
                    let killed = std::process::Command::new("mariadb")
                        .args([
                            "--no-defaults",
                            "--host=127.0.0.1",
                            "--protocol=TCP",
                            "--user=root",
                        ])
                        .arg(format!("--port={port}"))
                        .arg("-e")
                        .arg(format!("KILL {id}"))
                        .status()
                        .unwrap();
                    return killed.success();
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            false
        })
    };
    let error = repo
        .backup(
            &MariadbSnapshotter::new(db.url()),
            BackupOptions::default().with_set("mariadb"),
        )
        .await
        .unwrap_err();
    assert!(killer.join().unwrap(), "the dump was never cut off");
    let message = error.to_string();
    assert!(message.contains("mariadb-dump"), "{message}");
    assert!(
        message.contains("Lost connection") || message.contains("server has gone away"),
        "{message}"
    );
    assert!(repo.list().await.unwrap().is_empty());
}

/// The conformance suite, for both modes.
struct MariadbFixture {
    db: Mariadb,
    secured: Mariadb,
    refused: RefusedPort,
    mode: MariadbMode,
    dir: tempfile::TempDir,
}

impl MariadbFixture {
    fn staging(&self) -> std::path::PathBuf {
        self.dir.path().join("staging")
    }

    fn source(&self, url: String) -> MariadbSnapshotter {
        MariadbSnapshotter::new(url)
            .with_mode(self.mode)
            .with_staging_dir(self.staging())
    }
}

#[async_trait]
impl SnapshotterFixture for MariadbFixture {
    fn working(&self) -> Box<dyn Snapshotter> {
        Box::new(self.source(self.db.url()))
    }

    fn failing(&self) -> Vec<FailingSource> {
        vec![
            FailingSource {
                case: "mariadb down".into(),
                snapshotter: Box::new(
                    self.source(format!("mysql://root@127.0.0.1:{}/", self.refused.port())),
                ),
                message: "Can't connect to server on '127.0.0.1'".into(),
            },
            FailingSource {
                case: "a wrong mariadb password".into(),
                snapshotter: Box::new(
                    self.source(format!("mysql://root@127.0.0.1:{}/", self.secured.port()))
                        .with_password("wrong"),
                ),
                message: "Access denied for user 'root'@'127.0.0.1'".into(),
            },
        ]
    }

    fn expected_facts(&self) -> Vec<&'static str> {
        vec![
            "mode",
            "server_version",
            "binlog_file",
            "binlog_position",
            "gtid",
        ]
    }

    async fn leftovers(&self) -> Vec<String> {
        let mut left: Vec<String> = self
            .db
            .sql("SELECT concat('session ', id, ' ', coalesce(info, '')) FROM information_schema.processlist WHERE id <> connection_id() AND command <> 'Daemon'")
            .lines()
            .map(str::to_string)
            .collect();
        left.extend(
            std::fs::read_dir(self.staging())
                .into_iter()
                .flatten()
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("mariadb-backup-")),
        );
        left
    }

    async fn check_consistent(&self, repo: &Repository, backup: &Backup) -> Result<(), String> {
        let restored = match self.mode {
            MariadbMode::Logical => {
                let fresh = Mariadb::start();
                repo.restore_into(backup, &MariadbRestorer::logical(fresh.url()))
                    .await
                    .map_err(|error| error.to_string())?;
                fresh
            }
            _ => {
                let data_dir = self.dir.path().join(format!("restored-{}", backup.id));
                repo.restore_into(backup, &MariadbRestorer::physical(&data_dir))
                    .await
                    .map_err(|error| error.to_string())?;
                Mariadb::start_on(&data_dir)
            }
        };
        let kept = restored.sql("SELECT group_concat(n ORDER BY n) FROM app.kept");
        (kept == "1,2,3")
            .then_some(())
            .ok_or_else(|| format!("restored {kept:?}"))
    }
}

fn fixture(mode: MariadbMode) -> MariadbFixture {
    let db = Mariadb::start();
    db.sql("CREATE DATABASE app; CREATE TABLE app.kept (n int); INSERT INTO app.kept VALUES (1), (2), (3)");
    let fixture = MariadbFixture {
        db,
        secured: Mariadb::start_with_password(Some("right")),
        refused: RefusedPort::new(),
        mode,
        dir: tempfile::tempdir().unwrap(),
    };
    std::fs::create_dir(fixture.staging()).unwrap();
    fixture
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_logical_mariadb_snapshotter_keeps_the_contract() {
    run_snapshotter_suite(&fixture(MariadbMode::Logical)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_physical_mariadb_snapshotter_keeps_the_contract() {
    run_snapshotter_suite(&fixture(MariadbMode::Physical)).await;
}

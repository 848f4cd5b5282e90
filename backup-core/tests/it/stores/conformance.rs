//! The snapshotter conformance suite, run by every snapshotter against a
//! real source: a directory, a command, an etcd member, a Redis server.

use std::path::PathBuf;

use async_trait::async_trait;
use backup_core::snapshot_conformance::{run_snapshotter_suite, FailingSource, SnapshotterFixture};
use backup_core::{
    Backup, CommandSnapshotter, DirectoryRestorer, DirectorySnapshotter, EtcdRestorer,
    EtcdSnapshotter, RedisRestorer, RedisSnapshotter, Repository, Snapshotter,
};
use backup_testkit::server::etcd::Etcd;
use backup_testkit::server::redis::Redis;
use backup_testkit::server::{candidate_port, RefusedPort};

struct DirectoryFixture {
    dir: tempfile::TempDir,
}

#[async_trait]
impl SnapshotterFixture for DirectoryFixture {
    fn working(&self) -> Box<dyn Snapshotter> {
        Box::new(DirectorySnapshotter::new(vec![self
            .dir
            .path()
            .join("data")]))
    }

    fn failing(&self) -> Vec<FailingSource> {
        vec![FailingSource {
            case: "a missing directory".into(),
            snapshotter: Box::new(DirectorySnapshotter::new(vec![self
                .dir
                .path()
                .join("missing")])),
            message: "No such file or directory".into(),
        }]
    }

    fn expected_facts(&self) -> Vec<&'static str> {
        Vec::new()
    }

    async fn leftovers(&self) -> Vec<String> {
        Vec::new()
    }

    async fn check_consistent(&self, repo: &Repository, backup: &Backup) -> Result<(), String> {
        let target = self.dir.path().join(format!("restored-{}", backup.id));
        repo.restore_into(backup, &DirectoryRestorer::new(&target))
            .await
            .map_err(|error| error.to_string())?;
        let original = std::fs::read(self.dir.path().join("data/file")).unwrap();
        let restored =
            std::fs::read(target.join("data/file")).map_err(|error| error.to_string())?;
        (original == restored)
            .then_some(())
            .ok_or_else(|| "other bytes".into())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_directory_snapshotter_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/file"), vec![9u8; 300_000]).unwrap();
    run_snapshotter_suite(&DirectoryFixture { dir }).await;
}

struct CommandFixture {
    dir: tempfile::TempDir,
}

impl CommandFixture {
    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("pid")
    }
}

#[async_trait]
impl SnapshotterFixture for CommandFixture {
    fn working(&self) -> Box<dyn Snapshotter> {
        let script = format!(
            "echo $$ > {}; head -c 3000000 /dev/zero; sleep 0.3; echo end",
            self.pid_file().display()
        );
        Box::new(CommandSnapshotter::new("sh", ["-c", script.as_str()]).with_file_name("out"))
    }

    fn failing(&self) -> Vec<FailingSource> {
        vec![
            FailingSource {
                case: "a command exiting non-zero".into(),
                snapshotter: Box::new(CommandSnapshotter::new(
                    "sh",
                    [
                        "-c",
                        "echo dumping; echo 'pg_dump: error: connection refused' >&2; exit 1",
                    ],
                )),
                message: "pg_dump: error: connection refused".into(),
            },
            FailingSource {
                case: "a missing program".into(),
                snapshotter: Box::new(CommandSnapshotter::new("no-such-dump-tool", ["x"])),
                message: "no-such-dump-tool".into(),
            },
        ]
    }

    fn expected_facts(&self) -> Vec<&'static str> {
        vec!["command", "exit_status"]
    }

    async fn leftovers(&self) -> Vec<String> {
        let Ok(pid) = std::fs::read_to_string(self.pid_file()) else {
            return Vec::new();
        };
        let pid = pid.trim();
        if pid.is_empty() {
            // Killed between creating the file and writing to it.
            return Vec::new();
        }
        // A zombie is reaped by its parent; a live process is left behind.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) if !stat.contains(") Z ") => vec![format!("process {pid}")],
            _ => Vec::new(),
        }
    }

    async fn check_consistent(&self, repo: &Repository, backup: &Backup) -> Result<(), String> {
        let mut reader = repo
            .open_file(backup, "out")
            .await
            .map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        while let Some(chunk) = reader.next_chunk().await.map_err(|e| e.to_string())? {
            bytes.extend_from_slice(&chunk);
        }
        let mut expected = vec![0u8; 3_000_000];
        expected.extend_from_slice(b"end\n");
        (bytes == expected)
            .then_some(())
            .ok_or_else(|| format!("{} other bytes", bytes.len()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_command_snapshotter_keeps_the_contract() {
    run_snapshotter_suite(&CommandFixture {
        dir: tempfile::tempdir().unwrap(),
    })
    .await;
}

struct EtcdFixture {
    etcd: Etcd,
    refused: RefusedPort,
}

const ETCD_PASSWORD: &str = "root password";

#[async_trait]
impl SnapshotterFixture for EtcdFixture {
    fn working(&self) -> Box<dyn Snapshotter> {
        Box::new(
            EtcdSnapshotter::new([self.etcd.endpoint()]).with_credentials("root", ETCD_PASSWORD),
        )
    }

    fn failing(&self) -> Vec<FailingSource> {
        vec![
            FailingSource {
                case: "etcd down".into(),
                snapshotter: Box::new(EtcdSnapshotter::new([self.refused.endpoint()])),
                message: "Connection refused".into(),
            },
            FailingSource {
                case: "a wrong etcd password".into(),
                snapshotter: Box::new(
                    EtcdSnapshotter::new([self.etcd.endpoint()]).with_credentials("root", "wrong"),
                ),
                message: "authentication failed, invalid user ID or password".into(),
            },
            FailingSource {
                case: "no etcd credentials with auth on".into(),
                snapshotter: Box::new(EtcdSnapshotter::new([self.etcd.endpoint()])),
                message: "user name is empty".into(),
            },
        ]
    }

    fn expected_facts(&self) -> Vec<&'static str> {
        vec![
            "endpoint",
            "member_name",
            "member_id",
            "cluster_id",
            "revision",
            "raft_term",
            "etcd_version",
            "db_size",
            "sha256",
            "file",
        ]
    }

    async fn leftovers(&self) -> Vec<String> {
        // Nothing is written on the member; a leftover would be a file of ours.
        std::fs::read_dir(self.etcd.data_dir().parent().unwrap())
            .map(|entries| {
                entries
                    .flatten()
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .filter(|name| name.ends_with(".part"))
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn check_consistent(&self, repo: &Repository, backup: &Backup) -> Result<(), String> {
        let place = tempfile::tempdir().unwrap();
        let peer_port = candidate_port();
        let peer = format!("http://127.0.0.1:{peer_port}");
        let data_dir = place.path().join("m.etcd");
        repo.restore_into(
            backup,
            &EtcdRestorer::new(&data_dir)
                .with_name("m")
                .with_initial_advertise_peer_urls(&peer),
        )
        .await
        .map_err(|error| error.to_string())?;
        let restored = Etcd::start_restored("m", &data_dir, peer_port);
        let value = restored.etcdctl(&[
            "--user",
            &format!("root:{ETCD_PASSWORD}"),
            "get",
            "marker",
            "--print-value-only",
        ]);
        (value.trim() == "consistent")
            .then_some(())
            .ok_or_else(|| format!("marker = {value:?}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_etcd_snapshotter_keeps_the_contract() {
    let etcd = Etcd::start();
    etcd.etcdctl(&["put", "marker", "consistent"]);
    etcd.etcdctl(&["user", "add", &format!("root:{ETCD_PASSWORD}")]);
    etcd.etcdctl(&["auth", "enable"]);
    run_snapshotter_suite(&EtcdFixture {
        etcd,
        refused: RefusedPort::new(),
    })
    .await;
}

struct RedisFixture {
    redis: Redis,
    digest: String,
    refused: RefusedPort,
    replication: bool,
}

impl RedisFixture {
    fn source(&self, url: String) -> RedisSnapshotter {
        let source = RedisSnapshotter::new(url);
        if self.replication {
            // The data directory is never read in this mode.
            source
                .with_replication_stream()
                .with_data_dir("/nonexistent/redis/data")
        } else {
            source
        }
    }
}

#[async_trait]
impl SnapshotterFixture for RedisFixture {
    fn working(&self) -> Box<dyn Snapshotter> {
        Box::new(self.source(self.redis.url()))
    }

    fn failing(&self) -> Vec<FailingSource> {
        vec![
            FailingSource {
                case: "redis down".into(),
                snapshotter: Box::new(
                    self.source(format!("redis://127.0.0.1:{}/", self.refused.port())),
                ),
                message: "Connection refused".into(),
            },
            FailingSource {
                case: "a wrong redis password".into(),
                snapshotter: Box::new(
                    self.source(format!("redis://:wrong@127.0.0.1:{}/", self.redis.port())),
                ),
                message: "WRONGPASS".into(),
            },
        ]
    }

    fn expected_facts(&self) -> Vec<&'static str> {
        let mut facts = vec![
            "redis_version",
            "role",
            "master_repl_offset",
            "dir",
            "dbfilename",
            "appendonly",
            "keyspace",
            "rdb_version",
            "rdb_size",
            "crc64",
            "file",
            "mode",
        ];
        if self.replication {
            facts.extend(["master_replid", "sync_offset", "rdb_only", "diskless"]);
        }
        facts
    }

    async fn leftovers(&self) -> Vec<String> {
        std::fs::read_dir(self.redis.data_dir())
            .map(|entries| {
                entries
                    .flatten()
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .filter(|name| name.starts_with("temp-"))
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn check_consistent(&self, repo: &Repository, backup: &Backup) -> Result<(), String> {
        let place = tempfile::tempdir().unwrap();
        repo.restore_into(backup, &RedisRestorer::new(place.path()))
            .await
            .map_err(|error| error.to_string())?;
        let restored = Redis::start_on(place.path());
        let digest = restored.cli(&["DEBUG", "DIGEST"]);
        (digest == self.digest)
            .then_some(())
            .ok_or_else(|| format!("digest {digest}, source {}", self.digest))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_redis_snapshotter_keeps_the_contract() {
    let redis = Redis::start_with(&["--requirepass", "redis password"]);
    redis.cli(&["DEBUG", "POPULATE", "3000", "key", "64"]);
    let digest = redis.cli(&["DEBUG", "DIGEST"]);
    run_snapshotter_suite(&RedisFixture {
        redis,
        digest,
        refused: RefusedPort::new(),
        replication: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_redis_snapshotter_over_the_replication_stream_keeps_the_contract() {
    let redis = Redis::start_with(&["--requirepass", "redis password"]);
    redis.cli(&["DEBUG", "POPULATE", "3000", "key", "64"]);
    redis.cli(&["CONFIG", "SET", "repl-diskless-sync-delay", "0"]);
    let digest = redis.cli(&["DEBUG", "DIGEST"]);
    run_snapshotter_suite(&RedisFixture {
        redis,
        digest,
        refused: RefusedPort::new(),
        replication: true,
    })
    .await;
}

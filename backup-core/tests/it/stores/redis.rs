//! Redis: a real server, a writer writing through the backup, restore into
//! a fresh server, damaged RDBs and an append-only configuration.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

use backup_core::{BackupOptions, Error, RedisRestorer, RedisSnapshotter};
use backup_testkit::server::redis::Redis;

use super::{assert_gap_free_prefix, local_repo, SequenceWriter};

const KNOWN: u64 = 40_000;

/// `SET seq:N N` over one connection, acknowledged by `+OK`.
fn sequence_writer(port: u16) -> SequenceWriter {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    SequenceWriter::start(move |n| {
        let command = format!("SET seq:{n} {n}\r\n");
        if stream.write_all(command.as_bytes()).is_err() {
            return false;
        }
        let mut line = String::new();
        reader.read_line(&mut line).is_ok() && line.starts_with("+OK")
    })
}

fn sequence(redis: &Redis) -> Vec<u64> {
    redis
        .cli(&["--scan", "--pattern", "seq:*"])
        .lines()
        .map(|key| key.trim_start_matches("seq:").parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_backup_taken_while_a_writer_writes_restores_one_consistent_point() {
    let redis = Redis::start();
    redis.cli(&["DEBUG", "POPULATE", &KNOWN.to_string(), "known", "512"]);
    let writer = sequence_writer(redis.port());
    writer.wait_for(50);
    let (_dir, repo) = local_repo().await;
    let before = writer.written();
    let summary = repo
        .backup(
            &RedisSnapshotter::new(redis.url()),
            BackupOptions::default().with_set("redis"),
        )
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", redis.log_tail()));
    let after = writer.written();
    writer.wait_for(after + 5);
    writer.stop();
    let facts = &summary.manifest.facts;
    assert_eq!(facts["role"], "master");
    assert!(
        facts["redis_version"].as_str().unwrap().starts_with('7'),
        "{facts:?}"
    );
    assert!(facts["rdb_version"].as_u64().unwrap() >= 9, "{facts:?}");
    assert!(
        facts["keyspace"]["db0"].as_u64().unwrap() >= KNOWN,
        "{facts:?}"
    );
    assert_eq!(facts["crc64"].as_str().unwrap().len(), 16, "{facts:?}");
    assert_eq!(facts["appendonly"], "no");

    // The server and its data are gone; a fresh one starts from the backup.
    let mut redis = redis;
    redis.kill();
    drop(redis);
    let place = tempfile::tempdir().unwrap();
    let data_dir = place.path().join("data");
    let backup = repo.load_backup(&summary.id).await.unwrap();
    let restored = repo
        .restore_into(&backup, &RedisRestorer::new(&data_dir))
        .await
        .unwrap();
    assert_eq!(restored.target, data_dir.join("dump.rdb"));
    let redis = Redis::start_on(&data_dir);
    let known = redis.cli(&["EVAL", "return #redis.call('KEYS', 'known:*')", "0"]);
    assert_eq!(known, KNOWN.to_string());
    assert_eq!(redis.cli(&["GET", "known:123"]).len(), 512);
    assert!(redis.cli(&["GET", "known:123"]).starts_with("value:123"));
    assert_gap_free_prefix(sequence(&redis), before..=after);

    // The restored file is in place now: a second restore is refused.
    let error = repo
        .restore_into(&backup, &RedisRestorer::new(&data_dir))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::RestoreRefused { .. }), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restored_redis_has_the_digest_of_the_source() {
    let redis = Redis::start();
    redis.cli(&["DEBUG", "POPULATE", "5000", "key", "100"]);
    redis.cli(&["HSET", "hash", "a", "1", "b", "2"]);
    redis.cli(&["LPUSH", "list", "x", "y", "z"]);
    let digest = redis.cli(&["DEBUG", "DIGEST"]);
    let (_dir, repo) = local_repo().await;
    let summary = repo
        .backup(
            &RedisSnapshotter::new(redis.url()),
            BackupOptions::default(),
        )
        .await
        .unwrap();
    let place = tempfile::tempdir().unwrap();
    let data_dir = place.path().join("data");
    let backup = repo.load_backup(&summary.id).await.unwrap();

    // An append-only configuration would load an empty AOF instead.
    let config = place.path().join("redis.conf");
    std::fs::write(&config, "port 6379\nappendonly yes\n").unwrap();
    let error = repo
        .restore_into(&backup, &RedisRestorer::new(&data_dir).with_config(&config))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("appendonly yes"), "{error}");
    assert!(
        !data_dir.join("dump.rdb").exists(),
        "a refused restore wrote the RDB"
    );

    std::fs::write(&config, "appendonly yes\nappendonly no\n").unwrap();
    repo.restore_into(&backup, &RedisRestorer::new(&data_dir).with_config(&config))
        .await
        .unwrap();
    let restored = Redis::start_on(&data_dir);
    assert_eq!(restored.cli(&["DEBUG", "DIGEST"]), digest);

    // A backup of another kind is refused.
    let error = repo
        .restore_into(
            &backup,
            &backup_core::EtcdRestorer::new(place.path().join("etcd")),
        )
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("\"redis\" snapshotter"),
        "{error}"
    );
}

/// A damaged copy of a real RDB, read in place of the server's own.
async fn damaged_rdb_fails(damage: impl FnOnce(&mut Vec<u8>), expected: &str) {
    let redis = Redis::start();
    redis.cli(&["DEBUG", "POPULATE", "2000", "key", "100"]);
    redis.cli(&["SAVE"]);
    let mut bytes = std::fs::read(redis.data_dir().join("dump.rdb")).unwrap();
    damage(&mut bytes);
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(elsewhere.path().join("dump.rdb"), &bytes).unwrap();
    let (_dir, repo) = local_repo().await;
    let error = repo
        .backup(
            &RedisSnapshotter::new(redis.url()).with_data_dir(elsewhere.path()),
            BackupOptions::default(),
        )
        .await
        .expect_err("a damaged RDB must fail the backup");
    assert!(error.to_string().contains(expected), "{error}");
    assert!(
        repo.list().await.unwrap().is_empty(),
        "a damaged RDB was recorded"
    );
    let report = backup_testkit::repo::verify_data(&repo).await;
    assert!(report.is_ok(), "{:?}", report.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_rdb_with_a_flipped_byte_fails_its_crc() {
    damaged_rdb_fails(
        |bytes| {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x01;
        },
        "CRC-64 check",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_off_rdb_fails_its_check() {
    damaged_rdb_fails(|bytes| bytes.truncate(bytes.len() - 5), "RDB failed its").await;
}

/// Fills `count` keys with 480 bytes each that LZF cannot shrink much.
const FILL: &str =
    "for i=0,ARGV[1]-1 do local v='' for j=1,12 do v=v..redis.sha1hex(i..':'..j) end \
                    redis.call('SET', 'key:'..i, v) end return 1";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unchanged_redis_adds_almost_nothing_and_one_percent_changed_is_measured() {
    let redis = Redis::start();
    redis.cli(&["EVAL", FILL, "0", "100000"]);
    let (_dir, repo) = local_repo().await;
    let source = RedisSnapshotter::new(redis.url());
    let first = repo
        .backup(&source, BackupOptions::default())
        .await
        .unwrap();
    let first_added = first.manifest.stats.bytes_added;
    let unchanged = repo
        .backup(&source, BackupOptions::default())
        .await
        .unwrap();
    // 1% of the keys get new values, spread over the whole key space.
    let script =
        "for i=0,99999,100 do redis.call('SET', 'key:'..i, string.rep('n', 480)) end return 1";
    redis.cli(&["EVAL", script, "0"]);
    let changed = repo
        .backup(&source, BackupOptions::default())
        .await
        .unwrap();
    println!(
        "redis: RDB {} bytes, first backup added {first_added}; unchanged: {} added; 1% of keys \
         changed: {} added ({:.1}% of the first)",
        first.manifest.stats.bytes_total,
        unchanged.manifest.stats.bytes_added,
        changed.manifest.stats.bytes_added,
        100.0 * changed.manifest.stats.bytes_added as f64 / first_added as f64
    );
    // The RDB's header records the save time: only its first chunk differs.
    assert!(
        unchanged.manifest.stats.bytes_added * 10 < first_added,
        "an unchanged server added {} of {first_added}",
        unchanged.manifest.stats.bytes_added
    );
}

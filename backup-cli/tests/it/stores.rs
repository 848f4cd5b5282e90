//! `backupctl` with data stores: `backup --source
//! etcd|redis|postgres|mariadb` with hooks, `show`, `dump`, `restore --to
//! etcd|redis|postgres|mariadb`, and `export --presign`.

use std::path::Path;

use backup_testkit::server::candidate_port;
use backup_testkit::server::etcd::{etcdctl, Etcd};
use backup_testkit::server::mariadb::Mariadb;
use backup_testkit::server::postgres::{self, Postgres, PostgresOptions};
use backup_testkit::server::redis::Redis;
use backup_testkit::server::s3::start_s3s_fs;

use crate::Repo;

fn repo(dir: &Path) -> Repo {
    let repo = Repo::new(dir.join("repo"), Some("store tests"));
    repo.init().ok();
    repo
}

#[test]
fn etcd_through_backupctl_backup_show_dump_restore_with_hooks() {
    let etcd = Etcd::start();
    for i in 0..50 {
        etcd.etcdctl(&["put", &format!("key/{i:03}"), &format!("value {i}")]);
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    let marks = dir.path().join("hooks.log");
    let hook = |word: &str| format!("sh -c 'echo {word} $BACKUP_HOOK >> {}'", marks.display());
    let backup = repo
        .run([
            "backup",
            "--json",
            "--set",
            "etcd",
            "--source",
            "etcd",
            "--etcd-endpoints",
            &etcd.endpoint(),
            "--hook-before",
            &hook("pause"),
            "--hook-after",
            &hook("resume"),
        ])
        .ok()
        .json();
    assert_eq!(backup["source"]["kind"], "etcd");
    assert_eq!(backup["facts"]["member_name"], "test");
    assert_eq!(
        std::fs::read_to_string(&marks).unwrap(),
        "pause before\nresume after\n",
        "the hooks ran in order"
    );

    // show and list --json print the source and its facts.
    let shown = repo
        .run(["show", "latest", "--set", "etcd", "--json"])
        .ok()
        .json();
    assert_eq!(shown["source"]["kind"], "etcd");
    assert!(shown["facts"]["revision"].as_i64().unwrap() >= 50);
    let text = repo.run(["show", "latest"]).ok().stdout;
    assert!(
        text.contains("revision: ") && text.contains("etcd_version: 3."),
        "{text}"
    );
    let listed = repo.run(["list", "--json"]).ok().json();
    assert_eq!(listed[0]["facts"]["sha256"], shown["facts"]["sha256"]);

    // dump gives etcdctl the file it would have saved itself.
    let dumped = dir.path().join("dumped.db");
    let out = repo
        .command(["dump", "latest", "etcd.db"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&dumped, &out.stdout).unwrap();
    let mut status = etcdctl();
    status
        .args(["snapshot", "status", "-w", "json"])
        .arg(&dumped);
    let status: serde_json::Value =
        serde_json::from_str(&backup_testkit::server::run_checked(&mut status)).unwrap();
    assert_eq!(
        status["revision"].as_i64(),
        shown["facts"]["revision"].as_i64()
    );

    // A failing before hook fails the backup, and the after hook still runs.
    std::fs::remove_file(&marks).unwrap();
    let failed = repo
        .run([
            "backup",
            "--set",
            "etcd",
            "--source",
            "etcd",
            "--etcd-endpoints",
            &etcd.endpoint(),
            "--hook-before",
            "false",
            "--hook-after",
            &hook("resume"),
        ])
        .fails();
    assert!(
        failed.stderr.contains("before hook `false` failed"),
        "{}",
        failed.describe()
    );
    assert_eq!(std::fs::read_to_string(&marks).unwrap(), "resume after\n");
    assert_eq!(repo.list().len(), 1, "the failed backup was listed");

    // Restore into a new member, which serves the data.
    drop(etcd);
    let data_dir = dir.path().join("m2.etcd");
    let peer_port = candidate_port();
    let peer = format!("http://127.0.0.1:{peer_port}");
    let restored = repo
        .run([
            "restore",
            "latest",
            "--set",
            "etcd",
            "--to",
            "etcd",
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--etcd-name",
            "m2",
            "--etcd-initial-cluster",
            &format!("m2={peer}"),
            "--etcd-initial-advertise-peer-urls",
            &peer,
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(restored["restored"]["kind"], "etcd");
    let etcd = Etcd::start_restored("m2", &data_dir, peer_port);
    assert_eq!(
        etcd.etcdctl(&["get", "key/042", "--print-value-only"])
            .trim(),
        "value 42"
    );
    // Into a non-empty directory: refused, nothing written.
    let refused = repo
        .run([
            "restore",
            "latest",
            "--to",
            "etcd",
            "--data-dir",
            data_dir.to_str().unwrap(),
        ])
        .fails();
    assert!(
        refused.stderr.contains("refused") && refused.stderr.contains("not empty"),
        "{}",
        refused.describe()
    );
}

#[test]
fn redis_through_backupctl_and_restore_into_a_fresh_server() {
    let redis = Redis::start_with(&["--requirepass", "redis secret"]);
    redis.cli(&["DEBUG", "POPULATE", "2000", "key", "50"]);
    let digest = redis.cli(&["DEBUG", "DIGEST"]);
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    let password = dir.path().join("redis.password");
    std::fs::write(&password, "redis secret\n").unwrap();
    let url = format!("redis://127.0.0.1:{}/", redis.port());
    let backup = repo
        .run([
            "backup",
            "--json",
            "--set",
            "redis",
            "--source",
            "redis",
            "--redis-url",
            &url,
            "--redis-password-file",
            password.to_str().unwrap(),
        ])
        .ok()
        .json();
    assert_eq!(backup["facts"]["keyspace"]["db0"], 2000);
    assert_eq!(backup["facts"]["mode"], "save");
    // The same over the replication stream, as from another host.
    let streamed = repo
        .run([
            "backup",
            "--json",
            "--set",
            "redis-stream",
            "--source",
            "redis",
            "--redis-url",
            &url,
            "--redis-password-file",
            password.to_str().unwrap(),
            "--redis-replication",
        ])
        .ok()
        .json();
    assert_eq!(streamed["facts"]["mode"], "replication");
    assert_eq!(
        streamed["facts"]["rdb_version"],
        backup["facts"]["rdb_version"]
    );
    assert!(
        !backup.to_string().contains("redis secret"),
        "the password was printed"
    );

    // Without the password: the server's own refusal, nothing recorded.
    let refused = repo
        .run(["backup", "--source", "redis", "--redis-url", &url])
        .fails();
    assert!(refused.stderr.contains("NOAUTH"), "{}", refused.describe());

    let config = dir.path().join("redis.conf");
    std::fs::write(&config, "appendonly yes\n").unwrap();
    let data_dir = dir.path().join("restored");
    let aof = repo
        .run([
            "restore",
            "latest",
            "--to",
            "redis",
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--redis-config",
            config.to_str().unwrap(),
        ])
        .fails();
    assert!(aof.stderr.contains("appendonly yes"), "{}", aof.describe());
    repo.run([
        "restore",
        "latest",
        "--to",
        "redis",
        "--data-dir",
        data_dir.to_str().unwrap(),
    ])
    .ok();
    let restored = Redis::start_on(&data_dir);
    assert_eq!(restored.cli(&["DEBUG", "DIGEST"]), digest);
}

#[test]
fn postgres_physical_and_logical_through_backupctl_into_fresh_servers() {
    let pg = Postgres::start_with(PostgresOptions {
        password: Some("pg secret".into()),
        ..PostgresOptions::default()
    });
    pg.sql(
        "postgres",
        "CREATE TABLE orders (id int PRIMARY KEY, total numeric); \
         INSERT INTO orders SELECT i, i * 1.5 FROM generate_series(1, 1000) i",
    );
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    let password = dir.path().join("pg.password");
    std::fs::write(&password, "pg secret\n").unwrap();
    let url = format!("postgresql://postgres@127.0.0.1:{}/postgres", pg.port());
    let bin_dir = postgres::bin_dir();
    let bin_dir = bin_dir.to_str().unwrap();
    let mut backups = Vec::new();
    for mode in ["physical", "logical"] {
        let backup = repo
            .run([
                "backup",
                "--json",
                "--set",
                &format!("pg-{mode}"),
                "--source",
                "postgres",
                "--pg-url",
                &url,
                "--pg-mode",
                mode,
                "--pg-password-file",
                password.to_str().unwrap(),
                "--pg-bin-dir",
                bin_dir,
            ])
            .ok()
            .json();
        assert_eq!(backup["source"]["kind"], "postgres");
        assert_eq!(backup["facts"]["mode"], mode);
        assert!(
            !backup.to_string().contains("pg secret"),
            "the password was printed"
        );
        backups.push(backup);
    }
    assert!(backups[0]["facts"]["start_lsn"].is_string());
    let shown = repo
        .run(["show", "latest", "--set", "pg-physical"])
        .ok()
        .stdout;
    assert!(shown.contains("system_identifier"), "{shown}");

    // A wrong password: the server's own refusal, nothing recorded.
    std::fs::write(dir.path().join("wrong"), "nope\n").unwrap();
    let refused = repo
        .run([
            "backup",
            "--set",
            "pg-physical",
            "--source",
            "postgres",
            "--pg-url",
            &url,
            "--pg-password-file",
            dir.path().join("wrong").to_str().unwrap(),
            "--pg-bin-dir",
            bin_dir,
        ])
        .fails();
    assert!(
        refused.stderr.contains("password authentication failed"),
        "{}",
        refused.describe()
    );
    assert_eq!(
        repo.run(["list", "--json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Physical: into a new data directory, then a server started on it.
    let place = tempfile::tempdir().unwrap();
    let data_dir = place.path().join("data");
    let restored = repo
        .run([
            "restore",
            "latest",
            "--set",
            "pg-physical",
            "--to",
            "postgres",
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--pg-bin-dir",
            bin_dir,
        ])
        .ok()
        .stdout;
    assert!(restored.contains("restored postgres backup"), "{restored}");
    let verified = Postgres::run("pg_verifybackup", &[data_dir.to_str().unwrap()]);
    assert!(verified.contains("successfully verified"), "{verified}");
    let physical = Postgres::start_on(
        &data_dir,
        PostgresOptions {
            password: Some("pg secret".into()),
            ..PostgresOptions::default()
        },
    );
    assert_eq!(
        physical.sql("postgres", "SELECT sum(total) FROM orders"),
        "750750.0"
    );

    // Logical: into a fresh server.
    let fresh = Postgres::start();
    repo.run([
        "restore",
        "latest",
        "--set",
        "pg-logical",
        "--to",
        "postgres",
        "--pg-url",
        &fresh.url(),
        "--pg-bin-dir",
        bin_dir,
    ])
    .ok();
    assert_eq!(
        fresh.sql("postgres", "SELECT sum(total) FROM orders"),
        "750750.0"
    );
}

#[test]
fn mariadb_logical_and_physical_through_backupctl_into_fresh_servers() {
    let db = Mariadb::start_with_password(Some("db secret"));
    db.sql(
        "CREATE DATABASE shop; CREATE TABLE shop.orders (id int PRIMARY KEY, total int); \
         INSERT INTO shop.orders VALUES (1, 10), (2, 20), (3, 30)",
    );
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    let password = dir.path().join("db.password");
    std::fs::write(&password, "db secret\n").unwrap();
    let url = format!("mysql://root@127.0.0.1:{}/", db.port());
    for mode in ["logical", "physical"] {
        let backup = repo
            .run([
                "backup",
                "--json",
                "--set",
                &format!("db-{mode}"),
                "--source",
                "mariadb",
                "--mariadb-url",
                &url,
                "--mariadb-mode",
                mode,
                "--mariadb-password-file",
                password.to_str().unwrap(),
            ])
            .ok()
            .json();
        assert_eq!(backup["source"]["kind"], "mariadb");
        assert_eq!(backup["facts"]["mode"], mode);
        assert!(backup["facts"]["gtid"].is_string(), "{backup}");
        assert!(
            !backup.to_string().contains("db secret"),
            "the password was printed"
        );
    }
    let refused = repo
        .run(["backup", "--source", "mariadb", "--mariadb-url", &url])
        .fails();
    assert!(
        refused.stderr.contains("Access denied"),
        "{}",
        refused.describe()
    );

    let mut fresh = Mariadb::start();
    repo.run([
        "restore",
        "latest",
        "--set",
        "db-logical",
        "--to",
        "mariadb",
        "--mariadb-url",
        &fresh.url(),
    ])
    .ok();
    // The accounts came along: root has the source's password.
    fresh.use_password("db secret");
    assert_eq!(fresh.sql("SELECT sum(total) FROM shop.orders"), "60");

    let data_dir = dir.path().join("restored");
    repo.run([
        "restore",
        "latest",
        "--set",
        "db-physical",
        "--to",
        "mariadb",
        "--data-dir",
        data_dir.to_str().unwrap(),
    ])
    .ok();
    let mut physical = Mariadb::start_on(&data_dir);
    physical.use_password("db secret");
    assert_eq!(physical.sql("SELECT sum(total) FROM shop.orders"), "60");
}

#[test]
fn an_exported_snapshot_downloads_byte_for_byte_from_its_presigned_url() {
    let s3 = start_s3s_fs();
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let content: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(data.join("snapshot.db"), &content).unwrap();
    repo.run(["backup", data.to_str().unwrap()]).ok();
    let out = repo
        .command([
            "export",
            "latest",
            "data/snapshot.db",
            "--to",
            &format!("s3://{}/exports/snapshot.db", s3.bucket),
            "--presign",
            "1h",
            "--json",
            "--endpoint",
            &s3.endpoint(),
            "--allow-http",
        ])
        .env("AWS_ACCESS_KEY_ID", &s3.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &s3.secret_key)
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["bytes"], content.len());
    let url = report["url"].as_str().unwrap();
    assert!(url.contains("X-Amz-Signature="), "{url}");
    // A plain GET, no credentials: exactly the stored bytes.
    let target = url.split_once("://").unwrap().1;
    let (host, path) = target.split_once('/').unwrap();
    let port: u16 = host.rsplit_once(':').unwrap().1.parse().unwrap();
    let body = http_get(port, &format!("/{path}"));
    assert!(
        body == content,
        "the download differs ({} bytes)",
        body.len()
    );
    // A URL whose signature is altered is refused.
    let tampered = format!(
        "/{}",
        path.replacen("X-Amz-Signature=", "X-Amz-Signature=0", 1)
    );
    assert!(http_get_status(port, &tampered) >= 400);
}

fn http_request(port: u16, target: &str) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut body = response[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line]).unwrap().trim(), 16).unwrap();
        data = &data[line + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn http_get(port: u16, target: &str) -> Vec<u8> {
    let (status, body) = http_request(port, target);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    body
}

fn http_get_status(port: u16, target: &str) -> u16 {
    http_request(port, target).0
}

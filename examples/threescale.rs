//! The 3scale seed: its Redis and its system database (PostgreSQL or
//! MariaDB, told apart by the URL) backed up to a local volume, and
//! restored into fresh servers.
//!
//! ```sh
//! # Back up both now, each in its own set (`redis`, `system`).
//! cargo run --example threescale -- /mnt/backups/3scale backup \
//!     redis://127.0.0.1:6379/ postgresql://postgres@127.0.0.1:5432/postgres
//! # Restore: the RDB into a stopped Redis's data directory, the system
//! # database's dump into a fresh server.
//! cargo run --example threescale -- /mnt/backups/3scale restore \
//!     /var/lib/redis mysql://root@new-system-db:3306/
//! ```
//!
//! The system database is dumped logically (`pg_dump` or `mariadb-dump`,
//! found on the `PATH`; `PG_BIN_DIR` names PostgreSQL's directory of
//! programs when it is not there), so it restores into a server of the same
//! or a newer version. Passwords come from the URLs or the tools' own
//! variables (`REDISCLI_AUTH`, `PGPASSWORD`, `MYSQL_PWD`); set
//! `BACKUP_PASSWORD` to encrypt the repository, created on first use.

use std::sync::Arc;

use backup_core::{
    BackupOptions, Error, InitOptions, LocalSink, MariadbRestorer, MariadbSnapshotter,
    PostgresMode, PostgresRestorer, PostgresSnapshotter, RedisRestorer, RedisSnapshotter,
    Repository, Restorer, Snapshotter,
};

const USAGE: &str = "usage: threescale REPOSITORY_DIR backup REDIS_URL SYSTEM_DB_URL\n       \
                     threescale REPOSITORY_DIR restore REDIS_DATA_DIR SYSTEM_DB_URL";

/// Whether a database URL names PostgreSQL (else MariaDB / MySQL).
fn is_postgres(url: &str) -> bool {
    url.starts_with("postgresql://") || url.starts_with("postgres://")
}

fn system_source(url: &str) -> Box<dyn Snapshotter> {
    if is_postgres(url) {
        let mut source = PostgresSnapshotter::new(url).with_mode(PostgresMode::Logical);
        if let Ok(dir) = std::env::var("PG_BIN_DIR") {
            source = source.with_bin_dir(dir);
        }
        Box::new(source)
    } else {
        Box::new(MariadbSnapshotter::new(url))
    }
}

fn system_restorer(url: &str) -> Box<dyn Restorer> {
    if is_postgres(url) {
        let mut restorer = PostgresRestorer::logical(url);
        if let Ok(dir) = std::env::var("PG_BIN_DIR") {
            restorer = restorer.with_bin_dir(dir);
        }
        Box::new(restorer)
    } else {
        Box::new(MariadbRestorer::logical(url))
    }
}

async fn open(place: &str) -> Result<Repository, Error> {
    let password = std::env::var("BACKUP_PASSWORD").ok();
    let sink = Arc::new(LocalSink::create(place)?);
    match Repository::open(sink.clone(), password.as_deref().map(str::as_bytes)).await {
        Err(Error::NoRepository { .. }) => {
            let options = match &password {
                Some(password) => InitOptions::default().with_password(password.as_bytes()),
                None => InitOptions::default(),
            };
            Repository::init(sink, options).await
        }
        opened => opened,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [place, action, first, second] = args.as_slice() else {
        return Err(USAGE.into());
    };
    let repo = open(place).await?;
    match action.as_str() {
        "backup" => {
            let mut redis = RedisSnapshotter::new(first.as_str());
            if let Ok(secret) = std::env::var("REDISCLI_AUTH") {
                redis = redis.with_password(None, secret);
            }
            let sources: [(&str, Box<dyn Snapshotter>); 2] = [
                ("redis", Box::new(redis)),
                ("system", system_source(second)),
            ];
            for (set, source) in sources {
                let summary = repo
                    .backup(source.as_ref(), BackupOptions::default().with_set(set))
                    .await?;
                println!(
                    "{set}: backup {} of {}, {} bytes added",
                    summary.id.short(),
                    source.kind(),
                    summary.manifest.stats.bytes_added
                );
            }
        }
        "restore" => {
            let restores: [(&str, Box<dyn Restorer>); 2] = [
                ("redis", Box::new(RedisRestorer::new(first.as_str()))),
                ("system", system_restorer(second)),
            ];
            for (set, restorer) in restores {
                let latest = repo.find_backup("latest", Some(set)).await?;
                let restored = repo.restore_into(&latest, restorer.as_ref()).await?;
                println!(
                    "{set}: restored {} bytes of backup {} to {}",
                    restored.bytes,
                    latest.id.short(),
                    restored.target.display()
                );
            }
        }
        _ => return Err(USAGE.into()),
    }
    Ok(())
}

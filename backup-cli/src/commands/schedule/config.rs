//! The schedule file of `backupctl schedule --config FILE`: a list of
//! `[[job]]` tables, each naming when it runs, what it backs up, where to,
//! and which backups it keeps.
//!
//! ```toml
//! [[job]]
//! name = "postgres"
//! cron = "0 */2 * * *"
//! set = "postgres"                   # backup set; defaults to the job name
//! repository = "file:///backups"
//! source = { type = "command", command = "pg_dump --format=custom app", file_name = "app.dump" }
//! retention = { keep_last = 3, keep_daily = 7, ttl = "30d" }
//! time_zone = "Europe/Berlin"        # default UTC; or "+02:00"
//! jitter = "5min"                    # random delay in [0, 5 minutes) per run
//! stale_grace = "30min"              # default 1h
//! tags = { env = "prod" }
//! writer = "backup-host-1"
//!
//! [[job]]
//! name = "data"
//! cron = "30 3 * * *"
//! repository = "s3://bucket/prefix"
//! source = { type = "directory", paths = ["/data"] }
//!
//! [[job]]
//! name = "etcd"
//! cron = "0 */2 * * *"
//! repository = "s3://bucket/etcd"
//! source = { type = "etcd", endpoints = ["https://10.0.0.1:2379"], cacert = "/etc/etcd/ca.pem" }
//! hooks.before = [{ command = ["kubectl", "scale", "deploy/operator", "--replicas=0"], timeout = "1min" }]
//! hooks.after = [{ command = ["kubectl", "scale", "deploy/operator", "--replicas=1"] }]
//!
//! [[job]]
//! name = "redis"
//! cron = "0 3 * * *"
//! repository = "/backups"
//! source = { type = "redis", url = "redis://127.0.0.1:6379/", password_file = "/run/secrets/redis" }
//! ```
//!
//! A hook is an argv (no shell), with a `timeout` (default 30 s) and
//! `on_error = "fail"` (default) or `"continue"`; the after hooks run
//! whatever happened to the snapshot.
//!
//! Durations are written as everywhere else ([`backup_core::parse_duration`]
//! and [`CalendarDuration`]): `jitter` and `stale_grace` are exact (`min`
//! for minutes; `m`, months, is refused), the retention's `keep_within` and
//! `ttl` are calendar spans as in `backupctl forget` (`1m` is one month).
//! The retention's counts (`keep_last`, `keep_hourly`, ... `keep_yearly`)
//! are numbers of backups or `"unlimited"` (also `-1`), as in `forget`.

use std::collections::{BTreeMap, HashSet};

use backup_core::schedule::{JobSpec, JobTimeZone, ScheduleError};
use backup_core::{CalendarDuration, KeepPolicy};
use serde::Deserialize;

use crate::parse::{deserialize_keep_count, ExactDuration};
pub(crate) use crate::source::{HooksConfig, SourceConfig};

/// What is wrong with a schedule file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScheduleFileError {
    /// The file is not valid TOML or does not have the expected shape.
    #[error("invalid schedule configuration: {message}")]
    Syntax {
        /// The parser's message, with the line and column where known.
        message: String,
    },
    /// A setting of one job is missing or empty.
    #[error("job {job:?}: invalid schedule configuration: {message}")]
    Job {
        /// Name of the job.
        job: String,
        /// What is wrong.
        message: String,
    },
    /// A job's name, cron expression or time settings are invalid, or two
    /// jobs have the same name.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
}

/// A parsed schedule configuration: a list of `[[job]]` tables.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScheduleConfig {
    /// The jobs, in file order.
    #[serde(default, rename = "job")]
    pub(crate) jobs: Vec<JobConfig>,
}

/// One `[[job]]` of a [`ScheduleConfig`]; it is also the payload of the
/// [`JobSpec`]s made from it, for the [runner](super::runner) to interpret.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobConfig {
    /// Unique name of the job.
    pub(crate) name: String,
    /// When it runs (see [the cron expressions](backup_core::schedule#cron-expressions)).
    pub(crate) cron: String,
    /// The backup set written; the job's name if not given.
    #[serde(default)]
    pub(crate) set: Option<String>,
    /// Where backups go (a repository URL or path, as `backupctl` reads it).
    pub(crate) repository: String,
    /// What is backed up.
    pub(crate) source: SourceConfig,
    /// Commands run before and after the snapshot.
    #[serde(default)]
    pub(crate) hooks: HooksConfig,
    /// Which backups are kept after each successful run.
    #[serde(default)]
    pub(crate) retention: RetentionConfig,
    /// Time zone of the cron expression; UTC if not given.
    #[serde(default)]
    pub(crate) time_zone: Option<JobTimeZone>,
    /// Maximum random delay added to each scheduled run.
    #[serde(default)]
    pub(crate) jitter: Option<ExactDuration>,
    /// Grace past one interval without success before the job is stale;
    /// [one hour](backup_core::schedule::DEFAULT_STALE_GRACE) if not given.
    #[serde(default)]
    pub(crate) stale_grace: Option<ExactDuration>,
    /// Tags recorded on each backup.
    #[serde(default)]
    pub(crate) tags: BTreeMap<String, String>,
    /// Name this writer records on its backups, for collision checks.
    #[serde(default)]
    pub(crate) writer: Option<String>,
}

impl JobConfig {
    /// The backup set: [`set`](JobConfig::set), or the job's name.
    pub(crate) fn set_name(&self) -> &str {
        self.set.as_deref().unwrap_or(&self.name)
    }

    /// The scheduler's job for this entry, carrying the entry as payload.
    /// Fails if the name or cron expression is invalid.
    fn to_job_spec(&self) -> Result<JobSpec<JobConfig>, ScheduleError> {
        let mut spec = JobSpec::new(self.name.clone(), &self.cron, self.clone())?
            .with_time_zone(self.time_zone.unwrap_or_default());
        if let Some(jitter) = self.jitter {
            spec = spec.with_jitter(jitter.0);
        }
        if let Some(grace) = self.stale_grace {
            spec = spec.with_stale_after_grace(grace.0);
        }
        Ok(spec)
    }

    fn validate(&self) -> Result<(), ScheduleFileError> {
        let invalid = |message: &str| ScheduleFileError::Job {
            job: self.name.clone(),
            message: message.to_owned(),
        };
        if self.repository.trim().is_empty() {
            return Err(invalid("`repository` is empty"));
        }
        if self.set.as_deref().is_some_and(|set| set.trim().is_empty()) {
            return Err(invalid("`set` is empty"));
        }
        // Exclude patterns and sizes are checked when the file is read.
        if let SourceConfig::Directory(dir) = &self.source {
            if let Err(error) = dir.selection() {
                return Err(invalid(&error.to_string()));
            }
        }
        match self.source.problem() {
            Some(problem) => Err(invalid(problem)),
            None => Ok(()),
        }
    }
}

/// Which backups to keep, mirroring restic's `forget` options. Unset fields
/// keep nothing by that rule; with no field set, nothing is forgotten.
/// Counts are numbers, or `"unlimited"` (also `-1`) as in `forget`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetentionConfig {
    /// Keep the newest `n` backups.
    #[serde(default, deserialize_with = "deserialize_keep_count")]
    pub(crate) keep_last: Option<i64>,
    /// Keep the newest backup of each of the last `n` hours that have one.
    #[serde(default, deserialize_with = "deserialize_keep_count")]
    pub(crate) keep_hourly: Option<i64>,
    /// Keep the newest backup of each of the last `n` days that have one.
    #[serde(default, deserialize_with = "deserialize_keep_count")]
    pub(crate) keep_daily: Option<i64>,
    /// Keep the newest backup of each of the last `n` weeks that have one.
    #[serde(default, deserialize_with = "deserialize_keep_count")]
    pub(crate) keep_weekly: Option<i64>,
    /// Keep the newest backup of each of the last `n` months that have one.
    #[serde(default, deserialize_with = "deserialize_keep_count")]
    pub(crate) keep_monthly: Option<i64>,
    /// Keep the newest backup of each of the last `n` years that have one.
    #[serde(default, deserialize_with = "deserialize_keep_count")]
    pub(crate) keep_yearly: Option<i64>,
    /// Keep every backup younger than this, relative to the newest backup.
    #[serde(default)]
    pub(crate) keep_within: Option<CalendarDuration>,
    /// Forget backups older than this, whatever the other rules say (the
    /// newest backup of a set is always kept).
    #[serde(default)]
    pub(crate) ttl: Option<CalendarDuration>,
}

impl RetentionConfig {
    /// The [`KeepPolicy`] of these settings.
    pub(crate) fn keep_policy(&self) -> KeepPolicy {
        KeepPolicy {
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
            keep_within: self.keep_within,
            ttl: self.ttl,
            ..KeepPolicy::default()
        }
    }
}

impl ScheduleConfig {
    /// Parses and validates a TOML configuration: names unique and valid,
    /// cron expressions, time zones and durations valid, each job with a
    /// repository and a non-empty source. Unknown keys are errors, so typos
    /// do not pass silently.
    ///
    /// YAML is not supported.
    pub(crate) fn from_toml_str(text: &str) -> Result<ScheduleConfig, ScheduleFileError> {
        let config: ScheduleConfig =
            toml::from_str(text).map_err(|error| ScheduleFileError::Syntax {
                message: error.to_string().trim_end().to_owned(),
            })?;
        config.job_specs()?;
        Ok(config)
    }

    /// The scheduler's jobs, each carrying its [`JobConfig`] as payload.
    pub(crate) fn job_specs(&self) -> Result<Vec<JobSpec<JobConfig>>, ScheduleFileError> {
        let mut names = HashSet::new();
        self.jobs
            .iter()
            .map(|job| {
                if !names.insert(job.name.as_str()) {
                    return Err(ScheduleError::DuplicateJob {
                        name: job.name.clone(),
                    }
                    .into());
                }
                let spec = job.to_job_spec()?;
                job.validate()?;
                Ok(spec)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use backup_core::schedule::{JobTimeZone, ScheduleError};
    use backup_core::{CalendarDuration, KeepPolicy};
    use chrono::{TimeZone, Utc};

    use super::{RetentionConfig, ScheduleConfig, ScheduleFileError, SourceConfig};

    const MINUTE: Duration = Duration::from_secs(60);
    const HOUR: Duration = Duration::from_secs(3600);

    const CONFIG: &str = r#"
[[job]]
name = "etcd"
cron = "0 */2 * * *"
set = "etcd"
repository = "file:///backups"
source = { type = "etcd", endpoints = ["https://10.0.0.1:2379"], cacert = "/etc/etcd/ca.pem", cert = "/etc/etcd/client.pem", key = "/etc/etcd/client-key.pem", user = "root", password_file = "/run/secrets/etcd" }
hooks.before = [{ command = ["kubectl", "scale", "deploy/operator", "--replicas=0"], timeout = "1min" }]
hooks.after = [{ command = ["kubectl", "scale", "deploy/operator", "--replicas=1"], on_error = "continue" }]
retention = { keep_last = 3, keep_daily = 7, ttl = "720h" }
time_zone = "Europe/Berlin"
jitter = "5min"
stale_grace = "30min"
tags = { env = "prod", cluster = "main" }
writer = "backup-host-1"

[[job]]
name = "data"
cron = "*/30 * * * * *"
repository = "s3://bucket/prefix"
source = { type = "directory", paths = ["/data", "/etc/app"] }
"#;

    fn error_of(text: &str) -> String {
        ScheduleConfig::from_toml_str(text).unwrap_err().to_string()
    }

    #[test]
    fn config_with_two_jobs_parses_into_job_specs() {
        let config = ScheduleConfig::from_toml_str(CONFIG).unwrap();
        assert_eq!(config.jobs.len(), 2);
        let etcd = &config.jobs[0];
        assert_eq!(etcd.name, "etcd");
        assert_eq!(etcd.set_name(), "etcd");
        assert_eq!(etcd.repository, "file:///backups");
        assert_eq!(
            etcd.source,
            SourceConfig::Etcd(crate::source::EtcdSource {
                endpoints: vec!["https://10.0.0.1:2379".into()],
                cacert: Some("/etc/etcd/ca.pem".into()),
                cert: Some("/etc/etcd/client.pem".into()),
                key: Some("/etc/etcd/client-key.pem".into()),
                user: Some("root".into()),
                password_file: Some("/run/secrets/etcd".into()),
            })
        );
        assert_eq!(etcd.hooks.before.len(), 1);
        assert_eq!(etcd.hooks.before[0].command[0], "kubectl");
        assert_eq!(etcd.hooks.before[0].timeout.map(|t| t.0), Some(MINUTE));
        assert_eq!(etcd.hooks.after[0].on_error, backup_core::OnError::Continue);
        assert_eq!(etcd.retention.keep_last, Some(3));
        assert_eq!(etcd.retention.keep_daily, Some(7));
        assert_eq!(etcd.retention.keep_hourly, None);
        assert_eq!(etcd.retention.ttl, Some("720h".parse().unwrap()));
        assert_eq!(etcd.tags.get("env").map(String::as_str), Some("prod"));
        assert_eq!(etcd.writer.as_deref(), Some("backup-host-1"));

        let data = &config.jobs[1];
        assert_eq!(data.set_name(), "data");
        assert_eq!(
            data.source,
            SourceConfig::Directory(crate::source::DirectorySource {
                paths: vec!["/data".into(), "/etc/app".into()],
                ..Default::default()
            })
        );
        assert_eq!(data.retention, RetentionConfig::default());

        let specs = config.job_specs().unwrap();
        assert_eq!(specs[0].name(), "etcd");
        assert_eq!(specs[0].cron(), "0 */2 * * *");
        assert_eq!(
            specs[0].time_zone(),
            "Europe/Berlin".parse::<JobTimeZone>().unwrap()
        );
        assert_ne!(specs[0].time_zone(), JobTimeZone::Utc);
        assert_eq!(specs[0].jitter(), Some(5 * MINUTE));
        assert_eq!(specs[0].stale_after_grace(), 30 * MINUTE);
        assert_eq!(specs[0].payload(), etcd);
        assert_eq!(specs[1].time_zone(), JobTimeZone::Utc);
        assert_eq!(specs[1].jitter(), None);
        assert_eq!(specs[1].stale_after_grace(), HOUR);
        let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(
            specs[1].upcoming(start, 2),
            vec![
                start + chrono::Duration::seconds(30),
                start + chrono::Duration::seconds(60)
            ]
        );
    }

    #[test]
    fn config_errors_are_clear() {
        let message = error_of(&CONFIG.replace("0 */2 * * *", "0 */2 * *"));
        assert!(
            message.contains("job \"etcd\": invalid cron expression \"0 */2 * *\""),
            "{message}"
        );

        let message = error_of(&CONFIG.replace("jitter = \"5min\"", "jitter = \"5 mins\""));
        assert!(message.contains("invalid duration \"5 mins\""), "{message}");
        assert!(message.contains("line 12"), "{message}");

        let message = error_of(&CONFIG.replace("Europe/Berlin", "Europe/Atlantis"));
        assert!(
            message.contains("unknown time zone \"Europe/Atlantis\""),
            "{message}"
        );

        let message = error_of(&CONFIG.replace("keep_daily", "keep_dayly"));
        assert!(
            message.starts_with("invalid schedule configuration: "),
            "{message}"
        );
        assert!(message.contains("keep_dayly"), "{message}");

        let duplicate = CONFIG.replace("name = \"data\"", "name = \"etcd\"");
        match ScheduleConfig::from_toml_str(&duplicate).unwrap_err() {
            ScheduleFileError::Schedule(ScheduleError::DuplicateJob { name }) => {
                assert_eq!(name, "etcd")
            }
            other => panic!("expected a duplicate job, got {other:?}"),
        }

        let message = error_of(&CONFIG.replace("paths = [\"/data\", \"/etc/app\"]", "paths = []"));
        assert_eq!(
            message,
            "job \"data\": invalid schedule configuration: the directory source has no `paths` (nor `files_from` lists)"
        );

        let message =
            error_of(&CONFIG.replace("repository = \"s3://bucket/prefix\"", "repository = \" \""));
        assert_eq!(
            message,
            "job \"data\": invalid schedule configuration: `repository` is empty"
        );

        let message = error_of(&CONFIG.replace("type = \"directory\"", "type = \"tape\""));
        assert!(message.contains("tape"), "{message}");
    }

    #[test]
    fn a_directory_source_takes_restics_exclude_options() {
        let config = ScheduleConfig::from_toml_str(
            "[[job]]\nname = \"a\"\ncron = \"0 * * * *\"\nrepository = \"/r\"\n\
             source = { type = \"directory\", paths = [\"/d\"], exclude = [\"*.tmp\"], \
             iexclude = [\"*.LOG\"], exclude_caches = true, exclude_if_present = [\".nobackup\"], \
             exclude_larger_than = \"1G\", one_file_system = true }\n",
        )
        .unwrap();
        let SourceConfig::Directory(dir) = &config.jobs[0].source else {
            panic!("not a directory source");
        };
        assert_eq!(dir.exclude, ["*.tmp"]);
        assert!(dir.exclude_caches && dir.one_file_system);
        let expected = backup_core::Selection::new()
            .exclude("*.tmp")
            .unwrap()
            .iexclude("*.LOG")
            .unwrap()
            .exclude_if_present(".nobackup")
            .unwrap()
            .exclude_caches()
            .exclude_larger_than(1 << 30)
            .one_file_system(true);
        assert_eq!(dir.selection().unwrap(), expected);
        let message = error_of(&CONFIG.replace(
            "paths = [\"/data\", \"/etc/app\"]",
            "paths = [\"/d\"], exclude_larger_than = \"lots\"",
        ));
        assert!(message.contains("lots"), "{message}");
        let message = error_of(&CONFIG.replace(
            "paths = [\"/data\", \"/etc/app\"]",
            "paths = [\"/d\"], exclude = [\"[a\"]",
        ));
        assert!(message.contains("unclosed ["), "{message}");
    }

    #[test]
    fn retention_becomes_a_keep_policy_with_calendar_durations() {
        let config = ScheduleConfig::from_toml_str(
            "[[job]]\nname = \"a\"\ncron = \"0 * * * *\"\nrepository = \"/r\"\n\
             source = { type = \"directory\", paths = [\"/d\"] }\n\
             retention = { keep_last = 2, keep_weekly = 4, keep_within = \"90h\", ttl = \"1m\" }\n",
        )
        .unwrap();
        let hours = |hours| CalendarDuration {
            hours,
            ..CalendarDuration::ZERO
        };
        let month = CalendarDuration {
            months: 1,
            ..CalendarDuration::ZERO
        };
        assert_eq!(
            config.jobs[0].retention.keep_policy(),
            KeepPolicy {
                keep_last: Some(2),
                keep_weekly: Some(4),
                keep_within: Some(hours(90)),
                ttl: Some(month),
                ..KeepPolicy::default()
            }
        );
        assert!(RetentionConfig::default().keep_policy().is_empty());
    }

    #[test]
    fn a_redis_source_parses_and_an_empty_store_setting_is_refused() {
        let redis = CONFIG.replace(
            r#"source = { type = "directory", paths = ["/data", "/etc/app"] }"#,
            r#"source = { type = "redis", url = "redis://10.0.0.5:6379/", password_file = "/run/secrets/redis", replication = true }"#,
        );
        let config = ScheduleConfig::from_toml_str(&redis).unwrap();
        assert_eq!(
            config.jobs[1].source,
            SourceConfig::Redis(crate::source::RedisSource {
                url: "redis://10.0.0.5:6379/".into(),
                user: None,
                password_file: Some("/run/secrets/redis".into()),
                data_dir: None,
                replication: true,
            })
        );
        let message =
            error_of(&CONFIG.replace(r#"endpoints = ["https://10.0.0.1:2379"]"#, "endpoints = []"));
        assert!(
            message.contains("the etcd source has no `endpoints`"),
            "{message}"
        );
        let message = error_of(&CONFIG.replace("on_error = \"continue\"", "on_error = \"retry\""));
        assert!(message.contains("retry"), "{message}");
    }

    #[test]
    fn postgres_and_mariadb_sources_parse_and_build_their_snapshotters() {
        let postgres = CONFIG.replace(
            r#"source = { type = "directory", paths = ["/data", "/etc/app"] }"#,
            r#"source = { type = "postgres", url = "postgresql://backup@db/postgres", mode = "logical", databases = ["app"], jobs = 4, bin_dir = "/usr/lib/postgresql/15/bin" }"#,
        );
        let config = ScheduleConfig::from_toml_str(&postgres).unwrap();
        assert_eq!(
            config.jobs[1].source,
            SourceConfig::Postgres(crate::source::PostgresSource {
                url: "postgresql://backup@db/postgres".into(),
                mode: Some("logical".into()),
                password_file: None,
                bin_dir: Some("/usr/lib/postgresql/15/bin".into()),
                databases: vec!["app".into()],
                jobs: Some(4),
                globals: None,
            })
        );
        let snapshotter = config.jobs[1]
            .source
            .snapshotter(&Default::default())
            .unwrap();
        assert_eq!(snapshotter.kind(), "postgres");

        let mariadb = CONFIG.replace(
            r#"source = { type = "directory", paths = ["/data", "/etc/app"] }"#,
            r#"source = { type = "mariadb", url = "mysql://backup@db:3306/", mode = "physical", staging_dir = "/var/tmp" }"#,
        );
        let config = ScheduleConfig::from_toml_str(&mariadb).unwrap();
        let snapshotter = config.jobs[1]
            .source
            .snapshotter(&Default::default())
            .unwrap();
        assert_eq!(snapshotter.kind(), "mariadb");

        // A mode neither tool has is refused when the job is built.
        let wrong = mariadb.replace(r#"mode = "physical""#, r#"mode = "binlog""#);
        let config = ScheduleConfig::from_toml_str(&wrong).unwrap();
        let error = config.jobs[1]
            .source
            .snapshotter(&Default::default())
            .err()
            .unwrap();
        assert!(error.to_string().contains("logical or physical"), "{error}");
    }

    #[test]
    fn a_cassandra_node_source_parses_and_builds_its_snapshotter() {
        let cassandra = CONFIG.replace(
            r#"source = { type = "directory", paths = ["/data", "/etc/app"] }"#,
            r#"source = { type = "cassandra", name = "cass-0", nodetool = "nodetool -h 10.0.0.7", data_dirs = ["/var/lib/cassandra/data", "/mnt/disk2/data"], keyspaces = ["apigee"], cqlsh = "none", ssh = "cassandra@10.0.0.7", known_hosts = "/etc/backup/known_hosts" }"#,
        );
        let config = ScheduleConfig::from_toml_str(&cassandra).unwrap();
        let SourceConfig::Cassandra(node) = &config.jobs[1].source else {
            panic!("{:?}", config.jobs[1].source);
        };
        assert_eq!(node.name.as_deref(), Some("cass-0"));
        assert_eq!(node.data_dirs.len(), 2);
        assert_eq!(node.ssh.as_deref(), Some("cassandra@10.0.0.7"));
        let snapshotter = config.jobs[1]
            .source
            .snapshotter(&Default::default())
            .unwrap();
        assert_eq!(snapshotter.kind(), "cassandra");
        let wrong = cassandra.replace(
            r#"nodetool = "nodetool -h 10.0.0.7""#,
            r#"nodetool = "'unclosed""#,
        );
        let config = ScheduleConfig::from_toml_str(&wrong).unwrap();
        let error = config.jobs[1]
            .source
            .snapshotter(&Default::default())
            .err()
            .unwrap();
        assert!(
            error.to_string().contains("nodetool command line"),
            "{error}"
        );
    }
}

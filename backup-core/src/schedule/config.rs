//! The schedule configuration file of `backupctl schedule --config FILE`.
//!
//! ```toml
//! [[job]]
//! name = "etcd"
//! cron = "0 */2 * * *"
//! set = "etcd"                       # backup set; defaults to the job name
//! repository = "file:///backups"
//! source = { type = "command", command = "etcdctl snapshot save /dev/stdout", file_name = "etcd.db" }
//! retention = { keep_last = 3, keep_daily = 7, ttl = "720h" }
//! time_zone = "Europe/Berlin"        # default UTC; or "+02:00"
//! jitter = "5m"                      # random delay in [0, 5m) per run
//! stale_grace = "30m"                # default 1h
//! tags = { env = "prod" }
//! writer = "backup-host-1"
//!
//! [[job]]
//! name = "data"
//! cron = "30 3 * * *"
//! repository = "s3://bucket/prefix"
//! source = { type = "directory", paths = ["/data"] }
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::duration::HumanDuration;
use super::expr::JobTimeZone;
use super::job::JobSpec;
use super::ScheduleError;

/// A parsed schedule configuration: a list of `[[job]]` tables.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// The jobs, in file order.
    #[serde(default, rename = "job")]
    pub jobs: Vec<JobConfig>,
}

/// One `[[job]]` of a [`ScheduleConfig`]; it is also the payload of the
/// [`JobSpec`]s made from it, for the runner to interpret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// Unique name of the job.
    pub name: String,
    /// When it runs (see [`CronExpr`](super::CronExpr)).
    pub cron: String,
    /// The backup set written; the job's name if not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<String>,
    /// Where backups go (a repository URL or path, as `backupctl` reads it).
    pub repository: String,
    /// What is backed up.
    pub source: SourceConfig,
    /// Which backups are kept after each successful run.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// Time zone of the cron expression; UTC if not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<JobTimeZone>,
    /// Maximum random delay added to each scheduled run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<HumanDuration>,
    /// Grace past one interval without success before the job is stale;
    /// [one hour](super::DEFAULT_STALE_GRACE) if not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_grace: Option<HumanDuration>,
    /// Tags recorded on each backup.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Name this writer records on its backups, for collision checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<String>,
}

impl JobConfig {
    /// The backup set: [`set`](JobConfig::set), or the job's name.
    pub fn set_name(&self) -> &str {
        self.set.as_deref().unwrap_or(&self.name)
    }

    /// The scheduler's job for this entry, carrying the entry as payload.
    /// Fails if the name or cron expression is invalid.
    pub fn to_job_spec(&self) -> Result<JobSpec<JobConfig>, ScheduleError> {
        let mut spec = JobSpec::new(self.name.clone(), &self.cron, self.clone())?
            .with_time_zone(self.time_zone.unwrap_or_default());
        if let Some(jitter) = self.jitter {
            spec = spec.with_jitter(jitter.get());
        }
        if let Some(grace) = self.stale_grace {
            spec = spec.with_stale_after_grace(grace.get());
        }
        Ok(spec)
    }

    fn validate(&self) -> Result<(), ScheduleError> {
        let invalid = |message: &str| ScheduleError::Job {
            job: self.name.clone(),
            source: Box::new(ScheduleError::Config {
                message: message.to_owned(),
            }),
        };
        if self.repository.trim().is_empty() {
            return Err(invalid("`repository` is empty"));
        }
        if self.set.as_deref().is_some_and(|set| set.trim().is_empty()) {
            return Err(invalid("`set` is empty"));
        }
        match &self.source {
            SourceConfig::Directory { paths } if paths.is_empty() => {
                Err(invalid("the directory source has no `paths`"))
            }
            SourceConfig::Command { command, .. } if command.trim().is_empty() => {
                Err(invalid("the command source has an empty `command`"))
            }
            _ => Ok(()),
        }
    }
}

/// What a job backs up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// Files and directories.
    Directory {
        /// The paths backed up.
        paths: Vec<PathBuf>,
    },
    /// The standard output of a command, such as `etcdctl snapshot save
    /// /dev/stdout` or `pg_dump`.
    Command {
        /// The command line (split like a shell would, without running a
        /// shell).
        command: String,
        /// Name of the file the output is stored as.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file_name: Option<String>,
    },
}

/// Which backups to keep, mirroring restic's `forget` options. Unset fields
/// keep nothing by that rule; with no field set, nothing is forgotten.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Keep the newest `n` backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the last `n` hours that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest backup of each of the last `n` days that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the last `n` weeks that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the last `n` months that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest backup of each of the last `n` years that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
    /// Keep every backup younger than this, relative to the newest backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within: Option<HumanDuration>,
    /// Forget backups older than this, whatever the other rules say (the
    /// newest backup of a set is always kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<HumanDuration>,
}

impl RetentionConfig {
    /// Whether no rule is set (nothing is forgotten).
    pub fn is_empty(&self) -> bool {
        *self == RetentionConfig::default()
    }
}

impl ScheduleConfig {
    /// Parses and validates a TOML configuration: names unique and valid,
    /// cron expressions, time zones and durations valid, each job with a
    /// repository and a non-empty source. Unknown keys are errors, so typos
    /// do not pass silently.
    ///
    /// YAML is not supported.
    pub fn from_toml_str(text: &str) -> Result<ScheduleConfig, ScheduleError> {
        let config: ScheduleConfig =
            toml::from_str(text).map_err(|error| ScheduleError::Config {
                message: error.to_string().trim_end().to_owned(),
            })?;
        config.job_specs()?;
        Ok(config)
    }

    /// Writes the configuration as TOML.
    pub fn to_toml_string(&self) -> Result<String, ScheduleError> {
        toml::to_string(self).map_err(|error| ScheduleError::Config {
            message: error.to_string(),
        })
    }

    /// The scheduler's jobs, each carrying its [`JobConfig`] as payload.
    pub fn job_specs(&self) -> Result<Vec<JobSpec<JobConfig>>, ScheduleError> {
        let mut names = HashSet::new();
        self.jobs
            .iter()
            .map(|job| {
                if !names.insert(job.name.as_str()) {
                    return Err(ScheduleError::DuplicateJob {
                        name: job.name.clone(),
                    });
                }
                let spec = job.to_job_spec()?;
                job.validate()?;
                Ok(spec)
            })
            .collect()
    }
}

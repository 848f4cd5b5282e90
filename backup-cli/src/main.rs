//! `backupctl`: back up, list, restore and verify repositories from the
//! command line. A thin front end over `backup-core`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use backup_core::progress::{Phase, ProgressSink};
use backup_core::retention::{CalendarDuration, KeepPolicy};
use backup_core::snapshot::{CommandSnapshotter, DirectorySnapshotter, Snapshotter};
use backup_core::{
    Backup, BackupOptions, BackupStatus, Error, InitOptions, LocalSink, PruneOptions, Repository,
    RestoreOptions, Sink, VerifyOptions,
};
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use zeroize::Zeroizing;

/// Writes a line to stdout; when the reader has gone away (`backupctl ls |
/// head`), exits quietly instead of panicking as `println!` would.
macro_rules! out {
    ($($arg:tt)*) => {
        emit(format_args!($($arg)*))
    };
}

fn emit(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
    {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {error}");
        std::process::exit(1);
    }
}

/// Exit status when a backup or restore succeeded only in part.
const EXIT_PARTIAL: u8 = 3;

#[derive(Parser, Debug)]
#[command(name = "backupctl", version, about = "Deduplicated, encrypted, verifiable backups", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// Repository location: a path or a file:// URL.
    #[arg(long, env = "BACKUP_REPO", global = true)]
    repo: Option<String>,
    /// File holding the repository password (else BACKUP_PASSWORD is used).
    #[arg(long, env = "BACKUP_PASSWORD_FILE", global = true)]
    password_file: Option<PathBuf>,
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
    /// Progress display: a bar when stderr is a terminal (auto), JSON lines
    /// on stderr (json), or none.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto, global = true)]
    progress: ProgressMode,
}

/// Options of remote repositories (s3://, az://, gs://, sftp://). Cloud
/// credentials come from each cloud's usual environment variables
/// (AWS_ACCESS_KEY_ID, AZURE_STORAGE_ACCOUNT_NAME, GOOGLE_SERVICE_ACCOUNT, ...).
#[derive(Args, Debug, Clone, Default)]
struct StoreArgs {
    /// Object store endpoint, for S3-compatible servers and emulators.
    #[arg(long, env = "BACKUP_ENDPOINT", global = true, value_name = "URL")]
    endpoint: Option<String>,
    /// Object store region.
    #[arg(long, env = "BACKUP_REGION", global = true)]
    region: Option<String>,
    /// Allow plain HTTP to the endpoint (tests and local emulators only).
    #[arg(long, env = "BACKUP_ALLOW_HTTP", global = true)]
    allow_http: bool,
    /// S3 server-side encryption with this KMS key id (SSE-KMS).
    #[arg(
        long,
        env = "BACKUP_SSE_KMS_KEY_ID",
        global = true,
        value_name = "KEY_ID"
    )]
    sse_kms_key_id: Option<String>,
    /// S3 server-side encryption with a customer key (SSE-C): a file holding
    /// the base64 of a 256-bit key.
    #[arg(
        long,
        env = "BACKUP_SSE_C_KEY_FILE",
        global = true,
        value_name = "FILE"
    )]
    sse_c_key_file: Option<PathBuf>,
    /// Use the Azure storage emulator (Azurite).
    #[arg(long, env = "BACKUP_AZURE_EMULATOR", global = true)]
    azure_emulator: bool,
    /// SSH private key for sftp:// (ed25519 or RSA, OpenSSH format).
    #[arg(long, env = "BACKUP_SSH_KEY", global = true, value_name = "FILE")]
    ssh_key: Option<PathBuf>,
    /// File holding the SSH key's passphrase.
    #[arg(
        long,
        env = "BACKUP_SSH_KEY_PASSPHRASE_FILE",
        global = true,
        value_name = "FILE"
    )]
    ssh_key_passphrase_file: Option<PathBuf>,
    /// known_hosts file checked for the server's host key (default ~/.ssh/known_hosts).
    #[arg(long, env = "BACKUP_KNOWN_HOSTS", global = true, value_name = "FILE")]
    known_hosts: Option<PathBuf>,
    /// Pinned SHA-256 host key fingerprint (as `ssh-keygen -lf` prints it),
    /// instead of known_hosts.
    #[arg(
        long,
        env = "BACKUP_HOST_KEY_FINGERPRINT",
        global = true,
        value_name = "SHA256:..."
    )]
    host_key_fingerprint: Option<String>,
}

fn read_secret_file(path: &std::path::Path, what: &'static str) -> Result<String, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::io(what, path, source))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

/// Opens the sink for a repository location: a path, file://, s3://, az://,
/// azure://, gs:// or sftp://.
async fn open_sink(location: &str, store: &StoreArgs) -> Result<Arc<dyn Sink>, Error> {
    let scheme = location.split_once("://").map(|(scheme, _)| scheme);
    match scheme {
        None => Ok(Arc::new(LocalSink::new(PathBuf::from(location)))),
        Some("file") => Ok(Arc::new(LocalSink::new(PathBuf::from(&location["file://".len()..])))),
        Some("s3" | "az" | "azure" | "gs") => {
            let mut options = backup_sinks::ObjectStoreOptions {
                endpoint: store.endpoint.clone(),
                region: store.region.clone(),
                allow_http: store.allow_http.then_some(true),
                sse_kms_key_id: store.sse_kms_key_id.clone(),
                azure_use_emulator: store.azure_emulator,
                ..Default::default()
            };
            if let Some(path) = &store.sse_c_key_file {
                options.sse_customer_key_base64 = Some(read_secret_file(path, "cannot read the SSE-C key file")?);
            }
            Ok(Arc::new(backup_sinks::ObjectStoreSink::from_url(location, &options)?))
        }
        Some("sftp") => {
            let mut options = backup_sinks::sftp::SftpOptions::default();
            if let Some(key) = &store.ssh_key {
                options = options.with_private_key(key.clone());
            }
            if let Some(path) = &store.ssh_key_passphrase_file {
                options = options.with_passphrase(read_secret_file(path, "cannot read the SSH key passphrase file")?);
            }
            if let Some(path) = &store.known_hosts {
                options = options.with_known_hosts(path.clone());
            }
            if let Some(fingerprint) = &store.host_key_fingerprint {
                options = options.with_host_key_fingerprint(fingerprint.clone());
            }
            Ok(Arc::new(backup_sinks::sftp::SftpSink::connect(location, options).await?))
        }
        Some(other) => Err(Error::InvalidArgument(format!(
            "unknown repository scheme {other}://: use a path, file://, s3://, az://, gs:// or sftp://"
        ))),
    }
}

/// How progress is shown.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum ProgressMode {
    /// A bar when stderr is a terminal, nothing otherwise.
    Auto,
    /// Always a bar.
    Bar,
    /// One JSON object per line on stderr.
    Json,
    /// Nothing.
    None,
}

/// Builds the progress sink for `--progress`.
fn progress_sink(common: &Common) -> Option<ProgressSink> {
    use std::io::IsTerminal;
    let mode = match common.progress {
        ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bar,
        ProgressMode::Auto => ProgressMode::None,
        other => other,
    };
    match mode {
        ProgressMode::Json => Some(ProgressSink::new(|event| {
            if let Ok(line) = serde_json::to_string(event) {
                eprintln!("{line}");
            }
        })),
        ProgressMode::Bar => {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} {percent}% {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            Some(ProgressSink::new(move |event| {
                bar.set_length(event.bytes_total.unwrap_or(event.bytes_done));
                bar.set_position(event.bytes_done);
                let files = match event.files_total {
                    Some(total) => format!("{}/{} files", event.files_done, total),
                    None => format!("{} files", event.files_done),
                };
                bar.set_message(files);
                if event.phase != Phase::Running {
                    bar.finish_and_clear();
                }
            }))
        }
        ProgressMode::Auto | ProgressMode::None => None,
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a new repository.
    Init {
        #[command(flatten)]
        common: Common,
        /// Create an unencrypted repository (no password).
        #[arg(long)]
        no_encryption: bool,
    },
    /// Back up paths, or the output of a command.
    Backup {
        #[command(flatten)]
        common: Common,
        /// Backup set name.
        #[arg(long, default_value = "default")]
        set: String,
        /// Tag to record, KEY=VALUE (repeatable).
        #[arg(long = "tag", value_name = "KEY=VALUE")]
        tags: Vec<String>,
        /// Record the backup as taken at this time (RFC 3339).
        #[arg(long)]
        time: Option<String>,
        /// Writer identity recorded in the manifest (default: host name).
        #[arg(long, env = "BACKUP_WRITER")]
        writer: Option<String>,
        /// Read every file again instead of skipping unchanged ones.
        #[arg(long)]
        force: bool,
        /// Stop with a collision error if the newest backup of the set was
        /// written by another writer (for scheduled backups, as a CronJob).
        #[arg(long)]
        check_collision: bool,
        /// Back up the standard output of this command line.
        #[arg(long, value_name = "COMMAND", conflicts_with = "paths")]
        stdin_from_command: Option<String>,
        /// File name for the command's output in the backup.
        #[arg(long, default_value = "stdin", requires = "stdin_from_command")]
        stdin_filename: String,
        /// Files and directories to back up.
        paths: Vec<PathBuf>,
    },
    /// List backups.
    List {
        #[command(flatten)]
        common: Common,
        /// Only backups of this set.
        #[arg(long)]
        set: Option<String>,
    },
    /// List the files of a backup.
    Ls {
        #[command(flatten)]
        common: Common,
        /// `latest` or a backup id (a unique prefix is enough).
        backup: String,
        /// With `latest`: the newest backup of this set.
        #[arg(long)]
        set: Option<String>,
    },
    /// Restore a backup, or several sets at once with --select.
    Restore {
        #[command(flatten)]
        common: Common,
        /// `latest` (newest completed backup) or a backup id (a unique
        /// prefix is enough).
        #[arg(required_unless_present = "select", conflicts_with = "select")]
        backup: Option<String>,
        /// Restore several sets, each into TARGET/SET: SET=latest,
        /// SET=<backup id> or SET=skip (repeatable).
        #[arg(long, value_name = "SET=SELECTOR")]
        select: Vec<String>,
        /// With `latest`: the newest backup of this set.
        #[arg(long)]
        set: Option<String>,
        /// Directory to restore into (created if missing).
        #[arg(long)]
        target: PathBuf,
        /// Restore only what matches this glob (repeatable).
        #[arg(long = "include", value_name = "GLOB")]
        include: Vec<String>,
    },
    /// Forget backups a retention policy does not keep (per set, like
    /// restic's forget); `--prune` then frees their space.
    Forget {
        #[command(flatten)]
        common: Common,
        /// Only backups of this set.
        #[arg(long)]
        set: Option<String>,
        #[command(flatten)]
        policy: PolicyArgs,
        /// Show the decisions, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Prune after forgetting.
        #[arg(long)]
        prune: bool,
        /// With --prune: how long unused data is kept before deletion.
        #[arg(long, default_value = "1h", value_name = "DURATION")]
        grace: String,
    },
    /// Free the space of data no backup uses (two-phase: mark, then delete
    /// after the grace period).
    Prune {
        #[command(flatten)]
        common: Common,
        /// How long unused data is kept before deletion (0s: at once, still
        /// never while a backup that may use it runs).
        #[arg(long, default_value = "1h", value_name = "DURATION")]
        grace: String,
        /// Repack packs with at least this share unused, e.g. 30%.
        #[arg(long, default_value = "30%", value_name = "PERCENT")]
        repack_unused: String,
        /// Show what would be done, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run backups on cron schedules from a TOML file, until stopped
    /// (SIGINT/SIGTERM let running backups finish).
    Schedule {
        #[command(flatten)]
        common: Common,
        /// The schedule file (see the README).
        #[arg(long)]
        config: PathBuf,
        /// Prune after each job's retention.
        #[arg(long)]
        prune: bool,
        /// With --prune: grace period of unused data.
        #[arg(long, default_value = "1h", value_name = "DURATION")]
        grace: String,
    },
    /// Check the repository for damage.
    Verify {
        #[command(flatten)]
        common: Common,
        /// Also download and check all data.
        #[arg(long)]
        read_data: bool,
        /// Check only this share of the data, e.g. 10%.
        #[arg(long, value_name = "PERCENT")]
        read_data_subset: Option<String>,
    },
}

/// restic's `forget` keep options, plus a time-to-live.
#[derive(Args, Debug, Clone, Default)]
struct PolicyArgs {
    /// Keep the newest N backups (-1: all).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    keep_last: Option<i64>,
    /// Keep the newest backup of each of the last N hours.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    keep_hourly: Option<i64>,
    /// Keep the newest backup of each of the last N days.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    keep_daily: Option<i64>,
    /// Keep the newest backup of each of the last N weeks.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    keep_weekly: Option<i64>,
    /// Keep the newest backup of each of the last N months.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    keep_monthly: Option<i64>,
    /// Keep the newest backup of each of the last N years.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    keep_yearly: Option<i64>,
    /// Keep every backup within this duration of the newest (e.g. 1y2m3d4h).
    #[arg(long, value_name = "DURATION")]
    keep_within: Option<String>,
    /// Keep hourly backups within this duration of the newest.
    #[arg(long, value_name = "DURATION")]
    keep_within_hourly: Option<String>,
    /// Keep daily backups within this duration of the newest.
    #[arg(long, value_name = "DURATION")]
    keep_within_daily: Option<String>,
    /// Keep weekly backups within this duration of the newest.
    #[arg(long, value_name = "DURATION")]
    keep_within_weekly: Option<String>,
    /// Keep monthly backups within this duration of the newest.
    #[arg(long, value_name = "DURATION")]
    keep_within_monthly: Option<String>,
    /// Keep yearly backups within this duration of the newest.
    #[arg(long, value_name = "DURATION")]
    keep_within_yearly: Option<String>,
    /// Keep backups with all of these tags (KEY or KEY=VALUE, comma-separated; repeatable).
    #[arg(long = "keep-tag", value_name = "TAGS")]
    keep_tags: Vec<String>,
    /// Forget backups older than this, whatever else keeps them (Velero's TTL);
    /// the newest complete backup of a set is always kept.
    #[arg(long, value_name = "DURATION")]
    ttl: Option<String>,
}

impl PolicyArgs {
    fn to_policy(&self) -> Result<KeepPolicy, Error> {
        let calendar =
            |text: &Option<String>, flag: &str| -> Result<Option<CalendarDuration>, Error> {
                text.as_deref()
                    .map(|text| {
                        text.parse::<CalendarDuration>().map_err(|error| {
                            Error::InvalidArgument(format!("--{flag} {text:?}: {error}"))
                        })
                    })
                    .transpose()
            };
        let policy = KeepPolicy {
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
            keep_within: calendar(&self.keep_within, "keep-within")?,
            keep_within_hourly: calendar(&self.keep_within_hourly, "keep-within-hourly")?,
            keep_within_daily: calendar(&self.keep_within_daily, "keep-within-daily")?,
            keep_within_weekly: calendar(&self.keep_within_weekly, "keep-within-weekly")?,
            keep_within_monthly: calendar(&self.keep_within_monthly, "keep-within-monthly")?,
            keep_within_yearly: calendar(&self.keep_within_yearly, "keep-within-yearly")?,
            keep_tags: self
                .keep_tags
                .iter()
                .map(|list| {
                    list.split(',')
                        .map(|tag| tag.trim().to_string())
                        .filter(|tag| !tag.is_empty())
                        .collect()
                })
                .collect(),
            ttl: calendar(&self.ttl, "ttl")?,
        };
        policy
            .validate()
            .map_err(|error| Error::InvalidArgument(error.to_string()))?;
        if policy.is_empty() {
            return Err(Error::InvalidArgument(
                "no retention rule given (--keep-last, --keep-daily, --keep-within, --ttl, ...): nothing would be forgotten".into(),
            ));
        }
        Ok(policy)
    }
}

fn parse_grace(text: &str) -> Result<chrono::Duration, Error> {
    let duration = backup_core::schedule::parse_duration(text)
        .map_err(|error| Error::InvalidArgument(format!("--grace {text:?}: {error}")))?;
    chrono::Duration::from_std(duration)
        .map_err(|_| Error::InvalidArgument(format!("--grace {text:?} is too long")))
}

fn parse_percent(text: &str, flag: &str) -> Result<f64, Error> {
    text.trim_end_matches('%')
        .parse::<f64>()
        .ok()
        .filter(|p| (0.0..=100.0).contains(p))
        .map(|p| p / 100.0)
        .ok_or_else(|| {
            Error::InvalidArgument(format!("--{flag} {text:?}: give a percentage like 30%"))
        })
}

fn print_prune(report: &backup_core::PruneReport) {
    out!(
        "prune: {} packs ({}) before; {} unused packs marked, {} repacked into {}; {} deleted ({}), {} rescued; {} mark(s) waiting for the grace period, {} postponed while a backup runs",
        report.packs_before,
        human_bytes(report.bytes_before),
        report.packs_marked,
        report.packs_repacked,
        report.packs_written,
        report.packs_deleted,
        human_bytes(report.bytes_deleted),
        report.packs_rescued,
        report.marks_waiting,
        report.marks_postponed
    );
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BACKUP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    limit_malloc_arenas();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", describe(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error with its chain of causes.
fn describe(error: &Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

async fn sink_for(common: &Common) -> Result<Arc<dyn Sink>, Error> {
    let location = common.repo.as_deref().ok_or_else(|| {
        Error::InvalidArgument("no repository given: use --repo or BACKUP_REPO".into())
    })?;
    open_sink(location, &common.store).await
}

/// Caps glibc's malloc arenas at two and fixes the size from which
/// allocations are mapped on their own at 4 MiB. By default glibc gives each
/// of the many threads of a backup (async workers, blocking readers, the CPU
/// pool) arenas of their own, and megabyte-sized buffers freed on another
/// thread than the one that allocated them pile up; and its sliding mmap
/// threshold, once raised by a freed 16 MiB pack buffer, keeps such buffers
/// in the heap after they are freed. Both measured lower peak memory; the
/// fixed threshold cost no time (pack buffers are reused by the backup).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    // SAFETY: mallopt only sets an allocator tunable; it is called before
    // any thread is started.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

fn password(common: &Common) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
    if let Some(path) = &common.password_file {
        let mut bytes = Zeroizing::new(
            std::fs::read(path)
                .map_err(|source| Error::io("cannot read the password file", path, source))?,
        );
        // A trailing newline is not part of the password.
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        return Ok(Some(bytes));
    }
    Ok(std::env::var_os("BACKUP_PASSWORD").map(|value| Zeroizing::new(value.into_encoded_bytes())))
}

async fn open(common: &Common) -> Result<Repository, Error> {
    let sink = sink_for(common).await?;
    let password = password(common)?;
    Repository::open(sink, password.as_ref().map(|p| p.as_slice())).await
}

fn print_json(value: &serde_json::Value) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => out!("{text}"),
        Err(error) => eprintln!("error: cannot encode JSON output: {error}"),
    }
}

fn backup_json(backup: &Backup) -> serde_json::Value {
    let manifest = &backup.manifest;
    json!({
        "id": backup.id.to_hex(),
        "short_id": backup.id.short(),
        "set": manifest.set,
        "time": manifest.time.to_rfc3339(),
        "writer": manifest.writer,
        "hostname": manifest.hostname,
        "source": manifest.source,
        "tags": manifest.tags,
        "status": manifest.status,
        "stats": manifest.stats,
        "facts": manifest.facts,
        "errors": manifest.errors,
    })
}

fn parse_tags(tags: &[String]) -> Result<BTreeMap<String, String>, Error> {
    tags.iter()
        .map(|tag| {
            tag.split_once('=')
                .filter(|(key, _)| !key.is_empty())
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .ok_or_else(|| Error::InvalidArgument(format!("tag {tag:?} is not KEY=VALUE")))
        })
        .collect()
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

async fn run(command: Command) -> Result<ExitCode, Error> {
    match command {
        Command::Init {
            common,
            no_encryption,
        } => {
            let sink = sink_for(&common).await?;
            // Only a local repository has a directory to create here.
            let local_root =
                common
                    .repo
                    .as_deref()
                    .and_then(|location| match location.split_once("://") {
                        None => Some(location),
                        Some(("file", rest)) => Some(rest),
                        Some(_) => None,
                    });
            if let Some(root) = local_root {
                std::fs::create_dir_all(root).map_err(|source| {
                    Error::io("cannot create the repository directory", root, source)
                })?;
            }
            let password = if no_encryption {
                None
            } else {
                // The copy moves into `init`, which zeroizes it.
                Some(password(&common)?.filter(|p| !p.is_empty()).map(|p| p.to_vec()).ok_or_else(|| {
                    Error::InvalidArgument(
                        "a password is needed for an encrypted repository: use --password-file or BACKUP_PASSWORD, or --no-encryption".into(),
                    )
                })?)
            };
            let location = sink.location();
            let repo = Repository::init(
                sink,
                InitOptions {
                    password,
                    ..InitOptions::default()
                },
            )
            .await?;
            if common.json {
                print_json(&json!({
                    "location": location,
                    "id": repo.config().id.to_hex(),
                    "encrypted": repo.is_encrypted(),
                    "format_version": repo.config().version,
                }));
            } else {
                out!(
                    "created {} repository {} at {location}",
                    if repo.is_encrypted() {
                        "encrypted"
                    } else {
                        "unencrypted"
                    },
                    repo.config().id.short()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup {
            common,
            set,
            tags,
            time,
            writer,
            force,
            check_collision,
            stdin_from_command,
            stdin_filename,
            paths,
        } => {
            let snapshotter: Box<dyn Snapshotter> = match stdin_from_command {
                Some(line) => Box::new(
                    CommandSnapshotter::from_command_line(&line)?.with_file_name(stdin_filename),
                ),
                None if paths.is_empty() => {
                    return Err(Error::InvalidArgument(
                        "nothing to back up: give paths or --stdin-from-command".into(),
                    ))
                }
                None => Box::new(DirectorySnapshotter::new(paths)),
            };
            let time = time
                .map(|text| {
                    DateTime::parse_from_rfc3339(&text)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|error| {
                            Error::InvalidArgument(format!("--time {text:?}: {error}"))
                        })
                })
                .transpose()?;
            let repo = open(&common).await?;
            let options = BackupOptions {
                set,
                tags: parse_tags(&tags)?,
                time,
                writer,
                parent: if force {
                    backup_core::ParentSelection::None
                } else {
                    backup_core::ParentSelection::Latest
                },
                progress: progress_sink(&common),
                check_collision,
            };
            let summary = repo.backup(snapshotter.as_ref(), options).await?;
            let manifest = &summary.manifest;
            let stats = &manifest.stats;
            if common.json {
                print_json(&json!({
                    "id": summary.id.to_hex(),
                    "short_id": summary.id.short(),
                    "set": manifest.set,
                    "time": manifest.time.to_rfc3339(),
                    "status": manifest.status,
                    "files": stats.files,
                    "dirs": stats.dirs,
                    "files_unchanged": stats.files_unchanged,
                    "bytes_total": stats.bytes_total,
                    "bytes_read": stats.bytes_read,
                    "bytes_added": stats.bytes_added,
                    "duration_seconds": stats.duration_ms as f64 / 1000.0,
                    "errors": manifest.errors,
                }));
            } else {
                out!(
                    "backup {} of set {:?}: {} files ({} unchanged), {} dirs, {} read, {} added, in {:.2}s",
                    summary.id.short(),
                    manifest.set,
                    stats.files,
                    stats.files_unchanged,
                    stats.dirs,
                    human_bytes(stats.bytes_read),
                    human_bytes(stats.bytes_added),
                    stats.duration_ms as f64 / 1000.0
                );
                for error in &manifest.errors {
                    eprintln!("warning: not backed up: {}: {}", error.path, error.message);
                }
            }
            Ok(if manifest.status == BackupStatus::Completed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_PARTIAL)
            })
        }
        Command::List { common, set } => {
            let repo = open(&common).await?;
            let backups: Vec<Backup> = repo
                .list()
                .await?
                .into_iter()
                .filter(|b| set.as_deref().is_none_or(|s| b.manifest.set == s))
                .collect();
            if common.json {
                print_json(&serde_json::Value::Array(
                    backups.iter().map(backup_json).collect(),
                ));
            } else {
                out!(
                    "{:<10} {:<26} {:<20} {:<16} {:>8} {:>12}  status",
                    "id",
                    "time",
                    "set",
                    "writer",
                    "files",
                    "size"
                );
                for backup in &backups {
                    let m = &backup.manifest;
                    out!(
                        "{:<10} {:<26} {:<20} {:<16} {:>8} {:>12}  {}",
                        backup.id.short(),
                        m.time.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                        m.set,
                        m.writer,
                        m.stats.files,
                        human_bytes(m.stats.bytes_total),
                        serde_json::to_value(m.status)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default()
                    );
                }
                out!("{} backup(s)", backups.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ls {
            common,
            backup,
            set,
        } => {
            let repo = open(&common).await?;
            let backup = repo.find_backup(&backup, set.as_deref()).await?;
            let entries = repo.ls(&backup).await?;
            if common.json {
                print_json(&json!({ "id": backup.id.to_hex(), "entries": entries }));
            } else {
                for entry in entries {
                    let kind = match entry.kind {
                        backup_core::tree::NodeKind::Dir => 'd',
                        backup_core::tree::NodeKind::Symlink => 'l',
                        backup_core::tree::NodeKind::File => '-',
                    };
                    let link = entry.target.map(|t| format!(" -> {t}")).unwrap_or_default();
                    out!(
                        "{kind}{:04o} {:>12} {} {}{link}",
                        entry.mode,
                        entry.size,
                        entry.mtime.format("%Y-%m-%d %H:%M:%S"),
                        entry.path
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore {
            common,
            backup: None,
            select,
            target,
            include,
            ..
        } => {
            let selections = select
                .iter()
                .map(|item| {
                    item.split_once('=')
                        .map(|(set, selector)| (set.to_string(), selector.to_string()))
                        .ok_or_else(|| {
                            Error::InvalidArgument(format!("--select {item:?} is not SET=SELECTOR"))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let repo = open(&common).await?;
            let options = RestoreOptions {
                include,
                progress: progress_sink(&common),
            };
            let results = repo.restore_sets(&selections, &target, &options).await?;
            if common.json {
                print_json(&json!({ "target": target, "sets": results }));
            } else {
                for result in &results {
                    match (&result.backup, &result.summary) {
                        (Some(id), Some(summary)) => out!(
                            "set {}: restored backup {} to {}: {} files, {}",
                            result.set,
                            id.short(),
                            target.join(&result.set).display(),
                            summary.files,
                            human_bytes(summary.bytes)
                        ),
                        _ => out!("set {}: skipped", result.set),
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore {
            common,
            backup: Some(backup),
            set,
            target,
            include,
            ..
        } => {
            let repo = open(&common).await?;
            let backup = repo.find_backup(&backup, set.as_deref()).await?;
            match repo
                .restore(
                    &backup,
                    &target,
                    &RestoreOptions {
                        include,
                        progress: progress_sink(&common),
                    },
                )
                .await
            {
                Ok(summary) => {
                    if common.json {
                        print_json(
                            &json!({ "id": backup.id.to_hex(), "target": target, "summary": summary, "failures": [] }),
                        );
                    } else {
                        out!(
                            "restored backup {} to {}: {} files, {} dirs, {} symlinks, {}",
                            backup.id.short(),
                            target.display(),
                            summary.files,
                            summary.dirs,
                            summary.symlinks,
                            human_bytes(summary.bytes)
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(Error::PartialRestore { failures }) => {
                    if common.json {
                        let failures: Vec<_> = failures
                            .iter()
                            .map(|(path, why)| json!({"path": path, "error": why}))
                            .collect();
                        print_json(
                            &json!({ "id": backup.id.to_hex(), "target": target, "failures": failures }),
                        );
                    }
                    for (path, why) in &failures {
                        eprintln!("error: not restored: {path}: {why}");
                    }
                    eprintln!(
                        "error: {} item(s) could not be restored; everything else was",
                        failures.len()
                    );
                    Ok(ExitCode::from(EXIT_PARTIAL))
                }
                Err(other) => Err(other),
            }
        }
        Command::Forget {
            common,
            set,
            policy,
            dry_run,
            prune,
            grace,
        } => {
            let policy = policy.to_policy()?;
            let grace = parse_grace(&grace)?;
            let repo = open(&common).await?;
            let decisions = repo
                .forget_matching(&policy, chrono::Utc::now(), dry_run, |backup| {
                    set.as_deref().is_none_or(|set| backup.manifest.set == set)
                })
                .await?;
            let report = if prune && !dry_run {
                Some(
                    repo.prune(&PruneOptions {
                        grace,
                        ..PruneOptions::default()
                    })
                    .await?,
                )
            } else {
                None
            };
            if common.json {
                let items: Vec<_> = decisions
                    .iter()
                    .map(|(backup, decision)| {
                        json!({
                            "id": backup.id.to_hex(),
                            "short_id": backup.id.short(),
                            "set": backup.manifest.set,
                            "time": backup.manifest.time.to_rfc3339(),
                            "keep": decision.keep,
                            "reasons": decision.reasons,
                        })
                    })
                    .collect();
                print_json(&json!({ "dry_run": dry_run, "decisions": items, "prune": report }));
            } else {
                for (backup, decision) in &decisions {
                    out!(
                        "{} {:<10} {:<26} {:<20} {}",
                        if decision.keep { "keep  " } else { "forget" },
                        backup.id.short(),
                        backup
                            .manifest
                            .time
                            .format("%Y-%m-%d %H:%M:%S UTC")
                            .to_string(),
                        backup.manifest.set,
                        decision.reasons.join(", ")
                    );
                }
                let forgotten = decisions
                    .iter()
                    .filter(|(_, decision)| !decision.keep)
                    .count();
                out!(
                    "{} of {} backup(s) {}",
                    forgotten,
                    decisions.len(),
                    if dry_run {
                        "would be forgotten (dry run)"
                    } else {
                        "forgotten"
                    }
                );
                if let Some(report) = &report {
                    print_prune(report);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Prune {
            common,
            grace,
            repack_unused,
            dry_run,
        } => {
            let options = PruneOptions {
                grace: parse_grace(&grace)?,
                repack_unused_share: parse_percent(&repack_unused, "repack-unused")?,
                dry_run,
            };
            let repo = open(&common).await?;
            let report = repo.prune(&options).await?;
            if common.json {
                print_json(&json!({ "dry_run": dry_run, "report": report }));
            } else {
                print_prune(&report);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Schedule {
            common,
            config,
            prune,
            grace,
        } => run_schedule(common, config, prune, parse_grace(&grace)?).await,
        Command::Verify {
            common,
            read_data,
            read_data_subset,
        } => {
            let share = read_data_subset
                .map(|text| {
                    text.trim_end_matches('%')
                        .parse::<f64>()
                        .ok()
                        .filter(|p| *p > 0.0 && *p <= 100.0)
                        .map(|p| p / 100.0)
                        .ok_or_else(|| {
                            Error::InvalidArgument(format!(
                                "--read-data-subset {text:?}: give a percentage like 10%"
                            ))
                        })
                })
                .transpose()?;
            let repo = open(&common).await?;
            let report = repo
                .verify(&VerifyOptions {
                    read_data: read_data || share.is_some(),
                    read_data_share: share,
                })
                .await?;
            if common.json {
                print_json(&json!({ "ok": report.is_ok(), "report": report }));
            } else {
                out!(
                    "checked {} backups, {} indexes, {} packs ({} read, {}), {} blobs",
                    report.backups,
                    report.indexes,
                    report.packs,
                    report.packs_read,
                    human_bytes(report.bytes_read),
                    report.blobs_checked
                );
                for warning in &report.warnings {
                    out!("note: {warning}");
                }
            }
            for problem in &report.errors {
                eprintln!("damaged: {}: {}", problem.object, problem.message);
            }
            if report.is_ok() {
                if !common.json {
                    out!("no errors found");
                }
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("error: {} problem(s) found", report.errors.len());
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

/// Runs the scheduler until SIGINT or SIGTERM, printing its events as JSON
/// lines on stdout.
async fn run_schedule(
    common: Common,
    config: PathBuf,
    prune: bool,
    grace: chrono::Duration,
) -> Result<ExitCode, Error> {
    use backup_core::schedule::{BackupJobRunner, ScheduleConfig, Scheduler, ShutdownMode};
    let text = std::fs::read_to_string(&config)
        .map_err(|source| Error::io("cannot read the schedule", &config, source))?;
    let schedule = ScheduleConfig::from_toml_str(&text)
        .map_err(|error| Error::InvalidArgument(format!("{}: {error}", config.display())))?;
    let jobs = schedule
        .job_specs()
        .map_err(|error| Error::InvalidArgument(format!("{}: {error}", config.display())))?;
    let opener_common = common.clone();
    let opener: backup_core::schedule::SinkOpener = Arc::new(move |location: String| {
        let store = opener_common.store.clone();
        Box::pin(async move { open_sink(&location, &store).await })
    });
    let mut runner = BackupJobRunner::new(opener, password(&common)?.map(|p| p.to_vec()));
    if prune {
        runner = runner.with_prune(PruneOptions {
            grace,
            ..PruneOptions::default()
        });
    }
    let scheduler = Scheduler::builder(runner)
        .jobs(jobs)
        .start()
        .map_err(|error| Error::InvalidArgument(error.to_string()))?;
    let mut events = scheduler.subscribe();
    for status in scheduler.status() {
        if let Ok(line) = serde_json::to_string(
            &json!({ "event": "scheduled", "job": status.name, "next_run": status.next_run }),
        ) {
            out!("{line}");
        }
    }
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|source| Error::io("cannot listen for SIGTERM", PathBuf::new(), source))?;
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => {
                    if let Ok(line) = serde_json::to_string(&event) {
                        out!("{line}");
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => eprintln!("warning: {missed} scheduler events not shown"),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
    }
    eprintln!("stopping: letting running backups finish");
    scheduler.shutdown(ShutdownMode::Finish).await;
    Ok(ExitCode::SUCCESS)
}

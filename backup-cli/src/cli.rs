//! The command line: the top-level parser, the subcommands, and the options
//! every subcommand takes. Each subcommand's own options are declared in its
//! module under `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::commands::copy;
use crate::commands::{
    backup, cluster, dump, export, forget, init, list, ls, prune, restore, schedule, show, verify,
    wal,
};
use crate::commands::{completion, man};
use crate::commands::{diff, find, stats};
use crate::commands::{key, repair};

/// `backupctl` and its subcommand.
#[derive(Parser, Debug)]
#[command(name = "backupctl", version, about = "Deduplicated, encrypted, verifiable backups", long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands, each run by the module of the same name in `commands/`.
#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Create a new repository.
    Init(init::InitArgs),
    /// Back up paths, or the output of a command.
    Backup(Box<backup::BackupArgs>),
    /// Copy backups from another repository (--from-repo), with its own
    /// password and keys, into this one; backups already here are skipped.
    Copy(copy::CopyArgs),
    /// List backups.
    List(list::ListArgs),
    /// List the files of a backup.
    Ls(ls::LsArgs),
    /// Compare two backups: paths added (+), removed (-), changed in
    /// content (M), in metadata only (U) or in type (T), and the data only
    /// one of them holds.
    Diff(diff::DiffArgs),
    /// Find files by glob patterns across backups.
    Find(find::FindArgs),
    /// Count what backups restore to (restore-size) or the distinct data
    /// they keep in the repository (raw-data).
    Stats(stats::StatsArgs),
    /// Show one backup: its source, the source's facts, sizes and status.
    Show(show::ShowArgs),
    /// Write one stored file to standard output (a directory as tar).
    Dump(dump::DumpArgs),
    /// Write one stored file as a plain object in S3, GCS or Azure, and
    /// print a presigned download URL.
    Export(export::ExportArgs),
    /// Restore a backup, or several sets at once with --select.
    Restore(Box<restore::RestoreArgs>),
    /// Forget backups a retention policy does not keep (per set, like
    /// restic's forget); `--prune` then frees their space.
    Forget(Box<forget::ForgetArgs>),
    /// Free the space of data no backup uses (two-phase: mark, then delete
    /// after the grace period).
    Prune(prune::PruneArgs),
    /// Manage the passwords of an encrypted repository: list, add, remove
    /// ID, passwd (the new password from --new-password-file or
    /// BACKUP_NEW_PASSWORD).
    Key(key::KeyArgs),
    /// Repair a damaged repository: `repair index` rebuilds the index from
    /// the packs.
    Repair(repair::RepairArgs),
    /// Run backups on cron schedules from a TOML file, until stopped
    /// (SIGINT/SIGTERM let running backups finish).
    Schedule(schedule::ScheduleArgs),
    /// Check the repository for damage (and the WAL archives for gaps).
    Verify(verify::VerifyArgs),
    /// Back up every node of a Cassandra cluster under one cluster backup
    /// id (a node list in TOML); recorded only when every node's backup is.
    ClusterBackup(cluster::ClusterBackupArgs),
    /// Restore a completed cluster backup into a new cluster of as many
    /// stopped nodes (their data directories and cassandra.yaml files).
    ClusterRestore(cluster::ClusterRestoreArgs),
    /// List the completed cluster backups of a cluster.
    ClusterList(cluster::ClusterListArgs),
    /// Archive one PostgreSQL WAL file: the server's archive_command
    /// (`backupctl wal-push --repo R --set SET %p`).
    WalPush(wal::WalPushArgs),
    /// Fetch one archived WAL file: the server's restore_command
    /// (`backupctl wal-fetch --repo R --set SET %f %p`).
    WalFetch(wal::WalFetchArgs),
    /// Print a completion script for a shell (bash, zsh, fish, elvish,
    /// powershell).
    Completion(completion::CompletionArgs),
    /// Print the manual page (roff), or write one per subcommand into a
    /// directory (--dir).
    Man(man::ManArgs),
}

/// Options every subcommand takes (also accepted after the subcommand's own
/// arguments).
#[derive(Args, Debug, Clone)]
pub(crate) struct Common {
    /// Repository location: a path or a file:// URL.
    #[arg(long, env = "BACKUP_REPO", global = true)]
    pub(crate) repo: Option<String>,
    /// File holding the repository password (else BACKUP_PASSWORD is used).
    #[arg(long, env = "BACKUP_PASSWORD_FILE", global = true)]
    pub(crate) password_file: Option<PathBuf>,
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// Progress display: a bar when stderr is a terminal (auto), JSON lines
    /// on stderr (json), or none.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto, global = true)]
    pub(crate) progress: ProgressMode,
}

/// Options of remote repositories (s3://, az://, gs://, sftp://). Cloud
/// credentials come from each cloud's usual environment variables
/// (AWS_ACCESS_KEY_ID, AZURE_STORAGE_ACCOUNT_NAME, GOOGLE_SERVICE_ACCOUNT, ...).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct StoreArgs {
    /// Object store endpoint, for S3-compatible servers and emulators.
    #[arg(long, env = "BACKUP_ENDPOINT", global = true, value_name = "URL")]
    pub(crate) endpoint: Option<String>,
    /// Object store region.
    #[arg(long, env = "BACKUP_REGION", global = true)]
    pub(crate) region: Option<String>,
    /// Allow plain HTTP to the endpoint (tests and local emulators only).
    #[arg(long, env = "BACKUP_ALLOW_HTTP", global = true)]
    pub(crate) allow_http: bool,
    /// S3 server-side encryption with this KMS key id (SSE-KMS).
    #[arg(
        long,
        env = "BACKUP_SSE_KMS_KEY_ID",
        global = true,
        value_name = "KEY_ID"
    )]
    pub(crate) sse_kms_key_id: Option<String>,
    /// S3 server-side encryption with a customer key (SSE-C): a file holding
    /// the base64 of a 256-bit key.
    #[arg(
        long,
        env = "BACKUP_SSE_C_KEY_FILE",
        global = true,
        value_name = "FILE"
    )]
    pub(crate) sse_c_key_file: Option<PathBuf>,
    /// Use the Azure storage emulator (Azurite).
    #[arg(long, env = "BACKUP_AZURE_EMULATOR", global = true)]
    pub(crate) azure_emulator: bool,
    /// SSH private key for sftp:// (ed25519 or RSA, OpenSSH format).
    #[arg(long, env = "BACKUP_SSH_KEY", global = true, value_name = "FILE")]
    pub(crate) ssh_key: Option<PathBuf>,
    /// File holding the SSH key's passphrase.
    #[arg(
        long,
        env = "BACKUP_SSH_KEY_PASSPHRASE_FILE",
        global = true,
        value_name = "FILE"
    )]
    pub(crate) ssh_key_passphrase_file: Option<PathBuf>,
    /// known_hosts file checked for the server's host key (default ~/.ssh/known_hosts).
    #[arg(long, env = "BACKUP_KNOWN_HOSTS", global = true, value_name = "FILE")]
    pub(crate) known_hosts: Option<PathBuf>,
    /// Pinned SHA-256 host key fingerprint (as `ssh-keygen -lf` prints it),
    /// instead of known_hosts.
    #[arg(
        long,
        env = "BACKUP_HOST_KEY_FINGERPRINT",
        global = true,
        value_name = "SHA256:..."
    )]
    pub(crate) host_key_fingerprint: Option<String>,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
}

/// Bandwidth limits of every repository a command opens (restic's
/// `--limit-upload` and `--limit-download`).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct LimitArgs {
    /// Limit the data written to the repository to this many KiB per
    /// second (0: no limit).
    #[arg(long, env = "BACKUP_LIMIT_UPLOAD", global = true, value_name = "KiB/s")]
    pub(crate) limit_upload: Option<u64>,
    /// Limit the data read from the repository to this many KiB per second
    /// (0: no limit).
    #[arg(
        long,
        env = "BACKUP_LIMIT_DOWNLOAD",
        global = true,
        value_name = "KiB/s"
    )]
    pub(crate) limit_download: Option<u64>,
}

/// How progress is shown.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProgressMode {
    /// A bar when stderr is a terminal, nothing otherwise.
    Auto,
    /// Always a bar.
    Bar,
    /// One JSON object per line on stderr.
    Json,
    /// Nothing.
    None,
}

//! Running the `backupctl` binary in tests.
//!
//! [`Backupctl`] runs it with a clean environment (nothing `BACKUP_*`,
//! `AWS_*`, `AZURE_*`, `AZURITE_*` or `GOOGLE_*` from the caller), options
//! given to every subcommand (`--repo`, `--endpoint`…) placed right after
//! the subcommand, a working directory of its own where nothing should
//! appear, output collected through files (no pipe fills up) and a hang
//! guard. Only backup-cli's tests know where the binary is
//! (`env!("CARGO_BIN_EXE_backupctl")`): they hand its path to
//! [`Backupctl::new`].

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::tree::all_paths;

/// How long one run may take before it is killed as hung. Not a speed
/// requirement: a debug build backing up hundreds of MiB on a loaded
/// machine takes minutes.
pub const DEFAULT_HANG_GUARD: Duration = Duration::from_secs(30 * 60);

/// The environment variables of the caller that never reach `backupctl`.
const CLEARED_PREFIXES: [&str; 5] = ["BACKUP_", "AWS_", "AZURE_", "AZURITE_", "GOOGLE_"];

/// The outcome of one `backupctl` run.
#[derive(Debug, Clone)]
pub struct Out {
    /// The arguments, for messages.
    pub args: String,
    /// The exit status; `None` when killed by a signal or by the hang guard.
    pub code: Option<i32>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Out {
    /// Asserts exit status 0.
    pub fn ok(self) -> Out {
        assert_eq!(
            self.code,
            Some(0),
            "backupctl {} failed:\n{}",
            self.args,
            self.describe()
        );
        self
    }

    /// Asserts a non-zero exit status (not a kill).
    pub fn fails(self) -> Out {
        assert!(
            matches!(self.code, Some(code) if code != 0),
            "backupctl {} should have failed:\n{}",
            self.args,
            self.describe()
        );
        self
    }

    /// The exit status and both outputs (cut after 6,000 bytes each).
    pub fn describe(&self) -> String {
        format!(
            "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code,
            truncate(&self.stdout),
            truncate(&self.stderr)
        )
    }

    /// stdout parsed as one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|error| {
            panic!(
                "backupctl {}: stdout is not JSON ({error}):\n{}",
                self.args,
                self.describe()
            )
        })
    }
}

fn truncate(text: &str) -> String {
    if text.len() <= 6000 {
        return text.to_string();
    }
    let mut cut = 6000;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} bytes)", &text[..cut], text.len())
}

/// Runs `backupctl`; see the [module](self).
///
/// ```no_run
/// use backup_testkit::backupctl::Backupctl;
///
/// let cli = Backupctl::new("target/debug/backupctl").global(["--repo", "/tmp/repo"]);
/// cli.run(["init", "--no-encryption"]).ok();
/// assert!(cli.list().is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct Backupctl {
    program: PathBuf,
    scratch: Arc<TempDir>,
    global: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    hang_guard: Duration,
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

impl Backupctl {
    /// A runner of the binary at `program`, logging at `warn`.
    pub fn new(program: impl Into<PathBuf>) -> Backupctl {
        let scratch = tempfile::Builder::new()
            .prefix("backupctl-")
            .tempdir()
            .expect("creating a scratch directory for backupctl");
        for dir in ["cwd", "logs"] {
            fs::create_dir(scratch.path().join(dir)).expect("creating a scratch directory");
        }
        Backupctl {
            program: program.into(),
            scratch: Arc::new(scratch),
            global: Vec::new(),
            env: vec![("BACKUP_LOG".into(), "warn".into())],
            hang_guard: DEFAULT_HANG_GUARD,
        }
    }

    /// Adds arguments given to every subcommand (`--repo`, `--endpoint`…).
    pub fn global<I, S>(mut self, args: I) -> Backupctl
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.global
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable of every run.
    pub fn env(mut self, name: &str, value: impl AsRef<OsStr>) -> Backupctl {
        self.env.push((name.into(), value.as_ref().to_owned()));
        self
    }

    /// Points every run at the repository `prefix` of the bucket of the S3
    /// server `s3`, with its credentials and plain-HTTP endpoint.
    pub fn s3_repo(self, s3: &crate::server::s3::S3Server, prefix: &str) -> Backupctl {
        self.env("AWS_ACCESS_KEY_ID", &s3.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &s3.secret_key)
            .env("AWS_REGION", "us-east-1")
            .global(["--repo", &format!("s3://{}/{prefix}", s3.bucket)])
            .global(["--endpoint", &s3.endpoint(), "--allow-http"])
    }

    /// Replaces the hang guard ([`DEFAULT_HANG_GUARD`]).
    pub fn hang_guard(mut self, limit: Duration) -> Backupctl {
        self.hang_guard = limit;
        self
    }

    /// The working directory of every run.
    pub fn cwd(&self) -> PathBuf {
        self.scratch.path().join("cwd")
    }

    /// `backupctl ARGS[0] GLOBAL… ARGS[1..]`, ready to run: for a caller
    /// that wants its own output handling (`spawn` with pipes).
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let at = args.len().min(1);
        args.splice(at..at, self.global.iter().cloned());
        let mut command = Command::new(&self.program);
        for (name, _) in std::env::vars_os() {
            let text = name.to_string_lossy();
            if CLEARED_PREFIXES
                .iter()
                .any(|prefix| text.starts_with(prefix))
            {
                command.env_remove(&name);
            }
        }
        command
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(&args)
            .current_dir(self.cwd())
            .stdin(Stdio::null());
        command
    }

    /// Runs `backupctl ARGS` (see [`command`](Self::command)) to the end
    /// and collects its output; kills it at the hang guard.
    pub fn run<I, S>(&self, args: I) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_command(self.command(args))
    }

    /// Runs a command from [`command`](Self::command), perhaps with more
    /// arguments added, as [`run`](Self::run) does.
    pub fn run_command(&self, command: Command) -> Out {
        collect(command, &self.scratch.path().join("logs"), self.hang_guard)
    }

    /// Starts `backupctl ARGS` without waiting, output discarded; the
    /// caller kills or waits for the child.
    pub fn spawn<I, S>(&self, args: I) -> Child
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = self.command(args);
        command.stdout(Stdio::null()).stderr(Stdio::null());
        command
            .spawn()
            .unwrap_or_else(|error| panic!("starting {command:?}: {error}"))
    }

    /// `init`, encrypted (the password must be in the environment) or not.
    pub fn init(&self, encrypted: bool) -> Out {
        if encrypted {
            self.run(["init"]).ok()
        } else {
            self.run(["init", "--no-encryption"]).ok()
        }
    }

    /// `backup --json ARGS`, asserting that it completed; its JSON summary.
    pub fn backup<I, S>(&self, args: I) -> Value
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut all: Vec<OsString> = vec!["backup".into(), "--json".into()];
        all.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        let out = self.run(all).ok();
        let json = out.json();
        assert_eq!(json["status"], "completed", "{}", out.describe());
        json
    }

    /// `list --json`: the backups.
    pub fn list(&self) -> Vec<Value> {
        let out = self.run(["list", "--json"]).ok();
        match out.json() {
            Value::Array(backups) => backups,
            other => panic!("list --json is not an array: {other}"),
        }
    }

    /// `restore BACKUP --target TARGET EXTRA…`.
    pub fn restore(&self, backup: &str, target: &Path, extra: &[&str]) -> Out {
        let mut args: Vec<OsString> = vec![
            "restore".into(),
            backup.into(),
            "--target".into(),
            target.into(),
        ];
        args.extend(extra.iter().map(OsString::from));
        self.run(args)
    }

    /// What appeared in the working directory (relative paths).
    pub fn litter(&self) -> BTreeSet<String> {
        all_paths(&self.cwd())
    }
}

/// Runs `command` to the end with its output in files under `logs`,
/// killing it after `hang_guard`.
fn collect(mut command: Command, logs: &Path, hang_guard: Duration) -> Out {
    let shown = command
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let (out_path, err_path) = (
        logs.join(format!("{run}.stdout")),
        logs.join(format!("{run}.stderr")),
    );
    command
        .stdout(File::create(&out_path).expect("creating a stdout file"))
        .stderr(File::create(&err_path).expect("creating a stderr file"));
    let mut child = command
        .spawn()
        .unwrap_or_else(|error| panic!("starting {command:?}: {error}"));
    let started = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().expect("waiting for backupctl") {
            break status.code();
        }
        if started.elapsed() > hang_guard {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Out {
        args: shown,
        code,
        stdout: fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

/// The number `value[key]` of a JSON summary.
///
/// # Panics
///
/// When it is missing or not a number.
pub fn num(value: &Value, key: &str) -> u64 {
    value[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a number in {value}"))
}

//! Running a data store's own programs (`psql`, `pg_basebackup`,
//! `mariadb-dump`...): their output read as a stream, started only when
//! first read, their exit status and the end of their standard error
//! turned into the error a backup fails with.

// Each store uses its own part of this module.
#![cfg_attr(
    not(all(feature = "postgres", feature = "mariadb", feature = "cassandra")),
    allow(dead_code)
)]

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};

use zeroize::Zeroizing;

use crate::{Error, Result};

/// Bytes of standard error kept for messages.
const STDERR_TAIL: usize = 4096;

/// One run of a store's program: its command line and environment.
#[derive(Clone)]
pub(crate) struct Tool {
    program: PathBuf,
    args: Vec<OsString>,
    /// Secrets (a password) passed in the environment, never on the
    /// command line and never in messages.
    secrets: Vec<(String, Zeroizing<String>)>,
    /// What the program does, for messages ("pg_basebackup of ...").
    what: String,
    /// Written to its standard input when it runs as a stream.
    input: Option<Arc<Vec<u8>>>,
}

impl std::fmt::Debug for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tool")
            .field("program", &self.program)
            .field("what", &self.what)
            .finish_non_exhaustive()
    }
}

impl Tool {
    /// `program` (found in `bin_dir` when given, else on the `PATH`).
    pub(crate) fn new(bin_dir: Option<&Path>, program: &str, what: impl Into<String>) -> Tool {
        let program = match bin_dir {
            Some(dir) => dir.join(program),
            None => PathBuf::from(program),
        };
        Tool {
            program,
            args: Vec::new(),
            secrets: Vec::new(),
            what: what.into(),
            input: None,
        }
    }

    /// Runs `program` instead of the one named at first.
    #[cfg(feature = "cassandra")]
    pub(crate) fn with_program(mut self, program: PathBuf) -> Tool {
        self.program = program;
        self
    }

    /// Its program and arguments (for tests and messages).
    #[cfg(all(test, feature = "cassandra"))]
    pub(crate) fn argv(&self) -> Vec<OsString> {
        std::iter::once(self.program.clone().into_os_string())
            .chain(self.args.iter().cloned())
            .collect()
    }

    /// Runs it to completion on this thread (from a drop); returns its
    /// standard output.
    ///
    /// # Errors
    ///
    /// As [`Tool::output_with_input`].
    #[cfg(feature = "cassandra")]
    pub(crate) fn run_blocking(&self) -> Result<String> {
        let output = self
            .command()
            .stdin(Stdio::null())
            .output()
            .map_err(|error| self.failed(self.cannot_start(&error)))?;
        self.stdout_of(output)
    }

    /// Its standard output, or the error its exit status and standard
    /// error make.
    fn stdout_of(&self, output: std::process::Output) -> Result<String> {
        if !output.status.success() {
            return Err(self.failed(exit_message(
                &self.program,
                output.status,
                &String::from_utf8_lossy(&output.stderr),
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Bytes written to its standard input when it runs as a
    /// [`stream`](Tool::stream).
    #[cfg(feature = "cassandra")]
    pub(crate) fn stdin_bytes(mut self, input: Vec<u8>) -> Tool {
        self.input = Some(Arc::new(input));
        self
    }

    pub(crate) fn arg(mut self, arg: impl Into<OsString>) -> Tool {
        self.args.push(arg.into());
        self
    }

    pub(crate) fn args<I, S>(mut self, args: I) -> Tool
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable holding a secret.
    pub(crate) fn secret_env(mut self, name: &str, value: Option<&Zeroizing<String>>) -> Tool {
        if let Some(value) = value {
            self.secrets.push((name.to_string(), value.clone()));
        }
        self
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        for (name, value) in &self.secrets {
            command.env(name, value.as_str());
        }
        command
    }

    fn failed(&self, detail: String) -> Error {
        Error::Snapshot {
            source_name: self.what.clone(),
            detail,
        }
    }

    fn cannot_start(&self, error: &std::io::Error) -> String {
        format!("cannot start {}: {error}", self.program.display())
    }

    /// Runs it to completion with `input` on its standard input; returns
    /// its standard output.
    ///
    /// # Errors
    ///
    /// [`Error::Snapshot`] with the exit status and the end of its standard
    /// error (the server's own message) when it fails.
    pub(crate) async fn output_with_input(&self, input: Option<Vec<u8>>) -> Result<String> {
        let mut command = tokio::process::Command::from(self.command());
        command
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|error| self.failed(self.cannot_start(&error)))?;
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            use tokio::io::AsyncWriteExt;
            // A program that exits early closes its end: its status says why.
            let _ = stdin.write_all(&input).await;
        }
        let output = child
            .wait_with_output()
            .await
            .map_err(|error| self.failed(format!("waiting for it: {error}")))?;
        self.stdout_of(output)
    }

    /// Runs it to completion; returns its standard output.
    ///
    /// # Errors
    ///
    /// As [`Tool::output_with_input`].
    pub(crate) async fn output(&self) -> Result<String> {
        self.output_with_input(None).await
    }

    /// Its standard output as a stream, the program started on the first
    /// read.
    pub(crate) fn stream(self) -> ToolStream {
        ToolStream {
            state: Arc::new(Mutex::new(State::NotStarted(self))),
        }
    }

    /// Starts it with its standard input and output piped, for a session
    /// held open (a `psql` keeping a temporary replication slot).
    ///
    /// # Errors
    ///
    /// [`Error::Snapshot`] when it cannot start.
    pub(crate) fn spawn_session(&self) -> Result<Child> {
        let mut command = self.command();
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
            .spawn()
            .map_err(|error| self.failed(self.cannot_start(&error)))
    }
}

/// "pg_dump exited with exit status: 1: pg_dump: error: ..."
pub(crate) fn exit_message(
    program: &Path,
    status: std::process::ExitStatus,
    stderr: &str,
) -> String {
    let name = display_name(program);
    let stderr = stderr.trim();
    let tail = &stderr[floor_char_boundary(stderr, stderr.len().saturating_sub(STDERR_TAIL))..];
    if tail.is_empty() {
        format!("{name} exited with {status}")
    } else {
        format!("{name} exited with {status}: {tail}")
    }
}

fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    while at > 0 && !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

enum State {
    NotStarted(Tool),
    Running {
        tool: Tool,
        child: Guard,
        stdout: ChildStdout,
        stderr: std::thread::JoinHandle<String>,
    },
    /// Ended: `None` when it succeeded, else why it failed.
    Done(Option<String>),
}

/// A program's standard output, read as a stream (see [`Tool::stream`]).
/// At the end of the output the program's exit status is checked: a
/// program that failed makes the last read fail with its message, so a
/// dump cut short never passes for a complete one. Dropping it kills the
/// program.
#[derive(Clone)]
pub(crate) struct ToolStream {
    state: Arc<Mutex<State>>,
}

impl ToolStream {
    /// Waits for the program to end (reading and dropping any output left)
    /// and returns how it ended; starts nothing that was never read.
    ///
    /// # Errors
    ///
    /// [`Error::Snapshot`] with its message when it failed.
    pub(crate) fn finish(&self, success: bool) -> Result<()> {
        let mut state = self.state.lock().map_err(|_| Error::Snapshot {
            source_name: "a store's program".into(),
            detail: "its state was poisoned".into(),
        })?;
        let what = match &*state {
            State::NotStarted(tool) | State::Running { tool, .. } => tool.what.clone(),
            State::Done(_) => String::new(),
        };
        if !success {
            if let State::Running { child, .. } = &mut *state {
                let _ = child.0.kill();
            }
        }
        let outcome = match std::mem::replace(&mut *state, State::Done(None)) {
            State::NotStarted(_) => None,
            State::Running {
                tool,
                mut child,
                mut stdout,
                stderr,
            } => {
                let _ = std::io::copy(&mut stdout, &mut std::io::sink());
                end(&tool, &mut child, stderr)
            }
            State::Done(outcome) => outcome,
        };
        *state = State::Done(outcome.clone());
        match outcome {
            Some(detail) if success => Err(Error::Snapshot {
                source_name: what,
                detail,
            }),
            _ => Ok(()),
        }
    }
}

fn end(tool: &Tool, child: &mut Guard, stderr: std::thread::JoinHandle<String>) -> Option<String> {
    let status = child.0.wait();
    let stderr = stderr.join().unwrap_or_default();
    match status {
        Ok(status) if status.success() => None,
        Ok(status) => Some(exit_message(&tool.program, status, &stderr)),
        Err(error) => Some(format!("waiting for {}: {error}", tool.program.display())),
    }
}

/// Keeps the last [`STDERR_TAIL`] bytes of a program's standard error,
/// read on a thread of its own so that a chatty program never blocks.
pub(crate) fn drain_stderr(
    stderr: Option<std::process::ChildStderr>,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut tail = Vec::new();
        if let Some(mut stderr) = stderr {
            let mut buffer = [0u8; 8192];
            while let Ok(read) = stderr.read(&mut buffer) {
                if read == 0 {
                    break;
                }
                tail.extend_from_slice(buffer.get(..read).unwrap_or_default());
                if tail.len() > STDERR_TAIL * 2 {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
        }
        String::from_utf8_lossy(&tail).into_owned()
    })
}

impl Read for ToolStream {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| std::io::Error::other("the program's state was poisoned"))?;
        if let State::NotStarted(tool) = &*state {
            let tool = tool.clone();
            let mut command = tool.command();
            command
                .stdin(if tool.input.is_some() {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = match command.spawn() {
                Ok(child) => child,
                Err(error) => {
                    let message = tool.cannot_start(&error);
                    *state = State::Done(Some(message.clone()));
                    return Err(std::io::Error::other(message));
                }
            };
            if let (Some(input), Some(mut stdin)) = (tool.input.clone(), child.stdin.take()) {
                // A program that exits early closes its end: its status
                // says why.
                std::thread::spawn(move || {
                    use std::io::Write;
                    let _ = stdin.write_all(&input);
                });
            }
            let stderr = drain_stderr(child.stderr.take());
            let Some(stdout) = child.stdout.take() else {
                return Err(std::io::Error::other("the program has no standard output"));
            };
            *state = State::Running {
                tool,
                child: Guard(child),
                stdout,
                stderr,
            };
        }
        match &mut *state {
            State::NotStarted(_) => Ok(0),
            State::Running { stdout, .. } => {
                let read = stdout.read(out)?;
                if read > 0 {
                    return Ok(read);
                }
                let State::Running {
                    tool,
                    mut child,
                    stderr,
                    ..
                } = std::mem::replace(&mut *state, State::Done(None))
                else {
                    return Ok(0);
                };
                let outcome = end(&tool, &mut child, stderr);
                *state = State::Done(outcome.clone());
                match outcome {
                    None => Ok(0),
                    Some(message) => Err(std::io::Error::other(message)),
                }
            }
            State::Done(None) => Ok(0),
            State::Done(Some(message)) => Err(std::io::Error::other(message.clone())),
        }
    }
}

/// A running program, killed and reaped when dropped unfinished.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The name of a command's program, for messages.
fn program_of(command: &tokio::process::Command) -> PathBuf {
    PathBuf::from(command.as_std().get_program())
}

/// Runs a restore's program to the end, its standard input closed; returns
/// its standard output.
///
/// # Errors
///
/// [`Error::RestoreFailed`] with its exit status and the end of its
/// standard error when it fails; [`Error::Io`] when it cannot start.
pub(crate) async fn run_to_end(
    mut command: tokio::process::Command,
    target: &str,
) -> Result<String> {
    let program = program_of(&command);
    let output = command
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|error| Error::io("starting a restore program", &program, error))?;
    if !output.status.success() {
        return Err(Error::RestoreFailed {
            target: target.to_string(),
            detail: exit_message(
                &program,
                output.status,
                &String::from_utf8_lossy(&output.stderr),
            ),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs a restore's program with the stored file `stored` of `backup` on
/// its standard input (`pg_restore`, `mariadb`); returns the bytes fed.
///
/// # Errors
///
/// As [`run_to_end`], and the repository's errors reading the file.
pub(crate) async fn feed_to(
    repo: &crate::Repository,
    backup: &crate::Backup,
    stored: &str,
    mut command: tokio::process::Command,
    target: &str,
) -> Result<u64> {
    let program = program_of(&command);
    let reader = repo.open_file(backup, stored).await?;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| Error::io("starting a restore program", &program, error))?;
    let mut stdin = child.stdin.take();
    let mut fed = Ok(0);
    if let Some(stdin) = stdin.as_mut() {
        fed = reader.copy_to(stdin).await;
    }
    drop(stdin);
    let output = child
        .wait_with_output()
        .await
        .map_err(|error| Error::io("waiting for a restore program", &program, error))?;
    if !output.status.success() {
        return Err(Error::RestoreFailed {
            target: target.to_string(),
            detail: exit_message(
                &program,
                output.status,
                &String::from_utf8_lossy(&output.stderr),
            ),
        });
    }
    // A program that succeeded without reading everything broke the pipe:
    // the copy's error says so.
    fed
}

fn display_name(program: &Path) -> String {
    program.file_name().map_or_else(
        || program.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    )
}

/// Waits on a blocking thread for every stream's program to end (see
/// [`ToolStream::finish`]).
///
/// # Errors
///
/// The first failure's [`Error::Snapshot`].
pub(crate) async fn finish_all(streams: Vec<ToolStream>, success: bool) -> Result<()> {
    tokio::task::spawn_blocking(move || {
        streams
            .iter()
            .map(|stream| stream.finish(success))
            .collect::<Result<Vec<()>>>()
    })
    .await
    .map_err(|error| Error::Snapshot {
        source_name: "a store's program".into(),
        detail: format!("its end could not be awaited: {error}"),
    })?
    .map(|_| ())
}

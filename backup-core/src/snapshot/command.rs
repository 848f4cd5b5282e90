//! Backs up the standard output of a command as one file.

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{Entry, Finisher, Snapshot, Snapshotter};
use crate::format::manifest::SourceInfo;
use crate::{Error, Result};

/// Runs a command and stores its standard output as one file, as
/// `pg_dump`, `mariadb-dump` or `redis-cli --rdb -`
/// produce it.
///
/// The backup is recorded only if the command exits with status 0; otherwise
/// the backup fails with the command's exit status and the end of its
/// standard error.
///
/// # Examples
///
/// ```
/// use backup_core::CommandSnapshotter;
/// let dump = CommandSnapshotter::new("pg_dump", ["--format=custom", "app"]).with_file_name("app.dump");
/// assert_eq!(dump.file_name(), "app.dump");
/// ```
#[derive(Debug, Clone)]
pub struct CommandSnapshotter {
    program: String,
    args: Vec<String>,
    file_name: String,
}

impl CommandSnapshotter {
    /// A snapshotter running `program` with `args` (no shell is involved).
    pub fn new<I, S>(program: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        CommandSnapshotter {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            file_name: "stdin".into(),
        }
    }

    /// Parses a command line such as `pg_dump --format=custom 'my db'`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an empty line or a quote that is never
    /// closed.
    pub fn from_command_line(line: &str) -> Result<Self> {
        let mut words = split_command_line(line)?.into_iter();
        let program = words
            .next()
            .ok_or_else(|| Error::InvalidArgument("empty command".into()))?;
        Ok(CommandSnapshotter::new(program, words))
    }

    /// Sets the name the output is stored under (default `stdin`).
    pub fn with_file_name(mut self, name: impl Into<String>) -> Self {
        self.file_name = name.into();
        self
    }

    /// The name the output is stored under.
    pub fn file_name(&self) -> &str {
        &self.file_name
    }

    fn display(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Splits a command line into words as a POSIX shell does, without
/// expanding anything: spaces, tabs and newlines separate words, single
/// quotes keep text literally, double quotes keep text with `\"`, `\\`,
/// `\$` and `` \` `` escapes, a backslash outside quotes escapes the next
/// character, and a `#` at the start of a word begins a comment.
///
/// # Errors
///
/// [`Error::InvalidArgument`] for a quote that is never closed.
pub(crate) fn split_command_line(line: &str) -> Result<Vec<String>> {
    shell_words::split(line).map_err(|error| {
        Error::InvalidArgument(format!("unterminated quote in {line:?} ({error})"))
    })
}

#[async_trait]
impl Snapshotter for CommandSnapshotter {
    fn kind(&self) -> &str {
        "command"
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        crate::format::tree::validate_name(&self.file_name)?;
        let failed = |detail: String| Error::Snapshot {
            source_name: self.display(),
            detail,
        };
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| failed(format!("cannot start {:?}: {error}", self.program)))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| failed("no standard output".into()))?;
        let stderr = child.stderr.take();
        // Drain stderr on its own thread so a chatty command cannot block on
        // a full pipe while we read its stdout; keep the last few KiB.
        let stderr_tail = std::thread::spawn(move || {
            let mut tail = Vec::new();
            if let Some(mut stderr) = stderr {
                let mut buffer = [0u8; 8192];
                while let Ok(read) = stderr.read(&mut buffer) {
                    if read == 0 {
                        break;
                    }
                    tail.extend_from_slice(buffer.get(..read).unwrap_or_default());
                    if tail.len() > 4096 {
                        tail.drain(..tail.len() - 4096);
                    }
                }
            }
            String::from_utf8_lossy(&tail).trim().to_string()
        });
        let child = Arc::new(Mutex::new(Some(child)));
        let entry = Entry::Stream {
            name: self.file_name.clone(),
            reader: Box::new(stdout),
            mode: 0o600,
        };
        let mut snapshot = Snapshot::new(
            vec![entry],
            SourceInfo {
                kind: "command".into(),
                paths: vec![self.display()],
            },
        );
        snapshot
            .facts
            .insert("command".into(), self.display().into());
        Ok(snapshot.with_finisher(Box::new(CommandFinisher {
            child,
            stderr_tail: Some(stderr_tail),
            command: self.display(),
        })))
    }
}

struct CommandFinisher {
    child: Arc<Mutex<Option<Child>>>,
    stderr_tail: Option<std::thread::JoinHandle<String>>,
    command: String,
}

impl Drop for CommandFinisher {
    fn drop(&mut self) {
        // Not finished: the backup was abandoned; do not leave the command running.
        if let Ok(mut guard) = self.child.lock() {
            if let Some(mut child) = guard.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

#[async_trait]
impl Finisher for CommandFinisher {
    async fn finish(
        mut self: Box<Self>,
        success: bool,
    ) -> Result<BTreeMap<String, serde_json::Value>> {
        let child = self.child.lock().ok().and_then(|mut guard| guard.take());
        let tail = self.stderr_tail.take();
        let command = self.command.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let status = match child {
                Some(mut child) => {
                    if !success {
                        let _ = child.kill();
                    }
                    child.wait().ok()
                }
                None => None,
            };
            let stderr = tail
                .and_then(|handle| handle.join().ok())
                .unwrap_or_default();
            (status, stderr)
        })
        .await;
        let (status, stderr) = outcome.unwrap_or((None, String::new()));
        let mut facts = BTreeMap::new();
        match status {
            Some(status) if status.success() => {
                facts.insert("exit_status".into(), 0.into());
                Ok(facts)
            }
            _ if !success => Ok(facts),
            Some(status) => Err(Error::Snapshot {
                source_name: command,
                detail: format!(
                    "the command exited with {status}; its output is not stored{}",
                    if stderr.is_empty() {
                        String::new()
                    } else {
                        format!(". Its standard error ended with: {stderr}")
                    }
                ),
            }),
            None => Err(Error::Snapshot {
                source_name: command,
                detail: "could not get the command's exit status".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_split_into_words_as_a_shell_splits_them() {
        assert_eq!(
            split_command_line("pg_dump  --format=custom\t'my db'").unwrap(),
            ["pg_dump", "--format=custom", "my db"]
        );
        assert_eq!(
            split_command_line(r#"echo "a \"quoted\" \\ word" it\'s '' x"#).unwrap(),
            ["echo", r#"a "quoted" \ word"#, "it's", "", "x"]
        );
        // Nothing is expanded: no variables, no globs.
        assert_eq!(
            split_command_line("echo $HOME *.sql").unwrap(),
            ["echo", "$HOME", "*.sql"]
        );
        assert!(split_command_line("   ").unwrap().is_empty());
        // A word starting with `#` begins a comment, as in a shell.
        assert_eq!(
            split_command_line("pg_dump app # nightly").unwrap(),
            ["pg_dump", "app"]
        );
    }

    #[test]
    fn an_unterminated_quote_is_refused_with_its_line() {
        for line in ["pg_dump 'my db", r#"pg_dump "my db"#, r#"echo "a\"#] {
            match split_command_line(line) {
                Err(Error::InvalidArgument(message)) => {
                    assert!(message.contains("unterminated quote"), "{message}");
                    assert!(message.contains(&format!("{line:?}")), "{message}");
                }
                other => panic!("{line:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn a_snapshotter_from_an_empty_line_is_refused() {
        assert!(matches!(
            CommandSnapshotter::from_command_line("  "),
            Err(Error::InvalidArgument(_))
        ));
        let dump = CommandSnapshotter::from_command_line("pg_dump 'my db'").unwrap();
        assert_eq!(dump.program, "pg_dump");
        assert_eq!(dump.args, ["my db"]);
    }
}

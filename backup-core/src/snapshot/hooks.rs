//! Hooks run before and after a snapshot: commands and in-process callbacks.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;

use super::{Finisher, Snapshot, Snapshotter};
use crate::{Error, Result};

/// How long a command hook may run by default (Velero's default).
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// What a failing hook does to the backup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum OnError {
    /// The backup fails and is not recorded (the default).
    #[default]
    Fail,
    /// The failure is logged and the backup goes on.
    Continue,
}

/// When a hook runs, as its callback or command sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HookPoint {
    /// Before the snapshot is taken.
    Before,
    /// After the snapshot was released, whatever happened to it;
    /// `succeeded` tells whether the snapshot was taken and stored.
    After {
        /// Whether the snapshot was taken and its entries stored.
        succeeded: bool,
    },
}

impl HookPoint {
    fn name(self) -> &'static str {
        match self {
            HookPoint::Before => "before",
            HookPoint::After { .. } => "after",
        }
    }
}

/// An in-process hook: called with the point it runs at; an `Err` is the
/// hook's failure message.
pub type HookCallback =
    Arc<dyn Fn(HookPoint) -> BoxFuture<'static, std::result::Result<(), String>> + Send + Sync>;

#[derive(Clone)]
enum Action {
    Command {
        argv: Vec<String>,
        timeout: Duration,
    },
    Callback(HookCallback),
}

/// One hook: a command (an argv, run without a shell, with a timeout) or an
/// in-process callback, and what its failure does.
///
/// A command hook gets `BACKUP_HOOK` (`before` or `after`),
/// `BACKUP_SOURCE_KIND` and, after, `BACKUP_SNAPSHOT_SUCCEEDED` (`1` or
/// `0`) in its environment. It fails when it cannot start, exits non-zero or
/// outlives its timeout (it is then killed); the message carries the end of
/// its standard error.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use backup_core::{Hook, OnError};
/// let pause = Hook::command(["kubectl", "scale", "deploy/kube-apiserver", "--replicas=0"])
///     .with_timeout(Duration::from_secs(60))
///     .with_on_error(OnError::Fail);
/// assert_eq!(pause.to_string(), "kubectl scale deploy/kube-apiserver --replicas=0");
/// ```
#[derive(Clone)]
pub struct Hook {
    action: Action,
    on_error: OnError,
}

impl fmt::Debug for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hook")
            .field("hook", &self.to_string())
            .field("on_error", &self.on_error)
            .finish()
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.action {
            Action::Command { argv, .. } => f.write_str(&argv.join(" ")),
            Action::Callback(_) => f.write_str("callback"),
        }
    }
}

impl Hook {
    /// A command hook: `argv[0]` run with the rest as arguments, no shell.
    pub fn command<I, S>(argv: I) -> Hook
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Hook {
            action: Action::Command {
                argv: argv.into_iter().map(Into::into).collect(),
                timeout: DEFAULT_HOOK_TIMEOUT,
            },
            on_error: OnError::Fail,
        }
    }

    /// An in-process hook.
    pub fn callback<F>(callback: F) -> Hook
    where
        F: Fn(HookPoint) -> BoxFuture<'static, std::result::Result<(), String>>
            + Send
            + Sync
            + 'static,
    {
        Hook {
            action: Action::Callback(Arc::new(callback)),
            on_error: OnError::Fail,
        }
    }

    /// Sets a command hook's timeout (default 30 s); no effect on callbacks.
    pub fn with_timeout(mut self, limit: Duration) -> Hook {
        if let Action::Command { timeout, .. } = &mut self.action {
            *timeout = limit;
        }
        self
    }

    /// Sets what the hook's failure does (default [`OnError::Fail`]).
    pub fn with_on_error(mut self, on_error: OnError) -> Hook {
        self.on_error = on_error;
        self
    }

    /// Runs the hook; `Err` is its failure message.
    async fn run(&self, point: HookPoint, kind: &str) -> std::result::Result<(), String> {
        match &self.action {
            Action::Callback(callback) => callback(point).await,
            Action::Command { argv, timeout } => {
                let Some((program, args)) = argv.split_first() else {
                    return Err("the hook's command is empty".into());
                };
                let mut command = tokio::process::Command::new(program);
                command
                    .args(args)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .kill_on_drop(true);
                for (name, value) in environment(point, kind) {
                    command.env(name, value);
                }
                let child = command
                    .spawn()
                    .map_err(|error| format!("cannot start {program:?}: {error}"))?;
                match tokio::time::timeout(*timeout, child.wait_with_output()).await {
                    Err(_) => Err(format!(
                        "it did not finish within {} and was killed",
                        crate::duration::format_duration(*timeout)
                    )),
                    Ok(Err(error)) => Err(format!("waiting for it failed: {error}")),
                    Ok(Ok(output)) if output.status.success() => Ok(()),
                    Ok(Ok(output)) => Err(exited(output.status, &output.stderr)),
                }
            }
        }
    }

    /// Runs the hook on this thread, without a runtime: for after hooks of a
    /// snapshot that was dropped.
    fn run_detached(&self, point: HookPoint, kind: &str) {
        match &self.action {
            Action::Callback(callback) => {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    let future = callback(point);
                    runtime.spawn(future);
                }
            }
            Action::Command { argv, timeout } => {
                let Some((program, args)) = argv.split_first() else {
                    return;
                };
                let mut command = std::process::Command::new(program);
                command
                    .args(args)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null());
                for (name, value) in environment(point, kind) {
                    command.env(name, value);
                }
                let Ok(mut child) = command.spawn() else {
                    tracing::warn!(hook = %self, "the after hook could not start");
                    return;
                };
                let deadline = std::time::Instant::now() + *timeout;
                loop {
                    match child.try_wait() {
                        Ok(Some(_)) | Err(_) => return,
                        Ok(None) if std::time::Instant::now() >= deadline => {
                            let _ = child.kill();
                            let _ = child.wait();
                            tracing::warn!(hook = %self, "the after hook timed out and was killed");
                            return;
                        }
                        Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            }
        }
    }
}

fn environment(point: HookPoint, kind: &str) -> Vec<(&'static str, String)> {
    let mut variables = vec![
        ("BACKUP_HOOK", point.name().to_string()),
        ("BACKUP_SOURCE_KIND", kind.to_string()),
    ];
    if let HookPoint::After { succeeded } = point {
        variables.push((
            "BACKUP_SNAPSHOT_SUCCEEDED",
            if succeeded { "1" } else { "0" }.to_string(),
        ));
    }
    variables
}

fn exited(status: std::process::ExitStatus, stderr: &[u8]) -> String {
    let tail = String::from_utf8_lossy(&stderr[stderr.len().saturating_sub(2048)..])
        .trim()
        .to_string();
    if tail.is_empty() {
        format!("it exited with {status}")
    } else {
        format!("it exited with {status}; its standard error ended with: {tail}")
    }
}

/// Hooks run before and after a snapshot.
///
/// The before hooks run in order; the first one that fails with
/// [`OnError::Fail`] stops the backup. The after hooks run in order
/// *whatever happened*: after a stored snapshot, after a failed one, after a
/// failing before hook, and when the backup is cancelled or its future
/// dropped (then on a thread of their own, their failures only logged). A
/// failing after hook with [`OnError::Fail`] fails the backup: it is not
/// recorded.
///
/// # Examples
///
/// ```
/// use backup_core::{DirectorySnapshotter, Hook, Hooks, Snapshotter};
/// let hooks = Hooks::new()
///     .before(Hook::command(["touch", "/tmp/paused"]))
///     .after(Hook::command(["rm", "-f", "/tmp/paused"]));
/// let source = hooks.around(DirectorySnapshotter::new(vec!["/etc".into()]));
/// assert_eq!(source.kind(), "directory");
/// ```
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    before: Vec<Hook>,
    after: Vec<Hook>,
}

impl Hooks {
    /// No hooks.
    pub fn new() -> Hooks {
        Hooks::default()
    }

    /// Adds a hook run before the snapshot.
    pub fn before(mut self, hook: Hook) -> Hooks {
        self.before.push(hook);
        self
    }

    /// Adds a hook run after the snapshot, whatever happened to it.
    pub fn after(mut self, hook: Hook) -> Hooks {
        self.after.push(hook);
        self
    }

    /// Whether there are no hooks.
    pub fn is_empty(&self) -> bool {
        self.before.is_empty() && self.after.is_empty()
    }

    /// Wraps `snapshotter` so that these hooks run around its snapshots.
    pub fn around<S: Snapshotter>(self, snapshotter: S) -> WithHooks<S> {
        WithHooks {
            inner: snapshotter,
            hooks: self,
        }
    }
}

/// A snapshotter with hooks around its snapshots; made by [`Hooks::around`].
#[derive(Debug, Clone)]
pub struct WithHooks<S> {
    inner: S,
    hooks: Hooks,
}

/// The after hooks, run once: by the finisher, or on drop.
struct AfterHooks {
    hooks: Vec<Hook>,
    kind: String,
    done: bool,
}

impl AfterHooks {
    async fn run(&mut self, succeeded: bool) -> std::result::Result<(), String> {
        self.done = true;
        let mut failure = None;
        for hook in &self.hooks {
            if let Err(message) = hook.run(HookPoint::After { succeeded }, &self.kind).await {
                tracing::warn!(%hook, %message, "after hook failed");
                if hook.on_error == OnError::Fail && failure.is_none() {
                    failure = Some(format!("the after hook `{hook}` failed: {message}"));
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

impl Drop for AfterHooks {
    fn drop(&mut self) {
        if self.done || self.hooks.is_empty() {
            return;
        }
        // Abandoned (the backup's future was dropped): the hooks still run,
        // on a thread of their own since nothing awaits them.
        let hooks = std::mem::take(&mut self.hooks);
        let kind = self.kind.clone();
        let runtime = tokio::runtime::Handle::try_current().ok();
        let _ = std::thread::Builder::new()
            .name("after-hooks".into())
            .spawn(move || {
                let _entered = runtime.as_ref().map(tokio::runtime::Handle::enter);
                for hook in &hooks {
                    hook.run_detached(HookPoint::After { succeeded: false }, &kind);
                }
            });
    }
}

struct HookedFinisher {
    inner: Option<Box<dyn Finisher>>,
    after: AfterHooks,
    source: String,
}

#[async_trait]
impl Finisher for HookedFinisher {
    async fn finish(
        mut self: Box<Self>,
        success: bool,
    ) -> Result<BTreeMap<String, serde_json::Value>> {
        let finished = match self.inner.take() {
            Some(inner) => inner.finish(success).await,
            None => Ok(BTreeMap::new()),
        };
        let after = self.after.run(success && finished.is_ok()).await;
        let facts = finished?;
        after.map_err(|detail| Error::Snapshot {
            source_name: self.source.clone(),
            detail,
        })?;
        Ok(facts)
    }
}

#[async_trait]
impl<S: Snapshotter> Snapshotter for WithHooks<S> {
    fn kind(&self) -> &str {
        self.inner.kind()
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        let kind = self.inner.kind().to_string();
        let failed = |detail: String| Error::Snapshot {
            source_name: format!("{kind} source"),
            detail,
        };
        // From here on the after hooks run whatever happens, dropped
        // futures included.
        let mut after = AfterHooks {
            hooks: self.hooks.after.clone(),
            kind: kind.clone(),
            done: false,
        };
        for hook in &self.hooks.before {
            if let Err(message) = hook.run(HookPoint::Before, &kind).await {
                tracing::warn!(%hook, %message, "before hook failed");
                if hook.on_error == OnError::Fail {
                    let after_failure = after.run(false).await.err();
                    return Err(failed(format!(
                        "the before hook `{hook}` failed: {message}{}",
                        after_failure
                            .map(|more| format!("; then {more}"))
                            .unwrap_or_default()
                    )));
                }
            }
        }
        let mut snapshot = match self.inner.snapshot().await {
            Ok(snapshot) => snapshot,
            Err(error) => {
                if let Err(more) = after.run(false).await {
                    tracing::warn!(%more, "after the failed snapshot");
                }
                return Err(error);
            }
        };
        let inner = snapshot.take_finisher();
        let source = snapshot.source.paths.first().cloned().unwrap_or(kind);
        Ok(snapshot.with_finisher(Box::new(HookedFinisher {
            inner,
            after,
            source,
        })))
    }
}

//! The one tokio runtime of the module, and waiting on it from Python.
//!
//! A synchronous call spawns its future on the runtime and waits for it
//! without the GIL, a short tick at a time; between ticks it takes the GIL
//! back on the calling thread to deliver progress to the caller's callback
//! and to check for signals, so that Ctrl-C interrupts a long call (as
//! datafusion-python's `wait_for_future` does). An interrupted operation is
//! cancelled and waited for, so that it stops cleanly before
//! `KeyboardInterrupt` reaches the caller. Progress is never delivered from
//! a tokio worker: no worker ever waits for the GIL while the caller holds
//! it.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use backup_core::{CancellationToken, Progress, ProgressSink};
use pyo3::prelude::*;
use tokio::runtime::Runtime;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::errors::{backup_error, to_py};
use crate::types::PyProgress;

/// How long a synchronous call (and the scheduler's `run` and `stop`)
/// waits without the GIL between two checks for signals, progress and
/// Python jobs.
pub(crate) const TICK: Duration = Duration::from_millis(50);

/// How long an interrupted operation may take to stop after its
/// cancellation before it is dropped.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// The runtime and the process that started it.
struct Shared {
    runtime: Runtime,
    pid: u32,
}

static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();

/// The module's runtime, started on first use.
///
/// # Errors
///
/// `BackupError` when the runtime cannot start, or when this process was
/// forked from the one that started it: a tokio runtime's threads do not
/// survive `fork`, and waiting on it would hang.
pub(crate) fn runtime() -> PyResult<&'static Runtime> {
    let shared = SHARED.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("backup-toolkit")
            .build()
            .map_err(|error| format!("cannot start the runtime: {error}"))?;
        Ok(Shared {
            runtime,
            pid: std::process::id(),
        })
    });
    let shared = shared
        .as_ref()
        .map_err(|message| backup_error(message.clone()))?;
    if shared.pid != std::process::id() {
        return Err(backup_error(
            "this process was forked from one that had already used backup_toolkit: its runtime's \
             threads do not survive fork. Use the library in the child only (multiprocessing's \
             'spawn' or 'forkserver' start method), or before the parent uses it"
                .to_owned(),
        ));
    }
    // The async twins run on the same runtime; setting it twice is harmless.
    let _ = pyo3_async_runtimes::tokio::init_with_runtime(&shared.runtime);
    Ok(&shared.runtime)
}

/// How an event of an operation becomes the Python value its callback
/// receives (with the GIL).
pub(crate) type ToPython<E> = fn(Python<'_>, E) -> PyResult<Py<PyAny>>;

/// A `Progress` as a `Progress` object.
fn progress_object(py: Python<'_>, event: Progress) -> PyResult<Py<PyAny>> {
    Ok(Py::new(py, PyProgress::from(event))?.into_any())
}

/// What a waiting call does for the caller between ticks: deliver the
/// operation's events (its progress) to a Python callable.
pub(crate) struct ProgressPump {
    deliver: Box<dyn FnMut(Python<'_>) -> PyResult<()> + Send>,
}

impl ProgressPump {
    /// A pump for `callback` (when given) and the sink the operation
    /// reports to.
    pub(crate) fn new(callback: Option<Py<PyAny>>) -> (Option<ProgressSink>, Option<ProgressPump>) {
        match callback {
            None => (None, None),
            Some(callback) => {
                let (sink, receiver) = ProgressSink::channel();
                (
                    Some(sink),
                    Some(ProgressPump::events(receiver, callback, progress_object)),
                )
            }
        }
    }

    /// A pump of any events an operation sends into `receiver` (from any
    /// thread, without the GIL), each turned into its Python value by
    /// `convert` on the calling thread and passed to `callback`.
    pub(crate) fn events<E: Send + 'static>(
        mut receiver: UnboundedReceiver<E>,
        callback: Py<PyAny>,
        convert: ToPython<E>,
    ) -> ProgressPump {
        ProgressPump {
            deliver: Box::new(move |py| {
                while let Ok(event) = receiver.try_recv() {
                    callback.call1(py, (convert(py, event)?,))?;
                }
                Ok(())
            }),
        }
    }

    /// Calls the callback with every event that came since the last call.
    fn deliver(&mut self, py: Python<'_>) -> PyResult<()> {
        (self.deliver)(py)
    }
}

/// Runs `future` on the runtime and waits for it without the GIL, checking
/// for signals (and delivering progress) every tick on the calling thread.
/// On a signal (or a progress callback that raises), `cancel` is cancelled
/// and the operation waited for, briefly, then dropped; the Python
/// exception is raised.
pub(crate) fn wait<T, F>(
    py: Python<'_>,
    future: F,
    cancel: Option<CancellationToken>,
    mut pump: Option<ProgressPump>,
) -> PyResult<T>
where
    F: Future<Output = backup_core::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let runtime = runtime()?;
    let mut handle = runtime.spawn(future);
    loop {
        let finished = py.detach(|| {
            runtime.block_on(async { tokio::time::timeout(TICK, &mut handle).await.ok() })
        });
        if let Some(joined) = finished {
            if let Some(pump) = pump.as_mut() {
                pump.deliver(py)?;
            }
            return match joined {
                Ok(result) => result.map_err(to_py),
                Err(error) => Err(backup_error(format!("the operation failed: {error}"))),
            };
        }
        let checked = match pump.as_mut() {
            Some(pump) => pump.deliver(py).and_then(|()| py.check_signals()),
            None => py.check_signals(),
        };
        if let Err(raised) = checked {
            if let Some(token) = &cancel {
                token.cancel();
            }
            py.detach(|| {
                runtime.block_on(async {
                    if tokio::time::timeout(STOP_GRACE, &mut handle).await.is_err() {
                        handle.abort();
                        let _ = (&mut handle).await;
                    }
                })
            });
            return Err(raised);
        }
    }
}

/// Runs `future` for an `*_async` twin: an awaitable on the caller's event
/// loop. Cancelling the awaitable drops the future.
pub(crate) fn awaitable<'py, T, F>(py: Python<'py>, future: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    runtime()?;
    pyo3_async_runtimes::tokio::future_into_py(py, future)
}

/// A progress sink for an `*_async` twin: each event is handed to the
/// caller's event loop (`call_soon_threadsafe`), from a blocking thread of
/// the runtime, never from a worker, so the callback runs on the loop's
/// thread.
pub(crate) fn async_progress(
    py: Python<'_>,
    callback: Option<Py<PyAny>>,
) -> PyResult<Option<ProgressSink>> {
    let Some(callback) = callback else {
        return Ok(None);
    };
    let (sink, receiver) = ProgressSink::channel();
    forward_to_loop(py, receiver, callback, progress_object)?;
    Ok(Some(sink))
}

/// Hands every event an `*_async` twin's operation sends into `receiver`
/// to the caller's event loop (`call_soon_threadsafe`), turned into its
/// Python value by `convert`, from a blocking thread of the runtime, never
/// from a worker, so that `callback` runs on the loop's thread.
pub(crate) fn forward_to_loop<E: Send + 'static>(
    py: Python<'_>,
    mut receiver: UnboundedReceiver<E>,
    callback: Py<PyAny>,
    convert: ToPython<E>,
) -> PyResult<()> {
    let event_loop: Py<PyAny> = pyo3_async_runtimes::tokio::get_current_loop(py)?.unbind();
    let runtime = runtime()?;
    // Shared without the GIL: the Python objects are cloned only on the
    // blocking thread that holds it.
    let target = std::sync::Arc::new((event_loop, callback));
    runtime.spawn(async move {
        while let Some(event) = receiver.recv().await {
            let target = target.clone();
            let handed = tokio::task::spawn_blocking(move || {
                Python::attach(|py| {
                    let (event_loop, callback) = &*target;
                    let value = convert(py, event)?;
                    event_loop
                        .call_method1(py, "call_soon_threadsafe", (callback.clone_ref(py), value))
                        .map(drop)
                })
            })
            .await;
            // A closed loop ends the forwarding; the operation goes on.
            if !matches!(handed, Ok(Ok(()))) {
                break;
            }
        }
    });
    Ok(())
}

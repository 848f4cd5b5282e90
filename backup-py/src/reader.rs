//! `FileReader`: one stored file read chunk by chunk, as a binary stream
//! and an iterator (sync and async) of chunks.

use std::sync::Arc;

use backup_core::FileReader;
use pyo3::exceptions::{PyStopAsyncIteration, PyStopIteration};
use pyo3::prelude::*;
use tokio::sync::Mutex;

use crate::errors::to_py;
use crate::runtime::{awaitable, wait};
use crate::types::Bytes;

/// The reader and the bytes of a chunk read but not yet returned.
struct State {
    reader: Option<FileReader>,
    pending: Vec<u8>,
}

impl State {
    /// Up to `size` bytes (all that is left when `None`); empty at the end.
    async fn read(&mut self, size: Option<usize>) -> backup_core::Result<Vec<u8>> {
        loop {
            if size.is_some_and(|size| self.pending.len() >= size) {
                break;
            }
            let Some(reader) = self.reader.as_mut() else {
                break;
            };
            match reader.next_chunk().await? {
                Some(chunk) => self.pending.extend_from_slice(&chunk),
                None => {
                    self.reader = None;
                    break;
                }
            }
        }
        let take = size.map_or(self.pending.len(), |size| size.min(self.pending.len()));
        let rest = self.pending.split_off(take);
        Ok(std::mem::replace(&mut self.pending, rest))
    }

    /// The next chunk as stored (what is pending first); `None` at the end.
    async fn next(&mut self) -> backup_core::Result<Option<Vec<u8>>> {
        if !self.pending.is_empty() {
            return Ok(Some(std::mem::take(&mut self.pending)));
        }
        match self.reader.as_mut() {
            None => Ok(None),
            Some(reader) => {
                let chunk = reader.next_chunk().await?;
                if chunk.is_none() {
                    self.reader = None;
                }
                Ok(chunk)
            }
        }
    }
}

/// One file of a backup, open for reading. `read()` and iteration (`for
/// chunk in reader`, `async for chunk in reader`) fetch only the chunks
/// they need, each checked; a context manager closes it.
#[pyclass(name = "FileReader", module = "backup_toolkit", frozen)]
pub(crate) struct PyFileReader {
    path: String,
    size: u64,
    mode: u32,
    state: Arc<Mutex<State>>,
}

impl PyFileReader {
    pub(crate) fn new(reader: FileReader) -> PyFileReader {
        PyFileReader {
            path: reader.path().to_owned(),
            size: reader.size(),
            mode: reader.mode(),
            state: Arc::new(Mutex::new(State {
                reader: Some(reader),
                pending: Vec::new(),
            })),
        }
    }
}

fn size_argument(size: Option<i64>) -> Option<usize> {
    size.and_then(|size| usize::try_from(size).ok())
}

#[pymethods]
impl PyFileReader {
    /// The file's path in the backup.
    #[getter]
    fn path(&self) -> &str {
        &self.path
    }
    /// Its size in bytes.
    #[getter]
    fn size(&self) -> u64 {
        self.size
    }
    /// Its Unix permission bits.
    #[getter]
    fn mode(&self) -> u32 {
        self.mode
    }

    /// Up to `size` bytes, all the rest when `size` is None or negative; `b""` at
    /// the end.
    #[pyo3(signature = (size=None))]
    fn read(&self, py: Python<'_>, size: Option<i64>) -> PyResult<Bytes> {
        let state = self.state.clone();
        wait(
            py,
            async move { state.lock().await.read(size_argument(size)).await },
            None,
            None,
        )
        .map(Bytes)
    }

    /// `read`, as an awaitable.
    #[pyo3(signature = (size=None))]
    fn read_async<'py>(&self, py: Python<'py>, size: Option<i64>) -> PyResult<Bound<'py, PyAny>> {
        let state = self.state.clone();
        awaitable(py, async move {
            state
                .lock()
                .await
                .read(size_argument(size))
                .await
                .map(Bytes)
                .map_err(to_py)
        })
    }

    /// Stops reading; later reads return `b""`.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let state = self.state.clone();
        wait(
            py,
            async move {
                let mut state = state.lock().await;
                state.reader = None;
                state.pending.clear();
                Ok(())
            },
            None,
            None,
        )
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Bytes> {
        let state = self.state.clone();
        match wait(
            py,
            async move { state.lock().await.next().await },
            None,
            None,
        )? {
            Some(chunk) => Ok(Bytes(chunk)),
            None => Err(PyStopIteration::new_err(())),
        }
    }

    fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let state = self.state.clone();
        awaitable(py, async move {
            match state.lock().await.next().await.map_err(to_py)? {
                Some(chunk) => Ok(Bytes(chunk)),
                None => Err(PyStopAsyncIteration::new_err(())),
            }
        })
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!("FileReader(path={:?}, size={})", self.path, self.size)
    }
}

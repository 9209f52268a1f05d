//! What Python receives per message: `dmapickle.Message`, built here in Rust.
//!
//! One object per message, made by the call that takes it off the reader's queue: its fields
//! are read-only attributes and `load()` unpickles it with its [`Loader`] (CPython's
//! `pickle.loads` under the allowlist guard), all without a Python-level frame.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyFloat, PyInt, PyList};

use super::loader::Loader;
use super::view;

/// `dmapickle.Message`: one delivered message.
///
/// `buffers[i]` is a zero-copy view of the i-th out-of-band buffer, read-only when the frame's
/// descriptor says so; `load()` unpickles the pickle with those buffers.
#[pyclass(frozen, module = "dmapickle", name = "Message")]
pub(super) struct PyMessage {
    /// The frame's sequence number.
    #[pyo3(get)]
    seq: u32,
    /// The pickle, as received and validated.
    #[pyo3(get)]
    pickle: Py<PyBytes>,
    /// One memoryview per out-of-band buffer, zero-copy: each exports the received bytes (or
    /// the shared region) and keeps them alive while any view or array of it exists.
    #[pyo3(get)]
    buffers: Py<PyList>,
    /// Per buffer: whether it lies in a shared region (released when its last view dies).
    #[pyo3(get)]
    shared: Py<PyList>,
    /// When the frame's last byte was read, in ns of the host's monotonic clock (the clock of
    /// `time.monotonic_ns()` on Linux), taken in Rust as the read returned.
    #[pyo3(get)]
    host_ns: u64,
    loader: Py<Loader>,
    /// The stream's `DeviceClock` when the message was taken (None for `read_frame`).
    clock: Option<Py<PyAny>>,
}

#[pymethods]
impl PyMessage {
    /// Unpickle with this message's buffers, allowing only the stream's allowlisted globals; a
    /// dict with the stream clock's field (`t_us` unless the clock says otherwise) also feeds
    /// `Stream.clock` (`clock.observe(seq, host_ns, obj)`).
    fn load<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let obj = self
            .loader
            .get()
            .load_bound(py, self.pickle.bind(py), self.buffers.bind(py))?;
        if let Some(clock) = &self.clock {
            let clock = clock.bind(py);
            if let Ok(d) = obj.cast::<PyDict>() {
                // `observe` checks again; skipping the call for messages without the field
                // keeps a Python frame off every other message.
                if let Some(t) = d.get_item(clock.getattr(intern!(py, "field"))?)? {
                    if t.is_instance_of::<PyInt>() || t.is_instance_of::<PyFloat>() {
                        clock
                            .call_method1(intern!(py, "observe"), (self.seq, self.host_ns, &obj))?;
                    }
                }
            }
        }
        Ok(obj)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let mut sizes = Vec::new();
        for b in self.buffers.bind(py).iter() {
            sizes.push(b.getattr(intern!(py, "nbytes"))?.to_string());
        }
        Ok(format!(
            "<dmapickle.Message seq={} pickle={} B buffers=[{}]>",
            self.seq,
            self.pickle.bind(py).as_bytes().len(),
            sizes.join(", ")
        ))
    }
}

/// `m` as a `dmapickle.Message` loaded by `loader`, feeding `clock` if given: its buffers become
/// memoryviews over the received bytes.
pub(super) fn message<'py>(
    py: Python<'py>,
    m: crate::Message,
    loader: &Py<Loader>,
    clock: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyMessage>> {
    let buffers = PyList::empty(py);
    let shared = PyList::empty(py);
    for b in m.buffers {
        let readonly = b.readonly();
        shared.append(matches!(b.kind, dmapickle_core::frame::BufferKind::Shared))?;
        buffers.append(view::memoryview(py, b.data, readonly)?)?;
    }
    Bound::new(
        py,
        PyMessage {
            seq: m.seq,
            pickle: PyBytes::new(py, &m.pickle).unbind(),
            buffers: buffers.unbind(),
            shared: shared.unbind(),
            host_ns: m.host_ns,
            loader: loader.clone_ref(py),
            clock,
        },
    )
}

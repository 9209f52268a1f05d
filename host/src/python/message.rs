//! What Python receives per message: a [`RawMessage`] (named fields, not a positional tuple)
//! that `dmapickle.Message` wraps.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use super::view;
use crate::Message;

/// The pickle as the unpickler should read it: a protocol 4/5 pickle without a `FRAME` gets one
/// around its body. Same value, but CPython's Unpickler then reads it with one `read()` instead of
/// one per opcode (about 2 us per small message). Validation ran on the original bytes.
fn framed<'py>(
    py: Python<'py>,
    p: &[u8],
    original: &Bound<'py, PyBytes>,
) -> PyResult<Bound<'py, PyBytes>> {
    use dmapickle_core::opcode::{FRAME, PROTO};
    match p {
        [PROTO, proto, first, ..] if *proto >= 4 && *first != FRAME => {
            let body = p.len() as u64 - 2;
            PyBytes::new_with(py, p.len() + 9, |b| {
                b[..2].copy_from_slice(&p[..2]);
                b[2] = FRAME;
                b[3..11].copy_from_slice(&body.to_le_bytes());
                b[11..].copy_from_slice(&p[2..]);
                Ok(())
            })
        }
        _ => Ok(original.clone()),
    }
}

/// One delivered message as the Python side receives it (`dmapickle.Message` wraps it).
#[pyclass(module = "dmapickle._native", frozen, get_all)]
pub(super) struct RawMessage {
    /// The frame's sequence number.
    seq: u32,
    /// The pickle, as received and validated.
    pickle: Py<PyBytes>,
    /// The same pickle inside one `FRAME` (see [`framed`]): what the unpickler reads.
    framed: Py<PyBytes>,
    /// One `memoryview` per buffer, each over a `BufferView` (zero-copy).
    buffers: Py<PyList>,
    /// Per buffer: whether it lies in a shared region.
    shared: Py<PyList>,
    /// [`Message::host_ns`].
    host_ns: u64,
}

impl RawMessage {
    /// `m` for Python: its buffers become memoryviews over the received bytes.
    pub(super) fn new(py: Python<'_>, m: Message) -> PyResult<Bound<'_, RawMessage>> {
        let pickle = PyBytes::new(py, &m.pickle);
        let framed = framed(py, &m.pickle, &pickle)?;
        let buffers = PyList::empty(py);
        let shared = PyList::empty(py);
        for b in m.buffers {
            let readonly = b.readonly();
            shared.append(matches!(b.kind, dmapickle_core::frame::BufferKind::Shared))?;
            buffers.append(view::memoryview(py, b.data, readonly)?)?;
        }
        Bound::new(
            py,
            RawMessage {
                seq: m.seq,
                pickle: pickle.unbind(),
                framed: framed.unbind(),
                buffers: buffers.unbind(),
                shared: shared.unbind(),
                host_ns: m.host_ns,
            },
        )
    }
}

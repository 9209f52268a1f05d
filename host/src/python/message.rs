//! What Python receives per message: a `RawMessage` (a struct sequence: named fields, unpacked
//! like a tuple) that `dmapickle.Message` wraps.

use pyo3::ffi;
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

/// The fields of `RawMessage`, in order, with their docs.
const FIELDS: [(&std::ffi::CStr, &std::ffi::CStr); 6] = [
    (c"seq", c"The frame's sequence number."),
    (c"pickle", c"The pickle, as received and validated."),
    (
        c"framed",
        c"The same pickle inside one FRAME: what the unpickler reads.",
    ),
    (
        c"buffers",
        c"One memoryview per out-of-band buffer, zero-copy.",
    ),
    (
        c"shared",
        c"Per buffer: whether it lies in a shared region.",
    ),
    (
        c"host_ns",
        c"When the frame's last byte was read (host monotonic clock, ns).",
    ),
];

static RAW_TYPE: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();

/// `dmapickle._native.RawMessage`: one delivered message as the Python side receives it, a
/// struct sequence (CPython's named tuple, like `os.stat_result`) of [`FIELDS`]. Named fields
/// for the reader, and as cheap to build and to unpack as the plain tuple it replaces.
pub(super) fn raw_message_type(py: Python<'_>) -> PyResult<&Py<PyAny>> {
    RAW_TYPE.get_or_try_init(py, || {
        // Made once per process and kept by the type (CPython keeps the field names): leaked.
        let mut fields: Vec<ffi::PyStructSequence_Field> = FIELDS
            .iter()
            .map(|(name, doc)| ffi::PyStructSequence_Field {
                name: name.as_ptr(),
                doc: doc.as_ptr(),
            })
            .collect();
        fields.push(ffi::PyStructSequence_Field {
            name: std::ptr::null(),
            doc: std::ptr::null(),
        });
        let desc = Box::leak(Box::new(ffi::PyStructSequence_Desc {
            name: c"dmapickle._native.RawMessage".as_ptr(),
            doc: c"One delivered message: seq, pickle, framed, buffers, shared, host_ns.".as_ptr(),
            fields: fields.leak().as_mut_ptr(),
            n_in_sequence: FIELDS.len() as std::ffi::c_int,
        }));
        // SAFETY: `desc` and the NULL-terminated field array it points to are valid for the
        // rest of the process (leaked), their strings are 'static; the result is a new
        // reference to the type or NULL with an exception set.
        let tp = unsafe { ffi::PyStructSequence_NewType(desc) };
        // SAFETY: `tp` is a new reference (or NULL, turned into the pending exception).
        unsafe { Bound::from_owned_ptr_or_err(py, tp.cast::<ffi::PyObject>()) }.map(Bound::unbind)
    })
}

/// `m` as a `RawMessage`: its buffers become memoryviews over the received bytes.
pub(super) fn raw_message(py: Python<'_>, m: Message) -> PyResult<Bound<'_, PyAny>> {
    let pickle = PyBytes::new(py, &m.pickle);
    let framed = framed(py, &m.pickle, &pickle)?;
    let buffers = PyList::empty(py);
    let shared = PyList::empty(py);
    for b in m.buffers {
        let readonly = b.readonly();
        shared.append(matches!(b.kind, dmapickle_core::frame::BufferKind::Shared))?;
        buffers.append(view::memoryview(py, b.data, readonly)?)?;
    }
    let items: [Bound<'_, PyAny>; 6] = [
        m.seq.into_pyobject(py)?.into_any(),
        pickle.into_any(),
        framed.into_any(),
        buffers.into_any(),
        shared.into_any(),
        m.host_ns.into_pyobject(py)?.into_any(),
    ];
    let tp = raw_message_type(py)?.bind(py);
    // SAFETY: `tp` is the RawMessage struct sequence type; the result is a new reference with
    // every item NULL, or NULL with an exception set.
    let raw = unsafe { ffi::PyStructSequence_New(tp.as_ptr().cast::<ffi::PyTypeObject>()) };
    // SAFETY: a new reference or NULL.
    let obj = unsafe { Bound::from_owned_ptr_or_err(py, raw) }?;
    for (i, item) in items.into_iter().enumerate() {
        // SAFETY: `obj` is a fresh RawMessage nobody else has seen, `i` < its length (6), and
        // SetItem steals the new reference `into_ptr` hands it (each slot is set once).
        unsafe {
            ffi::PyStructSequence_SetItem(obj.as_ptr(), i as ffi::Py_ssize_t, item.into_ptr())
        };
    }
    Ok(obj)
}

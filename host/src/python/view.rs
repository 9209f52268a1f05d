//! `BufferView`: a buffer-protocol exporter over [`Bytes`], and the memoryviews over it that a
//! delivered message's `buffers` are (see the [module docs](super)). All of the Python
//! extension's `unsafe` is here.
use std::ffi::{c_char, c_int, c_void};
use std::mem::ManuallyDrop;

use bytes::Bytes;
use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::prelude::*;

/// CPython's `Py_buffer` (same layout in every CPython 3 release; not in PyO3's
/// stable-ABI bindings before 3.11).
#[repr(C)]
pub(super) struct PyBuffer {
    buf: *mut c_void,
    obj: *mut ffi::PyObject,
    len: ffi::Py_ssize_t,
    itemsize: ffi::Py_ssize_t,
    readonly: c_int,
    ndim: c_int,
    format: *mut c_char,
    shape: *mut ffi::Py_ssize_t,
    strides: *mut ffi::Py_ssize_t,
    suboffsets: *mut ffi::Py_ssize_t,
    internal: *mut c_void,
}

extern "C" {
    fn PyBuffer_FillInfo(
        view: *mut PyBuffer,
        exporter: *mut ffi::PyObject,
        buf: *mut c_void,
        len: ffi::Py_ssize_t,
        readonly: c_int,
        flags: c_int,
    ) -> c_int;
}

/// The object layout: the Python header, then our fields.
#[repr(C)]
struct Object {
    head: ffi::PyObject,
    data: ManuallyDrop<Bytes>,
    readonly: bool,
}

unsafe extern "C" fn get_buffer(
    exporter: *mut ffi::PyObject,
    view: *mut PyBuffer,
    flags: c_int,
) -> c_int {
    // SAFETY: CPython calls this slot only on instances of the BufferView type, which are
    // `Object`s initialised by `new` (fields are written before the object is published).
    let obj = unsafe { &*(exporter as *const Object) };
    let len = ffi::Py_ssize_t::try_from(obj.data.len()).unwrap_or(ffi::Py_ssize_t::MAX);
    // SAFETY: `view` is CPython's to fill; the memory stays valid while `exporter` lives, and
    // FillInfo takes a new reference to `exporter` into `view.obj` (released by CPython's
    // PyBuffer_Release). A read-only exporter makes FillInfo refuse PyBUF_WRITABLE requests.
    unsafe {
        PyBuffer_FillInfo(
            view,
            exporter,
            obj.data.as_ptr() as *mut c_void,
            len,
            c_int::from(obj.readonly),
            flags,
        )
    }
}

unsafe extern "C" fn dealloc(exporter: *mut ffi::PyObject) {
    // SAFETY: called once, when the last reference died; the fields were initialised by
    // `new`, the type is a heap type (its reference is released after freeing, as CPython
    // requires for heap types), and tp_free is the type's own deallocator.
    unsafe {
        let obj = exporter as *mut Object;
        ManuallyDrop::drop(&mut (*obj).data);
        let tp = ffi::Py_TYPE(exporter);
        let free = ffi::PyType_GetSlot(tp, ffi::Py_tp_free);
        if !free.is_null() {
            let free: ffi::freefunc = std::mem::transmute(free);
            free(exporter as *mut c_void);
        }
        ffi::Py_DecRef(tp as *mut ffi::PyObject);
    }
}

/// Creates the `BufferView` type (once per module import).
fn make_type(py: Python<'_>) -> PyResult<Py<PyAny>> {
    let mut slots = [
        ffi::PyType_Slot {
            slot: ffi::Py_bf_getbuffer,
            pfunc: get_buffer as *mut c_void,
        },
        ffi::PyType_Slot {
            slot: ffi::Py_tp_dealloc,
            pfunc: dealloc as *mut c_void,
        },
        ffi::PyType_Slot {
            slot: ffi::Py_tp_doc,
            pfunc: c"Zero-copy bytes of one delivered buffer (buffer protocol; read-only when the descriptor says so).".as_ptr() as *mut c_void,
        },
        ffi::PyType_Slot {
            slot: 0,
            pfunc: std::ptr::null_mut(),
        },
    ];
    let mut spec = ffi::PyType_Spec {
        name: c"dmapickle._native.BufferView".as_ptr(),
        basicsize: c_int::try_from(std::mem::size_of::<Object>())
            .map_err(|_| PyRuntimeError::new_err("BufferView layout"))?,
        itemsize: 0,
        flags: ffi::Py_TPFLAGS_DEFAULT as _,
        slots: slots.as_mut_ptr(),
    };
    // SAFETY: `spec` and `slots` are valid for the call (CPython copies what it keeps; the
    // name and doc are 'static); the result is a new reference or NULL with an exception.
    let tp = unsafe { ffi::PyType_FromSpec(&mut spec) };
    // SAFETY: `tp` is a new reference (or NULL, turned into the pending exception).
    unsafe { Bound::from_owned_ptr_or_err(py, tp) }.map(Bound::unbind)
}

/// A new `BufferView` of type `tp` over `data`.
fn new<'py>(
    py: Python<'py>,
    tp: &Bound<'py, PyAny>,
    data: Bytes,
    readonly: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let tp_ptr = tp.as_ptr() as *mut ffi::PyTypeObject;
    // SAFETY: `tp_ptr` is the BufferView heap type (made by `make_type`, kept by the module);
    // GenericAlloc returns a zeroed object of its basicsize with a reference to the type, or
    // NULL with an exception set.
    let raw = unsafe { ffi::PyType_GenericAlloc(tp_ptr, 0) };
    // SAFETY: a new reference or NULL.
    let obj = unsafe { Bound::from_owned_ptr_or_err(py, raw) }?;
    // SAFETY: `raw` is a fresh, zeroed `Object` nobody else has seen yet; writing the fields
    // (without dropping the zeroed bytes) initialises them before it is shared.
    unsafe {
        let o = raw as *mut Object;
        std::ptr::write(&mut (*o).data, ManuallyDrop::new(data));
        (*o).readonly = readonly;
    }
    Ok(obj)
}

static VIEW_TYPE: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();

/// The `BufferView` type of this interpreter (made on first use).
pub(super) fn view_type(py: Python<'_>) -> PyResult<&Py<PyAny>> {
    VIEW_TYPE.get_or_try_init(py, || make_type(py))
}

/// A `memoryview` over a new `BufferView` of `data`: it keeps `data` (and so the receive block
/// or the shared buffer under it) alive as long as the view or anything built on it lives.
pub(super) fn memoryview<'py>(
    py: Python<'py>,
    data: Bytes,
    readonly: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let tp = view_type(py)?.bind(py);
    let exporter = new(py, tp, data, readonly)?;
    // SAFETY: `exporter` is a valid object; the result is a new reference or NULL with an
    // exception set. The memoryview holds its own reference to the exporter.
    unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyMemoryView_FromObject(exporter.as_ptr())) }
}

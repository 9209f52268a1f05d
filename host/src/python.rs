//! `dmapickle._native`: the Rust half of the `dmapickle` Python package (feature `python`).
//!
//! The Python half (`host/python/dmapickle/__init__.py`) turns what this module returns into
//! `Message` objects. Zero-copy works like this: every buffer of a delivered message is a
//! [`bytes::Bytes`] view of the frame reader's receive block or of a mapped shared region. This
//! module hands Python, per buffer, a `BufferView`: an object that owns one reference to those
//! bytes and exports them through the buffer protocol, read-only when the frame's descriptor
//! says so (a read-only exporter refuses writable requests, so even numpy's
//! `setflags(write=True)` cannot make an array over it writable). `memoryview(view)` and numpy
//! arrays built by `pickle.loads(..., buffers=...)` keep the `BufferView` alive, so the receive
//! block (or the shared buffer) lives exactly as long as the last array or view of it; when it
//! dies the block goes back to the reader's pool, or the shared buffer is released to the device.
//!
//! `BufferView` is a heap type made with `PyType_FromSpec` and the `bf_getbuffer` slot rather than
//! a `#[pyclass]` with `__getbuffer__`: the module is built for the stable ABI from Python 3.9
//! (`abi3-py39`), where PyO3 offers the buffer protocol only from 3.11. The slot and `Py_buffer`
//! layout have been the same in every CPython 3 release.
//!
//! Reading runs on a background thread per stream (the GIL is never held while waiting for
//! bytes); `next` waits on a bounded queue with the GIL released, waking every 50 ms to let
//! Python handle Ctrl-C.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use dmapickle_core::Profile;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::region::RegionMap;
use crate::source::{Source, SourceEvent, SourceOptions, SourceSpec};
use crate::stream::{Counters, FrameReader, ReadError, ReaderConfig};
use crate::validation::Checker;
use crate::Message;

pyo3::create_exception!(
    _native,
    RejectedError,
    PyValueError,
    "A pickle or frame was refused by the validator (the message says where and why)."
);

pyo3::create_exception!(
    _native,
    WaitingWarning,
    pyo3::exceptions::PyUserWarning,
    "A live source has delivered nothing for a while: the message says what it waits for."
);

/// How long `next` waits for a stream's first message before it warns (once) what it waits for.
const WAITING_WARNING_AFTER: Duration = Duration::from_secs(2);

mod view {
    //! `BufferView`: a buffer-protocol exporter over [`Bytes`] (see the module docs).
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
    pub(super) fn make_type(py: Python<'_>) -> PyResult<Py<PyAny>> {
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
    pub(super) fn new<'py>(
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
}

fn parse_profile(profile: &str) -> PyResult<Profile> {
    match profile {
        "general" => Ok(Profile::General),
        "strict" => Ok(Profile::Strict),
        other => Err(PyValueError::new_err(format!(
            "profile must be 'general' or 'strict', not {other:?}"
        ))),
    }
}

/// A checker for `profile`, `allow` and the validator limits given as Python keyword arguments
/// (`max_len`, `max_depth`, `max_alloc`, `max_collisions`, `max_array_bytes`).
fn checker(
    profile: &str,
    allow: &[(String, String)],
    limits: Option<HashMap<String, u64>>,
) -> PyResult<Checker> {
    let mut c = Checker::new(parse_profile(profile)?);
    let mut l = dmapickle_core::validate::Limits::DEFAULT;
    for (name, value) in limits.unwrap_or_default() {
        let small = |v: u64| {
            u32::try_from(v)
                .map_err(|_| PyValueError::new_err(format!("{name} must be below 2**32")))
        };
        match name.as_str() {
            "max_len" => l.max_len = usize::try_from(value).unwrap_or(usize::MAX),
            "max_depth" => l.max_depth = small(value)?,
            "max_alloc" => l.max_alloc = value,
            "max_collisions" => l.max_collisions = small(value)?,
            "max_array_bytes" => l.max_array_bytes = value,
            "max_expansion" => l.max_expansion = small(value)?,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown validator limit {other:?}: use max_len, max_depth, max_alloc, \
                     max_collisions, max_array_bytes or max_expansion"
                )))
            }
        }
    }
    c.limits(l);
    for (m, n) in allow {
        c.allow(m, n);
    }
    Ok(c)
}

fn region_map(regions: &[(u16, String)]) -> PyResult<RegionMap> {
    let mut map = RegionMap::new();
    for (id, path) in regions {
        map.open(*id, std::path::Path::new(path)).map_err(|e| {
            PyOSError::new_err(format!("cannot map shared region {id} from {path}: {e}"))
        })?;
    }
    Ok(map)
}

static VIEW_TYPE: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();

/// The pickle as the unpickler should read it: a protocol 4/5 pickle without a `FRAME` gets one
/// around its body. Same value, but CPython's Unpickler then reads it with one `read()` instead of
/// one per opcode (about 2 us per small message). Validation ran on the original bytes.
fn framed<'py>(
    py: Python<'py>,
    p: &[u8],
    original: &Bound<'py, PyBytes>,
) -> PyResult<Bound<'py, PyBytes>> {
    match p {
        [0x80, proto, first, ..] if *proto >= 4 && *first != 0x95 => {
            let body = p.len() as u64 - 2;
            PyBytes::new_with(py, p.len() + 9, |b| {
                b[..2].copy_from_slice(&p[..2]);
                b[2] = 0x95;
                b[3..11].copy_from_slice(&body.to_le_bytes());
                b[11..].copy_from_slice(&p[2..]);
                Ok(())
            })
        }
        _ => Ok(original.clone()),
    }
}

/// `(seq, pickle: bytes, framed: bytes, [memoryview], [shared: bool], host_ns: int)` for the
/// Python side; each memoryview is over a `BufferView`; `framed`: see [`framed`]; `host_ns`:
/// [`Message::host_ns`].
fn message_tuple<'py>(py: Python<'py>, m: Message) -> PyResult<Bound<'py, PyTuple>> {
    let tp = VIEW_TYPE
        .get_or_try_init(py, || view::make_type(py))?
        .bind(py);
    let pickle = PyBytes::new(py, &m.pickle);
    let framed = framed(py, &m.pickle, &pickle)?;
    let views = PyList::empty(py);
    let shared = PyList::empty(py);
    for b in m.buffers {
        let readonly = b.readonly();
        shared.append(matches!(b.kind, dmapickle_core::frame::BufferKind::Shared))?;
        let exporter = view::new(py, tp, b.data, readonly)?;
        // SAFETY: `exporter` is a valid object; the result is a new reference or NULL with an
        // exception set. The memoryview holds its own reference to the exporter.
        let mv = unsafe {
            Bound::from_owned_ptr_or_err(py, pyo3::ffi::PyMemoryView_FromObject(exporter.as_ptr()))
        }?;
        views.append(mv)?;
    }
    (m.seq, pickle, framed, views, shared, m.host_ns).into_pyobject(py)
}

/// What the reader thread sends to `next`.
enum Item {
    Message(Message),
    /// The stream ended; `Some` if it failed.
    End(Option<String>),
}

#[derive(Default)]
struct Shared {
    counters: Counters,
    refused_last: Option<String>,
    reconnects: u64,
    disconnects: u64,
    events: Vec<String>,
    /// Why the source is not connected right now (`None` once it is, or before it tried).
    waiting: Option<String>,
    /// Whether it ever connected.
    connected: bool,
}

/// Hands messages from the reader thread to Python in batches: the reader blocks only when
/// `cap` messages wait, Python takes everything waiting at once, and each side wakes the other
/// only when it is actually waiting. So a consumer that keeps up pays about one thread wake-up
/// per batch, not one per message.
struct Handoff {
    state: Mutex<HandoffState>,
    ready: Condvar,
    space: Condvar,
    cap: usize,
}

#[derive(Default)]
struct HandoffState {
    items: VecDeque<Item>,
    closed: bool,
    consumer_waiting: bool,
    producer_waiting: bool,
}

impl Handoff {
    fn new(cap: usize) -> Self {
        Handoff {
            state: Mutex::new(HandoffState::default()),
            ready: Condvar::new(),
            space: Condvar::new(),
            cap: cap.max(1),
        }
    }

    /// Queue `item`, waiting for room; false if the consumer is gone.
    fn push(&self, item: Item) -> bool {
        let mut s = lock(&self.state);
        while s.items.len() >= self.cap && !s.closed {
            s.producer_waiting = true;
            s = self.space.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        if s.closed {
            return false;
        }
        s.items.push_back(item);
        if s.consumer_waiting {
            s.consumer_waiting = false;
            self.ready.notify_one();
        }
        true
    }

    /// Everything queued, waiting up to `tick` for something (may return empty).
    fn take_all(&self, tick: Duration) -> VecDeque<Item> {
        let mut s = lock(&self.state);
        if s.items.is_empty() && !s.closed {
            s.consumer_waiting = true;
            s = self
                .ready
                .wait_timeout(s, tick)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
            s.consumer_waiting = false;
        }
        let batch = std::mem::take(&mut s.items);
        if s.producer_waiting {
            s.producer_waiting = false;
            self.space.notify_one();
        }
        batch
    }

    /// The consumer is gone: drop what waits and let the producer go.
    fn close(&self) {
        let mut s = lock(&self.state);
        s.closed = true;
        s.items.clear();
        self.space.notify_all();
    }

    fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }
}

/// A live stream of messages read by a background thread.
#[pyclass(module = "dmapickle._native")]
struct Stream {
    handoff: Arc<Handoff>,
    /// Taken from the handoff, not yet returned (touched with the GIL held only).
    pending: Mutex<VecDeque<Item>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    shared: Arc<Mutex<Shared>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    source: String,
    ended: Mutex<bool>,
    /// When the stream was opened, and whether the "still waiting" warning was given.
    opened: std::time::Instant,
    warned: std::sync::atomic::AtomicBool,
    /// Commands to the device on the same connection (`stream.device`), if the source has a
    /// down direction.
    controller: Option<Mutex<crate::control::Controller>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn note_event(e: &SourceEvent, shared: &Mutex<Shared>) {
    let mut s = lock(shared);
    match e {
        SourceEvent::Connected { .. } if s.disconnects > 0 => s.reconnects += 1,
        SourceEvent::Connected { .. } | SourceEvent::Waiting { .. } => {}
        SourceEvent::Disconnected { .. } => s.disconnects += 1,
    }
    match e {
        SourceEvent::Connected { .. } => {
            s.connected = true;
            s.waiting = None;
        }
        SourceEvent::Waiting { reason } | SourceEvent::Disconnected { reason, .. } => {
            s.waiting = Some(reason.clone());
        }
    }
    if s.events.len() < 256 {
        s.events.push(e.to_string());
    }
}

#[pymethods]
impl Stream {
    #[new]
    #[pyo3(signature = (source, regions, allow, profile, reconnect, queue, trust_link=false,
                        max_frame=None, max_pickle=None, max_buffers=None, limits=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        source: &str,
        regions: Vec<(u16, String)>,
        allow: Vec<(String, String)>,
        profile: &str,
        reconnect: bool,
        queue: usize,
        trust_link: bool,
        max_frame: Option<u64>,
        max_pickle: Option<u32>,
        max_buffers: Option<u16>,
        limits: Option<HashMap<String, u64>>,
    ) -> PyResult<Self> {
        let defaults = ReaderConfig::default();
        let config = ReaderConfig {
            trust_link,
            max_frame: max_frame.unwrap_or(defaults.max_frame),
            max_pickle: max_pickle.unwrap_or(defaults.max_pickle),
            max_buffers: max_buffers.unwrap_or(defaults.max_buffers),
            ..defaults
        };
        let spec: SourceSpec = source
            .parse()
            .map_err(|e: crate::source::BadUri| PyValueError::new_err(e.to_string()))?;
        let validator = crate::delivery::checked(checker(profile, &allow, limits)?);
        let map = region_map(&regions)?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let sink = shared.clone();
        let opts = SourceOptions {
            reconnect,
            poll: Duration::from_millis(50),
            on_event: Some(Arc::new(move |e: &SourceEvent| note_event(e, &sink))),
            ..SourceOptions::default()
        };
        let stop = opts.stop.clone();
        // Non-reconnecting sources fail here, with the error, instead of in the thread.
        let src = py
            .detach(|| Source::open(spec, opts))
            .map_err(|e| PyOSError::new_err(e.to_string()))?;
        let control = crate::control::attach(&src);
        let (controller, tap) = match control {
            Some((c, replies, down)) => (Some(Mutex::new(c)), Some((replies, down))),
            None => (None, None),
        };
        let handoff = Arc::new(Handoff::new(queue));
        let tx = handoff.clone();
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("dmapickle-reader".into())
            .spawn(move || {
                let mut reader = FrameReader::with_config(src, config)
                    .with_regions(map)
                    .with_validator(validator);
                let down = match tap {
                    Some((replies, down)) => {
                        reader = reader.with_skip_tap(Box::new(move |b| replies.feed(b)));
                        Some(down)
                    }
                    None => None,
                };
                loop {
                    let next = reader.next_message();
                    if let Some(down) = &down {
                        down.refresh(reader.get_ref());
                    }
                    lock(&sh).counters = reader.counters();
                    let item = match next {
                        Ok(Some(m)) => Item::Message(m),
                        Ok(None) => Item::End(None),
                        Err(e) if e.is_fatal() => Item::End(Some(e.to_string())),
                        Err(e) => {
                            lock(&sh).refused_last = Some(e.to_string());
                            continue;
                        }
                    };
                    let end = matches!(item, Item::End(_));
                    if !tx.push(item) || end {
                        break;
                    }
                }
            })
            .map_err(|e| PyOSError::new_err(format!("cannot start the reader thread: {e}")))?;
        Ok(Stream {
            handoff,
            pending: Mutex::new(VecDeque::new()),
            stop,
            shared,
            thread: Mutex::new(Some(thread)),
            source: source.to_string(),
            ended: Mutex::new(false),
            opened: std::time::Instant::now(),
            warned: std::sync::atomic::AtomicBool::new(false),
            controller,
        })
    }

    /// Every message already received (at least one; waits with the GIL released, checking
    /// for Ctrl-C every 50 ms), as a list of tuples (see `message_tuple`), or `None` at the end
    /// of the stream. Raises `OSError` if the source failed, `TimeoutError` after `timeout` s.
    /// One call per batch instead of per message.
    #[pyo3(signature = (timeout=None))]
    fn next_batch<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        if !self.wait_pending(py, timeout)? {
            return Ok(None);
        }
        let out = PyList::empty(py);
        loop {
            let next = {
                let mut pending = lock(&self.pending);
                match pending.front() {
                    Some(Item::Message(_)) => pending.pop_front(),
                    // The end is reported by the next call, after these messages.
                    Some(Item::End(_)) if !out.is_empty() => None,
                    _ => pending.pop_front(),
                }
            };
            match next {
                Some(Item::Message(m)) => out.append(message_tuple(py, m)?)?,
                Some(Item::End(err)) => {
                    self.end(py, err)?;
                    return Ok(None);
                }
                None => return Ok(Some(out)),
            }
        }
    }

    /// One command to the device (`dmapickle.device.Device`), its reply as a dict.
    #[pyo3(signature = (command, value=None, timeout=None))]
    fn control<'py>(
        &self,
        py: Python<'py>,
        command: &str,
        value: Option<u64>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        // Messages that arrive while the device answers are kept for `next_batch`, so the
        // reader thread never blocks on a full queue (it is the one that finds the reply).
        let keep = || {
            let got = self.handoff.take_all(Duration::ZERO);
            if !got.is_empty() {
                lock(&self.pending).extend(got);
            }
        };
        crate::control::py::call(py, self.controller.as_ref(), command, value, timeout, &keep)
    }

    /// Stop reading and wait for the reader thread. Messages already delivered stay valid.
    fn close(&self, py: Python<'_>) {
        self.stop.store(true, Ordering::Relaxed);
        // Closing the handoff unblocks a reader waiting for queue space.
        self.handoff.close();
        lock(&self.pending).clear();
        self.join(py);
    }

    /// Whether the stream ended or was closed.
    #[getter]
    fn closed(&self) -> bool {
        *lock(&self.ended) || self.handoff.is_closed()
    }

    /// Counters of the reader: `frames_ok`, `corrupt`, `lost`, `bytes_skipped`, `restarts`,
    /// `seq_jumps`, `refused`, `bytes_read`, `disconnects`, `reconnects`, `last_refused`.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = lock(&self.shared);
        let c = s.counters;
        let d = PyDict::new(py);
        d.set_item("frames_ok", c.frames_ok)?;
        d.set_item("corrupt", c.corrupt)?;
        d.set_item("lost", c.lost)?;
        d.set_item("bytes_skipped", c.bytes_skipped)?;
        d.set_item("restarts", c.restarts)?;
        d.set_item("seq_jumps", c.seq_jumps)?;
        d.set_item("refused", c.refused)?;
        d.set_item("bytes_read", c.bytes_read)?;
        d.set_item("disconnects", s.disconnects)?;
        d.set_item("reconnects", s.reconnects)?;
        d.set_item("last_refused", s.refused_last.clone())?;
        d.set_item("events", s.events.clone())?;
        Ok(d)
    }
}

impl Stream {
    /// Wait (GIL released, signals checked every tick) until something is pending. False when
    /// the stream is over (ended or closed) and nothing is pending.
    fn wait_pending(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let tick = Duration::from_millis(50);
        let deadline =
            timeout.map(|t| std::time::Instant::now() + Duration::from_secs_f64(t.max(0.0)));
        loop {
            if !lock(&self.pending).is_empty() {
                return Ok(true);
            }
            if *lock(&self.ended) || self.handoff.is_closed() {
                return Ok(false);
            }
            let handoff = self.handoff.clone();
            let batch = py.detach(move || handoff.take_all(tick));
            if !batch.is_empty() {
                lock(&self.pending).extend(batch);
                continue;
            }
            py.check_signals()?;
            self.warn_if_waiting(py)?;
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Err(pyo3::exceptions::PyTimeoutError::new_err(format!(
                    "no message from {} within {}s",
                    self.source,
                    timeout.unwrap_or(0.0)
                )));
            }
        }
    }

    /// Once per stream, if no message came within [`WAITING_WARNING_AFTER`] of opening it: a
    /// `WaitingWarning` saying what the source waits for (a device to connect, or a first frame).
    fn warn_if_waiting(&self, py: Python<'_>) -> PyResult<()> {
        if self.opened.elapsed() < WAITING_WARNING_AFTER || self.warned.load(Ordering::Relaxed) {
            return Ok(());
        }
        let message = {
            let s = lock(&self.shared);
            if s.counters.frames_ok > 0 {
                return Ok(());
            }
            let secs = WAITING_WARNING_AFTER.as_secs();
            match (&s.waiting, s.connected) {
                (Some(reason), false) => format!(
                    "{}: no device after {secs} s ({reason}); still trying to connect. Is the device (or QEMU) listening there? (README: 'A live source'; reconnect=False fails at once, Ctrl-C stops)",
                    self.source
                ),
                (Some(reason), true) => format!(
                    "{}: disconnected ({reason}) before the first message; reconnecting",
                    self.source
                ),
                (None, _) if s.counters.refused > 0 => format!(
                    "{}: no message after {secs} s: {} frames refused (last: {})",
                    self.source,
                    s.counters.refused,
                    s.refused_last.as_deref().unwrap_or("?")
                ),
                (None, _) => format!(
                    "{}: connected, but no message after {secs} s ({} bytes read); is the device publishing?",
                    self.source, s.counters.bytes_read
                ),
            }
        };
        self.warned.store(true, Ordering::Relaxed);
        let text = std::ffi::CString::new(message.replace('\0', " "))
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        PyErr::warn(py, &py.get_type::<WaitingWarning>(), &text, 1)
    }

    /// The reader ended (`err`: how it failed): join it, and raise the failure if any.
    fn end(&self, py: Python<'_>, err: Option<String>) -> PyResult<()> {
        *lock(&self.ended) = true;
        self.join(py);
        match err {
            Some(e) => Err(PyOSError::new_err(format!("{}: {e}", self.source))),
            None => Ok(()),
        }
    }

    fn join(&self, py: Python<'_>) {
        let t = lock(&self.thread).take();
        if let Some(t) = t {
            py.detach(|| {
                let _ = t.join();
            });
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.handoff.close();
    }
}

/// Validate `pickle` with out-of-band buffers of `buffer_lens`; returns the summary line.
#[pyfunction]
#[pyo3(signature = (pickle, buffer_lens, allow, profile, limits=None))]
fn check(
    pickle: &[u8],
    buffer_lens: Vec<usize>,
    allow: Vec<(String, String)>,
    profile: &str,
    limits: Option<HashMap<String, u64>>,
) -> PyResult<String> {
    let mut c = checker(profile, &allow, limits)?;
    c.summarize(pickle, &buffer_lens)
        .map(|(_, s)| s)
        .map_err(|e| RejectedError::new_err(c.explain(&e, pickle)))
}

/// Decode and validate one complete frame; returns `(seq, pickle, buffers)` like `Stream.next`.
#[pyfunction]
#[pyo3(signature = (frame, regions, allow, profile, limits=None))]
fn read_frame<'py>(
    py: Python<'py>,
    frame: &[u8],
    regions: Vec<(u16, String)>,
    allow: Vec<(String, String)>,
    profile: &str,
    limits: Option<HashMap<String, u64>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let map = region_map(&regions)?;
    let mut reader = FrameReader::new(frame)
        .with_regions(map)
        .with_validator(crate::delivery::checked(checker(profile, &allow, limits)?));
    match reader.next_message() {
        Ok(Some(m)) => message_tuple(py, m),
        Ok(None) => {
            let c = reader.counters();
            Err(RejectedError::new_err(format!(
                "no intact frame in {} bytes ({} corrupt, {} bytes skipped)",
                frame.len(),
                c.corrupt,
                c.bytes_skipped
            )))
        }
        Err(ReadError::Io(e)) => Err(PyOSError::new_err(e.to_string())),
        Err(e) => Err(RejectedError::new_err(e.to_string())),
    }
}

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let tp = VIEW_TYPE.get_or_try_init(m.py(), || view::make_type(m.py()))?;
    m.add("BufferView", tp.clone_ref(m.py()))?;
    m.add_class::<Stream>()?;
    m.add_function(wrap_pyfunction!(check, m)?)?;
    m.add_function(wrap_pyfunction!(read_frame, m)?)?;
    m.add("RejectedError", m.py().get_type::<RejectedError>())?;
    m.add("WaitingWarning", m.py().get_type::<WaitingWarning>())?;
    m.add(
        "DeviceError",
        m.py().get_type::<crate::control::py::DeviceError>(),
    )?;
    Ok(())
}

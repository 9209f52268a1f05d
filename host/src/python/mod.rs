//! `dmapickle._native`: the Rust half of the `dmapickle` Python package (feature `python`).
//!
//! The Python half (`host/python/dmapickle/__init__.py`) wraps this module; the `Message`
//! objects it hands out are made here. Zero-copy works like this: every buffer of a delivered message is a
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
//!
//! One file per job: [`view`] (the buffer export and its `unsafe`), [`message`]
//! (`dmapickle.Message`), [`loader`] (how a message is unpickled: `pickle.loads` under an
//! allowlist audit guard), [`handoff`] (the reader thread and its batched handoff) and this file (the pyo3 API: `Stream`, `check`, `read_frame`, the exception types).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use dmapickle_core::Profile;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::region::RegionMap;
use crate::source::{Source, SourceEvent, SourceOptions, SourceSpec};
use crate::stream::{FrameReader, ReadError, ReaderConfig};
use crate::validation::{Checker, Rejection};

pyo3::create_exception!(
    _native,
    RejectedError,
    PyValueError,
    "A pickle or frame was refused by the validator (the message says where and why; .offset, .opcode, .reason and .limit say it as data, None where not applicable)."
);

/// `RejectedError`'s data attributes: None on the class and where not applicable.
const REJECTED_ATTRS: [&str; 4] = ["offset", "opcode", "reason", "limit"];

/// A `RejectedError` saying `message`, with the refusal as data when the validator refused a
/// pickle: `.offset` (byte offset in the pickle), `.opcode` (its pickletools name), `.reason`
/// (one English phrase) and `.limit` (the keyword argument of the bound exceeded, e.g.
/// `"max_depth"`); each None where not applicable (a frame refused before validation, a
/// rejection that is not a bound).
fn rejected_error(py: Python<'_>, message: String, rejected: Option<&Rejection>) -> PyErr {
    let err = RejectedError::new_err(message);
    let Some(r) = rejected else { return err };
    let limit = r.limit().map(|(limit, _, _)| {
        // `--max-depth` -> `max_depth`: the keyword argument that sets the bound.
        limit.flag().trim_start_matches('-').replace('-', "_")
    });
    let value = err.value(py);
    let set = || -> PyResult<()> {
        value.setattr("offset", r.offset())?;
        value.setattr("opcode", r.opcode_name())?;
        value.setattr("reason", r.reason().map(|reason| reason.to_string()))?;
        value.setattr("limit", limit)
    };
    match set() {
        Ok(()) => err,
        Err(e) => e,
    }
}

pyo3::create_exception!(
    _native,
    WaitingWarning,
    pyo3::exceptions::PyUserWarning,
    "A live source has delivered nothing for a while: the message says what it waits for."
);

/// How long `next` waits for a stream's first message before it warns (once) what it waits for.
const WAITING_WARNING_AFTER: Duration = Duration::from_secs(2);

mod direct;
mod handoff;
mod loader;
mod message;
mod view;

use handoff::{lock, note_event, Handoff, Item, Shared};

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
    Ok(Checker::configured(parse_profile(profile)?, allow, l))
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
    /// How its messages are loaded (the stream's allowlist).
    loader: Py<loader::Loader>,
    /// The `DeviceClock` each message is given when taken.
    clock: Mutex<Option<Py<PyAny>>>,
}

#[pymethods]
impl Stream {
    #[new]
    #[pyo3(signature = (source, regions, allow, profile, reconnect, queue, loader, trust_link=false,
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
        loader: Py<loader::Loader>,
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
        let checker = checker(profile, &allow, limits)?;
        let map = region_map(&regions)?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let sink = shared.clone();
        let down = crate::control::DownSlot::default();
        let dropped = down.clone();
        let opts = SourceOptions {
            reconnect,
            poll: Duration::from_millis(50),
            on_event: Some(Arc::new(move |e: &SourceEvent| {
                if matches!(e, SourceEvent::Disconnected { .. }) {
                    dropped.clear(); // the next connection's down link replaces it
                }
                note_event(e, &sink)
            })),
            ..SourceOptions::default()
        };
        let stop = opts.stop.clone();
        // Non-reconnecting sources fail here, with the error, instead of in the thread.
        let src = py
            .detach(|| Source::open(spec, opts))
            .map_err(|e| PyOSError::new_err(e.to_string()))?;
        let (controller, tap) = match crate::control::attach(&src, down.clone()) {
            Some((c, replies)) => (Some(Mutex::new(c)), Some((replies, down))),
            None => (None, None),
        };
        let handoff = Arc::new(Handoff::new(queue));
        let mut reader = FrameReader::with_config(src, config)
            .with_regions(map)
            .with_checker(checker);
        let down = match tap {
            Some((replies, down)) => {
                reader = reader.with_skip_tap(Box::new(move |b| replies.feed(b)));
                Some(down)
            }
            None => None,
        };
        let thread = handoff::spawn_reader(reader, handoff.clone(), shared.clone(), down)
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
            loader,
            clock: Mutex::new(None),
        })
    }

    /// The next message as a `dmapickle.Message`, or `None` at the end of the stream (waits
    /// with the GIL released, checking for Ctrl-C every 50 ms). Raises `OSError` if the source
    /// failed, `TimeoutError` after `timeout` s. Messages come off the reader's queue, which
    /// the reader fills a batch at a time.
    #[pyo3(signature = (timeout=None))]
    fn next<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Option<Bound<'py, message::PyMessage>>> {
        if !self.wait_pending(py, timeout)? {
            return Ok(None);
        }
        let next = lock(&self.pending).pop_front();
        match next {
            Some(Item::Message(m)) => {
                let clock = lock(&self.clock).as_ref().map(|c| c.clone_ref(py));
                message::message(py, m, &self.loader, clock).map(Some)
            }
            Some(Item::End(err)) => {
                self.end(py, err)?;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, message::PyMessage>>> {
        self.next(py, None)
    }

    /// The `DeviceClock` that `Message.load()` feeds (None: no clock).
    #[getter]
    fn get_clock(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        lock(&self.clock).as_ref().map(|c| c.clone_ref(py))
    }

    #[setter]
    fn set_clock(&self, clock: Option<Py<PyAny>>) {
        *lock(&self.clock) = clock;
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
    py: Python<'_>,
    pickle: &[u8],
    buffer_lens: Vec<usize>,
    allow: Vec<(String, String)>,
    profile: &str,
    limits: Option<HashMap<String, u64>>,
) -> PyResult<String> {
    let mut c = checker(profile, &allow, limits)?;
    c.summarize(pickle, &buffer_lens)
        .map(|(_, s)| s)
        .map_err(|e| rejected_error(py, e.to_string(), Some(&e)))
}

/// Decode and validate the first intact frame in `frame`: a `dmapickle.Message` loaded by
/// `loader`, like `Stream.next`'s.
#[pyfunction]
#[pyo3(signature = (frame, regions, allow, profile, loader, limits=None))]
fn read_frame<'py>(
    py: Python<'py>,
    frame: &[u8],
    regions: Vec<(u16, String)>,
    allow: Vec<(String, String)>,
    profile: &str,
    loader: Py<loader::Loader>,
    limits: Option<HashMap<String, u64>>,
) -> PyResult<Bound<'py, message::PyMessage>> {
    let map = region_map(&regions)?;
    let mut reader = FrameReader::new(frame)
        .with_regions(map)
        .with_checker(checker(profile, &allow, limits)?);
    match reader.next_message() {
        Ok(Some(m)) => message::message(py, m, &loader, None),
        Ok(None) => {
            let c = reader.counters();
            let message = format!(
                "no intact frame in {} bytes ({} corrupt, {} bytes skipped)",
                frame.len(),
                c.corrupt,
                c.bytes_skipped
            );
            Err(rejected_error(py, message, None))
        }
        Err(ReadError::Io(e)) => Err(PyOSError::new_err(e.to_string())),
        Err(e) => Err(rejected_error(py, e.to_string(), e.rejection())),
    }
}

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let tp = view::view_type(m.py())?;
    m.add("BufferView", tp.clone_ref(m.py()))?;
    m.add_class::<Stream>()?;
    m.add_function(wrap_pyfunction!(check, m)?)?;
    m.add_function(wrap_pyfunction!(read_frame, m)?)?;
    m.add_class::<message::PyMessage>()?;
    m.add_class::<loader::Loader>()?;
    m.add_function(wrap_pyfunction!(loader::audit_guard, m)?)?;
    let rejected = m.py().get_type::<RejectedError>();
    for attr in REJECTED_ATTRS {
        rejected.setattr(attr, m.py().None())?;
    }
    m.add("RejectedError", rejected)?;
    m.add("WaitingWarning", m.py().get_type::<WaitingWarning>())?;
    m.add(
        "DeviceError",
        m.py().get_type::<crate::control::py::DeviceError>(),
    )?;
    Ok(())
}

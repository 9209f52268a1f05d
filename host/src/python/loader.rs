//! Loading a validated pickle in Python: the second line of defence, at the cost of CPython's
//! own `pickle.loads`.
//!
//! The validator has already proved that a delivered pickle names only allowlisted globals. The
//! second line of defence is an allowlist at the unpickler itself, so that a validator bug alone
//! cannot make a load import or call anything else. It used to be a `pickle.Unpickler` subclass
//! with a `find_class` override, built per message over a `BytesIO`: about 0.5 us per message
//! more than `pickle.loads` on the same bytes, a third of a small message's whole cost.
//!
//! Now the guard is a PEP 578 audit hook. CPython raises the audit event `pickle.find_class`
//! with `(module, name)` in every `find_class` (C and Python unpicklers alike, since 3.8),
//! *before* it imports the module or looks the name up. The hook, a C function installed once
//! per process, does nothing unless a [`Loader`] is running a load on the same thread; while one
//! is, it refuses every `(module, name)` outside that load's allowlist with the same
//! `pickle.UnpicklingError` the `find_class` override raises. So a stream's message is loaded by
//! `pickle.loads(pickle, buffers=...)` itself, and the same pairs pass as through the
//! restricted `Unpickler`: the same names, before any import. (Neither sees an `EXT1`/`EXT2`/
//! `EXT4` code already in `copyreg`'s extension cache, which CPython resolves without
//! `find_class`; the validator refuses those opcodes in every profile.) Like the validator, the
//! loader allows Python 2 names (`__builtin__.set`) only in pickles below protocol 3, the only
//! ones where CPython maps them to Python 3 names: it keeps one allowlist per side of that line.
//!
//! The hook cannot be removed (PEP 578), so it is kept cheap for the rest of the process: on
//! any other thread, or outside a load, it returns after one thread-local read, and being a C
//! hook it spares CPython the event string and Python call a `sys.addaudithook` hook costs. What
//! is left is CPython building each audit event's argument tuple once a hook exists: about 550
//! instructions on another `pickle.loads` of a small array (3.5%; measured with callgrind). It
//! is installed only when the first `Loader` is made, and only counts as installed after a
//! self-test shows that it refuses a global and lets an allowed one through. Where it is not
//! (not Unix, where the C registration is not in the stable ABI's reach; another hook vetoed
//! `sys.addaudithook`; the self-test failed; or `DMAPICKLE_AUDIT_GUARD=0`), the `Loader` uses
//! the restricted `Unpickler` per message, as before.

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void, CStr};

use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyFrozenSet, PyList, PyTuple};

use super::direct;

thread_local! {
    /// The allowlist (a frozenset of `(module, name)` tuples) of the load running on this thread,
    /// borrowed from its [`Loader`]; null outside a load.
    static ACTIVE: Cell<*mut ffi::PyObject> = const { Cell::new(std::ptr::null_mut()) };
}

/// Whether the audit guard is installed and refused a global in its self-test (set once).
static GUARD: PyOnceLock<bool> = PyOnceLock::new();
/// `pickle.loads`, `pickle.UnpicklingError` and `io.BytesIO`.
static LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static UNPICKLING_ERROR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static BYTES_IO: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The environment variable that, set to `0`, keeps the per-message restricted `Unpickler`.
const OPT_OUT: &str = "DMAPICKLE_AUDIT_GUARD";

/// A pickle whose only global is `builtins.int` (`STACK_GLOBAL`), for the guard's self-test.
const SELF_TEST: &[u8] = b"\x80\x05\x8c\x08builtins\x8c\x03int\x93.";

fn cached<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    module: &str,
    name: &str,
) -> PyResult<&'py Bound<'py, PyAny>> {
    cell.get_or_try_init(py, || Ok(py.import(module)?.getattr(name)?.unbind()))
        .map(|p| p.bind(py))
}

/// An audit hook at the C level: `(event, args, user data)`, 0 to go on, -1 with an exception.
#[cfg_attr(not(unix), allow(dead_code))]
type AuditHook = unsafe extern "C" fn(*const c_char, *mut ffi::PyObject, *mut c_void) -> c_int;

#[cfg(unix)]
extern "C" {
    /// CPython's registration of a C audit hook (`cpython/sysmodule.h`, in every CPython since
    /// 3.8 but outside the stable ABI, so declared here; resolved from the interpreter when the
    /// module is loaded, as every other C API call of an extension module on Unix).
    fn PySys_AddAuditHook(hook: AuditHook, user_data: *mut c_void) -> c_int;
}

/// The audit hook. CPython calls it for every audit event of the process, on the thread that
/// raised it, attached (GIL held). Outside a [`Loader`]'s load on this thread it returns after
/// one thread-local read; within one it refuses a `pickle.find_class` whose `(module, name)`
/// is not in the load's allowlist. A C hook costs the process's other audit events (and other
/// code's `pickle.loads`) far less than a Python one, which CPython calls with a new event
/// string and an attribute lookup each time (about 2,000 instructions per event, measured).
#[cfg_attr(not(unix), allow(dead_code))]
unsafe extern "C" fn find_class_guard(
    event: *const c_char,
    args: *mut ffi::PyObject,
    _user_data: *mut c_void,
) -> c_int {
    let active = ACTIVE.with(Cell::get);
    if active.is_null() {
        return 0;
    }
    // SAFETY: CPython passes the event's name as a NUL-terminated string valid for the call.
    if unsafe { CStr::from_ptr(event) } != c"pickle.find_class" {
        return 0;
    }
    // SAFETY: audit hooks run attached to the interpreter (they are called from C API
    // functions that require it).
    let py = unsafe { Python::assume_attached() };
    let check = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: `args` is the event's argument tuple, borrowed for the call. `active` was set
        // by `Running::enter` on this thread from a frozenset that the running `Loader` owns;
        // that load is still on this thread's stack (the mark is reset before it returns), so
        // the object is alive.
        let (allowed, args) = unsafe {
            (
                Bound::from_borrowed_ptr(py, active),
                Bound::from_borrowed_ptr(py, args),
            )
        };
        refuse_outside(py, &allowed, &args)
    }));
    match check {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            e.restore(py);
            -1
        }
        Err(_) => {
            PyRuntimeError::new_err("dmapickle's audit guard panicked").restore(py);
            -1
        }
    }
}

/// Ok if `find_class(module, name)` (`args`) is in `allowed`, else the `pickle.UnpicklingError`
/// that `RestrictedUnpickler.find_class` raises.
fn refuse_outside(
    py: Python<'_>,
    allowed: &Bound<'_, PyAny>,
    args: &Bound<'_, PyAny>,
) -> PyResult<()> {
    if allowed.cast::<PyFrozenSet>()?.contains(args)? {
        return Ok(());
    }
    let pair = args.cast::<PyTuple>()?;
    let (module, name) = (pair.get_item(0)?, pair.get_item(1)?);
    let error = cached(py, &UNPICKLING_ERROR, "pickle", "UnpicklingError")?;
    Err(PyErr::from_value(error.call1((format!(
        "global {module}.{name} is not in the dmapickle allowlist"
    ),))?))
}

/// Marks a load running on this thread with its allowlist; restores the previous mark (a load
/// inside a load) when dropped, also when the load raises.
struct Running {
    previous: *mut ffi::PyObject,
}

impl Running {
    fn enter(allowed: &Bound<'_, PyFrozenSet>) -> Self {
        Running {
            previous: ACTIVE.with(|a| a.replace(allowed.as_ptr())),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        ACTIVE.with(|a| a.set(self.previous));
    }
}

/// Installs the guard once per process and proves it: a load with an empty allowlist must be
/// refused, one that allows `builtins.int` must return `int`. False (and the restricted
/// `Unpickler` is used) if any step fails or `DMAPICKLE_AUDIT_GUARD=0`.
fn guard(py: Python<'_>) -> bool {
    *GUARD.get_or_init(py, || {
        if std::env::var(OPT_OUT).is_ok_and(|v| v.trim() == "0") {
            return false;
        }
        install(py).unwrap_or(false)
    })
}

/// Registers [`find_class_guard`]; false where it cannot be (not Unix).
#[cfg(unix)]
fn add_hook(py: Python<'_>) -> PyResult<bool> {
    // SAFETY: the hook has CPython's audit hook signature and lives for the whole process;
    // called attached. A hook that vetoes `sys.addaudithook` makes this a no-op (returning 0
    // or -1): the self-test in `install` then finds no guard.
    if unsafe { PySys_AddAuditHook(find_class_guard, std::ptr::null_mut()) } != 0 {
        return Err(PyErr::fetch(py));
    }
    Ok(true)
}

#[cfg(not(unix))]
fn add_hook(_py: Python<'_>) -> PyResult<bool> {
    Ok(false)
}

fn install(py: Python<'_>) -> PyResult<bool> {
    if !add_hook(py)? {
        return Ok(false);
    }
    let loads = cached(py, &LOADS, "pickle", "loads")?;
    let none = PyFrozenSet::empty(py)?;
    let refused = {
        let _running = Running::enter(&none);
        loads.call1((PyBytes::new(py, SELF_TEST),))
    };
    let error = cached(py, &UNPICKLING_ERROR, "pickle", "UnpicklingError")?;
    if !refused.is_err_and(|e| e.matches(py, error).unwrap_or(false)) {
        return Ok(false);
    }
    let int = PyFrozenSet::new(py, [("builtins", "int")])?;
    let loaded = {
        let _running = Running::enter(&int);
        loads.call1((PyBytes::new(py, SELF_TEST),))?
    };
    Ok(loaded.is(py.get_type::<pyo3::types::PyInt>()))
}

/// `METH_FASTCALL | METH_KEYWORDS`: the PEP 590 calling convention of a builtin such as
/// `_pickle.loads` (the values are CPython's since 3.7; the stable ABI names them from 3.10).
const FASTCALL_KEYWORDS: std::ffi::c_int = 0x0080 | ffi::METH_KEYWORDS;

/// A `METH_FASTCALL | METH_KEYWORDS` C function: (self, args, positional count, keyword names).
type FastWithKeywords = unsafe extern "C" fn(
    *mut ffi::PyObject,
    *const *mut ffi::PyObject,
    ffi::Py_ssize_t,
    *mut ffi::PyObject,
) -> *mut ffi::PyObject;

/// `pickle.loads` called as CPython calls it from Python code, `loads(data, buffers=b)` with
/// `buffers` passed by keyword name, not in a dict. Through the stable ABI (no vectorcall API
/// before 3.12) a keyword call from Rust builds and unpacks a dict: about 200 ns per message on
/// CPython 3.11, an eighth of a small message's load.
struct FastLoads {
    function: FastWithKeywords,
    /// `loads.__self__` (the `_pickle` module), and `loads` itself, kept alive with it.
    module: Py<PyAny>,
    _loads: Py<PyAny>,
    /// `("buffers",)`.
    kwnames: Py<PyTuple>,
}

/// `pickle.loads` as a [`FastLoads`], or None when it is not a `METH_FASTCALL | METH_KEYWORDS`
/// builtin (then it is called with a keyword dict).
static FAST_LOADS: PyOnceLock<Option<FastLoads>> = PyOnceLock::new();

fn fast_loads(py: Python<'_>) -> PyResult<Option<&FastLoads>> {
    FAST_LOADS
        .get_or_try_init(py, || {
            let loads = cached(py, &LOADS, "pickle", "loads")?;
            let f = loads.as_ptr();
            // SAFETY: `f` is a live object (held by LOADS) and the GIL is held; the type check
            // comes first, and GetFlags/GetFunction/GetSelf are only called on a builtin.
            let (flags, function, module) = unsafe {
                if ffi::PyCFunction_Check(f) == 0 {
                    return Ok(None);
                }
                (
                    ffi::PyCFunction_GetFlags(f),
                    ffi::PyCFunction_GetFunction(f),
                    ffi::PyCFunction_GetSelf(f),
                )
            };
            let (Some(function), false) = (function, module.is_null()) else {
                return Ok(None);
            };
            if flags & !ffi::METH_COEXIST != FASTCALL_KEYWORDS {
                return Ok(None);
            }
            Ok(Some(FastLoads {
                // SAFETY: the flags say that this C function has the METH_FASTCALL |
                // METH_KEYWORDS signature; CPython stores it as a `PyCFunction` and casts it
                // back the same way before calling it.
                function: unsafe {
                    std::mem::transmute::<ffi::PyCFunction, FastWithKeywords>(function)
                },
                // SAFETY: GetSelf returned a borrowed, non-null reference, owned by `loads`.
                module: unsafe { Bound::from_borrowed_ptr(py, module) }.unbind(),
                _loads: loads.clone().unbind(),
                kwnames: PyTuple::new(py, [intern!(py, "buffers")])?.unbind(),
            }))
        })
        .map(Option::as_ref)
}

/// `dmapickle._native.Loader(allowed, unpickler, allowed3, unpickler3)`: loads a validated
/// pickle with its buffers, allowing only the `(module, name)` pairs in `allowed` (a
/// frozenset), or in `allowed3` for a pickle of protocol 3 or higher: through `pickle.loads`
/// under the audit guard, or through `unpickler` / `unpickler3` (restricted `Unpickler`
/// classes fixed to the same allowlists) where the guard is not available.
///
/// Two allowlists because CPython's `find_class` maps Python 2 names (`__builtin__.set` to
/// `builtins.set`) only below protocol 3; above, it imports the module as named, from
/// `sys.path`. `allowed3` is `allowed` without those names, as the validator's own rule.
#[pyclass(frozen, module = "dmapickle._native")]
pub(super) struct Loader {
    /// `(allowlist, restricted Unpickler class)` for protocols 0-2, then 3 and above.
    by_protocol: [(Py<PyFrozenSet>, Py<PyAny>); 2],
    guarded: bool,
    /// Whether pickles are first offered to [`direct::build`].
    direct: bool,
    /// Globals `direct::build` has resolved through this loader.
    globals: direct::Globals,
    /// Pickles loaded so far (either way), and those of them built directly.
    loads: std::sync::atomic::AtomicU64,
    direct_builds: std::sync::atomic::AtomicU64,
}

#[pymethods]
impl Loader {
    #[new]
    #[pyo3(signature = (allowed, unpickler, allowed3=None, unpickler3=None, guard=true, direct=true))]
    fn new(
        py: Python<'_>,
        allowed: Bound<'_, PyFrozenSet>,
        unpickler: Py<PyAny>,
        allowed3: Option<Bound<'_, PyFrozenSet>>,
        unpickler3: Option<Py<PyAny>>,
        guard: bool,
        direct: bool,
    ) -> Self {
        let third = (
            allowed3.unwrap_or_else(|| allowed.clone()).unbind(),
            unpickler3.unwrap_or_else(|| unpickler.clone_ref(py)),
        );
        Loader {
            by_protocol: [(allowed.unbind(), unpickler), third],
            guarded: guard && self::guard(py),
            direct: direct && std::env::var_os(DIRECT_OPT_OUT).is_none_or(|v| v != "0"),
            globals: direct::Globals::default(),
            loads: std::sync::atomic::AtomicU64::new(0),
            direct_builds: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Whether pickles are built directly where they can be (see `direct.rs`), falling back to
    /// the unpickler.
    #[getter]
    fn direct(&self) -> bool {
        self.direct
    }

    /// How many of [`Self::loads`] were built directly, without an unpickler.
    #[getter]
    fn direct_builds(&self) -> u64 {
        self.direct_builds
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether loads go through `pickle.loads` under the audit guard (else: the restricted
    /// `Unpickler`).
    #[getter]
    fn guarded(&self) -> bool {
        self.guarded
    }

    /// How many pickles this loader has loaded, built directly or given to an unpickler (what
    /// the defence tests count).
    #[getter]
    fn loads(&self) -> u64 {
        self.loads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The object `pickle` builds with `buffers` (a list of buffer-protocol objects).
    fn load<'py>(
        &self,
        py: Python<'py>,
        pickle: &Bound<'py, PyBytes>,
        buffers: &Bound<'py, PyList>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.load_bound(py, pickle, buffers)
    }
}

impl Loader {
    pub(super) fn load_bound<'py>(
        &self,
        py: Python<'py>,
        pickle: &Bound<'py, PyBytes>,
        buffers: &Bound<'py, PyList>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.loads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.direct {
            if let Some(obj) = direct::build(py, pickle.as_bytes(), buffers, self)? {
                self.direct_builds
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Ok(obj);
            }
        }
        self.unpickle(py, pickle, buffers)
    }

    /// `pickle` loaded by CPython's unpickler under this loader's second line of defence.
    fn unpickle<'py>(
        &self,
        py: Python<'py>,
        pickle: &Bound<'py, PyBytes>,
        buffers: &Bound<'py, PyList>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let protocol3 = matches!(pickle.as_bytes(), [0x80, p, ..] if *p >= 3);
        let (allowed, unpickler) = &self.by_protocol[usize::from(protocol3)];
        if self.guarded {
            let _running = Running::enter(allowed.bind(py));
            if let Some(fast) = fast_loads(py)? {
                let args = [pickle.as_ptr(), buffers.as_ptr()];
                // SAFETY: `function` has the METH_FASTCALL | METH_KEYWORDS signature (checked
                // when `fast` was made) and is called as CPython's vectorcall calls it: its
                // `self`, one positional argument followed by one keyword argument whose name
                // is the one item of `kwnames`, all live for the call (borrowed from the
                // caller) with the GIL held. The result is a new reference or NULL with an
                // exception set.
                let result = unsafe {
                    (fast.function)(
                        fast.module.as_ptr(),
                        args.as_ptr(),
                        1,
                        fast.kwnames.as_ptr(),
                    )
                };
                // SAFETY: a new reference, or NULL with the exception set.
                return unsafe { Bound::from_owned_ptr_or_err(py, result) };
            }
        }
        let kwargs = PyDict::new(py);
        kwargs.set_item(intern!(py, "buffers"), buffers)?;
        if self.guarded {
            let _running = Running::enter(allowed.bind(py));
            return cached(py, &LOADS, "pickle", "loads")?.call((pickle,), Some(&kwargs));
        }
        let file = cached(py, &BYTES_IO, "io", "BytesIO")?.call1((framed(py, pickle)?,))?;
        unpickler
            .bind(py)
            .call((file,), Some(&kwargs))?
            .call_method0(intern!(py, "load"))
    }
}

impl direct::Resolve for Loader {
    fn allowed(&self, py: Python<'_>, protocol3: bool, module: &str, name: &str) -> bool {
        let allowed = self.by_protocol[usize::from(protocol3)].0.bind(py);
        allowed.contains((module, name)).unwrap_or(false)
    }

    /// `find_class(module, name)` as CPython runs it in a pickle of `protocol`: a pickle of just
    /// that `STACK_GLOBAL`, unpickled the way every other pickle of this loader is (under the
    /// audit guard or by the restricted `Unpickler`, with CPython's audit event).
    fn find_class<'py>(
        &self,
        py: Python<'py>,
        protocol: u8,
        module: &str,
        name: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        use dmapickle_core::opcode::{BINUNICODE, PROTO, STACK_GLOBAL, STOP};
        let mut p = vec![PROTO, protocol];
        for s in [module, name] {
            p.push(BINUNICODE);
            p.extend_from_slice(&(s.len() as u32).to_le_bytes());
            p.extend_from_slice(s.as_bytes());
        }
        p.extend_from_slice(&[STACK_GLOBAL, STOP]);
        self.unpickle(py, &PyBytes::new(py, &p), &PyList::empty(py))
    }

    fn globals(&self) -> &direct::Globals {
        &self.globals
    }
}

/// The environment variable that, set to `0`, loads every pickle with the unpickler.
const DIRECT_OPT_OUT: &str = "DMAPICKLE_DIRECT_LOAD";

/// The pickle as CPython's file-reading `Unpickler` should read it: a protocol 4/5 pickle
/// without a `FRAME` gets one around its body. Same value, but the Unpickler then reads it with
/// one `read()` instead of one per opcode (about 2 us per small message). `pickle.loads` reads
/// from memory and needs no frame.
fn framed<'py>(py: Python<'py>, original: &Bound<'py, PyBytes>) -> PyResult<Bound<'py, PyBytes>> {
    use dmapickle_core::opcode::{FRAME, PROTO};
    let p = original.as_bytes();
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

/// Whether loads go through `pickle.loads` under the audit guard in this process (installs it
/// on first use, as the first `Loader` does).
#[pyfunction]
pub(super) fn audit_guard(py: Python<'_>) -> bool {
    guard(py)
}

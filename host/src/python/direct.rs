//! Building a validated pickle's objects directly, without an unpickler.
//!
//! A delivered message's pickle has been proved by the validator before Python sees it, and a
//! stream's pickles are the encoder's few forms: a dict of ints, floats and strings, and numpy
//! arrays made by `NEWOBJ` over out-of-band buffers. For those, most of what `pickle.loads`
//! costs is not the objects but the unpickler around them: making and freeing an `Unpickler`,
//! its memo and stack, and a `find_class` (an import lookup, an audit event, an attribute
//! lookup) for every global of every message. On the bench's small message that is about three
//! quarters of the load.
//!
//! [`build`] runs the pickle's opcodes itself, doing for each what CPython 3's `_pickle.c`
//! does (the same constructors with the same arguments, in the same order), for a fixed set of
//! opcodes: literals, strings and bytes, tuples, lists and dicts, the memo, `STACK_GLOBAL`,
//! `NEXT_BUFFER`/`READONLY_BUFFER`, `NEWOBJ`, `REDUCE`, and `BUILD` through `__setstate__`.
//! Where it differs, nothing a value shows differs:
//! - each global `(module, name)` is resolved once per loader and protocol side, by CPython's
//!   own `find_class` (a two-opcode pickle loaded the loader's normal way: under the audit guard
//!   or by the restricted `Unpickler`, with CPython's audit event), and only if it is in the
//!   loader's allowlist; later messages reuse the object;
//! - a short string seen before on the thread is the same str object again (strs are
//!   immutable; CPython makes a new equal one).
//!
//! A pickle with an opcode outside the set (or an argument past its end) is seen to be one by a
//! scan before any object is made, and goes to `pickle.loads` whole. During the build, a shape
//! `_pickle.c` would refuse or take another way (an odd `SETITEMS`, a memo miss, `SETITEMS` on
//! a dict subclass, `BUILD` without `__setstate__`, a mark left at `STOP`), a Python error from
//! a constructor, or a bound below exceeded drops what was built and returns `None`; the caller
//! then loads the pickle with `pickle.loads`, which builds it or raises its own error. So the
//! direct build never accepts what `pickle.loads` refuses, never builds anything else, and at
//! worst (a pickle that fails late) costs its load twice, never more memory than one load
//! holds. `tests/python/test_direct.py` compares the two on CPython's own pickles, the
//! encoder's, hand-made edges and random mutants the validator accepts; the differential
//! fuzzer (tests/fuzz/differential.py) does so on every accepted mutant.

use std::sync::Mutex;

use dmapickle_core::opcode as op;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyFloat, PyList, PyString, PyTuple};

/// Most opcodes, stack items, marks and memo entries a direct build takes; a pickle past any of
/// them goes to `pickle.loads` (a stream's message is a few dozen opcodes).
/// (CPython's pickler batches `APPENDS` and `SETITEMS` by 1,000 items.)
const MAX_OPCODES: usize = 1 << 16;
const MAX_STACK: usize = 4096;
const MAX_MARKS: usize = 64;
const MAX_MEMO: usize = 1 << 16;

/// A global resolved by `find_class`.
struct Resolved {
    /// The protocol side (`false`: below 3).
    protocol3: bool,
    module: Box<str>,
    name: Box<str>,
    /// The same names as str objects (those that came off the stack first).
    module_str: Py<PyString>,
    name_str: Py<PyString>,
    object: Py<PyAny>,
}

/// Globals already resolved by `find_class`.
#[derive(Default)]
pub(super) struct Globals {
    resolved: Mutex<Vec<Resolved>>,
}

impl Globals {
    fn get(
        &self,
        py: Python<'_>,
        protocol3: bool,
        module: &Bound<'_, PyString>,
        name: &Bound<'_, PyString>,
    ) -> Option<Py<PyAny>> {
        let held = self.resolved.lock().unwrap_or_else(|e| e.into_inner());
        held.iter()
            .find(|r| {
                r.protocol3 == protocol3
                    && same_str(&r.module_str, module)
                    && same_str(&r.name_str, name)
            })
            .map(|r| r.object.clone_ref(py))
    }

    /// [`Self::get`] by the names' text.
    fn get_text(
        &self,
        py: Python<'_>,
        protocol3: bool,
        module: &str,
        name: &str,
    ) -> Option<Py<PyAny>> {
        let held = self.resolved.lock().unwrap_or_else(|e| e.into_inner());
        held.iter()
            .find(|r| r.protocol3 == protocol3 && *r.module == *module && *r.name == *name)
            .map(|r| r.object.clone_ref(py))
    }

    fn put(&self, entry: Resolved) {
        let mut held = self.resolved.lock().unwrap_or_else(|e| e.into_inner());
        if held.len() < 64 {
            held.push(entry);
        }
    }
}

/// Whether two str objects are equal: the same object (strings come from [`STRINGS`]), else
/// `PyUnicode_Compare`.
fn same_str(a: &Py<PyString>, b: &Bound<'_, PyString>) -> bool {
    // SAFETY: both are live str objects and the GIL is held (`b` is bound to it).
    a.as_ptr() == b.as_ptr() || unsafe { ffi::PyUnicode_Compare(a.as_ptr(), b.as_ptr()) == 0 }
}

/// A string decoded before: its UTF-8 bytes, the str.
type Decoded = (Box<[u8]>, Py<PyString>);

thread_local! {
    /// Short strings already decoded on this thread, as `(UTF-8 bytes, str)`: a stream's pickles
    /// name the same keys and globals in every message. A str is immutable, so handing out the
    /// same object again is the value `PyUnicode_DecodeUTF8` would make.
    /// With the index after the one last found.
    static STRINGS: std::cell::RefCell<(Vec<Decoded>, usize)> =
        const { std::cell::RefCell::new((Vec::new(), 0)) };
}

/// Longest string, and most strings, [`STRINGS`] keeps.
const SHORT_STRING: usize = 32;
const MAX_STRINGS: usize = 64;

/// What [`build`] needs from its loader: the allowlist check and `find_class` itself.
pub(super) trait Resolve {
    /// Whether `(module, name)` is in the allowlist of this protocol side.
    fn allowed(&self, py: Python<'_>, protocol3: bool, module: &str, name: &str) -> bool;
    /// The object CPython's `find_class` returns for `(module, name)` at `protocol`, found the
    /// loader's normal (guarded) way.
    fn find_class<'py>(
        &self,
        py: Python<'py>,
        protocol: u8,
        module: &str,
        name: &str,
    ) -> PyResult<Bound<'py, PyAny>>;
    /// The cache of resolved globals.
    fn globals(&self) -> &Globals;
}

/// The object `pickle` builds with `buffers`, built directly, or `None` if the pickle is not
/// one [`build`] takes (the caller then runs `pickle.loads`). `Exception`s raised on the way
/// are dropped with the partial objects (`pickle.loads` raises them again); a
/// `KeyboardInterrupt` or `SystemExit` is raised.
pub(super) fn build<'py>(
    py: Python<'py>,
    pickle: &[u8],
    buffers: &Bound<'py, PyList>,
    loader: &impl Resolve,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    match run(py, pickle, buffers, loader) {
        Ok(built) => Ok(built),
        // A `KeyboardInterrupt` (or `SystemExit`) that came in during a constructor is the
        // user's, not the pickle's: it is raised, never dropped with the partial objects.
        Err(e) if !e.is_instance_of::<pyo3::exceptions::PyException>(py) => Err(e),
        Err(_) => Ok(None),
    }
}

/// `Ok(None)`: not taken (an opcode or a shape outside the set); `Err`: a Python error.
fn run<'py>(
    py: Python<'py>,
    p: &[u8],
    buffers: &Bound<'py, PyList>,
    loader: &impl Resolve,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    // Only a pickle that starts with PROTO: its protocol decides how find_class maps names.
    let [op::PROTO, protocol, ..] = *p else {
        return Ok(None);
    };
    // `load_proto` refuses a protocol above CPython's highest (5 from 3.8 to 3.13): such a
    // pickle goes to `pickle.loads`, which raises (or, on a later CPython, loads it).
    if protocol > 5 {
        return Ok(None);
    }
    // Whole pickles only: one outside the opcode set is left to `pickle.loads` before any
    // object is made, so that the work is not done twice.
    if !takes(p) {
        return Ok(None);
    }
    let mut m = Machine {
        py,
        stack: Vec::with_capacity(16),
        marks: Vec::with_capacity(4),
        memo: Vec::with_capacity(16),
        memo_len: 0,
        next_buffer: 0,
    };
    let mut at = 2;
    for _ in 0..MAX_OPCODES {
        let Some(&code) = p.get(at) else {
            return Ok(None);
        };
        at += 1;
        // The argument bytes of a fixed-size argument, or `None` (not taken) past the end.
        macro_rules! arg {
            ($n:expr) => {{
                let n: usize = $n;
                let Some(a) = at.checked_add(n).and_then(|end| p.get(at..end)) else {
                    return Ok(None);
                };
                at += n;
                a
            }};
        }
        macro_rules! take {
            ($e:expr) => {
                match $e {
                    Some(v) => v,
                    None => return Ok(None),
                }
            };
        }
        match code {
            op::FRAME => {
                // `_pickle.c` reads the whole frame before going on: it must be there.
                let a = arg!(8);
                let len = u64::from_le_bytes(a.try_into().unwrap_or_default());
                if len > (p.len() - at) as u64 {
                    return Ok(None);
                }
            }
            op::PROTO => {
                // A second PROTO: _pickle.c takes it; not this path.
                return Ok(None);
            }
            op::STOP => return Ok(m.stack.pop().filter(|_| m.marks.is_empty())),
            op::MARK => {
                take!((m.marks.len() < MAX_MARKS).then_some(()));
                m.marks.push(m.stack.len());
            }
            op::NONE => take!(m.push(py.None().into_bound(py))),
            op::NEWTRUE => take!(m.push(true.into_pyobject(py)?.to_owned().into_any())),
            op::NEWFALSE => take!(m.push(false.into_pyobject(py)?.to_owned().into_any())),
            op::BININT1 => {
                let v = i64::from(arg!(1)[0]);
                take!(m.push(v.into_pyobject(py)?.into_any()))
            }
            op::BININT2 => {
                let a = arg!(2);
                let v = i64::from(u16::from_le_bytes([a[0], a[1]]));
                take!(m.push(v.into_pyobject(py)?.into_any()))
            }
            op::BININT => {
                let a = arg!(4);
                let v = i64::from(i32::from_le_bytes([a[0], a[1], a[2], a[3]]));
                take!(m.push(v.into_pyobject(py)?.into_any()))
            }
            op::LONG1 => {
                let n = usize::from(arg!(1)[0]);
                if n > 8 {
                    return Ok(None);
                }
                let b = arg!(n);
                // Two's complement, little-endian; LONG1 with no bytes is 0.
                let fill = if b.last().is_some_and(|&x| x & 0x80 != 0) {
                    0xff
                } else {
                    0
                };
                let mut le = [fill; 8];
                le[..n].copy_from_slice(b);
                take!(m.push(i64::from_le_bytes(le).into_pyobject(py)?.into_any()))
            }
            op::BINFLOAT => {
                let a = arg!(8);
                let v = f64::from_be_bytes(a.try_into().unwrap_or_default());
                take!(m.push(PyFloat::new(py, v).into_any()))
            }
            op::SHORT_BINUNICODE | op::BINUNICODE | op::BINUNICODE8 => {
                if code == op::SHORT_BINUNICODE {
                    if let Some((module, name, next)) = global_names(p, at) {
                        take!(m.stack.len().checked_add(2).filter(|&n| n <= MAX_STACK));
                        let got = take!(global_text(py, protocol, module, name, loader)?);
                        at = next;
                        take!(m.push(got));
                        continue;
                    }
                }
                let n = take!(length(code, p, &mut at));
                let s = arg!(n);
                take!(m.push(unicode(py, s)?))
            }
            op::SHORT_BINBYTES | op::BINBYTES | op::BINBYTES8 => {
                let n = take!(length(code, p, &mut at));
                let s = arg!(n);
                take!(m.push(PyBytes::new(py, s).into_any()))
            }
            op::BYTEARRAY8 => {
                let n = take!(length(code, p, &mut at));
                let s = arg!(n);
                take!(m.push(PyByteArray::new(py, s).into_any()))
            }
            op::EMPTY_DICT => take!(m.push(PyDict::new(py).into_any())),
            op::EMPTY_LIST => take!(m.push(PyList::empty(py).into_any())),
            op::EMPTY_TUPLE => take!(m.push(PyTuple::empty(py).into_any())),
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let n = usize::from(code - op::TUPLE1) + 1;
                let from = take!(m.stack.len().checked_sub(n).filter(|&f| f >= m.fence()));
                take!(m.tuple(from)?)
            }
            op::TUPLE => {
                let from = take!(m.marks.pop());
                take!(m.tuple(from)?)
            }
            op::SETITEM | op::SETITEMS => {
                let from = if code == op::SETITEM {
                    take!(m.stack.len().checked_sub(2).filter(|&f| f >= m.fence()))
                } else {
                    take!(m.marks.pop())
                };
                // The dict lies at or above the fence (`_pickle.c`: `x <= fence` underflows).
                let dict = take!(m.container(from));
                // _pickle.c calls PyDict_SetItem only on an exact dict; anything else
                // (`__setitem__`) is not this path. An odd count is its error.
                let Ok(dict) = dict.cast_exact::<PyDict>() else {
                    return Ok(None);
                };
                let items = &m.stack[from..];
                if !items.len().is_multiple_of(2) {
                    return Ok(None);
                }
                for kv in items.chunks_exact(2) {
                    dict.set_item(&kv[0], &kv[1])?;
                }
                m.stack.truncate(from);
            }
            op::APPEND | op::APPENDS => {
                let from = if code == op::APPEND {
                    take!(m.stack.len().checked_sub(1).filter(|&f| f >= m.fence()))
                } else {
                    take!(m.marks.pop())
                };
                let list = take!(m.container(from));
                let Ok(list) = list.cast_exact::<PyList>() else {
                    return Ok(None);
                };
                for item in &m.stack[from..] {
                    list.append(item)?;
                }
                m.stack.truncate(from);
            }
            op::MEMOIZE => {
                let top = take!(m.top()).clone();
                let i = m.memo_len;
                take!(m.memo_put(i, top));
            }
            op::BINPUT | op::LONG_BINPUT => {
                let i = if code == op::BINPUT {
                    usize::from(arg!(1)[0])
                } else {
                    let a = arg!(4);
                    u32::from_le_bytes([a[0], a[1], a[2], a[3]]) as usize
                };
                let top = take!(m.top()).clone();
                take!(m.memo_put(i, top));
            }
            op::BINGET | op::LONG_BINGET => {
                let i = if code == op::BINGET {
                    usize::from(arg!(1)[0])
                } else {
                    let a = arg!(4);
                    u32::from_le_bytes([a[0], a[1], a[2], a[3]]) as usize
                };
                let obj = take!(m.memo.get(i).and_then(Option::as_ref)).clone();
                take!(m.push(obj))
            }
            op::STACK_GLOBAL => {
                let from = take!(m.stack.len().checked_sub(2).filter(|&f| f >= m.fence()));
                let got = {
                    // _pickle.c requires two exact str; then find_class(module, name).
                    let (Ok(module), Ok(name)) = (
                        m.stack[from].cast_exact::<PyString>(),
                        m.stack[from + 1].cast_exact::<PyString>(),
                    ) else {
                        return Ok(None);
                    };
                    take!(global(py, protocol, module, name, loader)?)
                };
                m.stack.truncate(from);
                take!(m.push(got))
            }
            op::NEXT_BUFFER => {
                let i = m.next_buffer;
                if i >= buffers.len() {
                    return Ok(None);
                }
                m.next_buffer += 1;
                take!(m.push(buffers.get_item(i)?))
            }
            op::READONLY_BUFFER => {
                take!(m.top());
                let top = take!(m.stack.last_mut());
                // A memoryview of the buffer, made read-only if it was not (`_pickle.c`
                // `load_readonly_buffer`; `toreadonly()` is the stable ABI's way to the flag).
                // SAFETY: `top` is a live object and the GIL is held; the result is a new
                // reference or NULL with an exception set.
                let view = unsafe {
                    Bound::from_owned_ptr_or_err(py, ffi::PyMemoryView_FromObject(top.as_ptr()))?
                };
                if !view.getattr(pyo3::intern!(py, "readonly"))?.is_truthy()? {
                    *top = view.call_method0(pyo3::intern!(py, "toreadonly"))?;
                }
            }
            op::NEWOBJ => {
                let from = take!(m.stack.len().checked_sub(2).filter(|&f| f >= m.fence()));
                let obj = {
                    let (cls, args) = (&m.stack[from], &m.stack[from + 1]);
                    let Ok(args) = args.cast_exact::<PyTuple>() else {
                        return Ok(None);
                    };
                    take!(newobj(py, cls, args)?)
                };
                m.stack.truncate(from);
                take!(m.push(obj))
            }
            op::BUILD => {
                // `_pickle.c` `load_build`: `inst.__setstate__(state)` if `inst` has one; the
                // instance dict and slot state of an object without it are not this path.
                let from = take!(m.stack.len().checked_sub(2).filter(|&f| f >= m.fence()));
                {
                    let (inst, state) = (&m.stack[from], &m.stack[from + 1]);
                    let setstate = match inst.getattr(pyo3::intern!(py, "__setstate__")) {
                        Ok(f) => f,
                        Err(e) if e.is_instance_of::<pyo3::exceptions::PyAttributeError>(py) => {
                            return Ok(None)
                        }
                        Err(e) => return Err(e),
                    };
                    setstate.call1((state,))?;
                }
                m.stack.truncate(from + 1);
            }
            op::REDUCE => {
                let from = take!(m.stack.len().checked_sub(2).filter(|&f| f >= m.fence()));
                let obj = {
                    let (callable, args) = (&m.stack[from], &m.stack[from + 1]);
                    let Ok(args) = args.cast_exact::<PyTuple>() else {
                        return Ok(None);
                    };
                    callable.call1(args)?
                };
                m.stack.truncate(from);
                take!(m.push(obj))
            }
            _ => return Ok(None),
        }
    }
    Ok(None)
}

/// How [`takes`] steps over each opcode: [`NOT_TAKEN`], [`END`], a fixed argument of `0..=8`
/// bytes, or a length-prefixed argument ([`LEN1`], [`LEN4`], [`LEN8`]); `LONG1` is its own.
const NOT_TAKEN: u8 = 0xff;
const END: u8 = 0xfe;
const LEN1: u8 = 0xf1;
const LEN4: u8 = 0xf4;
const LEN8: u8 = 0xf8;
const LONG1: u8 = 0xf0;
static STEP: [u8; 256] = {
    let mut t = [NOT_TAKEN; 256];
    let fixed: [(u8, u8); 29] = [
        (op::MARK, 0),
        (op::NONE, 0),
        (op::NEWTRUE, 0),
        (op::NEWFALSE, 0),
        (op::EMPTY_DICT, 0),
        (op::EMPTY_LIST, 0),
        (op::EMPTY_TUPLE, 0),
        (op::TUPLE, 0),
        (op::TUPLE1, 0),
        (op::TUPLE2, 0),
        (op::TUPLE3, 0),
        (op::SETITEM, 0),
        (op::SETITEMS, 0),
        (op::APPEND, 0),
        (op::APPENDS, 0),
        (op::MEMOIZE, 0),
        (op::STACK_GLOBAL, 0),
        (op::NEXT_BUFFER, 0),
        (op::READONLY_BUFFER, 0),
        (op::NEWOBJ, 0),
        (op::REDUCE, 0),
        (op::BUILD, 0),
        (op::BININT1, 1),
        (op::BINPUT, 1),
        (op::BINGET, 1),
        (op::BININT2, 2),
        (op::BININT, 4),
        (op::LONG_BINPUT, 4),
        (op::LONG_BINGET, 4),
    ];
    let mut i = 0;
    while i < fixed.len() {
        t[fixed[i].0 as usize] = fixed[i].1;
        i += 1;
    }
    t[op::BINFLOAT as usize] = 8;
    t[op::FRAME as usize] = 8;
    t[op::STOP as usize] = END;
    t[op::LONG1 as usize] = LONG1;
    t[op::SHORT_BINUNICODE as usize] = LEN1;
    t[op::SHORT_BINBYTES as usize] = LEN1;
    t[op::BINUNICODE as usize] = LEN4;
    t[op::BINBYTES as usize] = LEN4;
    t[op::BINUNICODE8 as usize] = LEN8;
    t[op::BINBYTES8 as usize] = LEN8;
    t[op::BYTEARRAY8 as usize] = LEN8;
    t
};

/// Whether every opcode up to the first `STOP` is one [`run`] takes (after `PROTO`), with its
/// argument within the pickle, and there are at most [`MAX_OPCODES`] of them.
fn takes(p: &[u8]) -> bool {
    let mut at = 2;
    for _ in 0..MAX_OPCODES {
        let Some(&code) = p.get(at) else {
            return false;
        };
        at += 1;
        let n = match STEP[usize::from(code)] {
            END => return true,
            NOT_TAKEN => return false,
            LONG1 => match p.get(at) {
                Some(&n) if n <= 8 => 1 + usize::from(n),
                _ => return false,
            },
            step @ (LEN1 | LEN4 | LEN8) => {
                let width = usize::from(step & 0x0f);
                match le_len(p, at, width).and_then(|n| n.checked_add(width)) {
                    Some(n) => n,
                    None => return false,
                }
            }
            fixed => usize::from(fixed),
        };
        match at.checked_add(n) {
            Some(next) if next <= p.len() => at = next,
            _ => return false,
        }
    }
    false
}

/// The length argument of a string, bytes or bytearray opcode (1, 4 or 8 bytes, little-endian),
/// read at `at`; `None` past the end or beyond `usize`.
fn length(code: u8, p: &[u8], at: &mut usize) -> Option<usize> {
    let width = match code {
        op::SHORT_BINUNICODE | op::SHORT_BINBYTES => 1,
        op::BINUNICODE | op::BINBYTES => 4,
        _ => 8,
    };
    let n = le_len(p, *at, width)?;
    *at += width;
    Some(n)
}

/// The little-endian length of `width` (1, 4 or 8) bytes at `at`, if they are there and it fits
/// a `usize`.
#[inline(always)]
fn le_len(p: &[u8], at: usize, width: usize) -> Option<usize> {
    let v = match width {
        1 => u64::from(*p.get(at)?),
        4 => u64::from(u32::from_le_bytes(p.get(at..at + 4)?.try_into().ok()?)),
        _ => u64::from_le_bytes(p.get(at..at + 8)?.try_into().ok()?),
    };
    usize::try_from(v).ok()
}

/// The unpickler's state: its stack, the marks into it, the memo.
struct Machine<'py> {
    py: Python<'py>,
    stack: Vec<Bound<'py, PyAny>>,
    marks: Vec<usize>,
    memo: Vec<Option<Bound<'py, PyAny>>>,
    /// Memo entries set, as `_pickle.c` counts them: `MEMOIZE` puts at this index.
    memo_len: usize,
    next_buffer: usize,
}

impl<'py> Machine<'py> {
    #[inline(always)]
    fn push(&mut self, obj: Bound<'py, PyAny>) -> Option<()> {
        (self.stack.len() < MAX_STACK).then(|| self.stack.push(obj))
    }

    /// The lowest stack index an opcode without a mark may pop to (`_pickle.c`'s fence).
    #[inline]
    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    /// The object below `from` that `SETITEM(S)`/`APPEND(S)` add the items from `from` on to,
    /// if it lies above the fence (the fence after a `SETITEMS` mark is the outer one).
    #[inline]
    fn container(&self, from: usize) -> Option<&Bound<'py, PyAny>> {
        (from > self.fence())
            .then(|| self.stack.get(from - 1))
            .flatten()
    }

    #[inline]
    fn top(&self) -> Option<&Bound<'py, PyAny>> {
        self.stack
            .last()
            .filter(|_| self.stack.len() > self.fence())
    }

    /// Replaces the items from `from` up with one tuple of them.
    fn tuple(&mut self, from: usize) -> PyResult<Option<()>> {
        let py = self.py;
        let items = self.stack.drain(from..);
        let n = items.len();
        // SAFETY: PyTuple_New returns a new tuple of `n` NULL slots or NULL with an exception;
        // each slot is then filled exactly once, with a new reference that PyTuple_SetItem
        // steals (`into_ptr`), before the tuple is used. The GIL is held.
        let tuple = unsafe {
            let t = Bound::from_owned_ptr_or_err(py, ffi::PyTuple_New(n as ffi::Py_ssize_t))?;
            for (i, item) in items.enumerate() {
                ffi::PyTuple_SetItem(t.as_ptr(), i as ffi::Py_ssize_t, item.into_ptr());
            }
            t
        };
        Ok(self.push(tuple))
    }

    fn memo_put(&mut self, i: usize, obj: Bound<'py, PyAny>) -> Option<()> {
        if i >= MAX_MEMO {
            return None;
        }
        if self.memo.len() <= i {
            self.memo.resize(i + 1, None);
        }
        if self.memo[i].replace(obj).is_none() {
            self.memo_len += 1;
        }
        Some(())
    }
}

/// `PyUnicode_DecodeUTF8(s, len, "surrogatepass")`, as `_pickle.c` decodes `BINUNICODE`; a
/// short string seen before on this thread is the str made then.
fn unicode<'py>(py: Python<'py>, s: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    if s.len() > SHORT_STRING {
        return decode(py, s);
    }
    // A stream's messages decode their strings in the same order every time: look first where
    // the string after the last one found was kept.
    let hit = STRINGS.with_borrow_mut(|(held, next)| {
        let at = match held.get(*next) {
            Some((b, _)) if **b == *s => *next,
            _ => held.iter().position(|(b, _)| **b == *s)?,
        };
        *next = at + 1;
        Some(held[at].1.clone_ref(py).into_bound(py).into_any())
    });
    if let Some(hit) = hit {
        return Ok(hit);
    }
    let made = decode(py, s)?;
    if let Ok(str) = made.cast_exact::<PyString>() {
        STRINGS.with_borrow_mut(|(held, next)| {
            if held.len() < MAX_STRINGS {
                held.push((s.into(), str.clone().unbind()));
                *next = held.len();
            }
        });
    }
    Ok(made)
}

fn decode<'py>(py: Python<'py>, s: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let len = ffi::Py_ssize_t::try_from(s.len())
        .map_err(|_| pyo3::exceptions::PyOverflowError::new_err("string too long"))?;
    // SAFETY: `s` is live for the call, its length is `len`, the error handler name is a
    // NUL-terminated static string; the GIL is held. The result is a new reference or NULL
    // with an exception set.
    unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyUnicode_DecodeUTF8(s.as_ptr().cast(), len, c"surrogatepass".as_ptr()),
        )
    }
}

/// `find_class(module, name)`: the cached object, or resolved now by the loader if the pair is
/// allowlisted; `None` (not this path) if it is not.
fn global<'py>(
    py: Python<'py>,
    protocol: u8,
    module: &Bound<'py, PyString>,
    name: &Bound<'py, PyString>,
    loader: &impl Resolve,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let protocol3 = protocol >= 3;
    if let Some(obj) = loader.globals().get(py, protocol3, module, name) {
        return Ok(Some(obj.into_bound(py)));
    }
    let (m, n) = (module.to_cow()?, name.to_cow()?);
    resolve(
        py,
        protocol,
        (&m, &n),
        (module.clone(), name.clone()),
        loader,
    )
}

/// [`global`] for names read straight from the pickle (see `global_names`).
fn global_text<'py>(
    py: Python<'py>,
    protocol: u8,
    module: &str,
    name: &str,
    loader: &impl Resolve,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    if let Some(obj) = loader.globals().get_text(py, protocol >= 3, module, name) {
        return Ok(Some(obj.into_bound(py)));
    }
    let strs = (PyString::new(py, module), PyString::new(py, name));
    resolve(py, protocol, (module, name), strs, loader)
}

/// `(module, name)` resolved by the loader's `find_class` and remembered, if allowlisted.
fn resolve<'py>(
    py: Python<'py>,
    protocol: u8,
    (module, name): (&str, &str),
    (module_str, name_str): (Bound<'py, PyString>, Bound<'py, PyString>),
    loader: &impl Resolve,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let protocol3 = protocol >= 3;
    if !loader.allowed(py, protocol3, module, name) {
        return Ok(None);
    }
    let obj = loader.find_class(py, protocol, module, name)?;
    loader.globals().put(Resolved {
        protocol3,
        module: module.into(),
        name: name.into(),
        module_str: module_str.unbind(),
        name_str: name_str.unbind(),
        object: obj.clone().unbind(),
    });
    Ok(Some(obj))
}

/// For `SHORT_BINUNICODE module SHORT_BINUNICODE name STACK_GLOBAL` starting with the first
/// string's length byte at `at` (the encoder's and CPython's protocol-4 form without a memo
/// between): the two names and the offset after `STACK_GLOBAL`. The two strings are popped by
/// the `STACK_GLOBAL` that pushed them, so they need never be made; only names that are valid
/// UTF-8 (`surrogatepass` decodes more) take this path.
#[inline(always)]
fn global_names(p: &[u8], at: usize) -> Option<(&str, &str, usize)> {
    let second = at + 1 + usize::from(*p.get(at)?);
    if p.get(second) != Some(&op::SHORT_BINUNICODE) {
        return None;
    }
    let end = second + 2 + usize::from(*p.get(second + 1)?);
    if p.get(end) != Some(&op::STACK_GLOBAL) {
        return None;
    }
    let (module, name) = (&p[at + 1..second], &p[second + 2..end]);
    Some((
        std::str::from_utf8(module).ok()?,
        std::str::from_utf8(name).ok()?,
        end + 1,
    ))
}

/// `NEWOBJ`: `cls.__new__(cls, *args)`, which `_pickle.c` calls as `cls->tp_new(cls, args,
/// NULL)` after checking that `cls` is a type. `None` if it is not one.
fn newobj<'py>(
    py: Python<'py>,
    cls: &Bound<'py, PyAny>,
    args: &Bound<'py, PyTuple>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    // SAFETY: `cls` is a live object and the GIL is held.
    if unsafe { ffi::PyType_Check(cls.as_ptr()) } == 0 {
        return Ok(None);
    }
    let ty = cls.as_ptr().cast::<ffi::PyTypeObject>();
    // SAFETY: `ty` is a type object (checked above). On CPython 3.10+ PyType_GetSlot reads
    // static types too; on 3.9 it fails for them (NULL with an exception, dropped here), and
    // the Python-level `cls.__new__(cls, *args)` below does the same call.
    let slot = unsafe { ffi::PyType_GetSlot(ty, ffi::Py_tp_new) };
    if slot.is_null() {
        // No exception: the type has no `tp_new`, which `_pickle.c` refuses; not this path.
        if PyErr::take(py).is_none() {
            return Ok(None);
        }
        let mut all = Vec::with_capacity(args.len() + 1);
        all.push(cls.clone());
        all.extend(args.iter());
        return Ok(Some(
            cls.getattr(pyo3::intern!(py, "__new__"))?
                .call1(PyTuple::new(py, all)?)?,
        ));
    }
    // SAFETY: the slot of `Py_tp_new` is a `newfunc` (`PyType_GetSlot` returns it as a void
    // pointer); it is called as `_pickle.c` calls it: the type, an exact tuple of arguments,
    // no keywords, with the GIL held. It returns a new reference or NULL with an exception.
    unsafe {
        let tp_new = std::mem::transmute::<*mut std::ffi::c_void, ffi::newfunc>(slot);
        Bound::from_owned_ptr_or_err(py, tp_new(ty, args.as_ptr(), std::ptr::null_mut())).map(Some)
    }
}

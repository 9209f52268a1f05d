#!/usr/bin/env python3
"""Differential fuzzer for `dmapickle check`, with CPython as the oracle (issue 10).

The validator promises that a pickle it accepts is safe to load: it calls nothing outside the
allowlist, cannot crash the interpreter, cannot allocate more than its stated bound and cannot
take time worse than linear in its length. This fuzzer mutates and splices valid pickles (made
by CPython and numpy, protocols 2-5, in-band and out-of-band; dmapickle-encoder-like messages;
constructed deep, shared, colliding and near-limit ones; the hostile cases), runs one
`dmapickle check --bounds` per batch of mutants and loads every accepted one with plain
`pickle.loads(data, buffers=bufs)` in a sandboxed worker process (RLIMIT_AS, RLIMIT_CPU; the
pool re-spawns a worker that died). A worker records every `pickle.find_class` audit event,
measures the load's tracemalloc peak and CPU time, then stresses the result as consumers do:
hash() of every hashable value, repr(), copy.deepcopy() (RecursionError is fine), and for numpy
arrays the dtype, the logical size and that every element lies inside the array's buffer
(read it).

Divergences (each printed, its mutant saved under --out with a .json of what happened):
  crash-PHASE         the worker died of a signal (PHASE: load, walk, hash, repr, deepcopy, array)
  timeout-PHASE       CPU budget exceeded (load: 0.5 s + 2 us per pickle byte)
  memory-error-PHASE  MemoryError under the worker's RLIMIT_AS
  global              a find_class outside the allowlist, or a Python 2 module name
                      (__builtin__) at protocol 3+, where CPython imports it as named
  type, dtype         a value of a type / an array of a dtype outside the allowlist
  array-bounds        array elements outside the buffer its memory comes from
  array-size          elements x itemsize above --max-array-bytes
  alloc-above-bound   tracemalloc peak of the load above the validator's `alloc` bound
  depth-above-bound   nesting depth of the loaded value above the validator's `depth` (+1)
  validator-crash, validator-timeout, validator-output   `dmapickle check` itself misbehaved
An exception raised by pickle.loads (e.g. numpy refusing an argument) is safe: counted, listed,
not a divergence.

usage: differential.py [--seconds S] [--seed N] [--bin PATH] [--python-np1 PATH] [--out DIR]
Ends with `differential: N mutants, N accepted, N divergences` and `N passed, N failed`
(passed: accepted mutants that loaded safely; failed: divergences). Exit 1 on any divergence.
"""
import argparse
import array
import collections
import copy
import gc
import hashlib
import json
import math
import os
import pickle
import pickletools
import queue
import random
import re
import resource
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

ALLOWED_GLOBALS = {
    ("builtins", "complex"), ("builtins", "set"), ("builtins", "frozenset"),
    ("builtins", "bytes"), ("builtins", "bytearray"),
    ("__builtin__", "complex"), ("__builtin__", "set"), ("__builtin__", "frozenset"),
    ("__builtin__", "bytes"), ("__builtin__", "bytearray"),
    ("_codecs", "encode"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
}
# Module names that CPython's find_class maps to Python 3 ones (_compat_pickle) only below
# protocol 3; at protocol 3+ it imports them as named, so an accepted pickle must not name them.
PYTHON2_MODULES = {"__builtin__", "copy_reg"}
# dtype kind -> allowed item sizes (bool, int/uint 1-8, float16/32/64, complex64/128)
ALLOWED_DTYPES = {"b": {1}, "i": {1, 2, 4, 8}, "u": {1, 2, 4, 8}, "f": {2, 4, 8}, "c": {8, 16}}
MAX_ARRAY_BYTES = 1 << 30
MOD = 2**61 - 1


# =============================================================================================
# The worker: loads one mutant per request, in its own process, under rlimits.
# Protocol: one JSON request per line on stdin; JSON lines back on stdout: {"phase": P} before
# each phase (so the parent knows where a crash happened) and a final {"result": {...}}.
# =============================================================================================

def worker_main(args):
    import numpy as np
    import warnings
    warnings.simplefilter("ignore")
    for mod in ("numpy.core.multiarray", "numpy.core.numeric", "numpy._core.multiarray",
                "numpy._core.numeric"):
        try:
            __import__(mod)
        except Exception:
            pass
    import tracemalloc
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (args.worker_mem, args.worker_mem))
    sys.setrecursionlimit(10_000)
    events = []
    recording = [False]

    def hook(event, evargs):
        if recording[0] and event == "pickle.find_class":
            events.append((str(evargs[0]), str(evargs[1])))
    sys.addaudithook(hook)
    # warm numpy's caches so that they are not counted in the first load's peak
    warm = pickle.dumps([np.arange(3, dtype=">i4"), np.zeros(2, "c16")], protocol=2)
    pickle.loads(warm)
    pickle.loads(pickle.dumps(np.arange(3), protocol=5))
    out = sys.stdout

    def emit(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    def cpu():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def limit_cpu(seconds):  # SIGXCPU (kills us) once this phase has used `seconds` more
        soft = int(math.ceil(cpu() + seconds)) + 1
        hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))

    emit({"ready": np.__version__})
    tasks = 0
    for line in sys.stdin:
        req = json.loads(line)
        res = {"failures": [], "raised": None, "notes": []}

        def fail(kind, detail):
            if kind not in [k for k, _ in res["failures"]]:
                res["failures"].append([kind, str(detail)[:500]])
        data = open(req["pkl"], "rb").read()
        bufs = [bytearray(open(p, "rb").read()) for p in req["bufs"]]
        budget = 0.5 + 2e-6 * len(data)
        tasks += 1
        if tasks % 50 == 0:
            gc.collect()  # cycles of earlier results (recursive lists); refcounting frees the rest

        def load():
            try:
                return pickle.loads(data, buffers=bufs)
            except MemoryError as e:
                fail("memory-error-load", repr(e))
            except RecursionError:
                res["raised"] = "RecursionError"
            except Exception as e:
                res["raised"] = "%s: %s" % (type(e).__name__, str(e)[:120])
        # 1: the load as a consumer runs it, timed (tracemalloc would slow it 2-6x)
        emit({"phase": "load"})
        limit_cpu(budget * 3)
        events.clear()
        recording[0] = True
        t0 = cpu()
        obj = load()
        used = cpu() - t0
        recording[0] = False
        obj = None
        # 2: the same load under tracemalloc, for its peak (the value is kept for the stress)
        emit({"phase": "load-traced"})
        limit_cpu(budget * 30 + 10)
        res["raised"] = None
        tracemalloc.start()
        obj = load()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        res.update(cpu=round(used, 4), peak=peak, budget=round(budget, 4))
        if used > budget:
            fail("timeout-load", "load took %.3f s CPU, budget %.3f s" % (used, budget))
        proto = data[1] if data[:1] == b"\x80" and len(data) > 1 else 0
        for mod, name in sorted(set(events)):
            if (mod, name) not in ALLOWED_GLOBALS:
                fail("global", "find_class(%r, %r)" % (mod, name))
            elif proto >= 3 and mod in PYTHON2_MODULES:
                # mapped to Python 3 names only below protocol 3: here imported as named
                fail("global", "find_class(%r, %r) at protocol %d: imported from sys.path as named"
                     % (mod, name, proto))
        bound = req.get("alloc")
        if bound is not None and peak > bound:
            fail("alloc-above-bound", "tracemalloc peak %d B > validator bound %d B" % (peak, bound))
        elif bound is None and peak > req["max_alloc"]:
            fail("alloc-above-budget", "tracemalloc peak %d B > the %d B budget (validator gave no bound)"
                 % (peak, req["max_alloc"]))
        if res["raised"] is None and not res["failures"]:
            # what consumers do is linear in the value's size, which the allocation bounds
            stress(obj, bufs, req, res, fail, emit, lambda base: limit_cpu(base + 1e-7 * peak),
                   len(data), np)
        emit({"result": res})
        obj = None
        bufs = None


def stress(obj, bufs, req, res, fail, emit, limit_cpu, n, np):
    """What a consumer does with a loaded value; failures as in the module docstring."""
    budget = 2 + 5e-6 * n
    emit({"phase": "walk"})
    limit_cpu(budget)
    allowed = (type(None), bool, int, float, complex, str, bytes, bytearray, tuple, list, dict,
               set, frozenset, memoryview, np.ndarray, pickle.PickleBuffer)
    seen = {}
    order = []
    stack = [obj]
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen[id(x)] = x
        order.append(x)
        t = type(x)
        if t not in allowed:
            fail("type", "value of type %s.%s" % (t.__module__, t.__qualname__))
            continue
        if t in (list, tuple, set, frozenset):
            stack.extend(x)
        elif t is dict:
            stack.extend(x.keys())
            stack.extend(x.values())
    depth = nesting_depth(obj)
    res["depth"] = depth
    if req.get("depth") is not None and depth > req["depth"] + req.get("depth_slack", 1):
        fail("depth-above-bound", "loaded value nested %d deep, validator said %d" % (depth, req["depth"]))
    elif req.get("depth") is None and depth > req["max_depth"] + 1:
        fail("depth-above-limit", "loaded value nested %d deep, over the %d limit (validator gave no depth)"
             % (depth, req["max_depth"]))
    emit({"phase": "array"})
    limit_cpu(budget)
    logical_total = 0
    ranges = []
    for b in bufs:
        ranges.append(("out-of-band buffer", buffer_range(b, np)))
    for x in order:
        if type(x) is np.ndarray:
            logical_total += check_array(x, ranges, req, fail, np)
    emit({"phase": "hash"})
    limit_cpu(budget)
    # hash() every hashable value as a consumer reaches it: the root and whatever a list, dict or
    # set holds (a tuple's items are hashed by hashing the tuple: hashing each nested tuple again
    # would make this check quadratic in a chain's depth, which no consumer does)
    targets = [obj]
    for x in order:
        t = type(x)
        if t in (list, set):
            targets.extend(x)
        elif t is dict:
            targets.extend(x.keys())
            targets.extend(x.values())
    hashed = set()
    while targets:
        x = targets.pop()
        if id(x) in hashed or type(x) not in (tuple, frozenset, int, float, complex, str, bytes):
            continue
        hashed.add(id(x))
        try:
            hash(x)
        except TypeError:  # a tuple holding a list: its other items are still hashable
            if type(x) is tuple:
                targets.extend(x)
        except RecursionError:
            pass
    emit({"phase": "repr"})
    limit_cpu(budget)
    try:
        repr(obj)
    except RecursionError:
        pass
    except MemoryError as e:
        fail("memory-error-repr", repr(e))
    except Exception as e:  # e.g. an int past sys.get_int_max_str_digits(): safe, it raises
        res["notes"].append("repr raised %s" % type(e).__name__)
    emit({"phase": "deepcopy"})
    limit_cpu(budget)
    if logical_total > (256 << 20):
        res["notes"].append("deepcopy skipped: arrays of %d B logical size" % logical_total)
        return
    try:
        copy.deepcopy(obj)
    except RecursionError:
        pass
    except MemoryError as e:
        fail("memory-error-deepcopy", repr(e))
    except Exception as e:  # e.g. a read-only memoryview: a consumer's problem, not unsafe
        res["notes"].append("deepcopy raised %s" % type(e).__name__)


def nesting_depth(obj):
    """Containers nested in the loaded value (scalars and arrays 0, [] 1, [[]] 2, ...), each
    value once (shared values are not re-expanded), back edges of cycles ignored."""
    depth = {}
    on_path = set()
    stack = [(obj, False)]
    while stack:
        x, done = stack.pop()
        i = id(x)
        if done:
            on_path.discard(i)
            d = 0
            for c in children(x):
                d = max(d, depth.get(id(c), 0))
            depth[i] = d + 1
            continue
        if i in depth or i in on_path:
            continue
        cs = children(x)
        if cs is None:
            depth[i] = 0
            continue
        on_path.add(i)
        stack.append((x, True))
        for c in cs:
            if id(c) not in depth and id(c) not in on_path:
                stack.append((c, False))
    return depth.get(id(obj), 0)


def children(x):
    t = type(x)
    if t in (list, tuple, set, frozenset):
        return list(x)
    if t is dict:
        return list(x.keys()) + list(x.values())
    return None


def buffer_range(b, np):
    if len(memoryview(b).cast("B")) == 0:
        return (0, 0)
    a = np.frombuffer(b, dtype=np.uint8)
    start = a.__array_interface__["data"][0]
    return (start, start + a.size)


def check_array(a, ranges, req, fail, np):
    dt = a.dtype
    sizes = ALLOWED_DTYPES.get(dt.kind)
    if dt.fields is not None or dt.subdtype is not None or sizes is None or dt.itemsize not in sizes \
            or dt.hasobject:
        fail("dtype", "array of dtype %r" % (dt,))
        return 0
    logical = a.size * dt.itemsize
    if logical > req.get("max_array_bytes", MAX_ARRAY_BYTES):
        fail("array-size", "shape %r x itemsize %d = %d B logical" % (a.shape, dt.itemsize, logical))
        return logical
    if a.size == 0:
        return 0
    ptr = a.__array_interface__["data"][0]
    lo = ptr + sum(min(0, s * (k - 1)) for s, k in zip(a.strides, a.shape))
    hi = ptr + sum(max(0, s * (k - 1)) for s, k in zip(a.strides, a.shape)) + dt.itemsize
    root = a
    while isinstance(root, np.ndarray) and root.base is not None:
        root = root.base
    if isinstance(root, np.ndarray):
        start = root.__array_interface__["data"][0]
        where = [("its own allocation", (start, start + root.nbytes))]
    else:
        try:
            where = [("its base %s" % type(root).__name__, buffer_range(root, np))]
        except Exception as e:
            fail("array-bounds", "array base %s has no buffer: %s" % (type(root).__name__, e))
            return logical
    inside = [w for w, (s, e) in where + ranges if s <= lo and hi <= e]
    if not inside:
        fail("array-bounds", "elements [%#x, %#x) outside %s" % (lo, hi, ", ".join(
            "%s [%#x, %#x)" % (w, s, e) for w, (s, e) in where + ranges)))
        return logical
    if logical <= (64 << 20):
        a.tobytes()  # read every element: a segfault here is an array outside its memory
    return logical


# =============================================================================================
# Seeds: CPython/numpy pickles, encoder-like messages, constructed and hostile inputs.
# =============================================================================================

class Seed:
    __slots__ = ("name", "data", "bufs", "_offs")

    def __init__(self, name, data, bufs):
        self.name, self.data, self.bufs, self._offs = name, unframe(data), list(bufs), None

    @property
    def offs(self):
        """Start offsets of the opcodes (the last entry: the end of STOP)."""
        if self._offs is None:
            self._offs = array.array("q", opcode_offsets(self.data))
        return self._offs


def _arg_lengths():
    """opcode byte -> its argument's length: n >= 0 fixed, else how the length is read
    (pickletools' ArgumentDescriptor.n: -1 up to a newline, -2/-3/-4/-5 a 1/4/4U/8U-byte
    length prefix; GLOBAL and INST take two newline-terminated lines: -6)."""
    out = {}
    for op in pickletools.opcodes:
        n = 0 if op.arg is None else op.arg.n
        if op.name in ("GLOBAL", "INST"):
            n = -6
        out[op.code.encode("latin-1")[0]] = n
    return out


ARG_LEN = _arg_lengths()


def opcode_offsets(data):
    """Start offsets of the opcodes up to STOP, then the end of STOP (or len(data) where the
    stream is truncated or an unknown opcode stops it). Same boundaries as pickletools.genops,
    without decoding arguments (genops costs ~30x more)."""
    offs = []
    i, n = 0, len(data)
    get, frm = ARG_LEN.get, int.from_bytes
    while i < n:
        c = data[i]
        k = get(c)
        if k is None:
            break
        offs.append(i)
        if c == 0x2E:  # STOP
            offs.append(i + 1)
            return offs
        i += 1
        if k >= 0:
            i += k
        elif k == -1:
            j = data.find(b"\n", i)
            if j < 0:
                break
            i = j + 1
        elif k == -6:
            j = data.find(b"\n", i)
            j = data.find(b"\n", j + 1) if j >= 0 else -1
            if j < 0:
                break
            i = j + 1
        elif k == -2:
            if i >= n:
                break
            i += 1 + data[i]
        else:
            w = 4 if k in (-3, -4) else 8
            length = frm(data[i:i + w], "little", signed=(k == -3))
            if length < 0:
                break
            i += w + length
    offs.append(n)
    return offs


def unframe(data):
    """The same pickle without FRAME opcodes (frames are optional); mutations keep it parsable
    and `reframe` can put one frame back."""
    if b"\x95" not in data[:16] and b"\x95" not in data:
        return data
    out, last = [], 0
    try:
        for op, arg, pos in pickletools.genops(data):
            if op.name == "FRAME":
                out.append(data[last:pos])
                last = pos + 9
            if op.name == "STOP":
                break
    except Exception:
        return data
    out.append(data[last:])
    return b"".join(out)


def reframe(data):
    if len(data) < 3 or data[0] != 0x80 or data[1] < 4:
        return data
    body = data[2:]
    return data[:2] + b"\x95" + struct.pack("<Q", len(body)) + body


def seeds_from_vectors(rng):
    sys.path.insert(0, os.path.join(ROOT, "tests", "vectors"))
    import make_cpython_vectors as mcv
    out = []
    groups = [("plain", mcv.plain_values()), ("near", mcv.near_miss_values()),
              ("np", {**mcv.arrays(), **mcv.messages()})]
    wb = pickle.PickleBuffer(bytearray(b"0123456789abcdef"))
    rb = pickle.PickleBuffer(b"read-only buffer!")
    groups.append(("pb", {"pb_two": [wb, rb], "pb_in_dict": {"raw": rb, "n": 1}}))
    for group, values in groups:
        for key, value in values.items():
            for protocol in ((5,) if group == "pb" else (2, 3, 4, 5)):
                data = pickle.dumps(value, protocol=protocol)
                out.append(Seed("%s_p%d_%s" % (group, protocol, key), data, []))
                if protocol == 5 and group in ("np", "pb"):
                    bufs = []
                    data = pickle.dumps(value, protocol=5, buffer_callback=bufs.append)
                    out.append(Seed("%s_p5_%s_oob" % (group, key), data, [bytes(b.raw()) for b in bufs]))
    return out


def seeds_from_hostile():
    import make_hostile as mh
    out = []
    for name, note, reason, data, buffers in mh.CASES:
        out.append(Seed("hostile_" + name, data, [fill(n) for n in buffers]))
    return out


def fill(n):
    return bytes(range(256)) * (n // 256) + bytes(range(n % 256))


# opcode builders: the hostile generator's (P, su, sg, I, F, BG, BP, tup, memo_nest, opcodes)
sys.path.insert(0, os.path.join(ROOT, "tests", "vectors", "hostile"))
from make_hostile import (P, su, sg, I, F, BG, BP, bu, tup, memo_nest, MARK, STOP, NONE, TRUE,  # noqa: E402
                          FALSE, POP, T1, T2, T3, TUPLE, REDUCE, NEWOBJ, BUILD, EMPTY_LIST, EMPTY_DICT,
                          EMPTY_SET, EMPTY_TUPLE, APPEND, APPENDS, SETITEM, SETITEMS, ADDITEMS,
                          FROZENSET, NB, RO, MEMO)


def batched(head, items, close, n=1000):
    return head + b"".join(MARK + b"".join(items[i:i + n]) + close for i in range(0, len(items), n))


def encoder_message(shape, dtype, seq):
    """What dmapickle's encoder writes for a sensor message (protocol 5, globals memoized,
    arrays as numpy.ndarray NEWOBJ over NEXT_BUFFER, no frames, no other memo)."""
    nbytes = int(math.prod(shape)) * int(dtype[-1] if dtype[-1].isdigit() else 1)
    shape_t = {1: T1, 2: T2, 3: T3}.get(len(shape))
    sh = b"".join(I(d) for d in shape) + shape_t if shape_t else tup(*[I(d) for d in shape])
    arr = sg("numpy", "ndarray") + MEMO + MARK + sh + su(dtype) + NB + I(0) + NONE + su("C") + TUPLE + NEWOBJ
    data = (P(5) + EMPTY_DICT + MARK + su("seq") + I(seq) + su("t_ns") + I(1700000000123456789)
            + su("adc") + arr + su("gain") + F(0.5) + su("c") + sg("builtins", "complex") + MEMO
            + F(1.0) + F(-2.0) + T2 + REDUCE + SETITEMS + STOP)
    return data, [fill(nbytes)]


def constructed_seeds():
    """Inputs that sit on either side of the issue-10 bounds."""
    out = []
    add = lambda name, data, bufs=(): out.append(Seed("built_" + name, data, list(bufs)))
    for shape, dt in (((1024, 4), "<i2"), ((16,), "<f4"), ((2, 3, 4), ">c16"), ((0,), "<u8"),
                      ((1,) * 8, "|u1"), ((3, 5), "|b1")):
        add("encoder_%s_%s" % ("x".join(map(str, shape)), dt.replace("<", "le").replace(">", "be").replace("|", "")),
            *encoder_message(shape, dt, 41))
    for d in (50, 98, 99, 100, 101, 102, 150, 1000, 5000):
        add("tuple1_chain_%d" % d, P(4) + NONE + T1 * d + STOP)
        add("tuple1_key_%d" % d, P(4) + EMPTY_DICT + NONE + T1 * d + NONE + SETITEM + STOP)
        add("tuple2_chain_%d" % d, P(4) + NONE + (NONE + T2) * d + STOP)
        add("list_memo_nest_%d" % d, P(4) + memo_nest(EMPTY_LIST, EMPTY_LIST + BG(0) + APPEND, d) + STOP)
        add("dict_memo_nest_%d" % d, P(4) + memo_nest(EMPTY_DICT, EMPTY_DICT + su("k") + BG(0) + SETITEM, d) + STOP)
        add("frozenset_memo_nest_%d" % d,
            P(4) + EMPTY_SET + MARK + memo_nest(NONE + T1, MARK + BG(0) + FROZENSET, d) + ADDITEMS + STOP)
    add("tuple1_chain_300k_key", P(4) + EMPTY_DICT + NONE + T1 * 300_000 + NONE + SETITEM + STOP)
    for d in (16, 24, 32, 40):  # shared tuples: hash visits 2**d
        add("tuple_dag_key_%d" % d,
            P(4) + EMPTY_DICT + memo_nest(NONE + T1, BG(0) + BG(0) + T2, d) + NONE + SETITEM + STOP)
        add("list_dag_%d" % d, P(4) + memo_nest(EMPTY_LIST, EMPTY_LIST + BG(0) + APPEND + BG(0) + APPEND, d) + STOP)
    for n in (31, 32, 33, 34, 40, 2000):  # keys sharing one hash
        ints = [I(i * MOD) for i in range(n)]
        add("int_collide_dict_%d" % n, P(4) + batched(EMPTY_DICT, [k + NONE for k in ints], SETITEMS) + STOP)
        add("int_collide_set_%d" % n, P(4) + batched(EMPTY_SET, ints, ADDITEMS) + STOP)
        add("int_collide_frozenset_%d" % n, P(4) + MARK + b"".join(ints) + FROZENSET + STOP)
        add("int_collide_set_of_list_%d" % n,
            P(4) + sg("builtins", "set") + batched(EMPTY_LIST, ints, APPENDS) + T1 + REDUCE + STOP)
        cx = [BG(0) + F(-1000003.0 * k) + F(float(k)) + T2 + REDUCE for k in range(1, n + 1)]
        add("complex_collide_set_%d" % n,
            P(4) + sg("builtins", "complex") + BP(0) + POP + batched(EMPTY_SET, cx, ADDITEMS) + STOP)
        # ints that share a hash modulo the table size only (dict probing copes): must pass
        spread = [I(i << 20) for i in range(n)]
        add("int_shift_dict_%d" % n, P(4) + batched(EMPTY_DICT, [k + NONE for k in spread], SETITEMS) + STOP)
    floats = [math.ldexp(1.0, 61 * k) for k in range(-17, 17)]
    add("float_collide_dict_34", P(4) + batched(EMPTY_DICT, [F(x) + NONE for x in floats], SETITEMS) + STOP)
    add("float_collide_dict_30", P(4) + batched(EMPTY_DICT, [F(x) + NONE for x in floats[:30]], SETITEMS) + STOP)
    add("mixed_collide_dict", P(4) + batched(EMPTY_DICT, [F(x) + NONE for x in floats[:20]]
                                              + [I(1 + i * MOD) + NONE for i in range(20)], SETITEMS) + STOP)
    # allocation near the default 256 MiB budget (and past it)
    for n in (1_000_000, 1_300_000):
        add("empty_set_bomb_%d" % n, P(4) + batched(EMPTY_LIST, [EMPTY_SET] * n, APPENDS) + STOP)
    add("empty_dict_bomb_4.4M", P(4) + batched(EMPTY_LIST, [EMPTY_DICT] * 4_400_000, APPENDS) + STOP)
    add("empty_list_bomb_4.4M", P(4) + batched(EMPTY_LIST, [EMPTY_LIST] * 4_400_000, APPENDS) + STOP)
    blob = fill(256 << 10)
    for n in (900, 1100):
        add("bytearray_copies_%d" % n,
            P(4) + EMPTY_LIST + BP(0) + sg("builtins", "bytearray") + BP(1) + b"B" + struct.pack("<I", len(blob))
            + blob + BP(2) + POP + POP + batched(b"", [BG(1) + BG(2) + T1 + REDUCE] * n, APPENDS) + STOP)
    add("set_copies_6000",
        P(4) + EMPTY_LIST + BP(0) + sg("builtins", "set") + BP(1) + batched(EMPTY_LIST, [I(i) for i in range(1000)], APPENDS)
        + BP(2) + POP + POP + batched(b"", [BG(1) + BG(2) + T1 + REDUCE] * 6000, APPENDS) + STOP)
    # arrays near the 1 GiB logical limit: stride 0 over 8 bytes
    for n in (2**27, 2**27 + 1, 2**40):
        add("stride0_%d" % n, P(5) + sg("numpy", "ndarray") + tup(tup(I(n)), su("<i8"), NB, I(0), tup(I(0)), su("C"))
            + NEWOBJ + STOP, [fill(8)])
    add("zero_size_far_offset", P(5) + sg("numpy", "ndarray") + tup(tup(I(0)), su("<i4"), NB, I(2**60), tup(I(4)), su("C"))
        + NEWOBJ + STOP, [fill(16)])
    add("complex_huge_int", P(4) + sg("builtins", "complex") + tup(I(10**400)) + REDUCE + STOP)
    add("codecs_euro", P(4) + sg("_codecs", "encode") + su("\u20ac") + su("latin1") + T2 + REDUCE + STOP)
    add("surrogates", P(4) + EMPTY_LIST + MARK + bu("a\ud800b") + bu("\udfff") + APPENDS + STOP)
    return out


# =============================================================================================
# Mutations: at opcode boundaries found with pickletools.genops.
# =============================================================================================

INTERESTING_INTS = [0, 1, 2, 7, 8, 15, 16, 255, 256, 1000, 4096, 65535, 65536, 2**31 - 1, 2**31,
                    2**32, 2**40, 2**60, 2**61 - 1, 2**62, 2**63 - 1, 2**63, 2**64, -1, -2, -4,
                    -(2**31), -(2**63), 10**30, 10**400]
INTERESTING_FLOATS = [0.0, -0.0, 1.0, 2.0**61, 2.0**-61, 1e308, 5e-324, float("inf"), float("nan"), -1.0]
LEN_OPS = {"SHORT_BINUNICODE": "B", "SHORT_BINBYTES": "B", "SHORT_BINSTRING": "B", "BINUNICODE": "<I",
           "BINBYTES": "<I", "BINSTRING": "<i", "BINUNICODE8": "<Q", "BINBYTES8": "<Q",
           "BYTEARRAY8": "<Q", "LONG1": "B", "LONG4": "<i"}
MEMO_OPS = {"BINGET": "B", "BINPUT": "B", "LONG_BINGET": "<I", "LONG_BINPUT": "<I"}
INT_OPS = {"BININT1", "BININT2", "BININT", "LONG1", "LONG4"}
OPCODE_BYTES = [op.code.encode("latin-1") for op in pickletools.opcodes]

GLOBALS = sorted(ALLOWED_GLOBALS) + [("os", "system"), ("builtins", "eval"), ("numpy", "load"),
                                      ("builtins", "getattr"), ("copyreg", "_reconstructor")]


def snippets():
    s = [NONE, TRUE, FALSE, I(0), I(1), I(255), I(65536), I(2**40), I(-1), I(MOD), I(10**400), F(1.5),
         F(2.0**61), su(""), su("a"), su("latin1"), su("\u20ac"), bu("a\ud800b"), su("C"), su("F"),
         su("<i4"), su(">f8"), su("|O8"), su("<M8[ns]"), su("i2"), b"C\x04abcd", b"C\x00",
         b"\x96" + struct.pack("<Q", 4) + b"abcd", EMPTY_LIST, EMPTY_DICT, EMPTY_SET, EMPTY_TUPLE,
         MARK, TUPLE, T1, T2, T3, b"l", b"d", APPEND, APPENDS, SETITEM, SETITEMS, ADDITEMS,
         FROZENSET, MEMO, BP(0), BP(1), BP(3), BG(0), BG(1), BG(2), BG(5), b"j\x00\x00\x00\x00",
         POP, b"1", REDUCE, BUILD, NEWOBJ, NB, RO, STOP, b"2", b"\x92", b"\x82\x01",
         tup(I(3), su("<"), NONE, NONE, NONE, I(-1), I(-1), I(0)), tup(I(1)), tup(I(2**40)),
         tup(I(0)), tup(I(4)), tup(I(1), tup(I(4)), NONE, FALSE, b"C\x10" + bytes(16))]
    s += [sg(m, n) for m, n in GLOBALS]
    s += [b"c%s\n%s\n" % (m.encode(), n.encode()) for m, n in GLOBALS[:6]]
    return s


SNIPPETS = snippets()


class Mutator:
    def __init__(self, rng, seeds):
        self.rng = rng
        self.seeds = seeds
        self.small = [s for s in seeds if len(s.data) <= 64 << 10]
        # seeds over 2 MiB (the near-limit bombs) are probed as they are, not mutated
        self.large = [s for s in seeds if 64 << 10 < len(s.data) <= 2 << 20]
        self.large_share = 0.1

    def pick(self):
        r = self.rng.random()
        if self.large and r < self.large_share:
            return self.rng.choice(self.large)
        return self.rng.choice(self.small)

    def mutant(self):
        """(data, buffers, description) of one mutant."""
        rng = self.rng
        seed = self.pick()
        data, bufs, log = seed.data, list(seed.bufs), [seed.name]
        offs = list(seed.offs) if len(seed.offs) < 200_000 else None
        rounds = rng.choice((1, 1, 1, 2, 2, 3, 4))
        for r in range(rounds):
            if offs is None or len(offs) < 2:  # huge seed: byte-level only, near the ends
                data, what = self.flip(data)
                log.append(what)
                continue
            kind = rng.choice(("flip", "subst", "insert", "insert", "delete", "length", "int", "int",
                               "splice", "dup", "dup", "memo", "memo", "buffer", "copyop"))
            try:
                data, what = getattr(self, kind)(data, offs)
            except (struct.error, ValueError, IndexError, OverflowError, MemoryError):
                data, what = self.flip(data)
            if kind == "buffer":
                bufs = self.resize_buffers(bufs)
                what = "buffer sizes %s" % [len(b) for b in bufs]
            elif r + 1 < rounds:  # boundaries for the next round
                offs = opcode_offsets(data) if len(data) <= 1 << 20 else None
            log.append(what)
        # keep the NEXT_BUFFER count right most of the time: the interesting checks are behind it
        if rng.random() < 0.9 and (bufs or b"\x97" in data):
            want = count_next_buffer(data)
            if want is not None and want != len(bufs):
                pool = bufs + [fill(rng.choice((0, 8, 16, 64, 4096, 8192)))]
                bufs = [pool[i] if i < len(bufs) else rng.choice(pool) for i in range(want)]
        if rng.random() < 0.25:
            data = reframe(data)
            log.append("reframe")
        return data, bufs, log

    def op_at(self, offs):
        i = self.rng.randrange(len(offs) - 1)
        return i, offs[i], offs[i + 1]

    def flip(self, data, offs=None):
        rng = self.rng
        if not data:
            return bytes([rng.randrange(256)]), "flip empty"
        n = len(data)
        pos = rng.randrange(n) if n < 1 << 16 or rng.random() < 0.5 else rng.choice(
            (rng.randrange(min(n, 4096)), n - 1 - rng.randrange(min(n, 4096))))
        if rng.random() < 0.5:
            b = data[pos] ^ (1 << rng.randrange(8))
        else:
            b = rng.randrange(256)
        return data[:pos] + bytes([b]) + data[pos + 1:], "flip @%d -> %02x" % (pos, b)

    def subst(self, data, offs):
        i, s, e = self.op_at(offs)
        code = self.rng.choice(OPCODE_BYTES)
        return data[:s] + code + data[s + 1:], "subst @%d %r" % (s, code)

    def insert(self, data, offs):
        i = self.rng.randrange(1, len(offs))  # never before PROTO
        snip = self.rng.choice(SNIPPETS)
        return data[:offs[i]] + snip + data[offs[i]:], "insert @%d %r" % (offs[i], snip[:24])

    def copyop(self, data, offs):
        other = self.pick()
        o = list(other.offs) if len(other.offs) < 200_000 else None
        if not o or len(o) < 3:
            return self.insert(data, offs)
        j = self.rng.randrange(1, len(o) - 1)
        k = min(len(o) - 1, j + self.rng.choice((1, 1, 2, 3, 5, 10)))
        piece = other.data[o[j]:o[k]]
        i = self.rng.randrange(1, len(offs))
        return data[:offs[i]] + piece + data[offs[i]:], "copy %d ops of %s @%d" % (k - j, other.name, offs[i])

    def delete(self, data, offs):
        if len(offs) < 3:
            return self.flip(data)
        i = self.rng.randrange(1, len(offs) - 1)
        k = min(len(offs) - 1, i + self.rng.choice((1, 1, 1, 2, 3, 8)))
        return data[:offs[i]] + data[offs[k]:], "delete ops %d..%d" % (i, k)

    def _op(self, data, offs, names):
        cands = []
        for i in range(len(offs) - 1):
            op = OPNAME.get(data[offs[i]])
            if op in names:
                cands.append(i)
            if len(cands) > 2000:
                break
        if not cands:
            return None
        i = self.rng.choice(cands)
        return i, offs[i], offs[i + 1], OPNAME[data[offs[i]]]

    def length(self, data, offs):
        hit = self._op(data, offs, LEN_OPS)
        if hit is None:
            return self.int(data, offs)
        i, s, e, name = hit
        fmt = LEN_OPS[name]
        size = struct.calcsize(fmt)
        old = struct.unpack(fmt, data[s + 1:s + 1 + size])[0]
        rng = self.rng
        if rng.random() < 0.5:  # consistent: new content of another length
            n = rng.choice((0, 1, old + 1, max(0, old - 1), 255, 256, 4096, 70000))
            lim = {"B": 255, "<I": 2**32 - 1, "<i": 2**31 - 1, "<Q": 2**64 - 1}[fmt]
            n = min(n, lim, 1 << 20)
            body = data[s + 1 + size:e]
            body = (body * (n // max(1, len(body)) + 1))[:n] if body else b"\x01" * n
            if name in ("LONG1", "LONG4") and n and rng.random() < 0.5:
                body = body[:-1] + b"\x7f"
            return data[:s + 1] + struct.pack(fmt, n) + body + data[e:], "relength %s @%d %d->%d" % (name, s, old, n)
        n = rng.choice((0, old + 1, old - 1, old * 2, 2**31 - 1, 2**32 - 1, 2**40, 2**63))
        try:
            packed = struct.pack(fmt, n)
        except struct.error:
            packed = struct.pack(fmt, 0)
        return data[:s + 1] + packed + data[s + 1 + size:], "length field %s @%d %d->%d" % (name, s, old, n)

    def int(self, data, offs):
        rng = self.rng
        hit = self._op(data, offs, INT_OPS | {"BINFLOAT"})
        if hit is None:
            return self.insert(data, offs)
        i, s, e, name = hit
        if name == "BINFLOAT":
            x = rng.choice(INTERESTING_FLOATS)
            return data[:s] + F(x) + data[e:], "float @%d -> %r" % (s, x)
        n = rng.choice(INTERESTING_INTS)
        if rng.random() < 0.3:
            n += rng.choice((-1, 1))
        return data[:s] + I(n) + data[e:], "int @%d -> %d" % (s, n)

    def splice(self, data, offs):
        other = self.pick()
        o = list(other.offs) if len(other.offs) < 200_000 else None
        if not o or len(o) < 3:
            return self.flip(data)
        i = self.rng.randrange(1, len(offs))
        j = self.rng.randrange(1, len(o))
        return data[:offs[i]] + other.data[o[j]:], "splice @%d + %s from op %d" % (offs[i], other.name, j)

    def dup(self, data, offs):
        if len(offs) < 3:
            return self.flip(data)
        i = self.rng.randrange(1, len(offs) - 1)
        k = min(len(offs) - 1, i + self.rng.choice((1, 1, 2, 3, 4, 6, 8)))
        run = data[offs[i]:offs[k]]
        times = self.rng.choice((2, 3, 10, 100, 1000, 5000, 50_000))
        times = max(1, min(times, (4 << 20) // max(1, len(run))))
        return data[:offs[k]] + run * times + data[offs[k]:], "dup ops %d..%d x%d" % (i, k, times)

    def memo(self, data, offs):
        rng = self.rng
        hit = self._op(data, offs, MEMO_OPS)
        if hit is None or rng.random() < 0.3:
            i = rng.randrange(1, len(offs))
            snip = rng.choice((MEMO, BG(rng.randrange(8)), BP(rng.randrange(8)), BG(0) + BG(0) + T2))
            return data[:offs[i]] + snip + data[offs[i]:], "memo insert @%d %r" % (offs[i], snip)
        i, s, e, name = hit
        fmt = MEMO_OPS[name]
        old = struct.unpack(fmt, data[s + 1:e])[0]
        n = rng.choice((0, 1, old + 1, max(0, old - 1), rng.randrange(32), 255))
        return data[:s + 1] + struct.pack(fmt, n) + data[e:], "memo %s @%d %d->%d" % (name, s, old, n)

    def buffer(self, data, offs):
        return data, "buffer"  # the buffers themselves: resize_buffers

    def resize_buffers(self, bufs):
        bufs = list(bufs)
        rng = self.rng
        if not bufs or rng.random() < 0.2:
            bufs.append(fill(rng.choice((0, 8, 16, 4096))))
        k = rng.randrange(len(bufs))
        n = len(bufs[k])
        bufs[k] = fill(max(0, rng.choice((0, n - 1, n + 1, n // 2, n - 8, n + 8))))
        return bufs


OPNAME = {op.code.encode("latin-1")[0]: op.name for op in pickletools.opcodes}


def count_next_buffer(data):
    offs = opcode_offsets(data)
    if len(offs) < 2 or data[offs[-2]] != 0x2E:
        return None  # no STOP: the validator refuses it whatever the buffers
    return sum(1 for o in offs[:-1] if data[o] == 0x97)


# =============================================================================================
# The validator, in batches.
# =============================================================================================

LINE_OK = re.compile(r"^ok(?: \(depth (\d+), alloc (\d+) B\))?$")


def run_check(binary, paths, extra, bounds, timeout):
    """{path: ("ok", depth, alloc) | ("rejected", reason) | (problem, detail)} for a batch."""
    cmd = [binary, "check"] + (["--bounds"] if bounds else []) + extra + paths
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        if len(paths) == 1:
            return {paths[0]: ("validator-timeout", "check took over %d s" % timeout)}
        res = {}
        for p in paths:
            res.update(run_check(binary, [p], extra, bounds, 10))
        return res
    if out.returncode < 0:
        if len(paths) == 1:
            return {paths[0]: ("validator-crash", "check died of signal %d" % -out.returncode)}
        res = {}
        for p in paths:
            res.update(run_check(binary, [p], extra, bounds, 10))
        return res
    res = {}
    for line in out.stdout.decode("utf-8", "replace").splitlines():
        path, sep, rest = line.partition(": ")
        if not sep:
            continue
        m = LINE_OK.match(rest)
        if m:
            res[path] = ("ok", int(m.group(1)) if m.group(1) else None, int(m.group(2)) if m.group(2) else None)
        elif rest.startswith("rejected: "):
            res[path] = ("rejected", rest[len("rejected: "):])
        else:
            res[path] = ("validator-output", line[:300])
    for p in paths:
        if p not in res:
            res[p] = ("validator-output", "no line for this file (exit %d): %s" % (
                out.returncode, out.stderr.decode("utf-8", "replace")[:200]))
    return res


def supports_bounds(binary, tmp):
    p = os.path.join(tmp, "probe.pkl")
    with open(p, "wb") as f:
        f.write(b"\x80\x04N.")
    out = subprocess.run([binary, "check", "--bounds", p], capture_output=True)
    return out.returncode == 0 and LINE_OK.match(out.stdout.decode().strip().partition(": ")[2]) is not None


# =============================================================================================
# The pool of sandboxed loaders.
# =============================================================================================

class Worker:
    def __init__(self, python, tag, args):
        self.python, self.tag, self.args = python, tag, args
        self.proc = None
        self.buf = b""
        self.version = None

    def start(self):
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   PYTHONDONTWRITEBYTECODE="1")
        cmd = [self.python, os.path.abspath(__file__), "--worker", "--worker-mem", str(self.args.worker_mem)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                     stderr=subprocess.DEVNULL)
        self.buf = b""
        msg = self.read(120)
        if not msg or "ready" not in msg:
            raise RuntimeError("worker %s (%s) did not start" % (self.tag, self.python))
        self.version = msg["ready"]

    def read(self, timeout):
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)

    def run(self, req, wall):
        """The worker's result dict, or {"died": ..., "phase": ...} after a crash or a timeout."""
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        self.proc.stdin.write((json.dumps(req) + "\n").encode())
        self.proc.stdin.flush()
        phase = "start"
        deadline = time.monotonic() + wall
        while True:
            msg = self.read(max(0.1, deadline - time.monotonic()))
            if msg == "timeout":
                self.kill()
                return {"died": "wall-clock timeout (%.0f s)" % wall, "phase": phase, "timeout": True}
            if msg is None:
                code = self.proc.wait()
                self.proc = None
                sig = -code if code < 0 else None
                name = signal.Signals(sig).name if sig else "exit %d" % code
                return {"died": name, "phase": phase, "timeout": sig == signal.SIGXCPU}
            if "phase" in msg:
                phase = msg["phase"]
                deadline = time.monotonic() + wall  # each phase has its own CPU limit too
            elif "result" in msg:
                return msg["result"]

    def kill(self):
        if self.proc is not None:
            try:
                self.proc.kill()
                self.proc.wait()
            except Exception:
                pass
            self.proc = None


class Stats:
    def __init__(self, out, max_saved):
        self.lock = threading.Lock()
        self.mutants = self.accepted = self.passed = self.loaded = self.unloaded = 0
        self.raised = collections.Counter()
        self.divergences = collections.Counter()
        self.saved = collections.Counter()
        self.rejections = collections.Counter()
        self.peak_ratio = []  # (peak / bound) of loads with a bound
        self.top_ratio = (0.0, "")
        self.out = out
        self.max_saved = max_saved
        self.printed = 0
        self.by_tag = collections.Counter()
        self.unreproduced = 0  # deaths that a fresh worker did not repeat (not divergences)

    def divergence(self, kind, detail, mutant):
        with self.lock:
            self.divergences[kind] += 1
            n = self.divergences[kind]
            saved = ""
            if self.saved[kind] < self.max_saved:
                self.saved[kind] += 1
                saved = save(self.out, "%s-%04d" % (kind, n), mutant, kind, detail)
            if n <= self.max_saved:
                print("DIVERGENCE %s: %s%s" % (kind, detail[:300], ("  [" + saved + "]") if saved else ""), flush=True)


def save(out, stem, mutant, kind, detail):
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, stem + ".pkl")
    shutil.copyfile(mutant["pkl"], path)
    for i, b in enumerate(mutant["bufs"]):
        shutil.copyfile(b, os.path.join(out, "%s.buf%d" % (stem, i)))
    with open(os.path.join(out, stem + ".json"), "w") as f:
        json.dump({"kind": kind, "detail": detail, "mutations": mutant["log"],
                   "validator": mutant.get("line"), "loader": mutant.get("tag"),
                   "result": mutant.get("result")}, f, indent=1, default=str)
    return path


def loader_thread(worker, q, stats, args):
    while True:
        m = q.get()
        if m is None:
            worker.kill()
            return
        req = {"pkl": m["pkl"], "bufs": m["bufs"], "alloc": m.get("alloc"), "depth": m.get("depth"),
               "max_array_bytes": args.max_array_bytes, "max_alloc": args.max_alloc,
               "max_depth": args.max_depth}
        size = os.path.getsize(m["pkl"])
        wall = 60 + 30 * (0.5 + 2e-6 * size)  # a safety net: RLIMIT_CPU ends a slow phase first
        try:
            res = worker.run(req, wall)
            if "died" in res:
                # A long-lived worker can die of its history (a CPU limit reached across tasks,
                # memory fragmentation): a death counts only if a fresh worker dies too.
                worker.kill()
                again = worker.run(req, wall)
                if "died" not in again:
                    with stats.lock:
                        stats.unreproduced += 1
                    print("note: %s during %s not reproduced in a fresh worker: %s"
                          % (res["died"], res["phase"], os.path.basename(m["pkl"])), flush=True)
                res = again
        except Exception as e:  # a worker that cannot start: count, re-spawn next time
            res = {"died": "worker error %s" % e, "phase": "start", "timeout": False}
            worker.kill()
        m["result"] = res
        m["tag"] = "%s (numpy %s)" % (worker.tag, worker.version)
        desc = "%s <- %s [%s]" % (os.path.basename(m["pkl"]), " | ".join(m["log"])[:200], m["tag"])
        with stats.lock:
            stats.loaded += 1
            stats.by_tag[worker.tag] += 1
        if "died" in res:
            kind = ("timeout-" if res.get("timeout") else "crash-") + res["phase"]
            stats.divergence(kind, "%s during %s: %s" % (res["died"], res["phase"], desc), m)
        else:
            for kind, detail in res["failures"]:
                stats.divergence(kind, "%s: %s" % (detail, desc), m)
            with stats.lock:
                if res["raised"]:
                    kind, _, what = res["raised"].partition(": ")
                    if kind == "ModuleNotFoundError":  # which module: an import is never harmless
                        kind += " " + what.replace("No module named ", "")
                    stats.raised[kind] += 1
                if not res["failures"]:
                    stats.passed += 1
                if m.get("alloc"):
                    ratio = res["peak"] / m["alloc"]
                    stats.peak_ratio.append(ratio)
                    if ratio > stats.top_ratio[0]:
                        stats.top_ratio = (ratio, "peak %d B, bound %d B: %s" % (res["peak"], m["alloc"], desc))
        for p in [m["pkl"]] + m["bufs"]:
            try:
                os.unlink(p)
            except OSError:
                pass


# =============================================================================================
# Main loop.
# =============================================================================================

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "debug", "dmapickle"))
    ap.add_argument("--python-np1", default=None, help="also load a share of mutants with this Python (numpy 1.26)")
    ap.add_argument("--np1-share", type=float, default=0.25)
    ap.add_argument("--out", default="/tmp/diff-out")
    ap.add_argument("--batch", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2, help="loaders with this Python (numpy 2.x)")
    ap.add_argument("--worker-mem", type=int, default=3 << 30, help="RLIMIT_AS of a loader (bytes)")
    ap.add_argument("--max-array-bytes", type=int, default=MAX_ARRAY_BYTES,
                    help="logical array size limit (the validator's default; pass the same --check-arg)")
    ap.add_argument("--max-alloc", type=int, default=256 << 20,
                    help="allocation budget, compared with the peak when the validator gives no bound")
    ap.add_argument("--max-depth", type=int, default=100,
                    help="depth limit, compared with the value's depth when the validator gives none")
    ap.add_argument("--large-share", type=float, default=0.03, help="share of mutants from seeds > 64 KiB")
    ap.add_argument("--check-arg", action="append", default=[], help="extra argument for `dmapickle check`")
    ap.add_argument("--max-saved", type=int, default=20, help="mutants saved (and printed) per kind")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker_main(args)
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(args.seed)
    started = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="dmapickle-diff-")
    try:
        return run(args, rng, tmp, started)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def put(q, item, until):
    """Queue an item for the loaders, waiting for room until `until` (monotonic)."""
    while True:
        try:
            q.put(item, timeout=1)
            return True
        except queue.Full:
            if time.monotonic() > until:
                return False


def run(args, rng, tmp, started):
    import numpy as np
    if not os.access(args.bin, os.X_OK):
        print("no validator binary at %s" % args.bin)
        return 2
    bounds = supports_bounds(args.bin, tmp)
    seeds = seeds_from_vectors(rng) + constructed_seeds() + seeds_from_hostile()
    for s in seeds:
        if len(s.data) <= 64 << 10:
            s.offs  # parse the small ones now (the large ones when first picked)
    stats = Stats(args.out, args.max_saved)
    print("differential: seed %d, %d seeds, validator %s%s, numpy %s%s, %.0f s" % (
        args.seed, len(seeds), args.bin, "" if bounds else " (no --bounds: allocation and depth not compared)",
        np.__version__, ", np1 " + args.python_np1 if args.python_np1 else "", args.seconds), flush=True)
    # short queues: the checker runs at most a batch ahead of the loaders, so the run ends soon
    # after --seconds
    q2 = queue.Queue(maxsize=8 * args.workers)
    q1 = queue.Queue(maxsize=8)
    threads = []
    for i in range(args.workers):
        threads.append(threading.Thread(target=loader_thread, daemon=True,
                                        args=(Worker(sys.executable, "np2-%d" % i, args), q2, stats, args)))
    if args.python_np1:
        threads.append(threading.Thread(target=loader_thread, daemon=True,
                                        args=(Worker(args.python_np1, "np1", args), q1, stats, args)))
    for t in threads:
        t.start()
    mut = Mutator(rng, seeds)
    mut.large_share = args.large_share
    seen = set()
    deadline = started + args.seconds
    # first every seed as it is (the constructed and hostile ones are targeted cases), then mutants
    probes = iter([(s.data, s.bufs, [s.name, "unmutated"]) for s in seeds])
    batch_no = 0
    next_report = started + 60
    while time.monotonic() < deadline:
        if time.monotonic() >= next_report:
            next_report += 60
            print("  %.0f s: %d mutants, %d accepted, %d loaded, %d divergences" % (
                time.monotonic() - started, stats.mutants, stats.accepted, stats.loaded,
                sum(stats.divergences.values())), flush=True)
        d = os.path.join(tmp, "b%05d" % batch_no)
        os.makedirs(d)
        batch = []
        total = 0
        while len(batch) < args.batch and total < 64 << 20:
            item = next(probes, None)
            data, bufs, log = item if item is not None else mut.mutant()
            key = hashlib.blake2b(data + b"".join(hashlib.blake2b(b).digest() for b in bufs)).digest()
            if key in seen:
                continue
            seen.add(key)
            stem = os.path.join(d, "m%05d_%04d" % (batch_no, len(batch)))
            with open(stem + ".pkl", "wb") as f:
                f.write(data)
            bpaths = []
            for i, b in enumerate(bufs):
                bpaths.append("%s.buf%d" % (stem, i))
                with open(bpaths[-1], "wb") as f:
                    f.write(b)
            batch.append({"pkl": stem + ".pkl", "bufs": bpaths, "log": log})
            total += len(data)
        res = run_check(args.bin, [m["pkl"] for m in batch], args.check_arg, bounds, 60 + total / 1e6)
        stats.mutants += len(batch)
        for m in batch:
            r = res[m["pkl"]]
            m["line"] = r
            if r[0] == "ok":
                stats.accepted += 1
                m["depth"], m["alloc"] = r[1], r[2]
                use_np1 = args.python_np1 and rng.random() < args.np1_share
                if not put(q1 if use_np1 else q2, m, deadline):
                    stats.unloaded += 1
                continue
            if r[0] == "rejected":
                stats.rejections[r[1].split(": ", 1)[-1][:60]] += 1
            else:
                stats.divergence(r[0], "%s: %s <- %s" % (r[1], os.path.basename(m["pkl"]), " | ".join(m["log"])[:200]), m)
            for p in [m["pkl"]] + m["bufs"]:
                os.unlink(p)
        batch_no += 1
    for _ in range(args.workers):
        q2.put(None)
    if args.python_np1:
        q1.put(None)
    for t in threads:
        t.join(timeout=300)
    elapsed = time.monotonic() - started
    print("loaded %d accepted mutants (%d not loaded: the run ended) (%s) in %.0f s; %d raised in pickle.loads (safe): %s" % (
        stats.loaded, stats.unloaded, ", ".join("%s %d" % kv for kv in sorted(stats.by_tag.items())), elapsed,
        sum(stats.raised.values()), ", ".join("%s %d" % kv for kv in stats.raised.most_common(6))))
    if stats.peak_ratio:
        r = sorted(stats.peak_ratio)
        print("tracemalloc peak / validator bound: median %.3f, max %.4f over %d loads (max: %s)" % (
            r[len(r) // 2], r[-1], len(r), stats.top_ratio[1][:200]))
    print("most common rejections: " + "; ".join("%s %d" % kv for kv in stats.rejections.most_common(5)))
    if stats.unreproduced:
        print("%d worker deaths not reproduced in a fresh worker (not counted)" % stats.unreproduced)
    ndiv = sum(stats.divergences.values())
    if ndiv:
        print("divergences by kind: " + ", ".join("%s %d" % kv for kv in stats.divergences.most_common())
              + "; mutants saved in " + args.out)
    print("differential: %d mutants, %d accepted, %d divergences" % (stats.mutants, stats.accepted, ndiv))
    print("%d passed, %d failed" % (stats.passed, ndiv))
    return 1 if ndiv else 0


if __name__ == "__main__":
    sys.exit(main())

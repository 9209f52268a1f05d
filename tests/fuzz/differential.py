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
  collisions-above-limit  more keys of one dict/set/frozenset under one CPython hash() than
                      --max-collisions (bools and ints that hash to themselves not counted,
                      and one of them allowed per hash)
  validator-crash, validator-timeout, validator-output   `dmapickle check` itself misbehaved
An exception raised by pickle.loads (e.g. numpy refusing an argument) is safe: counted, listed,
not a divergence.

usage: differential.py [--seconds S] [--seed N] [--bin PATH] [--python-np1 PATH] [--out DIR]
Ends with `differential: N mutants, N accepted, N divergences` and `N passed, N failed`
(passed: accepted mutants that loaded safely; failed: divergences). Exit 1 on any divergence.
"""
import argparse
import collections
import copy
import gc
import hashlib
import json
import math
import os
import pickle
import queue
import random
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from corpus import (  # seeds, mutations and the allowlist they aim at
    ALLOWED_GLOBALS, PYTHON2_MODULES, Mutator, constructed_seeds, seeds_from_hostile,
    seeds_from_vectors,
)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# dtype kind -> allowed item sizes (bool, int/uint 1-8, float16/32/64, complex64/128)
ALLOWED_DTYPES = {"b": {1}, "i": {1, 2, 4, 8}, "u": {1, 2, 4, 8}, "f": {2, 4, 8}, "c": {8, 16}}
MAX_ARRAY_BYTES = 1 << 30


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
        if t not in allowed and not allowed_scalar(x, np):
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
        if id(x) in hashed or (type(x) not in (tuple, frozenset, int, float, complex, str, bytes)
                               and not isinstance(x, np.generic)):
            continue
        hashed.add(id(x))
        try:
            hash(x)
        except TypeError:  # a tuple holding a list: its other items are still hashable
            if type(x) is tuple:
                targets.extend(x)
        except RecursionError:
            pass
    emit({"phase": "collisions"})
    limit_cpu(budget)
    limit = req.get("max_collisions")
    for x in order if limit is not None else ():
        if type(x) in (dict, set, frozenset):
            worst = colliding_keys(x, np)
            if worst > limit + 1:
                fail("collisions-above-limit", "%s with %d keys of one hash, over the %d limit"
                     % (type(x).__name__, worst, limit))
                break
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


def colliding_keys(container, np):
    """The largest number of keys of `container` that share one CPython hash, counting at most
    one of the bools and ints that hash to themselves (distinct ones never collide) in each."""
    counted = collections.Counter()
    unique = set()
    for k in container:
        try:
            h = hash(k)
        except Exception:
            continue
        if isinstance(k, (bool, int, np.bool_, np.integer)) and abs(int(k)) < 2**61 - 2 and int(k) not in (-1, -2):
            unique.add(h)
        else:
            counted[h] += 1
    return max((c + (h in unique) for h, c in counted.items()), default=0)


def allowed_scalar(x, np):
    """A numpy scalar (np.float64, np.int32, ...) of an allowed dtype."""
    if not isinstance(x, np.generic):
        return False
    dt = x.dtype
    return dt.fields is None and not dt.hasobject and dt.itemsize in ALLOWED_DTYPES.get(dt.kind, ())


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
               "max_depth": args.max_depth, "max_collisions": args.max_collisions}
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
    ap.add_argument("--max-collisions", type=int, default=32,
                    help="collision limit, compared with the CPython hash classes of every dict and set")
    ap.add_argument("--large-share", type=float, default=0.03, help="share of mutants from seeds > 64 KiB")
    ap.add_argument("--check-arg", action="append", default=[], help="extra argument for `dmapickle check`")
    ap.add_argument("--seeds", default=None, metavar="REGEX",
                    help="only the seeds whose name matches (e.g. '^built_record' with --check-arg=--profile"
                         " --check-arg=strict: the strict profile's flat records)")
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
    if args.seeds:
        seeds = [s for s in seeds if re.search(args.seeds, s.name)]
        if not seeds:
            print("no seed matches %r" % args.seeds)
            return 2
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

"""The direct build (host/src/python/direct.rs) against CPython's own `pickle.loads`: every
pickle here is loaded by a loader that builds directly and by one that always unpickles, and
the two results must be the same objects in every observable way (types, values, key order,
shared references, arrays' dtype, shape, strides, flags and the very memory they view), or
both loads must raise the same error. The counters show which pickles the direct build took,
so a direct build that silently fell back to the unpickler everywhere fails here."""

from __future__ import annotations

import math
import pickle
import random
import struct

import numpy as np
import pytest

import dmapickle
from conftest import expected_adc


def loaders(allowed=None):
    allowed = dmapickle.ALLOWED_GLOBALS["general"] if allowed is None else allowed
    three = dmapickle._protocol3(allowed)
    made = []
    for direct in (True, False):
        made.append(dmapickle._native.Loader(
            allowed, dmapickle._unpickler(allowed), three, dmapickle._unpickler(three),
            direct=direct))
    assert made[0].direct and not made[1].direct
    return made


def same(a, b, pairs=None, in_band=False):
    """`a` and `b` alike in type, value and sharing (an object met twice in `a` is met twice
    in `b`, as the same object); arrays view the same memory unless `in_band` (each load then
    copies them out of the pickle)."""
    pairs = {} if pairs is None else pairs
    if type(a) in (str, bytes, int, float, bool, complex, type(None)):
        # Immutable atoms: equal is the same value. (The direct build hands out one str object
        # for equal short strings where CPython makes a new one per opcode; nothing but `is`
        # tells them apart.)
        assert type(a) is type(b), (type(a), type(b))
        if isinstance(a, float):
            assert struct.pack("<d", a) == struct.pack("<d", b), (a, b)
        elif isinstance(a, complex):
            assert struct.pack("<dd", a.real, a.imag) == struct.pack("<dd", b.real, b.imag)
        else:
            assert a == b, (a, b)
        return
    if id(a) in pairs:
        assert pairs[id(a)] is b, "sharing differs"
        return
    pairs[id(a)] = b
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, float):
        assert struct.pack("<d", a) == struct.pack("<d", b), (a, b)
    elif isinstance(a, dict):
        assert len(a) == len(b)
        for (ka, va), (kb, vb) in zip(a.items(), b.items()):  # in order, keys like values
            same(ka, kb, pairs, in_band)
            same(va, vb, pairs, in_band)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            same(x, y, pairs, in_band)
    elif isinstance(a, np.ndarray):
        assert (a.dtype, a.shape, a.strides) == (b.dtype, b.shape, b.strides)
        assert a.flags == b.flags
        if not in_band:
            assert a.__array_interface__["data"] == b.__array_interface__["data"], "other memory"
        assert type(a.base) is type(b.base)
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, np.generic):
        assert (type(a), a.dtype, a.tobytes()) == (type(b), b.dtype, b.tobytes()), (a, b)
    elif isinstance(a, memoryview):
        assert (a.readonly, a.format, a.shape, a.obj) == (b.readonly, b.format, b.shape, b.obj)
    elif isinstance(a, complex):
        assert struct.pack("<dd", a.real, a.imag) == struct.pack("<dd", b.real, b.imag)
    elif isinstance(a, (set, frozenset)):
        # Unordered: equal as sets of values (floats by their bits, so NaN matches NaN).
        def key(x):
            return struct.pack("<d", x) if isinstance(x, float) else (type(x), x)
        assert sorted(map(repr, map(key, a))) == sorted(map(repr, map(key, b))), (a, b)
    else:
        assert a == b, (type(a), a, b)


def both(p, buffers=(), allowed=None, expect_direct=None, in_band=False):
    """Loads `p` both ways; returns `(kind, result or exception, whether it was built
    directly)`."""
    fast, slow = loaders(allowed)
    outcomes = []
    for loader in (fast, slow):
        try:
            outcomes.append(("ok", loader.load(p, list(buffers))))
        except Exception as e:  # noqa: BLE001 - the error itself is compared
            outcomes.append(("error", e))
    (kind_a, a), (kind_b, b) = outcomes
    assert kind_a == kind_b, (p, outcomes)
    if kind_a == "ok":
        same(a, b, in_band=in_band)
    else:
        assert (type(a), str(a)) == (type(b), str(b))
    if expect_direct is not None:
        assert fast.direct_builds == int(expect_direct), p
    assert slow.direct_builds == 0
    return (*outcomes[0], fast.direct_builds == 1)


SCALARS = [0, 1, 255, 256, 65535, 65536, -1, -2**31, 2**31 - 1, 2**31, 2**63 - 1, -2**63,
           1.5, -0.0, math.inf, -math.inf, math.nan, True, False, None, "", "seq",
           "\u00e9\u4e2d\U0001f600", "\ud800", b"", b"\x00\xff" * 200, "x" * 300]


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_cpython_pickles_of_plain_data(protocol):
    shared = [1, 2]
    for obj in SCALARS + [
        {"seq": 7, "t_us": 123456, "temp": 21.5, "name": "adc0"},
        [1, [2, [3, []]], (), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)],
        {"a": shared, "b": shared, "c": (shared, shared)},
        {(1, 2): "tuple key", 3: {"nested": {"deeper": [None]}}},
        list(range(2000)),
        {str(i): i for i in range(1500)},
    ]:
        p = pickle.dumps(obj, protocol=protocol)
        kind, got, built = both(p)
        # Protocol 2 writes bytes as `_codecs.encode` through GLOBAL: the unpickler's.
        assert kind == "ok" and (built or protocol == 2 and isinstance(obj, bytes)), obj
        same(got, pickle.loads(p))


def test_the_encoders_messages_are_built_directly(start_device, tmp_path):
    rec = tmp_path / "msgs.rec"
    start_device("--to", f"file:{rec}", "--count", "50", "--rows", "8").wait()
    n = 0
    with dmapickle.open(str(rec)) as stream:
        for msg in stream:
            fast, slow = loaders()
            a = fast.load(msg.pickle, list(msg.buffers))
            b = slow.load(msg.pickle, list(msg.buffers))
            same(a, b)
            assert (fast.direct_builds, slow.direct_builds) == (1, 0)
            np.testing.assert_array_equal(a["adc"], expected_adc(a["seq"], 8))
            # Zero-copy both ways: the array views the message's received buffer.
            view = np.frombuffer(msg.buffers[0], dtype=np.uint8)
            assert a["adc"].__array_interface__["data"][0] == view.__array_interface__["data"][0]
            n += 1
    assert n == 50


def test_a_stream_builds_its_messages_directly(start_device, tmp_path):
    rec = tmp_path / "msgs.rec"
    start_device("--to", f"file:{rec}", "--count", "20", "--rows", "4").wait()
    loader = dmapickle._loader(dmapickle.ALLOWED_GLOBALS["general"])
    before = (loader.loads, loader.direct_builds)
    with dmapickle.open(str(rec)) as stream:
        seqs = [msg.load()["seq"] for msg in stream]
    assert seqs == list(range(20))
    assert (loader.loads - before[0], loader.direct_builds - before[1]) == (20, 20)


@pytest.mark.parametrize("protocol", [5])
def test_numpy_arrays_out_of_band_and_in_band(protocol):
    arrays = [np.arange(12, dtype="<i2").reshape(3, 4), np.zeros((2, 3), dtype=">f8"),
              np.asfortranarray(np.arange(6.0).reshape(2, 3)), np.array([1 + 2j, 3 - 4j]),
              np.arange(5, dtype=np.uint8)[::2]]
    for arr in arrays:
        for readonly in (False, True):
            bufs = []
            src = arr.copy(order="A")
            if readonly:
                src.flags.writeable = False
            p = pickle.dumps(src, protocol=protocol, buffer_callback=bufs.append)
            raw = [bytearray(b.raw()) if not readonly else bytes(b.raw()) for b in bufs]
            for given in (raw, [memoryview(b) for b in raw]):
                kind, got, built = both(p, given)
                assert kind == "ok" and built, (arr, readonly)
                np.testing.assert_array_equal(got, arr)
        # In band: numpy's own reconstruction (`_reconstruct`, then BUILD's `__setstate__`).
        kind, got, built = both(pickle.dumps(arr, protocol=protocol), in_band=True)
        assert kind == "ok" and built
        np.testing.assert_array_equal(got, arr)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_scalars_load_alike_both_ways(protocol):
    """numpy scalars (`a.mean()`, `np.int64(n)`), as values and keys: the validator accepts
    them, and the direct build makes the same scalars as the unpickler."""
    a = np.arange(12, dtype="f8").reshape(3, 4)
    values = [np.bool_(True), np.int8(-1), np.uint64(2**64 - 1), np.float16(0.5), np.float32(-1.25),
              np.float64(math.nan), np.complex64(1 - 2j), np.complex128(complex(math.inf, -0.0))]
    for obj in values + [values, {"mean": a.mean(), "n": np.int64(a.size), "adc": a},
                         {np.int32(i): np.float64(i) for i in range(4)}]:
        p = pickle.dumps(obj, protocol=protocol)
        assert dmapickle.check(p), obj
        kind, got, built = both(p, in_band=True)
        assert kind == "ok", (obj, got)
        same(got, pickle.loads(p), in_band=True)


def test_readonly_buffers_are_read_only_views():
    rw = bytearray(b"abcd")
    p = pickle.dumps(pickle.PickleBuffer(b"abcd"), protocol=5, buffer_callback=lambda b: False)
    assert b"\x98" in p  # READONLY_BUFFER
    for given in (rw, memoryview(rw), b"abcd", memoryview(b"abcd")):
        kind, got, _ = both(p, [given], expect_direct=True)
        # A read-only buffer is kept as given (`bytes` stays `bytes`), a writable one becomes a
        # read-only memoryview of it.
        assert kind == "ok" and (got is given if isinstance(given, bytes)
                                 or isinstance(given, memoryview) and given.readonly
                                 else isinstance(got, memoryview) and got.readonly and got.obj is rw)


# Hand-made pickles on the edges of what `_pickle.c` accepts: each loads (or fails) the same
# both ways; `direct` says whether the direct build takes it.
EDGES = [
    (b"\x80\x05K\x01.", True),
    (b"\x80\x05\x8a\x00.", True),  # LONG1 of no bytes: 0
    (b"\x80\x05\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7f.", True),
    (b"\x80\x05\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01.", False),  # past 8 bytes
    (b"\x80\x05(K\x01K\x02t.", True),
    (b"\x80\x05}(K\x01u.", False),  # SETITEMS, odd count: pickle's own error
    (b"\x80\x05h\x05.", False),  # BINGET of a memo entry never set
    (b"\x80\x05K\x01\x94K\x02\x94h\x00h\x01\x86.", True),
    (b"\x80\x05K\x01q\x09K\x02\x94h\x01.", True),  # MEMOIZE after BINPUT 9: index 1
    (b"\x80\x05(K\x01.", False),  # STOP with a mark left
    (b"\x80\x05(\x85.", False),  # TUPLE1 below the fence: underflow
    (b"\x80\x05}(u.", True),
    (b"\x80\x05](K\x01K\x02e.", True),
    (b"\x80\x05K\x01K\x02s.", False),  # SETITEM on an int
    (b"\x80\x05\x95\xff\x00\x00\x00\x00\x00\x00\x00K\x01.", False),  # FRAME past the end
    (b"\x80\x05\x8c\x08builtins\x8c\x07complex\x93G?\xf0\x00\x00\x00\x00\x00\x00G@\x00\x00\x00\x00\x00\x00\x00\x86R.", True),
    (b"\x80\x05\x8c\x08builtins\x8c\x07complex\x93K\x01R.", False),  # REDUCE needs a tuple
    (b"\x80\x05\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R.", False),  # outside the allowlist
    (b"\x80\x05\x97.", False),  # NEXT_BUFFER with none given
    (b"\x80\x05K\x01K\x02\x81.", False),  # NEWOBJ on an int
    (b"\x80\x02c__builtin__\nset\n)R.", False),  # GLOBAL: the unpickler's
    (b"\x80\x05X\x02\x00\x00\x00\xc3\xa9.", True),
    (b"\x80\x05\x8c\x01\xff.", False),  # not UTF-8: pickle's own error
    (b"\x80\x05C\x03abc\x94.", True),
    (b"\x80\x05N\x88\x89\x87.", True),
    (b"\x80\x06N.", False),  # a protocol above CPython's highest: pickle's own ValueError
    (b"\x80\x02N.", True),
    (b"\x80\x05N\x80\x05.", False),  # a second PROTO
]


@pytest.mark.parametrize("p,direct", EDGES, ids=[str(i) for i in range(len(EDGES))])
def test_edges_of_the_opcode_set(p, direct):
    both(p, expect_direct=direct)


def test_globals_resolve_once_through_find_class_and_only_if_allowed():
    fast, _ = loaders()
    p = pickle.dumps(complex(1, 2), protocol=5)
    for _ in range(3):
        assert fast.load(p, []) == complex(1, 2)
    assert fast.direct_builds == 3
    evil = b"\x80\x05\x8c\x02os\x8c\x06system\x93\x8c\x04true\x85R."
    with pytest.raises(pickle.UnpicklingError, match="not allowed|allowlist|forbidden"):
        fast.load(evil, [])
    assert fast.direct_builds == 3


def _mutants(seed_pickles, n, rng):
    for _ in range(n):
        p = bytearray(rng.choice(seed_pickles))
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(2, len(p))
            choice = rng.random()
            if choice < 0.5:
                p[i] = rng.randrange(256)
            elif choice < 0.75:
                del p[i]
            else:
                p.insert(i, rng.randrange(256))
        yield bytes(p)


def test_mutants_the_validator_accepts_load_alike():
    """Random mutants of CPython's and the encoder's pickles; those the validator accepts (what
    a stream delivers) load alike both ways."""
    rng = random.Random(20261202)
    seeds = [pickle.dumps(o, protocol=pr) for o in SCALARS[:12] + [
        {"seq": 7, "t_us": 1234567, "v": [1.5, 2.5], "s": ("a", "b")},
        {"a": [1, 2], "b": {"c": None, "d": True}},
    ] for pr in (4, 5)]
    seeds.append(b"\x80\x05\x95\x00\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x03seq\x94K\x07\x8c\x04t_us\x94J"
                 b"\x10'\x00\x00\x8c\x03adc\x94\x8c\x05numpy\x8c\x07ndarray\x93\x94(K\x02K\x04\x86\x8c"
                 b"\x03<i2\x97K\x00N\x8c\x01Ct\x81u.")
    accepted = direct = 0
    for p in _mutants(seeds, 4000, rng):
        nbuf = p.count(b"\x97")
        bufs = [bytearray(16) for _ in range(nbuf)]
        try:
            dmapickle.check(p, [bytes(b) for b in bufs])
        except (dmapickle.RejectedError, ValueError):
            continue
        accepted += 1
        _, _, built = both(p, bufs)
        direct += built
    assert accepted > 200 and direct > 100, (accepted, direct)


def test_the_fuzzers_accepted_mutants_load_alike():
    """The differential fuzzer's own seeds (CPython and numpy pickles of every kind, encoder
    messages, constructed and hostile pickles) and mutations (tests/fuzz/corpus.py): every
    mutant the validator accepts loads alike both ways, for DMAPICKLE_DIRECT_FUZZ_SECONDS (20 s
    by default; a seed of DMAPICKLE_FUZZ_SEED, default 1)."""
    import os
    import sys
    import time

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "fuzz"))
    import corpus

    seconds = float(os.environ.get("DMAPICKLE_DIRECT_FUZZ_SECONDS", "20"))
    rng = random.Random(int(os.environ.get("DMAPICKLE_FUZZ_SEED", "1")))
    seeds = corpus.seeds_from_vectors(rng) + corpus.constructed_seeds() + corpus.seeds_from_hostile()
    mut = corpus.Mutator(rng, seeds)
    fast, slow = loaders()
    probes = [(s.data, list(s.bufs)) for s in seeds if len(s.data) <= 64 << 10]
    tried = accepted = built = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end or probes:
        data, bufs, *_ = probes.pop() if probes else mut.mutant()
        tried += 1
        try:
            dmapickle.check(data, [bytes(b) for b in bufs])
        except (dmapickle.RejectedError, ValueError):
            continue
        accepted += 1
        outcomes = []
        for loader in (fast, slow):
            given = [bytearray(b) for b in bufs]
            before = fast.direct_builds
            try:
                outcomes.append(("ok", loader.load(data, given), given))
            except Exception as e:  # noqa: BLE001 - the error itself is compared
                outcomes.append(("error", e, given))
            if loader is fast:
                built += fast.direct_builds - before
        (ka, a, _), (kb, b, _) = outcomes
        assert ka == kb, (data, outcomes)
        if ka == "ok":
            # Each load got its own copies of the buffers: compare values, not addresses.
            same(a, b, in_band=True)
        else:
            assert (type(a), str(a)) == (type(b), str(b)), data
    print(f"\ndirect build: {tried} pickles, {accepted} accepted, {built} built directly, "
          f"all alike ({seconds:.0f} s)")
    assert slow.direct_builds == 0 and accepted > 100 and built > accepted // 4, (accepted, built)


def test_the_direct_build_can_be_turned_off():
    import os
    import subprocess
    import sys

    code = ("import dmapickle, pickle; l = dmapickle._loader(dmapickle.ALLOWED_GLOBALS['general']); "
            "assert l.load(pickle.dumps({'a': 1}, protocol=5), []) == {'a': 1}; "
            "print(l.direct, l.direct_builds, l.loads)")
    for value, expect in (("0", "False 0 1"), ("1", "True 1 1")):
        env = dict(os.environ, DMAPICKLE_DIRECT_LOAD=value)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             check=True).stdout.split()
        assert " ".join(out) == expect, (value, out)


def test_threads_share_a_loader_and_exit_cleanly():
    """Eight threads build through one loader (each with its own string cache), end, and the
    process exits with status 0: the caches' str objects are released without the GIL too."""
    import subprocess
    import sys

    code = """if True:
        import threading, pickle, dmapickle
        loader = dmapickle._loader(dmapickle.ALLOWED_GLOBALS["general"])
        p = pickle.dumps({"seq": 1, "name": "abc", "z": complex(1, 2)}, protocol=5)
        def work():
            for _ in range(200):
                assert loader.load(p, []) == {"seq": 1, "name": "abc", "z": complex(1, 2)}
        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
        work()
        print(loader.direct_builds)
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout.split(), out.stderr) == (0, ["1800"], "")

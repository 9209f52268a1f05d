"""Hostile messages never reach pickle: the Rust validator refuses them before Python sees a
byte, and the RestrictedUnpickler refuses any global outside the allowlist on its own."""

from __future__ import annotations

import io
import os
import pickle
import sys

import numpy as np
import pytest

import dmapickle
from conftest import expected_adc

OS_SYSTEM = b"\x80\x05\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R."
SYNC = b"\xf1\x50\x4b\x05"


#: Every `(module, name)` any unpickler in this process looked up while `_RECORDING` is set:
#: CPython raises the audit event `pickle.find_class` in every find_class (C and Python
#: unpicklers, dmapickle's guarded `pickle.loads` and its restricted Unpickler alike), before
#: any import. Audit hooks cannot be removed, so this one only records when asked to.
_FIND_CLASS: list = []
_RECORDING = [False]


def _record_find_class(event, args):
    if _RECORDING[0] and event == "pickle.find_class":
        _FIND_CLASS.append(tuple(args))


sys.addaudithook(_record_find_class)


class _Seen:
    """Live counts for a test: `loads` (pickles given to an unpickler by any dmapickle loader
    since the test started) and `globals` (every global any unpickler looked up)."""

    def __init__(self, loaders):
        self._loaders = loaders
        self._base = {id(l): l.loads for l in loaders()}

    def __getitem__(self, key):
        if key == "loads":
            return sum(l.loads - self._base.get(id(l), 0) for l in self._loaders())
        if key == "globals":
            return list(_FIND_CLASS)
        raise KeyError(key)


@pytest.fixture(params=["guard", "unpickler"])
def instrumented(request, monkeypatch):
    """Count every load of a delivered pickle and record every global looked up, with each of
    the two second lines of defence: `pickle.loads` under dmapickle's audit guard (the default)
    and the per-message restricted Unpickler (where the guard is unavailable)."""
    made = []
    if request.param == "unpickler":
        def loader(allowed):
            cls = dmapickle._unpickler(allowed)
            # Every lookup through find_class's import path (and its audit event), not the
            # cache of globals already resolved (tested on its own below).
            monkeypatch.setattr(cls, "_resolved", None)
            made.append(dmapickle._native.Loader(allowed, cls, guard=False))
            assert not made[-1].guarded
            return made[-1]

        monkeypatch.setattr(dmapickle, "_loader", loader)
    else:
        assert dmapickle._native.audit_guard()
    seen = _Seen(lambda: list(dmapickle._LOADERS.values()) + made)
    _FIND_CLASS.clear()
    _RECORDING[0] = True
    yield seen
    _RECORDING[0] = False
    _FIND_CLASS.clear()


def test_hostile_frames_are_refused_before_python(start_device, tmp_path, instrumented):
    rec = tmp_path / "hostile.rec"
    # After every 2nd message: os.system('id'), or an object-dtype array over raw bytes.
    start_device("--to", f"file:{rec}", "--count", "20", "--rows", "8", "--hostile-every", "2").wait()
    seqs = []
    with dmapickle.open(str(rec)) as stream:
        for msg in stream:
            obj = msg.load()
            seqs.append(obj["seq"])
            np.testing.assert_array_equal(obj["adc"], expected_adc(obj["seq"], 8))
        stats = stream.stats
    assert seqs == list(range(20))
    assert stats["refused"] == 10 and stats["frames_ok"] == 20
    assert "refused" in stats["last_refused"]
    # Only the 20 benign pickles were loaded, and nothing in the process looked up any global
    # but numpy.ndarray: the loader's direct build resolves it through find_class once (or
    # found it resolved by an earlier test) and builds every message without an unpickler.
    assert instrumented["loads"] == 20
    assert instrumented["globals"] in ([], [("numpy", "ndarray")])


def test_loads_refuses_a_hostile_frame_with_the_reason(start_device, tmp_path, instrumented):
    rec = tmp_path / "one.rec"
    start_device("--to", f"file:{rec}", "--count", "1", "--rows", "4", "--hostile-every", "1").wait()
    data = rec.read_bytes()
    second = data.index(SYNC, 1)
    good, evil = data[:second], data[second:]
    assert dmapickle.loads(good)["seq"] == 0
    with pytest.raises(dmapickle.RejectedError, match="allowlist"):
        dmapickle.loads(evil)
    assert instrumented["loads"] == 1 and instrumented["globals"] in ([], [("numpy", "ndarray")])


def test_check_api():
    summary = dmapickle.check(pickle.dumps({"seq": 7}, protocol=5))
    assert summary == "dict{seq:int}"
    arr = np.arange(12, dtype="<i2").reshape(3, 4)
    bufs = []
    p = pickle.dumps(arr, protocol=5, buffer_callback=bufs.append)
    assert "ndarray" in dmapickle.check(p, [b.raw() for b in bufs])
    with pytest.raises(dmapickle.RejectedError) as e:
        dmapickle.check(OS_SYSTEM)
    assert str(e.value) == "byte 14, STACK_GLOBAL: global not in the allowlist: os.system (to trust it: --allow os:system)"
    assert isinstance(e.value, ValueError)
    with pytest.raises(dmapickle.RejectedError):
        dmapickle.check(p, [])  # buffer count must match
    with pytest.raises(ValueError, match="profile"):
        dmapickle.check(p, profile="lenient")


def _opcode_at(p: bytes, offset: int) -> str:
    """The name pickletools gives the opcode at ``offset`` (it must start one)."""
    import pickletools

    names = {pos: op.name for op, _, pos in pickletools.genops(p)}
    assert offset in names, f"{offset} is not an opcode offset of pickletools.dis"
    return names[offset]


def test_rejected_error_says_where_and_why_as_data(start_device, tmp_path):
    # A refused global: STACK_GLOBAL at byte 14 (pickletools.dis: `14: \x93 STACK_GLOBAL`).
    with pytest.raises(dmapickle.RejectedError) as e:
        dmapickle.check(OS_SYSTEM)
    r = e.value
    assert (r.offset, r.opcode, r.reason, r.limit) == (14, "STACK_GLOBAL", "global not in the allowlist", None)
    assert _opcode_at(OS_SYSTEM, r.offset) == r.opcode
    # A bound: the TUPLE1 that makes depth 11 is the 11th, at byte 2 + 10 + 1 - 1 = 13.
    deep = _tuple_chain(11)
    with pytest.raises(dmapickle.RejectedError) as e:
        dmapickle.check(deep, max_depth=10)
    r = e.value
    assert (r.offset, r.opcode, r.limit) == (13, "TUPLE1", "max_depth")
    assert _opcode_at(deep, r.offset) == "TUPLE1"
    assert r.reason == "nesting depth 11 exceeds the limit 10 (--max-depth)"
    bomb = b"\x80\x05]" + b"\x8fa" * 10_000 + b"."
    with pytest.raises(dmapickle.RejectedError) as e:
        dmapickle.check(bomb, max_alloc=1 << 20)
    assert e.value.limit == "max_alloc" and _opcode_at(bomb, e.value.offset) == e.value.opcode
    # Through a frame: the offset is the pickle's, not the stream's.
    rec = tmp_path / "one.rec"
    start_device("--to", f"file:{rec}", "--count", "1", "--rows", "4", "--hostile-every", "1").wait()
    data = rec.read_bytes()
    evil = data[data.index(SYNC, 1):]
    with pytest.raises(dmapickle.RejectedError) as e:
        dmapickle.read_frame(evil)
    r = e.value
    assert r.reason == "global not in the allowlist" and r.limit is None
    assert r.opcode in ("STACK_GLOBAL", "GLOBAL")
    # A frame refused before validation has no pickle position: every attribute is None.
    with pytest.raises(dmapickle.RejectedError, match="no intact frame") as e:
        dmapickle.read_frame(b"not a frame")
    assert (e.value.offset, e.value.opcode, e.value.reason, e.value.limit) == (None, None, None, None)
    # What Rust hands the Python side per message is a `dmapickle.Message`, made in Rust.
    loader = dmapickle._loader(dmapickle.ALLOWED_GLOBALS["general"])
    raw = dmapickle._native.read_frame(data[: data.index(SYNC, 1)], [], [], "general", loader)
    msg = dmapickle.read_frame(data)
    assert type(raw) is dmapickle.Message is type(msg)
    assert (raw.seq, raw.pickle, raw.host_ns > 0) == (msg.seq, msg.pickle, True)
    assert [b.nbytes for b in raw.buffers] == [b.nbytes for b in msg.buffers] and raw.shared == msg.shared
    assert repr(msg) == f"<dmapickle.Message seq=0 pickle={len(msg.pickle)} B buffers=[32]>"
    with pytest.raises(AttributeError):
        msg.seq = 5  # read-only, like the frame it came from
    # Old `except ValueError` clauses still catch it; the class has the attributes too.
    assert issubclass(dmapickle.RejectedError, ValueError)
    assert dmapickle.RejectedError("x").offset is None


def test_restricted_unpickler_alone_refuses_globals():
    with pytest.raises(pickle.UnpicklingError, match="os.system"):
        dmapickle.RestrictedUnpickler(
            io.BytesIO(OS_SYSTEM), allowed=dmapickle.ALLOWED_GLOBALS["general"]
        ).load()
    # An extra allowed global is accepted by both lines of defence.
    p = pickle.dumps(complex(1, 2), protocol=5)
    assert dmapickle.check(p, allow=["builtins:complex"]) == "complex"


def _creates(path) -> bytes:
    """A pickle that, if anything ran it, would create ``path``: ``builtins.open(path, 'w')``."""
    p = str(path).encode()
    return b"\x80\x05\x8c\x08builtins\x8c\x04open\x93\x8c" + bytes([len(p)]) + p + b"\x8c\x01w\x86R."


@pytest.mark.parametrize("guard", [True, False])
def test_the_loader_alone_refuses_globals_outside_its_allowlist(tmp_path, guard):
    """The second line of defence without the first: pickles the validator would refuse, given
    straight to the native Loader, are refused before the global is imported or called, both
    through `pickle.loads` under the audit guard and through the restricted Unpickler."""
    general = dmapickle.ALLOWED_GLOBALS["general"]
    loader = dmapickle._native.Loader(general, dmapickle._unpickler(general), guard=guard)
    assert loader.guarded is guard
    target = tmp_path / "created"
    for evil, name in [(_creates(target), "builtins.open"), (OS_SYSTEM, "os.system")]:
        with pytest.raises(pickle.UnpicklingError, match=f"global {name} is not in the dmapickle allowlist"):
            loader.load(evil, [])
    assert not target.exists()
    # Allowed globals and out-of-band buffers load as pickle.loads loads them.
    arr = np.arange(12, dtype="<i2").reshape(3, 4)
    bufs = []
    p = pickle.dumps({"a": arr, "t": (1, 2.5, "x"), "s": {1, 2}}, protocol=5, buffer_callback=bufs.append)
    views = [memoryview(b.raw()) for b in bufs]
    got = loader.load(p, views)
    np.testing.assert_array_equal(got["a"], arr)
    assert (got["t"], got["s"]) == ((1, 2.5, "x"), {1, 2}) and np.shares_memory(got["a"], np.asarray(views[0]))
    # The guard acts only inside a load: afterwards (also after a refusal) pickle is untouched.
    the_int_type = pickle.dumps(int, protocol=5)
    assert pickle.loads(the_int_type) is int
    # An allowlist with one more global lets exactly that one through.
    more = general | {("builtins", "int")}
    extra = dmapickle._native.Loader(more, dmapickle._unpickler(more), guard=guard)
    assert extra.load(the_int_type, []) is int
    with pytest.raises(pickle.UnpicklingError, match="builtins.int is not"):
        loader.load(the_int_type, [])


def test_the_audit_guard_acts_only_on_the_loading_thread():
    """While one thread loads through the guard, another thread's own pickle.loads of a global
    outside dmapickle's allowlist is not refused (the guard is per thread), and the guarded
    loads keep refusing it throughout."""
    import threading

    general = dmapickle.ALLOWED_GLOBALS["general"]
    loader = dmapickle._native.Loader(general, dmapickle._unpickler(general))
    assert loader.guarded
    bufs = []
    benign = pickle.dumps(np.arange(64, dtype="<i2"), protocol=5, buffer_callback=bufs.append)
    views = [memoryview(b.raw()) for b in bufs]
    the_int_type = pickle.dumps(int, protocol=5)
    failures, refused, stop = [], [0], threading.Event()
    sys.setswitchinterval(1e-5)  # switch threads often, also in the middle of loads

    def other():
        try:
            while not stop.is_set():
                assert pickle.loads(the_int_type) is int
        except Exception as e:  # noqa: BLE001 - reported below
            failures.append(e)

    t = threading.Thread(target=other)
    t.start()
    try:
        for i in range(20_000):
            if i % 2:
                assert loader.load(benign, views).shape == (64,)
            else:
                try:
                    loader.load(the_int_type, [])
                except pickle.UnpicklingError:
                    refused[0] += 1
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(0.005)
    assert failures == [] and refused[0] == 10_000


def test_the_audit_guard_can_be_turned_off(tmp_path):
    """`DMAPICKLE_AUDIT_GUARD=0`: no audit hook is installed, and loads go through the restricted
    Unpickler, which refuses the same globals."""
    import subprocess

    code = (
        "import pickle, dmapickle\n"
        "assert dmapickle._native.audit_guard() is False\n"
        "g = dmapickle.ALLOWED_GLOBALS['general']\n"
        "l = dmapickle._loader(g)\n"
        "assert l.guarded is False\n"
        f"try:\n    l.load({OS_SYSTEM!r}, [])\nexcept pickle.UnpicklingError as e:\n    print(e)\n"
    )
    env = dict(os.environ, DMAPICKLE_AUDIT_GUARD="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "global os.system is not in the dmapickle allowlist"


def test_python2_names_are_refused_where_cpython_would_import_them(tmp_path):
    """CPython maps Python 2 module names (`__builtin__`) to Python 3 ones only below protocol
    3. Above, its find_class imports whatever `__builtin__` module sys.path holds: shown here with
    CPython itself, in a child process whose sys.path starts with such a module. The validator
    accepts `__builtin__` names at protocol 2 only."""
    import subprocess

    (tmp_path / "__builtin__.py").write_text(
        "import pathlib\npathlib.Path(__file__).with_name('ran').touch()\nset = set\n"
    )
    p4 = b"\x80\x04\x8c\x0b__builtin__\x8c\x03set\x93]\x85R."
    p2 = b"\x80\x02c__builtin__\nset\n]\x85R."
    code = f"import sys, pickle; sys.path.insert(0, {str(tmp_path)!r}); print(pickle.loads({p4!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "set()" and (tmp_path / "ran").exists()  # the planted module ran
    (tmp_path / "ran").unlink()
    with pytest.raises(dmapickle.RejectedError) as e:
        dmapickle.check(p4)
    assert e.value.reason == "Python 2 module name in a protocol 3+ pickle (CPython would import it)"
    assert (e.value.offset, e.value.opcode) == (20, "STACK_GLOBAL")
    assert dmapickle.check(p2) == "set{}" and pickle.loads(p2) == set()
    # The second line of defence, given the protocol 4 pickle without the validator: refused
    # before the import, by both loaders; the protocol 2 spelling loads.
    general = dmapickle.ALLOWED_GLOBALS["general"]
    sys.path.insert(0, str(tmp_path))
    try:
        for loader in (dmapickle._loader(general), dmapickle._native.Loader(
                general, dmapickle._unpickler(general), dmapickle._protocol3(general),
                dmapickle._unpickler(dmapickle._protocol3(general)), guard=False)):
            with pytest.raises(pickle.UnpicklingError, match="global __builtin__.set is not in"):
                loader.load(p4, [])
            assert loader.load(p2, []) == set()
        assert not (tmp_path / "ran").exists()  # never imported here
        assert "__builtin__" not in sys.modules
    finally:
        sys.path.remove(str(tmp_path))


def test_the_stream_unpickler_caches_only_allowed_globals():
    """Each allowlist's Unpickler class remembers the globals it resolved (a stream's messages
    name the same few): a refused global is never stored, stays refused after allowed ones were
    cached, and a cache never serves a class with another allowlist."""
    strict = dmapickle._unpickler(dmapickle.ALLOWED_GLOBALS["strict"])
    general = dmapickle._unpickler(dmapickle.ALLOWED_GLOBALS["general"])
    arr = np.arange(4, dtype=np.int16)
    p = pickle.dumps(arr, protocol=5)
    for _ in range(2):  # the second load is served from the cache
        assert (general(io.BytesIO(p)).load() == arr).all()
    assert ("numpy", "dtype") in general._resolved
    with pytest.raises(pickle.UnpicklingError, match="os.system"):
        general(io.BytesIO(OS_SYSTEM)).load()
    assert ("os", "system") not in general._resolved and ("posix", "system") not in general._resolved
    # `numpy.dtype` is not in the strict allowlist: general's cache does not make it loadable.
    assert ("numpy", "dtype") not in strict._resolved
    with pytest.raises(pickle.UnpicklingError, match="not in the dmapickle allowlist"):
        strict(io.BytesIO(p)).load()


# --- bounds on what loading costs (issue 10): the same limits as `dmapickle check --max-*` ---


def _tuple_chain(depth: int) -> bytes:
    return b"\x80\x05)" + b"\x85" * depth + b"."


def test_check_bounds_nesting_allocation_collisions_and_arrays():
    assert dmapickle.check(_tuple_chain(100)).startswith("tuple(")
    with pytest.raises(dmapickle.RejectedError, match=r"nesting depth 101 exceeds the limit 100 \(--max-depth\)"):
        dmapickle.check(_tuple_chain(101))
    with pytest.raises(dmapickle.RejectedError, match="nesting depth 11 exceeds the limit 10"):
        dmapickle.check(_tuple_chain(11), max_depth=10)
    # a dict whose int keys all hash to 0 (CPython's hash is value mod 2**61 - 1)
    colliding = pickle.dumps({i * (2**61 - 1): 0 for i in range(1, 40)}, protocol=5)
    with pytest.raises(dmapickle.RejectedError, match="dict/set keys with one hash exceed the limit 32"):
        dmapickle.check(colliding)
    assert dmapickle.check(colliding, max_collisions=64).startswith("dict{")
    assert dmapickle.check(pickle.dumps({i: 0 for i in range(200_000)}, protocol=5)).startswith("dict{")
    bomb = b"\x80\x05]" + b"\x8fa" * 10_000 + b"."
    with pytest.raises(dmapickle.RejectedError, match=r"allocation bound \d+ B exceeds the limit 1048576 B"):
        dmapickle.check(bomb, max_alloc=1 << 20)
    # numpy.ndarray((2**40,), '<i8', buffer, 0, (0,)): 8 TiB logically over 8 bytes
    huge = (
        b"\x80\x05\x8c\x05numpy\x8c\x07ndarray\x93(\x8a\x06\x00\x00\x00\x00\x00\x01\x85"
        b"\x8c\x03<i8\x97K\x00K\x00\x85\x8c\x01Ct\x81."
    )
    with pytest.raises(dmapickle.RejectedError, match="array logical size 8796093022208 B exceeds"):
        dmapickle.check(huge, [8])
    with pytest.raises(TypeError, match="max_depht"):
        dmapickle.check(_tuple_chain(1), max_depht=3)


def _numpy_key_pool():
    """Distinct keys, numpy scalars of every allowed number type among plain numbers, chosen so
    that many share one CPython hash: floats 2**(61k) and ints 1 + k * (2**61 - 1) hash to 1,
    complex(2**(61a), 2**(61b)) to 1000004; plus ordinary sensor values. (No Python int beyond
    64 bits: numpy's == against one raises OverflowError, so CPython cannot build such a dict.)"""
    m = 2**61 - 1
    pool = []
    pool += [np.float64(2.0 ** (61 * k)) for k in range(-16, 17)]
    pool += [np.float32(2.0 ** (61 * k)) for k in (-2, -1, 1, 2)]
    pool += [np.int64(1 + k * m) for k in range(-4, 4)]
    pool += [np.uint64(1 + k * m) for k in range(4, 9)]
    pool += [3.0 * 2.0 ** (61 * k) for k in range(-8, 9)]  # plain floats, hash 3
    pool += [np.complex128(complex(2.0 ** (61 * a), 2.0 ** (61 * b))) for a in range(-3, 4) for b in range(1, 4)]
    pool += [np.complex64(complex(2.0 ** (61 * a), 2.0**61)) for a in (-2, -1, 1, 2)]
    pool += [complex(2.0 ** (61 * a), 2.0 ** (-61)) for a in range(-3, 4)]
    pool += [np.float16(x) for x in (0.5, 3.0, -7.25, 65504.0)]
    pool += [np.int8(-5), np.int16(300), np.int32(-70000), np.uint8(200), np.uint16(60000), np.uint32(4e9)]
    pool += [np.bool_(True), np.float32(20.01), np.float64(-0.0), np.float64("nan"), np.float32("inf")]
    return pool


def _counted(key) -> bool:
    """Whether the validator must count a key: all but bools and ints that hash to themselves
    (two distinct ones never share a hash)."""
    if isinstance(key, (bool, np.bool_, int, np.integer)):
        v = int(key)
        return not (abs(v) < 2**61 - 2 and v not in (-1, -2))
    return True


def _check_collisions_against_cpython(pool, seed, trials):
    """CPython is the oracle: random dicts keyed from `pool`, pickled by CPython with protocols
    2 to 5. The validator must refuse every dict with more than max_collisions counted keys
    under one CPython hash(); with the bytes in the pickle (protocols 3 to 5) it must accept
    every other one. Both outcomes must occur often."""
    import collections
    import random

    rng = random.Random(seed)
    limit = 4
    seen = collections.Counter()
    for trial in range(trials):
        keys = rng.sample(pool, rng.randint(1, 40))
        with np.errstate(over="ignore"):  # np.float32 == a float beyond its range
            d = {k: trial for k in keys}
        protocol = rng.choice((2, 3, 4, 5))
        data = pickle.dumps(d, protocol=protocol)
        classes = collections.Counter(hash(k) for k in d if _counted(k))
        worst = max(classes.values(), default=0)
        try:
            dmapickle.check(data, max_collisions=limit)
            accepted = True
        except dmapickle.RejectedError as e:
            assert "keys with one hash" in str(e), (protocol, d, e)
            accepted = False
        if worst > limit:
            assert not accepted, (protocol, worst, d)
        elif protocol >= 3:
            assert accepted, (protocol, worst, d)
        seen[accepted, worst > limit] += 1
    assert seen[True, False] > 50 and seen[False, True] > 50, seen


def test_numpy_scalar_keys_are_counted_by_their_cpython_hash():
    """numpy scalars hash as the Python number of their value; the validator computes it."""
    _check_collisions_against_cpython(_numpy_key_pool(), seed=574, trials=600)


def test_tuple_keys_with_seeded_items_are_counted_by_their_cpython_hash():
    """A tuple's hash is fixed within the process even where an item's is seeded (a str) or an
    address (None on 3.11, a NaN object): ("a", i * (2**61 - 1)) for every i share one hash,
    and so do (None, ...), (nan, ...) with one NaN object, ("", ...) and (b"ab", ...) with
    ("ab", ...)."""
    m = 2**61 - 1
    nan = float("nan")
    pool = [("a", i * m) for i in range(1, 13)]
    pool += [("ab", i * m) for i in range(1, 7)] + [(b"ab", i * m) for i in range(7, 13)]
    pool += [(None, i * m) for i in range(1, 11)] + [(nan, i * m) for i in range(1, 9)]
    pool += [("", i * m) for i in range(1, 7)] + [(b"", i * m) for i in range(7, 10)]
    pool += [(i * m, "a", None) for i in range(1, 9)] + [((None, i * m), "x") for i in range(1, 9)]
    pool += [(np.float64(2.0 ** (61 * k)), "t") for k in range(-6, 7)]
    pool += [("s%d" % i, 0) for i in range(12)] + [(None, i) for i in range(12)]
    pool += ["", b"", None, nan] + [i * m for i in range(1, 9)] + ["k%d" % i for i in range(6)]
    _check_collisions_against_cpython(pool, seed=20261204, trials=800)


def test_tuple_keys_with_non_ascii_text_are_counted_by_their_cpython_hash():
    """CPython hashes a str as its latin-1, UCS-2 or UCS-4 code units, and bytes of those units
    hash alike: ("é", i * (2**61 - 1)) and (b"\xe9", ...) share one hash, and so do the UCS-2
    and UCS-4 forms, lone surrogates and long texts. Keys that do not collide (one text, many
    ints that hash to themselves) are all accepted, however many."""
    m = 2**61 - 1
    long = "µV " + "°" * 40 + "x" * 30
    forms = [("é", b"\xe9"), ("µs", "µs".encode("latin-1")), ("Āb", "Āb".encode("utf-16-le")),
             ("Ω", "Ω".encode("utf-16-le")), ("😀x", "😀x".encode("utf-32-le")),
             ("a\ud800", "a\ud800".encode("utf-16-le", "surrogatepass")),
             (long, long.encode("utf-16-le"))]
    pool = []
    for text, units in forms:
        pool += [(text, i * m) for i in range(1, 7)] + [(units, i * m) for i in range(7, 11)]
        pool += [(i * m, text) for i in range(1, 5)]
    pool += [("°C", i) for i in range(20)] + [("ü", None, i) for i in range(12)]
    _check_collisions_against_cpython(pool, seed=61206, trials=800)


def test_an_accepted_pickle_loads_within_its_allocation_bound(cli, tmp_path):
    """The load's real peak (tracemalloc, in a fresh process) stays under the bound that
    `dmapickle check --bounds` proved for the same bytes."""
    import subprocess
    import sys

    cases = {
        "big_list": pickle.dumps(list(range(100_000)), protocol=2),
        "sets": b"\x80\x05]" + b"\x8fa" * 50_000 + b".",
        "strings": pickle.dumps([str(i) * 3 for i in range(20_000)], protocol=4),
        "float_keys": pickle.dumps({i + 0.5: (i, i) for i in range(20_000)}, protocol=5),
        "numpy_p4": pickle.dumps([np.arange(10_000, dtype=">f8")] * 3, protocol=4),
        "bytearrays": pickle.dumps([bytearray(b"x" * 1000) for _ in range(500)], protocol=5),
    }
    load = (
        "import sys, pickle, tracemalloc, numpy\n"
        "d = sys.stdin.buffer.read()\n"
        "tracemalloc.start(); o = pickle.loads(d); print(tracemalloc.get_traced_memory()[1])"
    )
    for name, data in cases.items():
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(data)
        line = subprocess.run(
            [cli, "check", "--bounds", str(path)], capture_output=True, text=True, check=True
        ).stdout
        bound = int(line.rsplit("alloc ", 1)[1].split(" ")[0])
        peak = int(
            subprocess.run(
                [sys.executable, "-c", load], input=data, capture_output=True, check=True
            ).stdout
        )
        assert peak <= bound, (name, peak, bound)

"""Hostile messages never reach pickle: the Rust validator refuses them before Python sees a
byte, and the RestrictedUnpickler refuses any global outside the allowlist on its own."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest

import dmapickle
from conftest import expected_adc

OS_SYSTEM = b"\x80\x05\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R."
SYNC = b"\xf1\x50\x4b\x05"


@pytest.fixture
def instrumented(monkeypatch):
    """Count every load() of an unpickler, record every global it looks up and every pickle
    given to pickle.loads."""
    seen = {"loads": 0, "globals": [], "pickles": []}
    real_load = dmapickle.RestrictedUnpickler.load
    real_find = dmapickle.RestrictedUnpickler.find_class
    real_loads = pickle.loads

    def load(self):
        seen["loads"] += 1
        return real_load(self)

    def find(self, module, name):
        seen["globals"].append((module, name))
        return real_find(self, module, name)

    def loads(data, *a, **kw):
        seen["pickles"].append(bytes(data))
        return real_loads(data, *a, **kw)

    monkeypatch.setattr(dmapickle.RestrictedUnpickler, "load", load)
    monkeypatch.setattr(dmapickle.RestrictedUnpickler, "find_class", find)
    monkeypatch.setattr(pickle, "loads", loads)
    return seen


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
    # Only the 20 benign pickles reached an unpickler, and they only asked for numpy.ndarray;
    # nothing went through pickle.loads at all.
    assert instrumented["loads"] == 20 and instrumented["pickles"] == []
    assert set(instrumented["globals"]) == {("numpy", "ndarray")}


def test_loads_refuses_a_hostile_frame_with_the_reason(start_device, tmp_path, instrumented):
    rec = tmp_path / "one.rec"
    start_device("--to", f"file:{rec}", "--count", "1", "--rows", "4", "--hostile-every", "1").wait()
    data = rec.read_bytes()
    second = data.index(SYNC, 1)
    good, evil = data[:second], data[second:]
    assert dmapickle.loads(good)["seq"] == 0
    with pytest.raises(dmapickle.RejectedError, match="allowlist"):
        dmapickle.loads(evil)
    assert instrumented["loads"] == 1 and instrumented["pickles"] == []


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
    # What Rust hands the Python side per message is a named type, not a bare tuple.
    raw = dmapickle._native.read_frame(data[: data.index(SYNC, 1)], [], [], "general")
    msg = dmapickle.read_frame(data)
    assert type(raw).__name__ == "RawMessage" and type(raw) is not tuple
    assert (raw.seq, raw.pickle, raw.host_ns > 0) == (msg.seq, msg.pickle, True)
    assert [b.nbytes for b in raw.buffers] == [b.nbytes for b in msg.buffers] and raw.shared == msg.shared
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

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
    assert str(e.value) == "byte 14, STACK_GLOBAL: global not in the allowlist"
    assert isinstance(e.value, ValueError)
    with pytest.raises(dmapickle.RejectedError):
        dmapickle.check(p, [])  # buffer count must match
    with pytest.raises(ValueError, match="profile"):
        dmapickle.check(p, profile="lenient")


def test_restricted_unpickler_alone_refuses_globals():
    with pytest.raises(pickle.UnpicklingError, match="os.system"):
        dmapickle.RestrictedUnpickler(
            io.BytesIO(OS_SYSTEM), allowed=dmapickle.ALLOWED_GLOBALS["general"]
        ).load()
    # An extra allowed global is accepted by both lines of defence.
    p = pickle.dumps(complex(1, 2), protocol=5)
    assert dmapickle.check(p, allow=["builtins:complex"]) == "complex"

"""Check a batch of pickles written by dmapickle-core's Pickler against what they should load as.

Usage: python check_encoded.py BATCH_FILE

The batch (written by core/tests/python_cross.rs) holds, per case: the pickle, its out-of-band
buffers in order, and a JSON description of the expected value, built independently of the pickle.
For every case this script

* runs `pickletools.dis` (the pickle must disassemble cleanly and start with PROTO 5),
* loads it with `pickle.loads(data, buffers=[PickleBuffer(bytearray), ...])`,
* compares the result with the value built from the description, strictly (types, float bits),
* for numpy arrays: dtype string, shape, order, element-wise equality with `np.frombuffer` of
  the buffer, `np.shares_memory(array, buffer)` and `writeable == (not readonly)`,
* for plain buffers: same bytes, shared memory, read-only flag,
* where CPython writes the same opcodes (no globals, buffers or multi-item sets), that the bytes
  equal `pickle.dumps(value, 5)` with CPython's FRAME and MEMOIZE opcodes removed.

Prints one JSON summary line; exits 1 (after listing up to 20 failures) if any case fails.
"""

import io
import json
import math
import pickle
import pickletools
import struct
import sys

import numpy as np


def read_batch(path):
    with open(path, "rb") as f:
        data = f.read()
    pos = 0

    def take(n):
        nonlocal pos
        chunk = data[pos:pos + n]
        if len(chunk) != n:
            raise ValueError("truncated batch file")
        pos += n
        return chunk

    def u32():
        return struct.unpack("<I", take(4))[0]

    if take(8) != b"DMAPKL01":
        raise ValueError("not a dmapickle test batch")
    cases = []
    for _ in range(u32()):
        pickled = take(u32())
        buffers = [take(u32()) for _ in range(u32())]
        description = json.loads(take(u32()).decode("utf-8"))
        cases.append((pickled, buffers, description))
    return cases


def float_of(bits):
    return struct.unpack(">d", bytes.fromhex(bits))[0]


def build(desc):
    """The Python value a description stands for (buffers and arrays are checked separately)."""
    t = desc["t"]
    if t == "none":
        return None
    if t == "bool":
        return bool(desc["v"])
    if t == "int":
        return int(desc["v"])
    if t == "float":
        return float_of(desc["bits"])
    if t == "complex":
        return complex(float_of(desc["re"]), float_of(desc["im"]))
    if t == "str":
        return desc["v"]
    if t == "bytes":
        return bytes.fromhex(desc["hex"])
    if t == "bytearray":
        return bytearray.fromhex(desc["hex"])
    if t == "tuple":
        return tuple(build(d) for d in desc["items"])
    if t == "list":
        return [build(d) for d in desc["items"]]
    if t == "set":
        return {build(d) for d in desc["items"]}
    if t == "frozenset":
        return frozenset(build(d) for d in desc["items"])
    if t == "dict":
        return {build(k): build(v) for k, v in desc["items"]}
    raise ValueError(f"no plain value for {t}")


def has_out_of_band(desc):
    if desc["t"] in ("buffer", "array"):
        return True
    if desc["t"] == "dict":
        return any(has_out_of_band(v) for _, v in desc["items"])
    return any(has_out_of_band(d) for d in desc.get("items", ()))


class Mismatch(Exception):
    pass


def same_float(a, b):
    if math.isnan(a) and math.isnan(b):
        return True
    return struct.pack(">d", a) == struct.pack(">d", b)


class Checker:
    def __init__(self, buffers, sources):
        self.buffers = buffers  # the bytearrays handed to pickle.loads
        self.sources = sources  # the bytes the Rust side described
        self.arrays = 0
        self.plain_buffers = 0
        self.dropped_arrays = 0  # values of repeated dict keys, which Python drops

    def check(self, actual, desc, where="value"):
        t = desc["t"]
        if t in ("buffer", "array"):
            return self.check_out_of_band(actual, desc, where)
        if t in ("tuple", "list"):
            expected_type = tuple if t == "tuple" else list
            if type(actual) is not expected_type or len(actual) != len(desc["items"]):
                raise Mismatch(f"{where}: {type(actual).__name__} of {len_of(actual)}, want {t} of {len(desc['items'])}")
            for i, (a, d) in enumerate(zip(actual, desc["items"])):
                self.check(a, d, f"{where}[{i}]")
            return
        if t == "dict":
            if type(actual) is not dict:
                raise Mismatch(f"{where}: {type(actual).__name__}, want dict")
            # Keys are plain hashables. As in Python, a repeated key keeps its first key object
            # and its last value.
            expected = {}
            for k, v in desc["items"]:
                key = build(k)
                if key in expected:
                    self.dropped_arrays += count_arrays(expected[key][1])
                expected[key] = (expected[key][0] if key in expected else key, v)
            if len(actual) != len(expected):
                raise Mismatch(f"{where}: dict of {len(actual)}, want {len(expected)}")
            for (key, value), (key_object, value_desc) in zip(actual.items(), expected.values()):
                strict_equal(key, key_object, f"{where} key")
                self.check(value, value_desc, f"{where}[{key!r:.40}]")
            return
        expected = build(desc)
        strict_equal(actual, expected, where)

    def check_out_of_band(self, actual, desc, where):
        i = desc["i"]
        source = self.buffers[i]
        readonly = desc["ro"]
        if desc["t"] == "buffer":
            self.plain_buffers += 1
            view = memoryview(actual)
            if view.readonly != readonly:
                raise Mismatch(f"{where}: buffer readonly={view.readonly}, want {readonly}")
            if view.tobytes() != self.sources[i]:
                raise Mismatch(f"{where}: buffer bytes differ")
            if len(source) and not np.shares_memory(np.frombuffer(view, dtype=np.uint8), source):
                raise Mismatch(f"{where}: buffer was copied")
            return
        self.arrays += 1
        if type(actual) is not np.ndarray:
            raise Mismatch(f"{where}: {type(actual).__name__}, want numpy.ndarray")
        shape = tuple(desc["shape"])
        if actual.dtype.str != desc["dtype"] or actual.shape != shape:
            raise Mismatch(f"{where}: {actual.dtype.str}{actual.shape}, want {desc['dtype']}{shape}")
        order = desc["order"]
        expected = np.frombuffer(self.sources[i], dtype=desc["dtype"]).reshape(shape, order=order)
        equal_nan = actual.dtype.kind in "fc"
        if not np.array_equal(actual, expected, equal_nan=equal_nan):
            raise Mismatch(f"{where}: elements differ from np.frombuffer(buffer).reshape(order={order})")
        if actual.size > 0 and not np.shares_memory(actual, source):
            raise Mismatch(f"{where}: array does not share memory with its buffer")
        if actual.size > 1 and actual.ndim > 1:
            contiguous = actual.flags.c_contiguous if order == "C" else actual.flags.f_contiguous
            if not contiguous:
                raise Mismatch(f"{where}: array is not {order}-contiguous")
        if actual.flags.writeable != (not readonly):
            raise Mismatch(f"{where}: writeable={actual.flags.writeable}, readonly={readonly}")


def count_arrays(desc):
    if desc["t"] == "array":
        return 1
    if desc["t"] == "dict":
        return sum(count_arrays(k) + count_arrays(v) for k, v in desc["items"])
    return sum(count_arrays(d) for d in desc.get("items", ()))


def len_of(x):
    try:
        return len(x)
    except TypeError:
        return "-"


def strict_equal(actual, expected, where):
    """Equal and of the same type, floats bit for bit (any NaN matches any NaN)."""
    if type(actual) is not type(expected):
        raise Mismatch(f"{where}: {type(actual).__name__} {actual!r:.80}, want {type(expected).__name__} {expected!r:.80}")
    if isinstance(actual, float):
        if not same_float(actual, expected):
            raise Mismatch(f"{where}: {actual!r}, want {expected!r}")
    elif isinstance(actual, complex):
        if not (same_float(actual.real, expected.real) and same_float(actual.imag, expected.imag)):
            raise Mismatch(f"{where}: {actual!r}, want {expected!r}")
    elif isinstance(actual, tuple):
        if len(actual) != len(expected):
            raise Mismatch(f"{where}: tuple of {len(actual)}, want {len(expected)}")
        for i, (a, e) in enumerate(zip(actual, expected)):
            strict_equal(a, e, f"{where}[{i}]")
    elif isinstance(actual, (set, frozenset)):
        # Sets hold plain hashables only (no floats): Python equality is exact for them.
        if actual != expected:
            raise Mismatch(f"{where}: {actual!r:.120}, want {expected!r:.120}")
    elif actual != expected:
        raise Mismatch(f"{where}: {actual!r:.120}, want {expected!r:.120}")


def cpython_comparable(desc):
    """Whether CPython writes the same opcodes for this value (modulo FRAME and MEMOIZE)."""
    t = desc["t"]
    if t in ("buffer", "array", "complex"):
        return False
    if t in ("set", "frozenset") and len(desc["items"]) > 1:
        return False  # set iteration order is CPython's, not ours
    if t in ("set", "dict") and desc["items"] and len(desc["items"]) % 1000 == 0:
        return False  # CPython ends these with an empty batch
    if t == "dict":
        if len({build(k) for k, _ in desc["items"]}) != len(desc["items"]):
            return False  # repeated keys: we write every pair, the dict keeps one
        return all(cpython_comparable(k) and cpython_comparable(v) for k, v in desc["items"])
    return all(cpython_comparable(d) for d in desc.get("items", ()))


def without_frame_and_memoize(data):
    ops = list(pickletools.genops(data))
    out = bytearray()
    for n, (op, _, pos) in enumerate(ops):
        end = ops[n + 1][2] if n + 1 < len(ops) else len(data)
        if op.name in ("FRAME", "MEMOIZE"):
            continue
        if op.name in ("BINGET", "LONG_BINGET", "GET"):
            return None  # CPython refers back to a memoized object; we write it again
        out += data[pos:end]
    return bytes(out)


def narrowed(data):
    """`data` with each BINUNICODE / BINBYTES of fewer than 256 bytes written short again."""
    ops = list(pickletools.genops(data))
    out = bytearray()
    for n, (op, arg, pos) in enumerate(ops):
        end = ops[n + 1][2] if n + 1 < len(ops) else len(data)
        raw = data[pos:end]
        if op.name in ("BINUNICODE", "BINBYTES") and end - pos - 5 < 256:
            out += (b"\x8c" if op.name == "BINUNICODE" else b"C") + bytes([end - pos - 5]) + raw[5:]
        else:
            out += raw
    return bytes(out)


def main():
    cases = read_batch(sys.argv[1])
    failures = []
    arrays = plain_buffers = exact = dropped = 0
    aligned = aligned_exact = 0
    for n, (pickled, sources, desc) in enumerate(cases):
        try:
            multiple = desc.pop("aligned", None)
            if multiple is not None:
                # Padded by Pickler::align_to: a multiple of `multiple` bytes, and nothing but
                # widened short strings and bytes; it must load as the same value (below).
                aligned += 1
                if len(pickled) % multiple:
                    raise Mismatch(f"aligned to {multiple}, but {len(pickled)} bytes long")
            text = io.StringIO()
            pickletools.dis(pickled, out=text)
            first = next(pickletools.genops(pickled))
            if first[0].name != "PROTO" or first[1] != 5:
                raise Mismatch("does not start with PROTO 5")
            buffers = [bytearray(s) for s in sources]
            value = pickle.loads(pickled, buffers=[pickle.PickleBuffer(b) for b in buffers])
            checker = Checker(buffers, sources)
            checker.check(value, desc)
            arrays += checker.arrays
            plain_buffers += checker.plain_buffers
            dropped += checker.dropped_arrays
            if not has_out_of_band(desc) and cpython_comparable(desc):
                theirs = without_frame_and_memoize(pickle.dumps(build(desc), protocol=5))
                ours = pickled if multiple is None else narrowed(pickled)
                if theirs is not None:
                    if theirs != ours:
                        raise Mismatch(f"bytes differ from CPython's: ours {ours[:80]!r}, CPython {theirs[:80]!r}")
                    if multiple is None:
                        exact += 1
                    else:
                        aligned_exact += 1
        except Exception as e:  # noqa: BLE001 - every failure is reported with its case
            failures.append((n, f"{type(e).__name__}: {e}", json.dumps(desc)[:300]))
    for n, why, desc in failures[:20]:
        print(f"case {n}: {why}\n  expected: {desc}", file=sys.stderr)
    print(json.dumps({
        "cases": len(cases), "failures": len(failures), "arrays": arrays,
        "arrays_dropped_by_repeated_keys": dropped,
        "plain_buffers": plain_buffers, "cpython_exact": exact,
        "aligned": aligned, "aligned_exact": aligned_exact,
        "numpy": np.__version__, "python": sys.version.split()[0],
    }))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Generates, at test time, pickles that CPython and numpy write for the data dmapickle carries,
in the layout of ../shared/vectors/cpython: NAME.pkl, its out-of-band buffers NAME.buf0,
NAME.buf1, ... and manifest.json. `dmapickle check` (general profile) must accept every one
and `dmapickle inspect` must agree with pickletools on every one.

usage: make_cpython_vectors.py OUTDIR [--legacy LEGACYDIR]
Run it with each venv: numpy vectors are prefixed np<major>_ (np2_ with numpy 2.x, np1_ with
numpy 1.26), plain ones py_p<protocol>_ (the same bytes from either interpreter).
--legacy also writes protocol 0 and 1 pickles of the plain values (text opcodes: INT, LONG,
FLOAT, STRING, UNICODE, GET/PUT, ...) to LEGACYDIR: the validator rejects those (it accepts
protocols 2-5), but `dmapickle inspect` must still disassemble them as pickletools does.
"""
import json
import os
import pickle
import random
import sys

import numpy as np


def plain_values():
    rec_list = [1]
    rec_list.append(rec_list)
    rec_dict = {"self": None}
    rec_dict["self"] = rec_dict
    shared = "shared-string"
    rec_tuple_list = []
    rec_tuple = (rec_tuple_list,)
    rec_tuple_list.append(rec_tuple)
    return {
        "none": None,
        "bools": (True, False),
        "ints": [0, 1, 255, 256, 65535, 65536, -1, -256, 2**31 - 1, -(2**31), 2**31, 2**63 - 1,
                 -(2**63), 2**64, 2**100, -(2**100), 2**2100],
        "floats": [0.0, -0.0, 1.5, -2.25, 1e300, 5e-324, float("inf"), float("-inf"), float("nan")],
        "strs": ["", "ascii", "µ-ünïcode-漢字-😀", "quote'\"\\\n\t\x00\x7f\x85\u2028", "x" * 300],
        "bytes": [b"", b"\x00\xff", bytes(range(256)) * 2, b"'\"\\"],
        "bytearray": bytearray(b"ab\xff\x00"),
        "bytearray_empty": bytearray(),
        "tuples": ((), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), ((1,), ((2,),)), (None, "a", b"b", 1.5)),
        "dict": {"seq": 7, "name": "adc0", "gain": 0.5, "flags": [1, 2, 3], "nested": {"a": None}},
        "dict_keys": {1: "int", -5: "neg", 2.5: "float", (1, 2): "tuple", b"k": "bytes",
                      frozenset({1}): "frozenset", None: "none", True: "bool", 3j: "complex"},
        "empties": [[], {}, (), set(), frozenset(), "", b""],
        "nested_lists": [[[[[[1]]]]], [[], [[]]]],
        "big_list": list(range(2500)),
        "big_dict": {i: str(i) for i in range(2100)},
        "memo": [shared, shared, shared],
        "complex": complex(1.5, -2.0),
        "complex_list": [1j, -0.5 + 0j, complex(float("inf"), 1)],
        "set": {1, 2, 3},
        "set_mixed": {1, "a", b"b", (1, 2), None},
        "frozenset": frozenset({4, 5}),
        "set_of_frozensets": {frozenset({1}), frozenset({2, 3})},
        "recursive_list": rec_list,
        "recursive_dict": rec_dict,
        "recursive_tuple": rec_tuple,
        "large_str": "y" * 70000,
        "large_bytes": b"z" * 70000,
        # lone surrogates: CPython writes them with surrogatepass (BINUNICODE) and as \u escapes
        # in protocol 0's UNICODE
        "surrogates": ["a\ud800b", "\udfff", "\ud83d\ude00\ud83d", "x\udc80" * 3, "\ud800" * 300],
        "surrogate_key": {"\udc00k": 1},
    }


def near_miss_values():
    """Safe data close to what the issue-10 bounds refuse: many keys that do not collide (ints
    0..200k hash to themselves, sensor-like floats and (i, j) tuples spread out), nesting well
    under the depth limit. Only protocols 2-5 (the validator's), not the legacy set."""
    rng = random.Random(10)
    nested_tuple = ()
    for _ in range(50):
        nested_tuple = (nested_tuple, 1)
    nested_mixed = 0
    for i in range(20):  # hashable levels, then containers around them: 40 deep
        nested_mixed = frozenset({nested_mixed}) if i % 2 else (nested_mixed, i)
    for i in range(20):
        nested_mixed = [nested_mixed] if i % 2 else {"k": nested_mixed}
    return {
        "int_keys_200k": dict.fromkeys(range(200_001)),
        "sensor_float_keys": {round(20.0 + rng.gauss(0, 2.5), 3) + i * 1e-6: i for i in range(1000)},
        "timestamp_float_keys": {1700000000.0 + i * 0.001: i for i in range(1000)},
        "tuple_keys_10k": {(i, j): i * j for i in range(100) for j in range(100)},
        "int_set_20k": set(range(-10_000, 10_000)),
        "tuple_nested_50": nested_tuple,
        "list_nested_50": eval("[" * 50 + "]" * 50),
        "nested_mixed": nested_mixed,
    }


DTYPES = ["?", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16",
          ">i2", ">i4", ">i8", ">u2", ">f4", ">f8", ">c16", "<u8"]


def arrays():
    out = {}
    for dt in DTYPES:
        a = (np.arange(12) % 7).astype(dt).reshape(3, 4)
        out["arr_" + np.dtype(dt).str.replace("<", "le").replace(">", "be").replace("|", "")] = a
    out["fortran"] = np.asfortranarray(np.arange(6, dtype="f8").reshape(2, 3))
    out["scalar0d"] = np.array(3.25)
    out["empty"] = np.zeros((0, 4), dtype="i4")
    out["dims8"] = np.zeros((1, 2, 1, 2, 1, 2, 1, 2), dtype="u1")
    out["noncontig"] = np.arange(20, dtype="i4")[::2]
    out["transposed"] = np.arange(12, dtype="i2").reshape(3, 4).T
    ro = np.arange(8, dtype="u2")
    ro.flags.writeable = False
    out["readonly"] = ro
    return out


def scalars():
    """numpy scalars, as analysts' values carry them (`a.mean()`, `a.max()`, `np.int64(n)`)."""
    values = [np.bool_(True), np.int8(-1), np.int16(-300), np.int32(7), np.int64(-2**63),
              np.uint8(255), np.uint16(65535), np.uint32(2**32 - 1), np.uint64(2**64 - 1),
              np.float16(0.5), np.float32(-1.25), np.float64(float("nan")), np.float64(1e300),
              np.complex64(1 - 2j), np.complex128(complex(float("inf"), -0.0))]
    a = np.arange(12, dtype="f8").reshape(3, 4)
    return {
        "scalars": values,
        "scalar_f64": np.float64(1.5),
        "stats": {"mean": a.mean(), "max": a.max(), "argmax": a.argmax(), "n": np.int64(a.size),
                  "std": a.std(dtype="f4"), "adc": a},
        "scalar_keys": {np.int64(i): np.float32(i) for i in range(5)},
    }


def messages():
    adc = (np.arange(1024 * 4, dtype="i2") % 4096).reshape(1024, 4)
    i16 = np.arange(5, dtype="i2")
    return {
        "sensor_message": {"seq": 41, "t_ns": 1700000000123456789, "adc": adc, "gain": 0.5},
        "two_arrays_shared_dtype": [i16, np.arange(3, dtype="i2")],
        "same_array_twice": [i16, i16],
        "arrays_in_tuple": (np.arange(3, dtype="f4"), np.arange(2, dtype=">i8"), "tag"),
        "dict_of_arrays": {"a": np.arange(4, dtype="u1"), "b": np.ones((2, 2), dtype="c8"), "n": 3},
    }


def write(outdir, name, data, buffers, protocol, kind, note=""):
    with open(os.path.join(outdir, name + ".pkl"), "wb") as f:
        f.write(data)
    entries = []
    for i, b in enumerate(buffers):
        raw = b.raw()
        path = "%s.buf%d" % (name, i)
        with open(os.path.join(outdir, path), "wb") as f:
            f.write(raw)
        entries.append({"file": path, "len": raw.nbytes, "readonly": raw.readonly})
    return {"name": name, "protocol": protocol, "kind": kind, "note": note, "buffers": entries,
            "made_with": "CPython %s, numpy %s" % (sys.version.split()[0], np.__version__),
            "expect": {"general": "accept"}}


def dump(outdir, name, value, protocol, kind, oob):
    buffers = []
    kw = {"buffer_callback": buffers.append} if oob else {}
    data = pickle.dumps(value, protocol=protocol, **kw)
    pickle.loads(data, buffers=[b.raw() for b in buffers])  # it must load
    return write(outdir, name, data, buffers, protocol, kind)


def legacy(outdir):
    values = plain_values()
    values["escapes"] = ["\\u0041", "back\\slash", "\x00\x01\x7f\x80\xff", "'", '"', "'\"",
                         "\u20ac\U0001F600", "a\nb\r\n"]
    values["all_bytes"] = [bytes(range(256))]
    values["float_text"] = [1e16, 1e-7, 123456789.125, -0.0, 1e22, 5e-324]
    os.makedirs(outdir, exist_ok=True)
    n = 0
    for protocol in (0, 1):
        for key, value in values.items():
            if key.startswith(("large_", "big_")):
                continue
            with open(os.path.join(outdir, "py_p%d_%s.pkl" % (protocol, key)), "wb") as f:
                f.write(pickle.dumps(value, protocol=protocol))
            n += 1
    print("wrote %d protocol 0/1 pickles to %s" % (n, outdir))


def main():
    args = sys.argv[1:]
    if len(args) == 3 and args[1] == "--legacy":
        legacy(args[2])
        args = args[:1]
    if len(args) != 1:
        sys.exit(__doc__)
    outdir = args[0]
    os.makedirs(outdir, exist_ok=True)
    manifest = []
    major = np.__version__.split(".")[0]
    for protocol in (2, 3, 4, 5):
        for key, value in {**plain_values(), **near_miss_values()}.items():
            manifest.append(dump(outdir, "py_p%d_%s" % (protocol, key), value, protocol, "plain", False))
        for key, value in {**arrays(), **scalars(), **messages()}.items():
            tag = "np%s_p%d_%s" % (major, protocol, key)
            manifest.append(dump(outdir, tag, value, protocol, "numpy", False))
            if protocol == 5:
                manifest.append(dump(outdir, tag + "_oob", value, 5, "numpy", True))
    # PickleBuffers: writable, read-only, several, in-band (protocol 5 without a callback)
    wb = pickle.PickleBuffer(bytearray(b"0123456789abcdef"))
    rb = pickle.PickleBuffer(b"read-only buffer!")
    for key, value in {"pb_writable": wb, "pb_readonly": rb, "pb_two": [wb, rb],
                       "pb_in_dict": {"raw": rb, "n": 1}}.items():
        manifest.append(dump(outdir, "py_p5_" + key + "_oob", value, 5, "oob", True))
        manifest.append(dump(outdir, "py_p5_" + key + "_inband", value, 5, "plain", False))
    path = os.path.join(outdir, "manifest-np%s.json" % major)
    with open(path, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print("wrote %d vectors to %s (numpy %s)" % (len(manifest), outdir, np.__version__))


if __name__ == "__main__":
    main()

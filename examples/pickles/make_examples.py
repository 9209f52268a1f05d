"""Writes the example pickles the README's `dmapickle check` / `inspect` commands use.

    .venv/np2/bin/python examples/pickles/make_examples.py [OUTDIR]   (default: this directory)

`x.pkl` takes `x.buf0`, `x.buf1`, ... beside it as its out-of-band buffers (the CLI's rule):

- np2_oob_message: a sensor message pickled by CPython with numpy 2 (protocol 5, the array
  out-of-band through `buffer_callback`), accepted;
- p5_two_buffers: a list of two `pickle.PickleBuffer`s (the second read-only), accepted;
- m06_numpy_negative_offset: `numpy.ndarray` built over buffer 0 at offset -64, rejected;
- m02_stack_global_eval: `builtins.eval("print('x')")`, rejected.

The files are committed; tests/readme/test_readme.py checks that this script writes the same
bytes (so a change here, or in numpy's pickles, shows up as a test failure).
"""
import os
import pickle
import sys

import numpy as np


def cpython(obj):
    """`obj` pickled by CPython with protocol 5; its out-of-band buffers as bytes, in order."""
    buffers = []
    data = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    return data, [bytes(b.raw()) for b in buffers]


def examples():
    adc = (np.arange(64, dtype=np.int16) * 31).reshape(16, 4)
    yield "np2_oob_message", cpython({"seq": 41, "t_ns": 1_700_000_000_123_456_789, "adc": adc})
    yield "p5_two_buffers", cpython(
        [pickle.PickleBuffer(bytearray(b"0123456789")), pickle.PickleBuffer(bytes(range(20)))]
    )
    # Hand-written: CPython does not write these.
    yield "m06_numpy_negative_offset", (
        b"\x80\x05\x8c\x05numpy\x8c\x07ndarray\x93"  # numpy.ndarray
        b"((K\x04t\x8c\x03<i4\x97J\xc0\xff\xff\xfft\x81."  # ((4,), '<i4', buffer 0, -64) NEWOBJ
        ,
        [bytes(64)],
    )
    yield "m02_stack_global_eval", (
        b"\x80\x05\x8c\x08builtins\x8c\x04eval\x93\x8c\nprint('x')\x85R.",
        [],
    )


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    os.makedirs(out, exist_ok=True)
    for name, (data, buffers) in examples():
        with open(os.path.join(out, name + ".pkl"), "wb") as f:
            f.write(data)
        for i, buf in enumerate(buffers):
            with open(os.path.join(out, f"{name}.buf{i}"), "wb") as f:
                f.write(buf)


if __name__ == "__main__":
    main()

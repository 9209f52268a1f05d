#!/usr/bin/env python3
"""CPython's cost on the sensor message that core/benches/validate.rs validates:
`pickletools.dis` (to a null stream) and a restricted `pickle.Unpickler` (find_class allowlist,
buffers passed out-of-band) over the same bytes, in both spellings (CPython's own pickle and the
bytes dmapickle's encoder writes). Prints one line per case: µs/message, messages/s, MB/s.
"""
import io
import pickle
import pickletools
import sys
import time

import numpy as np

ALLOW = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("builtins", "complex"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
}


class Restricted(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in ALLOW:
            return super().find_class(module, name)
        raise pickle.UnpicklingError("global %s.%s not allowed" % (module, name))


class Null:
    def write(self, s):
        return len(s)


def su(s):
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def encoder_bytes():
    """What dmapickle's Pickler writes for the message (see core/src/pickler.rs)."""
    return (b"\x80\x05}(" + su("seq") + b"K\x29" + su("t_ns") + b"\x8a\x08"
            + (1700000000123456789).to_bytes(8, "little") + su("adc")
            + su("numpy") + su("ndarray") + b"\x93\x94(M\x00\x04K\x04\x86" + su("<i2")
            + b"\x97K\x00N" + su("C") + b"t\x81" + su("gain") + b"G"
            + __import__("struct").pack(">d", 0.5) + b"u.")


def bench(label, fn, data, seconds=1.0):
    n, start = 0, time.perf_counter()
    while True:
        for _ in range(200):
            fn()
        n += 200
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    per = elapsed / n
    print("%-36s %8.2f us/msg %10.0f msg/s %8.1f MB/s (%d-byte pickle)"
          % (label, per * 1e6, 1 / per, len(data) / per / 1e6, len(data)))


def main():
    adc = np.zeros((1024, 4), dtype="i2")
    msg = {"seq": 41, "t_ns": 1700000000123456789, "adc": adc, "gain": 0.5}
    bufs = []
    cpython = pickle.dumps(msg, protocol=5, buffer_callback=bufs.append)
    raw = [b.raw() for b in bufs]
    ours = encoder_bytes()
    loaded = pickle.loads(ours, buffers=raw)
    assert loaded["adc"].shape == (1024, 4) and loaded["gain"] == 0.5, loaded
    print("CPython %s, numpy %s" % (sys.version.split()[0], np.__version__))
    for name, data in (("cpython", cpython), ("encoder", ours)):
        bench("pickletools.dis (%s bytes)" % name, lambda: pickletools.dis(data, out=Null()), data)
        bench("restricted Unpickler (%s bytes)" % name,
              lambda: Restricted(io.BytesIO(data), buffers=raw).load(), data)


if __name__ == "__main__":
    main()

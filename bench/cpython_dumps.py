"""Time CPython's own protocol-5 pickling of the typical sensor message, for comparison with
core/benches/encode.rs (same message, same array shapes, arrays out-of-band).

    python bench/cpython_dumps.py            # prints one JSON line: ns per message per shape

msg = {"seq": int, "t_ns": int, "adc": int16 array (rows, 4), "gain": float}, pickled with
pickle.dumps(msg, protocol=5, buffer_callback=...) so the array goes out-of-band, as ours does.
"""

import json
import pickle
import statistics
import sys
import timeit

import numpy as np


def per_message_ns(rows, number=20000, repeat=15):
    adc = np.zeros((rows, 4), dtype=np.int16)
    msg = {"seq": 41, "t_ns": 1_700_000_000_000_000_041, "adc": adc, "gain": 0.5}
    buffers = []

    def dumps():
        buffers.clear()
        return pickle.dumps(msg, protocol=5, buffer_callback=buffers.append)

    data = dumps()
    assert len(buffers) == 1 and buffers[0].raw().nbytes == adc.nbytes, "array went in-band"
    assert len(data) < 300, len(data)
    # The median of the repeats, as criterion reports for the Rust side.
    times = timeit.repeat(dumps, number=number, repeat=repeat)
    return statistics.median(times) / number * 1e9, len(data)


def main():
    result = {"python": sys.version.split()[0], "numpy": np.__version__}
    for name, rows in (("adc_1024x4", 1024), ("adc_1048576x4", 1 << 20)):
        ns, size = per_message_ns(rows)
        result[name] = {"ns_per_message": round(ns, 1), "pickle_bytes": size}
    print(json.dumps(result))


if __name__ == "__main__":
    main()

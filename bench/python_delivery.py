"""Messages/s and GB/s delivered to Python as numpy arrays by `dmapickle.open(...)`, next to the
floor measured in the same run: CPython's own `pickle.loads(p, buffers=b)` on messages that are
already in memory (what any delivery path must at least pay), and a hand-rolled reader of the
same file that checks nothing and knows the layout (`struct` + `numpy.frombuffer`).

The stream is the device simulator's output (the real core Pickler + hal Publisher), recorded to
a file in /dev/shm so the page cache, not the disk, is the source. Our path = the reader thread
reading and CRC-checking frames, the Rust validator, then `msg.load()` in Python through the
restricted Unpickler, building numpy arrays over the receive blocks (no copy).

usage: python bench/python_delivery.py DEVICE_EXE [--quick]
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import time

import numpy as np

import dmapickle


def record(device: str, path: str, count: int, rows: int) -> int:
    subprocess.run([device, "--to", f"file:{path}", "--count", str(count), "--rows", str(rows)], check=True)
    return os.path.getsize(path)


def ours(path: str) -> tuple[int, int, float]:
    """(messages, payload bytes, seconds) for dmapickle.open + msg.load() over the recording."""
    n = nbytes = 0
    t0 = time.perf_counter()
    with dmapickle.open(path) as stream:
        for msg in stream:
            obj = msg.load()
            n += 1
            nbytes += obj["adc"].nbytes
    return n, nbytes, time.perf_counter() - t0


def floor(path: str, limit: int) -> tuple[int, int, float]:
    """The same messages' (pickle, buffers) held in memory, then `pickle.loads(p, buffers=b)`.

    Measured in a child process started with `DMAPICKLE_AUDIT_GUARD=0`, so that no audit hook
    exists there: dmapickle's guard, once installed, makes every `pickle.loads` of the process
    build an audit event (about 3.5% on these messages), which would flatter the ratio."""
    if os.environ.get("DMAPICKLE_AUDIT_GUARD") != "0":
        env = dict(os.environ, DMAPICKLE_AUDIT_GUARD="0")
        out = subprocess.run([sys.executable, __file__, "--floor", path, str(limit)], env=env,
                             check=True, capture_output=True, text=True).stdout.split()
        return int(out[0]), int(out[1]), float(out[2])
    held = []
    with dmapickle.open(path) as stream:
        for msg in stream:
            held.append((bytes(msg.pickle), [bytearray(b) for b in msg.buffers]))
            if len(held) == limit:
                break
    nbytes = 0
    t0 = time.perf_counter()
    for p, bufs in held:
        obj = pickle.loads(p, buffers=bufs)
        nbytes += obj["adc"].nbytes
    return len(held), nbytes, time.perf_counter() - t0


def hand_rolled(path: str, rows: int) -> tuple[int, int, float]:
    """The issue's second peer: a consumer written for exactly this recording, with no CRC, no
    validation and no pickle: `f.read` the file, `struct` each header (docs/wire-format.md), and
    `numpy.frombuffer` each frame's inline bytes as the (rows, 4) int16 array, in a dict with
    its seq. It trusts every byte and knows the layout in advance, so it is a bound, not a
    rival: what reading these frames costs in Python with nothing checked."""
    header = struct.Struct("<4sBBHIII")
    n = nbytes = 0
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        data = f.read()
    off, end = 0, len(data)
    frombuffer, i2, shape = np.frombuffer, np.dtype("<i2"), (rows, 4)
    while off + 32 <= end:
        _, _, _, nbuf, seq, plen, ilen = header.unpack_from(data, off)
        start = off + 28 + plen + 12 * nbuf
        obj = {"seq": seq, "adc": frombuffer(data, i2, ilen // 2, start).reshape(shape)}
        n += 1
        nbytes += obj["adc"].nbytes
        off = start + ilen + 4
    return n, nbytes, time.perf_counter() - t0


def raw_read(path: str) -> tuple[int, float]:
    """Reading the recording's bytes into one reused buffer: the source's own speed."""
    buf = bytearray(1 << 20)
    total = 0
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            total += n
    return total, time.perf_counter() - t0


def best(fn, *args, repeat: int = 3):
    runs = [fn(*args) for _ in range(repeat)]
    return min(runs, key=lambda r: r[-1] / max(r[0], 1))


def main() -> None:
    if sys.argv[1] == "--floor":
        n, nbytes, t = best(floor, sys.argv[2], int(sys.argv[3]))
        assert not dmapickle._native.audit_guard()
        print(n, nbytes, t)
        return
    device = sys.argv[1]
    quick = "--quick" in sys.argv
    cases = [
        # name, rows (x4 int16), messages
        ("small: 32 B array", 4, 20_000 if quick else 200_000),
        ("64 KiB array", 8192, 500 if quick else 4000),
        ("1 MiB array", 131072, 50 if quick else 400),
    ]
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, dmapickle from {dmapickle.__file__}")
    print(f"| message | path | msgs/s | GB/s (array bytes) | vs floor |")
    print(f"|---|---|---:|---:|---:|")
    for name, rows, count in cases:
        path = f"/dev/shm/dmapickle-bench-{os.getpid()}.rec"
        try:
            size = record(device, path, count, rows)
            fn, fb, ft = floor(path, min(count, 50_000))  # best of 3, in a hook-free process
            on, ob, ot = best(ours, path)
            assert on == count, (on, count)
            rb, rt = best(raw_read, path)
            hn, hb, ht = best(hand_rolled, path, rows)
            assert hn == count, (hn, count)
            f_rate, o_rate, h_rate = fn / ft, on / ot, hn / ht
            print(f"| {name} | CPython pickle.loads floor (in memory) | {f_rate:,.0f} | {fb / ft / 1e9:.2f} | 1.00x |")
            print(f"| {name} | dmapickle.open(file) + msg.load() | {o_rate:,.0f} | {ob / ot / 1e9:.2f} | {f_rate / o_rate:.2f}x |")
            print(f"| {name} | hand-rolled: f.read + struct + numpy.frombuffer, nothing checked | {h_rate:,.0f} | {hb / ht / 1e9:.2f} | ours {h_rate / o_rate:.2f}x slower |")
            print(f"| {name} | raw read of the same file ({size / 1e6:.0f} MB) | - | {rb / rt / 1e9:.2f} | - |")
        finally:
            if os.path.exists(path):
                os.unlink(path)


if __name__ == "__main__":
    main()

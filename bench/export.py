"""Export throughput (issue 16): `dmapickle.export` to HDF5 and Zarr v3 for 64 KiB and 1 MiB
messages, next to the raw read of the same recording (dmapickle.open + msg.load(), what the
export does before writing) and to h5py writing the same arrays from memory with the same chunks.

    .venv/np2/bin/python bench/export.py [--mib 256] [--out /tmp/helper16-perf.md] [--dir DIR]

GB/s are payload bytes (pickles + buffers) per second, best of --repeat runs. The recordings come
from the device simulator (DMAPICKLE_DEVICE, default target/debug/examples/device).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

import dmapickle

ROOT = Path(__file__).resolve().parents[1]


def recording(device: str, path: Path, msg_bytes: int, total: int) -> int:
    rows = msg_bytes // 8  # (rows, 4) int16
    count = max(1, total // msg_bytes)
    subprocess.run([device, "--to", f"file://{path}", "--count", str(count), "--rows", str(rows)], check=True)
    return count


def payload(rec: Path) -> int:
    with dmapickle.open(str(rec), reconnect=False) as s:
        return sum(len(m.pickle) + sum(b.nbytes for b in m.buffers) for m in s)


def raw_read(rec: Path) -> float:
    t = time.perf_counter()
    with dmapickle.open(str(rec), reconnect=False) as s:
        for m in s:
            m.load()
    return time.perf_counter() - t


def do_export(rec: Path, out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
    t = time.perf_counter()
    dmapickle.export(str(rec), str(out))
    dt = time.perf_counter() - t
    return dt


def h5py_from_memory(rec: Path, out: Path) -> float:
    """h5py alone: the same arrays (already in memory) appended with the export's chunking."""
    import h5py

    with dmapickle.open(str(rec), reconnect=False) as s:
        arrays = [np.array(m.load()["adc"]) for m in s]
    shape, dtype = arrays[0].shape, arrays[0].dtype
    rows = max(1, (1 << 20) // arrays[0].nbytes)
    out.unlink(missing_ok=True)
    t = time.perf_counter()
    with h5py.File(out, "w") as f:
        d = f.create_dataset("adc", shape=(0,) + shape, maxshape=(None,) + shape, chunks=(rows,) + shape, dtype=dtype)
        block = np.empty((rows,) + shape, dtype)
        n = 0
        for i in range(0, len(arrays), rows):
            part = arrays[i : i + rows]
            for j, a in enumerate(part):
                block[j] = a
            d.resize(n + len(part), axis=0)
            d[n : n + len(part)] = block[: len(part)]
            n += len(part)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256, help="recording size per message size")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where recordings and exports go (default: a temp dir)")
    ap.add_argument("--out", default="/tmp/helper16-perf.md")
    args = ap.parse_args()
    device = os.environ.get("DMAPICKLE_DEVICE", str(ROOT / "target/debug/examples/device"))
    work = Path(args.dir or tempfile.mkdtemp(prefix="dmapickle-bench-export-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for size, label in ((64 << 10, "64 KiB"), (1 << 20, "1 MiB")):
            rec = work / f"bench-{size}.rec"
            count = recording(device, rec, size, args.mib << 20)
            nbytes = payload(rec)
            best = {}
            for _ in range(args.repeat):
                for name, fn in (
                    ("raw read (open + load)", lambda: raw_read(rec)),
                    ("export to HDF5", lambda: do_export(rec, work / "out.h5")),
                    ("export to Zarr v3", lambda: do_export(rec, work / "out.zarr")),
                    ("h5py from memory", lambda: h5py_from_memory(rec, work / "mem.h5")),
                ):
                    best[name] = min(best.get(name, float("inf")), fn())
            for name, secs in best.items():
                rows.append((label, count, name, nbytes / secs / 1e9))
            for p in (rec, work / "out.h5", work / "mem.h5"):
                p.unlink(missing_ok=True)
            shutil.rmtree(work / "out.zarr", ignore_errors=True)
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    load = open("/proc/loadavg").read().strip()
    fs = subprocess.run(["df", "-T", str(work.parent)], capture_output=True, text=True).stdout.splitlines()[-1].split()[1]
    lines = [
        f"# export throughput (bench/export.py, {args.mib} MiB per message size, best of {args.repeat})",
        "",
        f"/proc/loadavg at the end: {load}; output filesystem: {fs}; "
        f"h5py {__import__('h5py').__version__}, zarr {__import__('zarr').__version__}, numpy {np.__version__}",
        "",
        "| message | messages | what | GB/s |",
        "|---|---|---|---|",
    ] + [f"| {l} | {c} | {n} | {g:.2f} |" for l, c, n, g in rows]
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()

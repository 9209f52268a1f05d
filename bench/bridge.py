#!/usr/bin/env python3
"""Messages/s and GB/s through `dmapickle bridge` (issue 14), with peers in the same run.

usage: bench/bridge.py [--bin target/release/dmapickle] [--device target/release/examples/device]
                       [--dask] [--seconds-cap 60]

For each message size (a 32-byte array, and 1 MiB), a recording made by the device simulator
is bridged with `--zmq-push` (the no-drop mode: nothing is lost, so every message is counted):
  bridge -> pyzmq  a stock PULL socket receives [header, pickle, buf] and loads each pickle
                   zero-copy on the ZeroMQ frames (pickle.loads(p, buffers=frames));
  peer             a pure-pyzmq PUSH sender sends the same multipart messages from memory to the
                   same kind of consumer: what ZeroMQ and pickle.loads cost without dmapickle;
  bridge -> dask   (--dask) dmapickle.dask.map_stream on a LocalCluster of 2 worker processes
                   summing each array (8 messages in flight).
Prints one table row per path and size, and the load average.
"""
from __future__ import annotations

import argparse
import os
import pickle
import socket
import subprocess
import sys
import tempfile
import time

import zmq

from dmapickle import zmq as dz  # the installed package (pip install ./host)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def recording(device: str, rows: int, count: int, path: str) -> None:
    subprocess.run([device, "--to", f"file://{path}", "--rows", str(rows), "--count", str(count)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def consume(sock, n: int) -> tuple[float, int]:
    """Receive and load `n` data messages; (seconds from the first to the last, array bytes)."""
    got, nbytes, t0 = 0, 0, None
    while got < n:
        frames = sock.recv_multipart(copy=False)
        if dz.parse_header(frames[0]).kind != dz.DATA:
            continue
        if t0 is None:
            t0 = time.perf_counter()
        obj = pickle.loads(frames[1].buffer, buffers=[f.buffer for f in frames[2:]])
        nbytes += obj["adc"].nbytes
        got += 1
    return time.perf_counter() - (t0 or time.perf_counter()), nbytes


def via_bridge(cli: str, rec: str, n: int) -> tuple[float, int]:
    port = free_port()
    sock = zmq.Context.instance().socket(zmq.PULL)
    sock.setsockopt(zmq.RCVHWM, 64)
    sock.connect(f"tcp://127.0.0.1:{port}")
    bridge = subprocess.Popen([cli, "bridge", rec, "--zmq-push", f"tcp://127.0.0.1:{port}",
                               "--no-reconnect"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return consume(sock, n)
    finally:
        bridge.wait(timeout=60)
        sock.close(linger=0)


def via_pyzmq(cli: str, rec: str, n: int) -> tuple[float, int]:
    """The same multipart messages, sent by pure pyzmq from memory (read once through the
    bridge's own wire, so the bytes are identical)."""
    msgs = []
    port = free_port()
    pull = zmq.Context.instance().socket(zmq.PULL)
    pull.connect(f"tcp://127.0.0.1:{port}")
    bridge = subprocess.Popen([cli, "bridge", rec, "--zmq-push", f"tcp://127.0.0.1:{port}",
                               "--no-reconnect"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while len(msgs) < n:
        frames = pull.recv_multipart()
        if dz.parse_header(frames[0]).kind == dz.DATA:
            msgs.append(frames)
    bridge.wait(timeout=60)
    pull.close(linger=0)
    port = free_port()
    sender = subprocess.Popen([sys.executable, "-c", (
        "import pickle, sys, zmq\n"
        "msgs = pickle.load(sys.stdin.buffer)\n"
        "ctx = zmq.Context(); s = ctx.socket(zmq.PUSH); s.setsockopt(zmq.SNDHWM, 64)\n"
        f"s.bind('tcp://127.0.0.1:{port}')\n"
        "for m in msgs: s.send_multipart(m, copy=len(m[-1]) < 65536)\n"
        # zero-copy frames must outlive libzmq's sends: wait for them before exiting
        "s.close(linger=-1); ctx.term()\n")], stdin=subprocess.PIPE)
    sock = zmq.Context.instance().socket(zmq.PULL)
    sock.setsockopt(zmq.RCVHWM, 64)
    sock.connect(f"tcp://127.0.0.1:{port}")
    sender.stdin.write(pickle.dumps(msgs, protocol=5))
    sender.stdin.close()
    try:
        return consume(sock, n)
    finally:
        sender.wait(timeout=60)
        sock.close(linger=0)


def via_dask(cli: str, rec: str, n: int) -> tuple[float, int]:
    from distributed import Client, LocalCluster
    from dmapickle.dask import map_stream

    port = free_port()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="1GiB",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        sock = dz.pull(f"tcp://127.0.0.1:{port}", hwm=64)
        bridge = subprocess.Popen([cli, "bridge", rec, "--zmq-push", f"tcp://127.0.0.1:{port}",
                                   "--no-reconnect"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.perf_counter()
        total = 0
        done = 0
        for nbytes in map_stream(client, lambda m: int(m["adc"].nbytes), dz.receive(sock, timeout=30)):
            total += nbytes
            done += 1
            if done == n:
                break
        dt = time.perf_counter() - t0
        bridge.wait(timeout=60)
        sock.close(linger=0)
        return dt, total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/dmapickle"))
    ap.add_argument("--device", default=os.path.join(ROOT, "target/release/examples/device"))
    ap.add_argument("--dask", action="store_true")
    args = ap.parse_args()
    sizes = [("32 B array", 4, 20000), ("1 MiB array", 131072, 200)]
    print("| path | message | messages | msg/s | GB/s of arrays |")
    print("|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as d:
        for label, rows, n in sizes:
            rec = os.path.join(d, f"r{rows}.rec")
            recording(args.device, rows, n, rec)
            paths = [("bridge -> pyzmq", via_bridge), ("pyzmq -> pyzmq (peer)", via_pyzmq)]
            if args.dask:
                paths.append(("bridge -> dask (2 workers)", via_dask))
            for name, fn in paths:
                dt, nbytes = fn(args.bin, rec, n)
                print(f"| {name} | {label} | {n} | {n / dt:,.0f} | {nbytes / dt / 1e9:.2f} |", flush=True)
    print("load average:", open("/proc/loadavg").read().strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())

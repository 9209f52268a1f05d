"""The `dmapickle` CLI on live sources: listen, record, replay, inspect, Ctrl-C, errors, and the
ZeroMQ bridge with a stock pyzmq SUB consumer."""

from __future__ import annotations

import pickle
import re
import signal
import subprocess
import time

import numpy as np
import zmq

import dmapickle
from conftest import expected_adc, free_port, wait_for

LINE = re.compile(r"^seq=(\d+) pickle=\d+ B buffers=\[(\d+) B\] dict\{seq:int, t:float, adc:ndarray<i2>\((\d+),4\)")


def test_listen_prints_each_message_and_final_stats(cli, start_device, tmp_path):
    rec = tmp_path / "l.rec"
    start_device("--to", f"file:{rec}", "--count", "25", "--rows", "32", "--hostile-every", "5").wait()
    out = subprocess.run([cli, "listen", str(rec)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    # Frame sequence numbers: the 5 hostile frames took numbers too (every 6th).
    seqs = [int(LINE.match(l).group(1)) for l in lines[:-1]]
    assert seqs == [i for i in range(30) if i % 6 != 5]
    assert all(LINE.match(l).group(2) == "256" for l in lines[:-1])
    assert lines[-1].startswith("final (source ended): 25 msgs, ")
    assert "refused 5" in lines[-1] and "corrupt 0" in lines[-1] and "lost 0" in lines[-1]
    # Refused frames are reported, one line each, with the reason.
    refused = [l for l in out.stderr.splitlines() if l.startswith("dmapickle: refused: ")]
    assert len(refused) == 5 and all("pickle refused" in l for l in refused)
    quiet = subprocess.run([cli, "listen", "--quiet", str(rec)], capture_output=True, text=True)
    assert quiet.stdout.splitlines()[0].startswith("final (source ended): 25 msgs")


def test_ctrl_c_prints_final_stats_and_loses_nothing(cli, start_device):
    dev = start_device(
        "--to", "tcp-listen:127.0.0.1:0", "--count", "100000", "--rows", "16", "--interval-ms", "10"
    )
    proc = subprocess.Popen(
        [cli, "listen", f"tcp://{dev.address}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    while len(seen) < 10:
        seen.append(proc.stdout.readline())
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    lines = [l for l in (seen + rest.splitlines(keepends=True)) if l.strip()]
    final = lines[-1]
    m = re.match(r"final \(interrupted\): (\d+) msgs", final)
    assert m, final
    # Every message the CLI received was printed, in order, and counted.
    seqs = [int(LINE.match(l).group(1)) for l in lines[:-1]]
    assert seqs == list(range(len(seqs))) and int(m.group(1)) == len(seqs) >= 10


def test_record_then_replay_then_listen_and_inspect(cli, start_device, tmp_path):
    dev = start_device("--to", "tcp-listen:127.0.0.1:0", "--count", "60", "--rows", "64")
    rec = tmp_path / "rec.bin"
    out = subprocess.run(
        [cli, "record", "--no-reconnect", f"tcp://{dev.address}", str(rec)],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    m = re.match(r"recorded (\d+) B to ", out.stdout)
    assert m and int(m.group(1)) == rec.stat().st_size > 60 * 512
    # A recording is the raw link stream: Python reads it like the live source.
    with dmapickle.open(str(rec)) as stream:
        assert [msg.load()["seq"] for msg in stream] == list(range(60))
    # Replay it to a TCP reader: the same 60 messages come out of `listen`.
    port = free_port()
    replay = subprocess.Popen(
        [cli, "replay", str(rec), "--to", f"tcp-listen://127.0.0.1:{port}"],
        stderr=subprocess.PIPE, text=True,
    )
    assert "waiting for a reader" in replay.stderr.readline()
    listen = subprocess.run(
        [cli, "listen", "--no-reconnect", f"tcp://127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=60,
    )
    assert replay.wait(30) == 0
    seqs = [int(LINE.match(l).group(1)) for l in listen.stdout.splitlines()[:-1]]
    assert seqs == list(range(60))
    # inspect reads recordings too: a disassembly and summary per message.
    insp = subprocess.run([cli, "inspect", str(rec)], capture_output=True, text=True, timeout=60)
    assert insp.returncode == 0, insp.stderr
    assert insp.stdout.count("STACK_GLOBAL") == 60
    assert insp.stdout.count("summary: dict{seq:int, t:float, adc:ndarray<i2>(64,4)") == 60


def test_errors_are_one_clear_line(cli, tmp_path):
    port = free_port()
    out = subprocess.run(
        [cli, "listen", "--no-reconnect", f"tcp://127.0.0.1:{port}"], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1
    assert out.stderr.startswith(f"dmapickle: cannot open tcp://127.0.0.1:{port}: ")
    assert "listening" in out.stderr
    for bad, want in [("tcp://nohost", "tcp://HOST:PORT"), ("ftp://x", "unknown scheme")]:
        out = subprocess.run([cli, "listen", bad], capture_output=True, text=True)
        assert out.returncode == 2 and want in out.stderr and out.stderr.count("\n") == 1
    out = subprocess.run([cli, "listen", str(tmp_path / "nope.rec")], capture_output=True, text=True)
    assert out.returncode == 2 and "check the path" in out.stderr


def test_bridge_to_a_stock_pyzmq_subscriber(cli, start_device):
    dev = start_device(
        "--to", "tcp-listen:127.0.0.1:0", "--count", "200", "--rows", "256", "--interval-ms", "10"
    )
    port = free_port()
    bridge = subprocess.Popen(
        [cli, "bridge", "--no-reconnect", f"tcp://{dev.address}", "--zmq-pub", f"tcp://127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"data/")  # the header frame's topic: data, every source
    sub.setsockopt(zmq.RCVTIMEO, 20000)
    sub.connect(f"tcp://127.0.0.1:{port}")
    try:
        got = []
        while not got or got[-1] < 199:
            frames = sub.recv_multipart(copy=False)
            # Exactly what the README tells users to do.
            obj = pickle.loads(frames[1], buffers=[f.buffer for f in frames[2:]])
            assert len(frames) == 3
            np.testing.assert_array_equal(obj["adc"], expected_adc(obj["seq"], 256))
            got.append(obj["seq"])
        # A subscriber may join late (PUB/SUB), but what it gets is in order and complete after.
        assert got == list(range(got[0], 200)) and len(got) > 100
        out, err = bridge.communicate(timeout=30)
        assert bridge.returncode == 0, err
        assert re.match(r"final \(source ended\): published 200, 200 msgs", out), out
    finally:
        sub.close(0)
        ctx.term()
        if bridge.poll() is None:
            bridge.kill()


def test_record_ctrl_c_keeps_every_byte_received(cli, start_device, tmp_path):
    dev = start_device(
        "--to", "tcp-listen:127.0.0.1:0", "--count", "100000", "--rows", "16", "--interval-ms", "5"
    )
    rec = tmp_path / "live.rec"
    proc = subprocess.Popen(
        [cli, "record", f"tcp://{dev.address}", str(rec)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    wait_for(lambda: rec.exists() and rec.stat().st_size > 20 * 200, what="recording to grow")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    m = re.match(r"recorded (\d+) B to \S+ \(interrupted\): (\d+) msgs", out)
    assert m, out
    # Every byte read is in the file, and every message counted is in it, in order.
    assert int(m.group(1)) == rec.stat().st_size
    with dmapickle.open(str(rec)) as stream:
        seqs = [msg.load()["seq"] for msg in stream]
    assert seqs == list(range(len(seqs))) and len(seqs) >= int(m.group(2)) >= 10


def test_python_ctrl_c_interrupts_a_waiting_iteration(start_device, tmp_path):
    import sys

    dev = start_device("--to", "tcp-listen:127.0.0.1:0", "--count", "1", "--interval-ms", "60000")
    script = (
        "import dmapickle, sys\n"
        f"s = dmapickle.open('tcp://{dev.address}')\n"
        "print(next(iter(s)).seq, flush=True)\n"
        "try:\n"
        "    next(iter(s))\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', s.stats['frames_ok'], flush=True)\n"
        "    s.close()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "0"
    time.sleep(0.3)  # now waiting, GIL released, for a message that does not come
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and out.strip() == "interrupted 1"

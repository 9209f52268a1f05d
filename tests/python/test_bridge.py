"""The ZeroMQ bridge past one machine (issue 14): the header frame and its topics, several
sources in one bridge, a lagging PUB subscriber that knows exactly how much it lost, and a real
dask.distributed cluster (2 worker processes) fed through the no-drop PUSH path, every result
checked against what the device simulator sent. Every process started here is killed."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from conftest import ROOT, expected_adc, free_port
from dmapickle import zmq as dmz


def device_sums(seq: int, rows: int, array: int = 0) -> list:
    """Per-channel sums of array `array` of message `seq`, from the simulator's rule alone
    (host/examples/device.rs: sample k is (31*seq + 7*array + k) mod 2**16 as an int16)."""
    sums = [0, 0, 0, 0]
    for r in range(rows):
        for c in range(4):
            v = (31 * seq + 7 * array + 4 * r + c) % 65536
            sums[c] += v - 65536 if v >= 32768 else v
    return sums


class Bridge:
    """`dmapickle bridge ARGS`, killed on close."""

    def __init__(self, cli: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [cli, "bridge", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def finish(self, timeout: float = 30) -> tuple:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def start_bridge(cli):
    started = []

    def start(*args: str) -> Bridge:
        b = Bridge(cli, *args)
        started.append(b)
        return b

    yield start
    for b in started:
        b.close()


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def published(out: str, name: str = "") -> int:
    who = f" {name}" if name else ""
    m = re.search(rf"^final \(source ended\){who}: published (\d+),", out, re.M)
    assert m, out
    return int(m.group(1))


def test_the_documented_header_bytes_decode():
    doc = (ROOT / "docs/bridge.md").read_text()
    block = doc.split("Example: source `dev0`")[1].split("```text")[1].split("```")[0]
    raw = bytes.fromhex(" ".join(line.split("  ")[0] for line in block.strip().splitlines()))
    h = dmz.parse_header(raw)
    assert h == dmz.Header(b"data/dev0/", "dev0", dmz.DATA, dmz.RESTART, 7, 5, 1700000000123456789, 2, 1)
    with pytest.raises(ValueError, match="version 1"):
        dmz.parse_header(raw[:11] + b"\x02" + raw[12:])
    assert dmz.topic("dev0") == b"data/dev0/" and dmz.topic(kind="stats") == b"stats/"


def test_the_consumer_module_needs_only_pyzmq(tmp_path):
    # Copied next to a consumer without dmapickle (or numpy): it imports and decodes headers.
    src = Path(dmz.__file__).read_text()
    (tmp_path / "bridge_consumer.py").write_text(src)
    code = (
        "import sys; sys.modules['numpy'] = None; sys.modules['dmapickle'] = None\n"
        "import bridge_consumer as b\n"
        "h = b.parse_header(b'stats/x/\\0' + b.HEADER.pack(1, 1, 2, 3, 4, 5, 6, 7))\n"
        "assert h.source == 'x' and h.flags & b.FINAL and h.refused == 7, h\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('zmq', 'numpy', 'dmapickle')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['dmapickle', 'numpy']", out.stdout  # the two blocked entries


def test_two_sources_one_bridge_topics_per_source(start_device, start_bridge, ctx):
    a = start_device("--to", "tcp-listen:127.0.0.1:0", "--count", "40", "--rows", "8")
    b = start_device("--to", "tcp-listen:127.0.0.1:0", "--count", "25", "--rows", "16", "--buffers", "2")
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    bridge = start_bridge(
        "--no-reconnect", f"tcp://{a.address}", f"tcp://{b.address}", "--name", "left",
        "--name", "right", "--zmq-pub", endpoint, "--wait-subscribers", "4",
    )
    # Data and stats of one source each: two subscriptions per subscriber.
    only_left = dmz.subscribe(endpoint, ["left"], context=ctx)
    only_right = dmz.subscribe(endpoint, ["right"], context=ctx)
    left = [m.load() for m in dmz.receive(only_left, timeout=10)]
    gaps = dmz.Gaps()
    right = []
    for m in dmz.receive(only_right, gaps=gaps, timeout=20):
        assert m.header.source == "right" and m.header.topic == b"data/right/"
        right.append(m.load())
    code, out, err = bridge.finish()
    assert code == 0, err
    assert [d["seq"] for d in left] == list(range(40)) and [d["seq"] for d in right] == list(range(25))
    for d in left:
        np.testing.assert_array_equal(d["adc"], expected_adc(d["seq"], 8))
    for d in right:
        assert d["adc1"].sum(axis=0).tolist() == device_sums(d["seq"], 16, 1)
    assert gaps.ended == {"right": True} and gaps.lost == {"right": 0}
    assert published(out, "left") == 40 and published(out, "right") == 25


def test_a_lagging_pub_subscriber_knows_exactly_how_many_it_lost(start_device, start_bridge, ctx):
    # 64 KiB messages, 2 ms apart; the subscriber stops reading for 0.8 s after the first one,
    # long past what the high-water marks and socket buffers hold, then catches up.
    count, rows = 500, 8192
    dev = start_device("--to", "tcp-listen:127.0.0.1:0", "--count", str(count), "--rows", str(rows), "--interval-ms", "2")
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    bridge = start_bridge(
        "--no-reconnect", f"tcp://{dev.address}", "--zmq-pub", endpoint, "--hwm", "10",
        "--wait-subscribers", "2",
    )
    sub = dmz.subscribe(endpoint, context=ctx, hwm=10)
    sub.setsockopt(zmq.RCVBUF, 1 << 16)
    gaps = dmz.Gaps()
    got = []
    for m in dmz.receive(sub, gaps=gaps, timeout=20):
        if not got:
            time.sleep(0.8)
        d = m.load()
        np.testing.assert_array_equal(d["adc"], expected_adc(d["seq"], rows))
        assert m.header.device_seq == d["seq"] and m.header.link_lost == 0
        got.append(m.header.bridge_seq)
    code, out, err = bridge.finish()
    assert code == 0, err
    sent = published(out)
    assert sent == count and gaps.ended == {"dev0": True}
    lost = gaps.lost["dev0"]
    assert 0 < lost < count, (lost, len(got))
    assert lost == sent - len(got) and got[0] == 0
    assert sorted(set(range(sent)) - set(got)).__len__() == lost
    assert gaps.device_gaps["dev0"] == lost - (count - 1 - got[-1])  # the tail shows only at the end


# --- a real dask.distributed cluster --------------------------------------------------------

def channel_sums(msg):
    """The work each message becomes (runs in a worker process)."""
    a = msg["adc"]
    return msg["seq"], a.sum(axis=0, dtype=np.int64).tolist(), a.flags.writeable, a.flags.owndata


def slow_channel_sums(msg):
    time.sleep(0.03)
    return channel_sums(msg)


@pytest.fixture(scope="module")
def dask_client():
    from distributed import Client, LocalCluster  # .venv/np2 has it (scripts/setup.sh)

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, memory_limit="400MiB",
        dashboard_address=None, silence_logs=40,
    )
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def test_dask_sends_our_arrays_as_separate_frames_read_only(start_device, start_bridge, ctx):
    from distributed.protocol import deserialize, serialize

    dev = start_device("--to", "tcp-listen:127.0.0.1:0", "--count", "1", "--rows", "4096", "--readonly")
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    start_bridge("--no-reconnect", f"tcp://{dev.address}", "--zmq-push", endpoint)
    [m] = list(dmz.receive(dmz.pull(endpoint, context=ctx), timeout=10))
    value = m.load()
    assert not value["adc"].flags.writeable  # the device's descriptor said read-only
    assert np.shares_memory(value["adc"], np.frombuffer(m.buffers[0], np.uint8))  # zero-copy
    header, frames = serialize(value, serializers=("dask", "pickle"), on_error="raise")
    sizes = [memoryview(f).nbytes for f in frames]
    assert sizes[1:] == [4096 * 8], sizes  # the array is its own frame, not inside the pickle
    assert np.shares_memory(np.frombuffer(frames[1], np.uint8), value["adc"])  # sent from place
    received = [bytearray(f) for f in frames]  # what a worker's socket reads into
    back = deserialize(header, received)
    assert np.shares_memory(back["adc"], np.frombuffer(received[1], np.uint8))  # no copy after
    assert not back["adc"].flags.writeable  # read-only stays read-only


def test_a_dask_cluster_computes_every_message_through_the_push_bridge(start_device, start_bridge, ctx, dask_client):
    from dmapickle.dask import map_stream

    # Small messages, in order: every per-channel sum equals the simulator's.
    count, rows = 150, 256
    dev = start_device("--to", "tcp-listen:127.0.0.1:0", "--count", str(count), "--rows", str(rows), "--readonly")
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    bridge = start_bridge("--no-reconnect", f"tcp://{dev.address}", "--zmq-push", endpoint, "--hwm", "4")
    results = list(map_stream(dask_client, channel_sums, dmz.receive(dmz.pull(endpoint, context=ctx, hwm=4)), max_in_flight=6))
    code, out, err = bridge.finish()
    assert code == 0, err
    assert [r[0] for r in results] == list(range(count)) and published(out) == count
    for seq, sums, writeable, owndata in results:
        assert sums == device_sums(seq, rows), seq
        assert not writeable and not owndata  # a read-only view of the frame the worker read

    # Large messages (256 KiB, scattered straight to a worker), a slow worker, as completed:
    # the bridge stops reading, so the device is still sending long after the first results.
    count, rows = 150, 32768
    dev = start_device("--to", "tcp-listen:127.0.0.1:0", "--count", str(count), "--rows", str(rows))
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    bridge = start_bridge("--no-reconnect", f"tcp://{dev.address}", "--zmq-push", endpoint, "--hwm", "2")
    seen, done_when_device_ended = set(), None
    for seq, sums, writeable, _ in map_stream(
        dask_client, slow_channel_sums, dmz.receive(dmz.pull(endpoint, context=ctx, hwm=2)),
        max_in_flight=4, ordered=False,
    ):
        assert sums == device_sums(seq, rows), seq
        seen.add(seq)
        if done_when_device_ended is None and dev.proc.poll() is not None:
            done_when_device_ended = len(seen)
    code, out, err = bridge.finish()
    assert code == 0, err
    assert seen == set(range(count)) and published(out) == count
    assert re.search(r"lost 0, refused 0", out), out
    # Backpressure: what the device could write ahead is bounded by the queues (in flight 4,
    # PULL and PUSH high-water marks 2 + 2, the bridge's channel 2, socket buffers: about 45
    # messages measured), not all 150 as it would without.
    assert done_when_device_ended is None or done_when_device_ended >= 60, done_when_device_ended

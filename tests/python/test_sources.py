"""Each source kind end to end, from the real device code (core Pickler + hal Publisher) into
numpy arrays that sit on the received memory: file, stdin, tcp, unix socket, a pty as a serial
port, and a shared region (mapped file) with releases."""

from __future__ import annotations

import ctypes
import gc
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import dmapickle
from conftest import PYTHON, expected_adc, wait_for


def address(arr: np.ndarray) -> int:
    return arr.__array_interface__["data"][0]


def check_message(msg: dmapickle.Message, seq: int, rows: int, readonly: bool = False):
    """The message is message `seq`, its array is a zero-copy view of the delivered buffer."""
    obj = msg.load()
    assert msg.seq == seq and obj["seq"] == seq and obj["t"] == seq / 1000.0
    adc = obj["adc"]
    assert adc.dtype == np.int16 and adc.shape == (rows, 4)
    np.testing.assert_array_equal(adc, expected_adc(seq, rows))
    (buf,) = msg.buffers
    assert np.shares_memory(adc, np.frombuffer(buf, dtype=np.uint8))
    assert address(adc) == address(np.frombuffer(buf, dtype=np.uint8))
    assert buf.readonly == readonly and adc.flags.writeable == (not readonly)
    return adc


def read_all(stream, n: int, rows: int, readonly: bool = False):
    arrays = []
    for seq, msg in enumerate(stream):
        arrays.append(check_message(msg, seq, rows, readonly))
    assert len(arrays) == n
    return arrays


def test_file_source_is_zero_copy_and_in_order(start_device, tmp_path):
    rec = tmp_path / "a.rec"
    start_device("--to", f"file:{rec}", "--count", "50", "--rows", "64").wait()
    with dmapickle.open(str(rec)) as stream:
        arrays = read_all(stream, 50, 64)
        stats = stream.stats
    assert stats["frames_ok"] == 50 and stats["corrupt"] == stats["lost"] == stats["refused"] == 0
    # Inline buffers are 64-byte aligned in the receive block, and writable like the descriptor says.
    assert all(address(a) % 64 == 0 for a in arrays)
    arrays[3][0, 0] = 7
    assert arrays[3][0, 0] == 7
    # The views stay valid after close; the file:// spelling is the same source.
    np.testing.assert_array_equal(arrays[49], expected_adc(49, 64))
    with dmapickle.open(f"file://{rec}") as stream:
        assert sum(1 for _ in stream) == 50


def test_read_only_descriptors_give_read_only_arrays(start_device, tmp_path):
    rec = tmp_path / "ro.rec"
    start_device("--to", f"file:{rec}", "--count", "3", "--rows", "16", "--readonly").wait()
    with dmapickle.open(str(rec)) as stream:
        arrays = read_all(stream, 3, 16, readonly=True)
    with pytest.raises(ValueError):
        arrays[0][0, 0] = 1
    with pytest.raises(ValueError):
        arrays[0].setflags(write=True)


def test_stdin_source(device):
    script = (
        "import dmapickle\n"
        "from conftest import expected_adc\n"
        "import numpy as np\n"
        "n = 0\n"
        "for m in dmapickle.open('-'):\n"
        "    o = m.load(); assert o['seq'] == n, o['seq']\n"
        "    np.testing.assert_array_equal(o['adc'], expected_adc(n, 32)); n += 1\n"
        "print(n)\n"
    )
    dev = subprocess.Popen([device, "--count", "200", "--rows", "32"], stdout=subprocess.PIPE)
    out = subprocess.run(
        [PYTHON, "-c", script],
        stdin=dev.stdout,
        capture_output=True,
        cwd=os.path.dirname(__file__),
        timeout=60,
    )
    dev.stdout.close()
    assert dev.wait(30) == 0
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().strip() == "200"


def test_tcp_source(start_device):
    dev = start_device("--to", "tcp-listen:127.0.0.1:0", "--count", "300", "--rows", "256")
    with dmapickle.open(f"tcp://{dev.address}", reconnect=False) as stream:
        read_all(stream, 300, 256)
        assert stream.stats["bytes_read"] > 300 * 2048


def test_unix_source(start_device, tmp_path):
    sock = tmp_path / "dev.sock"
    dev = start_device("--to", f"unix-listen:{sock}", "--count", "100", "--rows", "128")
    assert dev.address == str(sock)
    with dmapickle.open(f"unix://{sock}", reconnect=False) as stream:
        read_all(stream, 100, 128)


def test_pty_as_serial_port(device):
    master, slave = os.openpty()
    slave_path = os.ttyname(slave)
    # The stream opens (and sets raw mode on) the port before any byte is written.
    stream = dmapickle.open(f"serial://{slave_path}?baud=921600", reconnect=False)
    dev = subprocess.Popen([device, "--count", "40", "--rows", "64"], stdout=subprocess.PIPE)

    def pump():
        while True:
            chunk = dev.stdout.read(4096)
            if not chunk:
                break
            os.write(master, chunk)

    t = threading.Thread(target=pump)
    t.start()
    try:
        for seq in range(40):
            msg = stream.next(timeout=20)
            check_message(msg, seq, 64)
    finally:
        stream.close()
        t.join(10)
        dev.wait(10)
        os.close(master)
        os.close(slave)


def region_mapping_contains(addr: int, path: str) -> bool:
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if lo <= addr < hi and len(parts) >= 6 and parts[5] == path:
                return True
    return False


def test_shared_region_zero_copy_and_release_on_last_view(start_device, tmp_path):
    region = f"/dev/shm/dmapickle-test-{os.getpid()}"
    rows = 128
    dev = start_device(
        "--to", "tcp-listen:127.0.0.1:0", "--count", "30", "--rows", str(rows),
        "--region", f"2={region}", "--readonly",
    )
    try:
        stream = dmapickle.open(f"tcp://{dev.address}", regions={2: region}, reconnect=False)
        held = []
        # The region has 8 slots: hold 8 messages' arrays, and the device cannot send a 9th.
        for seq in range(8):
            msg = stream.next(timeout=20)
            assert msg.shared == [True]
            adc = check_message(msg, seq, rows, readonly=True)
            # The array's memory is the mapped region file itself.
            assert region_mapping_contains(address(adc), region)
            held.append(adc)
            del msg
        with pytest.raises(TimeoutError):
            stream.next(timeout=1.0)
        # Nothing held was overwritten while the device waited.
        for seq, adc in enumerate(held):
            np.testing.assert_array_equal(adc, expected_adc(seq, rows))
        # Dropping the last view of a buffer releases it to the device, which goes on.
        del held, adc
        gc.collect()
        for seq in range(8, 30):
            msg = stream.next(timeout=20)
            check_message(msg, seq, rows, readonly=True)
            del msg
        assert stream.next(timeout=20) is None
        stats = stream.stats
        stream.close()
        assert stats["frames_ok"] == 30 and stats["corrupt"] == 0
        assert dev.wait(30) == 0
    finally:
        if os.path.exists(region):
            os.unlink(region)


def test_tcp_disconnect_and_reconnect(start_device):
    # The device drops the connection after every 5 messages and serves the rest on the next.
    dev = start_device(
        "--to", "tcp-listen:127.0.0.1:0", "--count", "15", "--rows", "8", "--per-connection", "5"
    )
    with dmapickle.open(f"tcp://{dev.address}") as stream:
        for seq in range(15):
            check_message(stream.next(timeout=20), seq, 8)
        stats = stream.stats
    assert stats["disconnects"] >= 2 and stats["reconnects"] >= 2, stats
    assert stats["lost"] == 0 and stats["frames_ok"] == 15


def test_without_reconnect_a_refused_connection_is_one_clear_error():
    from conftest import free_port

    port = free_port()
    with pytest.raises(OSError) as e:
        dmapickle.open(f"tcp://127.0.0.1:{port}", reconnect=False)
    msg = str(e.value)
    assert msg.startswith(f"cannot open tcp://127.0.0.1:{port}: ") and "\n" not in msg
    with pytest.raises(ValueError, match="tcp://HOST:PORT"):
        dmapickle.open("tcp://nohost")


def test_background_thread_iteration_releases_the_gil(start_device):
    dev = start_device(
        "--to", "tcp-listen:127.0.0.1:0", "--count", "20", "--rows", "8", "--interval-ms", "20"
    )
    got, ticks = [], [0]
    stream = dmapickle.open(f"tcp://{dev.address}", reconnect=False)

    def consume():
        for msg in stream:
            got.append(msg.load()["seq"])

    t = threading.Thread(target=consume)
    t.start()
    # While the consumer waits for the slow device, this thread keeps running Python code.
    while t.is_alive():
        ticks[0] += 1
        time.sleep(0.001)
    assert got == list(range(20))
    assert ticks[0] > 50


def test_with_closes_and_delivered_arrays_stay_valid(start_device):
    dev = start_device(
        "--to", "tcp-listen:127.0.0.1:0", "--count", "100000", "--rows", "16", "--interval-ms", "5"
    )
    with dmapickle.open(f"tcp://{dev.address}") as stream:
        first = stream.next(timeout=20).load()["adc"]
    assert stream.closed
    assert stream.next() is None
    gc.collect()
    np.testing.assert_array_equal(first, expected_adc(0, 16))

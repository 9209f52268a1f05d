"""Shared fixtures for the dmapickle Python tests (scripts/test.d/50-python.sh builds what they use).

DMAPICKLE_BIN: the `dmapickle` CLI (built with --features zmq); DMAPICKLE_DEVICE: the device
simulator (`cargo build --example device`, the real core Pickler + hal Publisher). Both default to
target/debug/ in the repository. A missing one is a failure, never a skip.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

# A run started with SIGINT ignored (a CI job started in the background or under nohup) passes
# that on to every process it starts, and Python then never installs its Ctrl-C handler: the
# tests that send SIGINT would see nothing happen. Python's own handler here makes children
# start with the default again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = Path(__file__).resolve().parents[2]


def _artifact(env: str, default: Path) -> str:
    path = Path(os.environ.get(env, default))
    if not path.is_file():
        pytest.fail(f"{path} missing: run scripts/test.d/50-python.sh (or scripts/setup.sh first)")
    return str(path)


@pytest.fixture(scope="session")
def cli() -> str:
    return _artifact("DMAPICKLE_BIN", ROOT / "target/debug/dmapickle")


@pytest.fixture(scope="session")
def device() -> str:
    return _artifact("DMAPICKLE_DEVICE", ROOT / "target/debug/examples/device")


def expected_adc(seq: int, rows: int):
    """Message `seq`'s samples, as the device writes them: (31*seq + k) mod 2**16 as int16."""
    import numpy as np

    k = np.arange(rows * 4, dtype=np.int64)
    return ((31 * seq + k) & 0xFFFF).astype(np.uint16).view(np.int16).reshape(rows, 4)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Device:
    """A running device simulator; `address` is what it listens on (tcp/unix targets)."""

    def __init__(self, exe: str, *args: str, stdout=subprocess.DEVNULL, stdin=None) -> None:
        self.proc = subprocess.Popen(
            [exe, *args], stdout=stdout, stderr=subprocess.PIPE, stdin=stdin
        )
        self.address = None
        if any(a.startswith(("tcp-listen:", "unix-listen:")) for a in args):
            line = self.proc.stderr.readline().decode()
            m = re.match(r"listening (\S+)", line)
            if not m:
                self.proc.kill()
                raise AssertionError(f"device did not start listening: {line!r}")
            self.address = m.group(1)

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()


@pytest.fixture
def start_device(device):
    started = []

    def start(*args: str, **kw) -> Device:
        d = Device(device, *args, **kw)
        started.append(d)
        return d

    yield start
    for d in started:
        d.close()


def wait_for(cond, timeout: float = 10.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


PYTHON = sys.executable

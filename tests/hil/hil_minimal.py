"""The hal guide's minimal firmware (tests/minimal-firmware: only the public API, main.rs under 80
lines) in QEMU mps2-an386: Python reads its UART with `dmapickle.open` and checks every message,
every field and every sample, and that QEMU ends with the firmware's exit status 0.
"""
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from board import ROOT, track

MESSAGES = 200  # tests/minimal-firmware/src/main.rs
SHAPE = (128, 4)


def minimal_elf():
    elf = os.environ.get("DMAPICKLE_MINIMAL_ELF")
    if not elf:
        target = os.environ.get("CARGO_TARGET_DIR") or ROOT / "tests" / "minimal-firmware" / "target"
        elf = Path(target) / "thumbv7em-none-eabihf" / "release" / "minimal-firmware"
    elf = Path(elf)
    if not elf.is_file():
        raise RuntimeError(f"{elf} missing: `cd tests/minimal-firmware && cargo build --release` "
                           "(scripts/test.d/60-hil.sh does) or set DMAPICKLE_MINIMAL_ELF")
    return elf


def expected_samples(seq):
    """Block `seq` as the firmware's SysTick writes it: sample i is seq * 1000 + 7 * i, as i16."""
    i = np.arange(SHAPE[0] * SHAPE[1], dtype=np.int64)
    return ((seq * 1000 + 7 * i) & 0xFFFF).astype(np.uint16).view(np.int16).reshape(SHAPE)


@pytest.fixture
def qemu():
    """QEMU running the minimal firmware with UART0 on a unix socket (it waits for the host);
    yields (socket path, process). Its process group is killed and the socket removed after."""
    sockdir = Path(tempfile.mkdtemp(prefix="dmapickle-minimal-"))
    sock = sockdir / "uart0.sock"
    cmd = ["timeout", "--kill-after=5", "120", "qemu-system-arm", "-machine", "mps2-an386",
           "-cpu", "cortex-m4", "-display", "none", "-monitor", "none",
           "-semihosting-config", "enable=on,target=native",
           "-serial", f"unix:{sock},server=on,wait=on", "-kernel", str(minimal_elf())]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    track(proc.pid)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert proc.poll() is None, f"QEMU exited with {proc.returncode}: {proc.stdout.read()!r}"
            assert time.monotonic() < deadline, "QEMU did not open its UART socket in 30 s"
            time.sleep(0.02)
        yield sock, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        shutil.rmtree(sockdir, ignore_errors=True)


def test_minimal_firmware_delivers_every_sample(qemu):
    try:
        import dmapickle
    except ImportError as e:  # never skip: a missing package is a broken setup
        raise RuntimeError(f"`import dmapickle` failed ({e}): run scripts/setup.sh") from e
    sock, proc = qemu
    with dmapickle.open(f"unix://{sock}", profile="strict", reconnect=False) as stream:
        for seq in range(MESSAGES):
            msg = stream.next(timeout=60)
            assert msg is not None, f"stream ended after {seq} messages: {stream.stats}"
            obj = msg.load()
            assert msg.seq == seq and set(obj) == {"seq", "temp_c", "samples"}, obj.keys()
            assert obj["seq"] == seq
            assert obj["temp_c"] == 20.0 + (seq % 16) * 0.25
            samples = obj["samples"]
            assert type(samples) is np.ndarray and samples.dtype == np.dtype("<i2")
            assert samples.shape == SHAPE and not samples.flags.writeable
            bad = np.argwhere(samples != expected_samples(seq))
            assert bad.size == 0, f"seq {seq}: {len(bad)} samples differ, first at {bad[0]}"
        assert stream.next(timeout=30) is None, "more messages than the firmware sends"
        stats = stream.stats
    assert stats["frames_ok"] == MESSAGES, stats
    assert [stats[k] for k in ("corrupt", "lost", "bytes_skipped", "refused")] == [0, 0, 0, 0], stats
    assert proc.wait(timeout=30) == 0, proc.stdout.read()
    print(f"\n[hil] minimal firmware: {MESSAGES} messages, {stats['bytes_read']} UART bytes")

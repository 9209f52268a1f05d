"""The hal guide's minimal firmware (tests/minimal-firmware: only the public API, main.rs under 80
lines) in QEMU mps2-an386: Python reads its UART with `dmapickle.open` and checks every message,
every field and every sample, and that QEMU ends with the firmware's exit status 0. The
dmapickle pytest plugin runs it (`firmware=` names this test's own ELF).
"""
import numpy as np
import pytest

from builds import minimal_elf

MESSAGES = 200  # tests/minimal-firmware/src/main.rs
SHAPE = (128, 4)
pytestmark = pytest.mark.dmapickle(targets=("qemu",), timeout=120, profile="strict")


def expected_samples(seq):
    """Block `seq` as the firmware's SysTick writes it: sample i is seq * 1000 + 7 * i, as i16."""
    i = np.arange(SHAPE[0] * SHAPE[1], dtype=np.int64)
    return ((seq * 1000 + 7 * i) & 0xFFFF).astype(np.uint16).view(np.int16).reshape(SHAPE)


def test_minimal_firmware_delivers_every_sample(dmapickle_start):
    board = dmapickle_start(firmware=minimal_elf())  # no boot parameters: it runs one program
    with board.stream() as stream:
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
    assert board.wait(30) == 0, board.describe() + "\n" + board.log()
    print(f"\n[hil] minimal firmware: {MESSAGES} messages, {stats['bytes_read']} UART bytes")

"""The user's path, in hardware in the loop: `dmapickle.open()` (the PyO3 package) reads the
firmware's UART (and maps its PSRAM): inline arrays are views of the receive buffers, and a
shared buffer goes back to the device exactly when Python's last array on it dies. The
dmapickle pytest plugin starts the firmware and opens the stream (`dmapickle_start`,
`target.stream()`, which is `dmapickle.open` on the target's socket and PSRAM file).
"""
import gc

import numpy as np
import pytest

from hil_link import DTYPE, done_line
from waveform import block_time_us, expected_blocks

MESSAGES = 1024
HOLD = 16
pytestmark = pytest.mark.dmapickle(targets=("qemu",), timeout=240, profile="strict")


def check(objs, seqs, block, rate):
    for seq, obj in zip(seqs, objs):
        assert obj["seq"] == seq and obj["rate_hz"] == rate
        assert obj["t_us"] == block_time_us(seq, block, rate)
        adc = obj["adc"]
        assert adc.shape == (block, 4) and adc.dtype == DTYPE and not adc.flags.writeable
    got = np.stack([obj["adc"] for obj in objs])
    assert np.array_equal(got, expected_blocks(seqs, block)), f"samples differ in seqs {seqs[0]}..{seqs[-1]}"


def next_batch(stream, seq, n, block, rate, shared):
    """The next `n` messages, which must be seq, seq + 1, ...: every field and sample checked,
    and each array a view of its message's buffer (the receive buffer the reader filled, or the
    PSRAM slot), not a copy. Returns (messages, loaded objects, seqs)."""
    msgs = [stream.next(timeout=60) for _ in range(n)]
    assert None not in msgs, f"stream ended after {seq} messages: {stream.stats}"
    assert all(m.shared == [shared] for m in msgs)
    objs = [m.load() for m in msgs]
    seqs = [m.seq for m in msgs]
    assert seqs == list(range(seq, seq + len(msgs)))
    check(objs, seqs, block, rate)
    for m, obj in zip(msgs, objs):
        assert np.shares_memory(obj["adc"], np.frombuffer(m.buffers[0], np.uint8))
    return msgs, objs, seqs


def test_package_releases_shared_buffers_when_the_last_array_dies(dmapickle_start):
    block, rate = 256, 256_000
    board = dmapickle_start(mode="shared", n=block, count=MESSAGES, rate=rate)
    with board.stream() as stream:
        held, held_seqs = [], []
        seq = 0
        while seq < MESSAGES:
            msgs, objs, seqs = next_batch(stream, seq, min(HOLD, MESSAGES - seq), block, rate, True)
            if held:
                # Held while the device produced this batch: not one byte may have changed.
                check(held, held_seqs, block, rate)
            # Dropping the arrays and messages is the release: no explicit call.
            del held[:], msgs
            gc.collect()
            held, held_seqs = objs, seqs
            seq += len(seqs)
        del held[:], objs
        gc.collect()
        assert stream.next(timeout=60) is None
        stats = stream.stats
    assert stats["frames_ok"] == MESSAGES, stats
    assert (stats["corrupt"], stats["lost"], stats["refused"]) == (0, 0, 0), stats
    assert board.wait() == 0, board.log()
    log = board.log()
    assert "shared region: 0 buffers still lent, 0 stray releases" in log, log
    messages, stalls, overflows, stack = done_line(log)
    assert (messages, overflows) == (MESSAGES, 0)
    assert stalls > 0, "holding 32 slots must have made the device wait for releases"
    print(f"\n[hil] python package, shared: {messages} messages, {stalls} ADC stalls, stack {stack} bytes")


def test_package_receives_inline_blocks_zero_copy(dmapickle_start):
    # Smaller blocks keep the byte-at-a-time UART model quick; same checks as the shared run.
    block, rate = 64, 64_000
    board = dmapickle_start(mode="inline", n=block, count=MESSAGES, rate=rate)
    with board.stream() as stream:
        seq = 0
        while seq < MESSAGES:
            msgs, _, _ = next_batch(stream, seq, min(128, MESSAGES - seq), block, rate, False)
            seq += len(msgs)
        assert stream.next(timeout=60) is None
        stats = stream.stats
    assert stats["frames_ok"] == MESSAGES, stats
    assert (stats["corrupt"], stats["lost"], stats["refused"]) == (0, 0, 0), stats
    assert board.wait() == 0, board.log()
    messages, _, overflows, _ = done_line(board.log())
    assert (messages, overflows) == (MESSAGES, 0)


def test_device_reboots_restart_the_sequence_and_the_region(dmapickle_start):
    # Two boots (SYSRESETREQ in between: QEMU resets the machine, the run goes on) of 256
    # shared-region messages each. The host sees SEQ_RESTART twice, counts no loss, and the
    # re-initialised release ring keeps working.
    block, rate, per_boot = 256, 256_000, 256
    board = dmapickle_start(mode="shared", n=block, count=per_boot, rate=rate, reboot=1)
    with board.stream() as stream:
        received = 0
        while received < 2 * per_boot:
            msgs = [stream.next(timeout=60) for _ in range(HOLD)]
            assert None not in msgs, f"stream ended after {received} messages: {stream.stats}"
            first = received % per_boot
            seqs = [m.seq for m in msgs]
            assert seqs == list(range(first, first + HOLD)), seqs
            objs = [m.load() for m in msgs]
            check(objs, seqs, block, rate)
            received += HOLD
            del msgs, objs  # released before the device finishes its boot (it drains first)
            gc.collect()
        assert stream.next(timeout=60) is None
        stats = stream.stats
    assert stats["frames_ok"] == 2 * per_boot, stats
    assert (stats["corrupt"], stats["lost"], stats["refused"]) == (0, 0, 0), stats
    assert (stats["restarts"], stats["seq_jumps"]) == (2, 0), stats
    assert board.wait() == 0, board.log()
    log = board.log()
    assert "rebooting (1 of 1)" in log and "(boot 1)" in log, log
    assert log.count("shared region: 0 buffers still lent, 0 stray releases") == 2, log

"""Hardware in the loop: the firmware in QEMU publishes >= 1000 ADC blocks; Python checks every
sample of every array against the recomputed waveform, plus seq continuity, t_us, shapes, dtypes,
read-only flags and zero copy, over the inline link (UART0) and the shared-region link (PSRAM
backed by a host file, releases through the ring). The dmapickle pytest plugin starts QEMU
(`dmapickle_start`); `dmapickle-hil-feeder` (conftest's `feeder`) reads it with dmapickle-host.
"""
import re

import numpy as np
import pytest

from waveform import block_time_us, expected_blocks

MESSAGES = 1024
DTYPE = np.dtype("<i2")
# Fault-free QEMU runs of this firmware only; 240 s at most each.
pytestmark = pytest.mark.dmapickle(targets=("qemu",), timeout=240)


def check_batch(records, objs, block, rate_hz, first_seq):
    """Every field and every sample of consecutive messages starting at `first_seq`."""
    seqs = [r.seq for r in records]
    assert seqs == list(range(first_seq, first_seq + len(records))), f"seq gap in {seqs}"
    for r, obj in zip(records, objs):
        assert r.restart == (r.seq == 0), f"SEQ_RESTART on seq {r.seq}"
        assert set(obj) == {"seq", "t_us", "rate_hz", "adc"}, obj.keys()
        assert obj["seq"] == r.seq
        assert obj["t_us"] == block_time_us(r.seq, block, rate_hz)
        assert obj["rate_hz"] == rate_hz
        adc = obj["adc"]
        assert type(adc) is np.ndarray
        assert adc.shape == (block, 4) and adc.dtype == DTYPE, (adc.shape, adc.dtype)
        assert not adc.flags.writeable and adc.flags.c_contiguous
        assert len(r.entries) == 1 and r.entries[0].readonly and r.entries[0].length == block * 8
    got = np.stack([obj["adc"] for obj in objs])
    want = expected_blocks(seqs, block)
    bad = np.argwhere(got != want)
    assert bad.size == 0, f"{len(bad)} samples differ, first at (msg, row, ch) {bad[0]}: seq {seqs[bad[0][0]]}"


def next_batch(feed, seq, n, block, rate):
    """The next `n` records from the feeder, checked as consecutive from `seq`; (records, objs)."""
    records = [feed.next() for _ in range(n)]
    assert None not in records, f"stream ended after {seq} messages: {feed.end}"
    objs = [r.load() for r in records]
    check_batch(records, objs, block, rate, seq)
    return records, objs


def done_line(log):
    m = re.search(r"done: (\d+) messages, (\d+) ADC stalls, (\d+) overflows, stack high water (\d+) bytes", log)
    assert m, log
    return tuple(int(x) for x in m.groups())


def test_inline_link_delivers_every_sample(dmapickle_start, feeder):
    block, rate, batch = 256, 64_000, 100
    board = dmapickle_start(mode="inline", n=block, count=MESSAGES, rate=rate)
    feed = feeder(board)
    seq = 0
    while seq < MESSAGES:
        records, objs = next_batch(feed, seq, min(batch, MESSAGES - seq), block, rate)
        for r, obj in zip(records, objs):
            e = r.entries[0]
            assert not e.shared and e.region == 1
            # Zero copy: the array is the received buffer, not a copy of it.
            assert np.shares_memory(obj["adc"], np.frombuffer(r.memory[0], np.uint8))
        seq += len(records)
    assert feed.next() is None
    assert feed.end["frames_ok"] == MESSAGES
    counts = [feed.end[k] for k in ("corrupt", "lost", "bytes_skipped", "refused")]
    assert counts == [0, 0, 0, 0], feed.end
    feed.close()
    assert board.wait() == 0, board.log()
    log = board.log()
    messages, stalls, overflows, stack = done_line(log)
    assert (messages, overflows) == (MESSAGES, 0)
    print(f"\n[hil] inline: {messages} messages, stack high water {stack} bytes, {stalls} ADC stalls, "
          f"{feed.end['bytes_read']} UART bytes")


def test_shared_region_buffers_are_not_reused_while_python_holds_them(dmapickle_start, feeder):
    block, rate = 256, 256_000
    hold = 16  # Python holds 16 blocks while 16 more arrive: all 32 PSRAM slots lent at once
    board = dmapickle_start(mode="shared", n=block, count=MESSAGES, rate=rate)
    feed = feeder(board)
    held_records, held_objs = [], []
    seq = 0
    while seq < MESSAGES:
        records, objs = next_batch(feed, seq, min(hold, MESSAGES - seq), block, rate)
        for r, obj in zip(records, objs):
            e = r.entries[0]
            assert e.shared and e.region == 2
            # Zero copy: the array's memory is the PSRAM slot, in the file QEMU shares.
            assert obj["adc"].ctypes.data == feed.base + e.offset
        if held_records:
            # The previous batch was held while this one was produced: the device must not
            # have written a single byte of it.
            check_batch(held_records, held_objs, block, rate, held_records[0].seq)
            offsets = {r.entries[0].offset for r in held_records}
            assert offsets.isdisjoint(r.entries[0].offset for r in records)
            for r in held_records:
                feed.release(r.seq)
            del held_objs[:], held_records[:]
        held_records, held_objs = records, objs
        seq += len(records)
    del held_objs[:], held_records[:], records, objs
    feed.release_all()
    assert feed.next() is None
    assert feed.end["frames_ok"] == MESSAGES
    counts = [feed.end[k] for k in ("corrupt", "lost", "bytes_skipped", "refused")]
    assert counts == [0, 0, 0, 0], feed.end
    # The PSRAM file is the device's 0x21000000: the release ring's control block is at
    # offset 0, and none of the RAM at 0x20000000 (its stack is painted 0xDEADC0DE) is in it.
    assert feed.view[:4].tobytes() == b"DPRL"
    assert b"\xde\xc0\xad\xde" * 4 not in feed.map[:]
    feed.close()
    assert board.wait() == 0, board.log()
    log = board.log()
    assert "shared region: 0 buffers still lent, 0 stray releases" in log, log
    messages, stalls, overflows, stack = done_line(log)
    assert (messages, overflows) == (MESSAGES, 0)
    print(f"\n[hil] shared: {messages} messages, stack high water {stack} bytes, {stalls} ADC stalls, "
          f"{feed.end['bytes_read']} UART bytes")
    # Holding all 32 slots made the ADC wait for releases instead of overwriting.
    assert stalls > 0, log


@pytest.mark.parametrize(
    "mode,block,rate",
    [("inline", 1, 2_000), ("inline", 1024, 64_000), ("shared", 1, 2_000), ("shared", 1024, 256_000)],
)
def test_smallest_and_largest_blocks(dmapickle_start, feeder, mode, block, rate):
    # n=1 and n=1024 (the buffers' capacity): shapes (1, 4) and (1024, 4), every sample exact.
    count = 64
    shared = mode == "shared"
    board = dmapickle_start(mode=mode, n=block, count=count, rate=rate)
    feed = feeder(board)
    for first in range(0, count, 16):  # at most 16 of the 32 PSRAM slots held at once
        records, objs = next_batch(feed, first, 16, block, rate)
        del objs
        if shared:
            for r in records:
                feed.release(r.seq)
        del records
    assert feed.next() is None and feed.end["frames_ok"] == count
    feed.close()
    assert board.wait() == 0, board.log()

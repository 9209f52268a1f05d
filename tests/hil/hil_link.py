"""Hardware in the loop: the firmware in QEMU publishes >= 1000 ADC blocks; Python checks every
sample of every array against the recomputed waveform, plus seq continuity, t_us, shapes, dtypes,
read-only flags and zero copy, over the inline link (UART0) and the shared-region link (PSRAM
backed by a host file, releases through the ring).
"""
import re

import numpy as np
import pytest

from board import Board
from feed import Feed
from waveform import block_time_us, expected_blocks

MESSAGES = 1024
DTYPE = np.dtype("<i2")


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


def done_line(log):
    m = re.search(r"done: (\d+) messages, (\d+) ADC stalls, (\d+) overflows, stack high water (\d+) bytes", log)
    assert m, log
    return tuple(int(x) for x in m.groups())


def test_inline_link_delivers_every_sample(tmp_path):
    block, rate, batch = 256, 64_000, 100
    params = {"mode": "inline", "n": block, "count": MESSAGES, "rate": rate}
    with Board(tmp_path, params) as board:
        feed = Feed(board.wait_socket())
        try:
            seq = 0
            while seq < MESSAGES:
                records = [feed.next() for _ in range(min(batch, MESSAGES - seq))]
                assert None not in records, f"stream ended after {seq} messages: {feed.end}"
                objs = [r.load() for r in records]
                check_batch(records, objs, block, rate, seq)
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
        finally:
            feed.close()
        assert board.wait() == 0, board.log()
        log = board.log()
    messages, stalls, overflows, stack = done_line(log)
    assert (messages, overflows) == (MESSAGES, 0)
    print(f"\n[hil] inline: {messages} messages, stack high water {stack} bytes, {stalls} ADC stalls, "
          f"{feed.end['bytes_read']} UART bytes")


def test_shared_region_buffers_are_not_reused_while_python_holds_them(tmp_path):
    block, rate = 256, 256_000
    hold = 16  # Python holds 16 blocks while 16 more arrive: all 32 PSRAM slots lent at once
    params = {"mode": "shared", "n": block, "count": MESSAGES, "rate": rate}
    with Board(tmp_path, params, psram=True) as board:
        feed = Feed(board.wait_socket(), region_id=2, region_path=board.psram)
        try:
            held_records, held_objs = [], []
            seq = 0
            while seq < MESSAGES:
                records = [feed.next() for _ in range(min(hold, MESSAGES - seq))]
                assert None not in records, f"stream ended after {seq} messages: {feed.end}"
                objs = [r.load() for r in records]
                check_batch(records, objs, block, rate, seq)
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
        finally:
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
def test_smallest_and_largest_blocks(tmp_path, mode, block, rate):
    # n=1 and n=1024 (the buffers' capacity): shapes (1, 4) and (1024, 4), every sample exact.
    count = 64
    params = {"mode": mode, "n": block, "count": count, "rate": rate}
    shared = mode == "shared"
    with Board(tmp_path, params, psram=shared) as board:
        feed = Feed(board.wait_socket(), region_id=2 if shared else None,
                    region_path=board.psram if shared else None)
        try:
            for first in range(0, count, 16):  # at most 16 of the 32 PSRAM slots held at once
                records = [feed.next() for _ in range(16)]
                assert None not in records, feed.end
                objs = [r.load() for r in records]
                check_batch(records, objs, block, rate, first)
                del objs
                if shared:
                    for r in records:
                        feed.release(r.seq)
                del records
            assert feed.next() is None and feed.end["frames_ok"] == count
        finally:
            feed.close()
        assert board.wait() == 0, board.log()

"""The simulated ADC's waveform, the same formula as firmware/src/waveform.rs, vectorised.

Every sample is a function of (seq, channel, index) and the block size in wrapping 32-bit
integer arithmetic; numpy computes it in uint64 and masks to 32 bits so nothing depends on
numpy's overflow behaviour.
"""
import numpy as np

CHANNELS = 4
_M32 = np.uint64(0xFFFFFFFF)


def expected_blocks(seqs, block):
    """int16 array of shape (len(seqs), block, CHANNELS): the blocks the firmware sends."""
    seqs = np.asarray(seqs, dtype=np.uint64).reshape(-1, 1, 1)
    index = np.arange(block, dtype=np.uint64).reshape(1, -1, 1)
    channel = np.arange(CHANNELS, dtype=np.uint64).reshape(1, 1, -1)
    return _values(seqs, channel, index, block)


def sample(seq, channel, index, block):
    """One sample, as `waveform::sample` in Rust (index may exceed the block)."""
    u = lambda x: np.asarray([x], dtype=np.uint64)  # noqa: E731
    return int(_values(u(seq), u(channel), u(index), block)[0])


def _values(seqs, channel, index, block):
    t = (seqs * np.uint64(block) + index) & _M32
    c = channel & np.uint64(3)
    period = np.uint64(64) << c
    p = t & (period - np.uint64(1))
    tri = np.where(p < period // np.uint64(2), p, period - p)
    h = ((t * np.uint64(0x9E3779B1)) & _M32) ^ ((channel * np.uint64(0x85EBCA77)) & _M32)
    h ^= h >> np.uint64(15)
    value = (
        (tri << (np.uint64(10) - c)).astype(np.int64)
        - 16384
        + (h & np.uint64(0x3FFF)).astype(np.int64)
        - 8192
    )
    return value.astype(np.int16)


def block_time_us(seq, block, rate_hz):
    """floor(seq * block * 10**6 / rate_hz): the message's t_us."""
    return (seq * block * 1_000_000 // rate_hz) % (1 << 64) if rate_hz else 0


def _pinned():
    """The values firmware/src/waveform.rs pins in `first_values_are_pinned`."""
    one = sample
    return [
        one(0, 0, 0, 256),
        one(0, 1, 0, 256),
        one(0, 2, 0, 256),
        one(0, 3, 0, 256),
        one(0, 0, 1, 256),
        one(3, 2, 17, 256),
        one(0xFFFFFFFF, 3, 255, 256),
        one(1000, 1, 100, 64),
    ]


PINNED = [-24576, -24160, -23743, -8989, -22049, -6728, -9795, -4224]

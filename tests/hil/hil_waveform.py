"""The Python copy of the waveform agrees with the firmware's Rust formula (pinned values)."""
import numpy as np

from waveform import PINNED, _pinned, block_time_us, expected_blocks


def test_pinned_values_match_the_rust_unit_test():
    assert _pinned() == PINNED


def test_blocks_form_one_continuous_signal():
    # Blocks 4 and 5 of 128 rows are rows 512..767 of one long block.
    a = expected_blocks([4, 5], 128)
    whole = expected_blocks([0], 1024)[0]
    assert a.shape == (2, 128, 4) and a.dtype == np.int16
    assert np.array_equal(a.reshape(256, 4), whole[512:768])


def test_block_time():
    assert block_time_us(1, 256, 64_000) == 4_000
    assert block_time_us(1000, 256, 48_000) == 5_333_333

"""dmapickle.open on recordings (issue 11): a truncated recording ends (the file is never
reopened) with the right counts; trust_link and the limits as keywords; every counter in stats."""

from __future__ import annotations

import time

import pytest

import dmapickle


def test_a_truncated_recording_ends_with_the_right_counts(start_device, tmp_path):
    rec = tmp_path / "full.rec"
    start_device("--to", f"file://{rec}", "--count", "12", "--rows", "16").wait()
    data = rec.read_bytes()
    cut = tmp_path / "cut.rec"
    cut.write_bytes(data[:-20])  # the last frame runs past the end
    start = time.monotonic()
    with dmapickle.open(str(cut)) as stream:
        seqs = [m.load()["seq"] for m in stream]
        stats = stream.stats
    assert time.monotonic() - start < 10
    assert seqs == list(range(11))
    assert stats["frames_ok"] == 11 and stats["corrupt"] == 1 and stats["lost"] == 0
    assert stats["restarts"] == 1 and stats["seq_jumps"] == 0 and stats["refused"] == 0
    assert stats["bytes_read"] == len(data) - 20
    assert stats["bytes_skipped"] == len(data) - 20 - 11 * (len(data) // 12)
    assert stats["events"] == [], "a file is not a connection"


def test_trust_link_and_limits_are_keywords(start_device, tmp_path):
    rec = tmp_path / "nd.rec"
    start_device("--to", f"file://{rec}", "--count", "5", "--rows", "8", "--no-data-crc").wait()
    with dmapickle.open(str(rec)) as stream:
        assert list(stream) == []
        assert stream.stats["refused"] == 5 and "trust" in stream.stats["last_refused"]
    with dmapickle.open(str(rec), trust_link=True) as stream:
        assert [m.load()["seq"] for m in stream] == list(range(5))
    frame = len(rec.read_bytes()) // 5
    with dmapickle.open(str(rec), trust_link=True, max_frame=frame) as stream:
        assert len(list(stream)) == 5  # inclusive
    with dmapickle.open(str(rec), trust_link=True, max_frame=frame - 1) as stream:
        assert list(stream) == [] and stream.stats["refused"] == 5
    with dmapickle.open(str(rec), trust_link=True, max_buffers=0) as stream:
        assert list(stream) == [] and stream.stats["refused"] == 5
    with pytest.raises(OverflowError):
        dmapickle.open(str(rec), max_buffers=70000)

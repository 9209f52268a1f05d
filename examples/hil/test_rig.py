import pytest


@pytest.mark.dmapickle(mode="inline", n=32, rate=640, count=100)  # boot parameters (QEMU)
def test_blocks_arrive_complete_in_order_and_on_time(dmapickle_stream):
    first = dmapickle_stream.expect(lambda obj: obj["seq"] == 0, timeout=30)
    assert first["adc"].shape == (32, 4) and first["rate_hz"] == 640
    for msg in dmapickle_stream.drain(timeout=60):  # until count=100 ends the stream
        obj = msg.load()                             # also feeds dmapickle_stream.clock
        assert obj["adc"].dtype == "<i2" and not obj["adc"].flags.writeable
    dmapickle_stream.assert_continuity()             # no loss, corrupt or refused frame
    clock = dmapickle_stream.clock.estimate          # the device's t_us against msg.host_ns
    print(clock)
    assert abs(clock.drift_ppm) < 500                # QEMU keeps host time; a crystal: ~50
    late = clock.latency_ns(obj["t_us"], msg.host_ns)
    assert late < 50e6, f"the last block arrived {late / 1e6:.1f} ms late"

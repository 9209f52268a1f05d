"""`bench_links.py --guest-profile` works: the QEMU plugin builds, loads and counts, and the
counts fold onto the firmware's own functions (the figures docs/performance.md quotes)."""
from bench_links import guest_profile


# Needs `cc` and binutils' `addr2line`, as every host build of the workspace (rustc links with
# cc) does: no skip.
def test_the_guest_profile_finds_the_streams_work():
    p = guest_profile(256, 300)
    # The Embassy stream costs 15-40 guest instructions per array byte (22.8 measured with
    # -icount, connection set-up included here), and its hot spots are the firmware's own code.
    assert 10 < p["total"] < 60, p["total"]
    top = list(p["function"])[:6]
    assert any("waveform" in f for f in top), top
    assert any("dmapickle_core::frame" in f for f in top), top
    assert p["crate"].get("dmapickle_firmware", 0) > 2, p["crate"]
    assert abs(sum(p["function"].values()) - p["total"]) < 1e-6 * p["total"]

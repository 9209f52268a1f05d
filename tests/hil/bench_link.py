"""Firmware link throughput in QEMU, both modes in one run, for docs/performance.md ("Firmware").

    bench_link.py [--count N] [--block N]

Runs the firmware at several simulated sample rates (the SysTick ISR writes 32 rows per tick,
so a higher rate also costs the emulated CPU more interrupts) and times first to last message on
the host. Inline mode puts every array byte through
QEMU's CMSDK UART model (one chardev write per byte); shared mode sends only the ~128-byte frames
and lends the arrays from the PSRAM file. Same environment as the HIL tests (run 60-hil.sh first,
or set DMAPICKLE_FIRMWARE_ELF and DMAPICKLE_HIL_FEEDER).
"""
import argparse
import time

from dmapickle.pytest_plugin import QemuTarget

from builds import firmware_elf
from feed import Feed


def run(mode, count, block, rate):
    params = {"mode": mode, "n": block, "count": count, "rate": rate}
    shared = mode == "shared"
    with QemuTarget(firmware_elf(), params, psram=shared, timeout=300) as board:
        feed = Feed(str(board.sock), region_id=2 if shared else None,
                    region_path=board.psram if shared else None, timeout=300)
        try:
            first = feed.next()
            t0 = time.monotonic()
            if shared:
                feed.release(first.seq)
            n = 1
            while (rec := feed.next()) is not None:
                n += 1
                if shared:
                    feed.release(rec.seq)
            dt = time.monotonic() - t0
            end = feed.end
        finally:
            feed.close()
        status = board.wait()
    assert status == 0 and n == count, (status, n)
    payload = (count - 1) * block * 8
    return {
        "mode": mode,
        "rate": rate,
        "messages/s": (count - 1) / dt,
        "array MB/s": payload / dt / 1e6,
        "UART MB/s": end["bytes_read"] * (count - 1) / count / dt / 1e6,
        "UART bytes/message": end["bytes_read"] / count,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=400)
    ap.add_argument("--block", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3, help="rounds; the table gives the median and range")
    args = ap.parse_args()
    runs = [("inline", 64_000), ("inline", 256_000), ("shared", 64_000), ("shared", 256_000), ("shared", 1_024_000)]
    # Rounds interleave the configurations, so a burst of load elsewhere hits all of them alike.
    rounds = [[run(m, args.count, args.block, rate) for m, rate in runs] for _ in range(args.repeat)]
    print(f"| link ({args.count} messages of ({args.block}, 4) int16, median of {args.repeat}) | ADC rows/s "
          "| messages/s (range) | array MB/s | UART MB/s | UART bytes/message |")
    print("|---|---:|---:|---:|---:|---:|")
    for i, (mode, rate) in enumerate(runs):
        rs = sorted((r[i] for r in rounds), key=lambda r: r["messages/s"])
        med = rs[len(rs) // 2]
        print(f"| {mode} | {rate} | {med['messages/s']:.0f} ({rs[0]['messages/s']:.0f}-{rs[-1]['messages/s']:.0f}) "
              f"| {med['array MB/s']:.3f} | {med['UART MB/s']:.3f} | {med['UART bytes/message']:.0f} |")


if __name__ == "__main__":
    main()

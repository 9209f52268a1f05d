"""Live demo: the firmware runs in QEMU (Cortex-M4, mps2-an386) and Python receives its ADC blocks
as numpy arrays, zero-copy, while it runs. Started by scripts/demo.sh.

    demo.py [--mode shared|inline] [--count N] [--block N] [--rate HZ]

In shared mode the arrays' memory *is* the device's PSRAM (a file QEMU shares with us); each
block is released back to the device once Python is done with it.
"""
import argparse
import sys
import tempfile
import time

import numpy as np

from board import Board
from feed import Feed
from waveform import expected_blocks

SPARK = " ▁▂▃▄▅▆▇█"


def sparkline(values, width=32):
    v = values[:: max(1, len(values) // width)][:width].astype(np.int32)
    lo, hi = -24576, 24575
    idx = ((v - lo) * (len(SPARK) - 1) // (hi - lo)).clip(0, len(SPARK) - 1)
    return "".join(SPARK[i] for i in idx)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["shared", "inline"], default="shared")
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--block", type=int, default=256)
    ap.add_argument("--rate", type=int, default=64_000)
    ap.add_argument("--every", type=int, default=50, help="print one line per this many messages")
    args = ap.parse_args()

    params = {"mode": args.mode, "n": args.block, "count": args.count, "rate": args.rate}
    print(f"booting the firmware in QEMU: {' '.join(f'{k}={v}' for k, v in params.items())}")
    with tempfile.TemporaryDirectory() as tmp, Board(tmp, params, psram=args.mode == "shared", timeout=300) as board:
        shared = args.mode == "shared"
        feed = Feed(board.wait_socket(), region_id=2 if shared else None,
                    region_path=board.psram if shared else None, timeout=300)
        start = time.monotonic()
        checked = 0
        try:
            while True:
                rec = feed.next()
                if rec is None:
                    break
                msg = rec.load()
                adc = msg["adc"]
                ok = np.array_equal(adc, expected_blocks([msg["seq"]], args.block)[0])
                checked += ok
                if not ok:
                    print(f"seq {msg['seq']}: samples differ from the waveform!", file=sys.stderr)
                if msg["seq"] % args.every == 0:
                    where = (f"PSRAM 0x{0x21000000 + rec.entries[0].offset:08x}" if shared
                             else "receive buffer")
                    print(f"seq {msg['seq']:5d}  t={msg['t_us'] / 1e6:7.3f}s  {type(adc).__name__}"
                          f"{adc.shape} {adc.dtype} writeable={adc.flags.writeable}  at {where}  "
                          f"ch0 {sparkline(adc[:, 0])}  {'exact' if ok else 'MISMATCH'}")
                del msg, adc
                if shared:
                    feed.release(rec.seq)  # Python is done with it: the device may reuse the slot
                del rec
            elapsed = time.monotonic() - start
            c = feed.end
            print(f"\n{c['frames_ok']} messages in {elapsed:.1f}s ({c['frames_ok'] / elapsed:.0f}/s, "
                  f"{c['bytes_read'] / elapsed / 1e3:.0f} kB/s on the UART), {checked} matched the "
                  f"waveform exactly; corrupt {c['corrupt']}, lost {c['lost']}")
        finally:
            feed.close()
        status = board.wait()
        print("\nthe firmware's own log (defmt over semihosting, decoded by defmt-print):")
        print(board.log().rstrip())
        print(f"firmware exit status {status}")
        return 0 if status == 0 and checked == args.count else 1


if __name__ == "__main__":
    sys.exit(main())

"""Live demo: the firmware runs in QEMU (Cortex-M4, mps2-an386) and Python receives its ADC blocks
as numpy arrays, zero-copy, while it runs. Started by scripts/demo.sh.

    demo.py [--mode shared|inline] [--count N] [--block N] [--rate HZ]

Python's side is the `dmapickle` package: `dmapickle.open("unix://...", regions={2: psram})`.
In shared mode the arrays' memory *is* the device's PSRAM (a file QEMU shares with us); each
block goes back to the device when its last array is dropped.
"""
import argparse
import sys
import time

import numpy as np
from dmapickle.pytest_plugin import QemuTarget

from builds import firmware_elf
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
    with QemuTarget(firmware_elf(), params, psram=args.mode == "shared", timeout=300) as board:
        start = time.monotonic()
        checked = 0
        with board.stream(profile="strict") as stream:
            while (msg := stream.next()) is not None:
                obj = msg.load()
                adc = obj["adc"]
                ok = np.array_equal(adc, expected_blocks([obj["seq"]], args.block)[0])
                checked += ok
                if not ok:
                    print(f"seq {obj['seq']}: samples differ from the waveform!", file=sys.stderr)
                if obj["seq"] % args.every == 0:
                    where = "device PSRAM (shared)" if msg.shared[0] else "receive buffer"
                    print(f"seq {obj['seq']:5d}  t={obj['t_us'] / 1e6:7.3f}s  {type(adc).__name__}"
                          f"{adc.shape} {adc.dtype} writeable={adc.flags.writeable}  in {where}  "
                          f"ch0 {sparkline(adc[:, 0])}  {'exact' if ok else 'MISMATCH'}")
                del msg, obj, adc  # the last view of a shared block: it goes back to the device
            elapsed = time.monotonic() - start
            c = stream.stats
        print(f"\n{c['frames_ok']} messages in {elapsed:.1f}s ({c['frames_ok'] / elapsed:.0f}/s, "
              f"{c['bytes_read'] / elapsed / 1e3:.0f} kB/s on the UART), {checked} matched the "
              f"waveform exactly; corrupt {c['corrupt']}, lost {c['lost']}, refused {c['refused']}")
        status = board.wait()
        print("\nthe firmware's own log (defmt over semihosting, decoded by defmt-print):")
        print(board.log().rstrip())
        print(f"firmware exit status {status}")
        return 0 if status == 0 and checked == args.count else 1


if __name__ == "__main__":
    sys.exit(main())

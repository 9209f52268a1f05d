"""Array MB/s reaching numpy over the three links, one run, side by side (issue 13):

    bench_links.py [--repeat R]
    bench_links.py --guest-instructions
    bench_links.py --guest-profile [BLOCK]

For (256, 4) and (1024, 4) int16 blocks: the UART build's inline link (CMSDK UART0 on a unix
socket), its shared-region link (frames on the UART, arrays lent from the PSRAM file) and the
Embassy build over Ethernet (LAN9118, embassy-net TCP, QEMU user network, hostfwd). Each is read
with `dmapickle.open` and every message is loaded into numpy (`Message.load()`); the time runs
from the first to the last message Python receives. The simulated ADC runs fast enough that the
link, not the ADC, is the limit (the firmware's ADC stalls when every buffer is in flight).
Same environment as the HIL tests (DMAPICKLE_FIRMWARE_ELF, DMAPICKLE_EMBASSY_ELF).

`--guest-instructions` measures what wall time on a shared machine cannot: the Ethernet rows
run under `-icount shift=0,sleep=off`, where QEMU's virtual clock advances one nanosecond per
guest instruction, so the span between the firmware's `published seq` log lines (their defmt
timestamps) counts the instructions the emulated CPU executed per array byte: the device's work
(ADC simulation, encoding, CRC-32C, framing) plus the network stack and the LAN9118 driver, but
not what QEMU spends outside the guest (MMIO dispatch, slirp, the host kernel). The ADC runs at
the firmware's highest rate so that the CPU never waits for it.

`--guest-profile` says where those instructions go: it builds `guest_profile/tb_count.c` (a QEMU
TCG plugin, with the system C compiler), streams (BLOCK, 4) blocks over Ethernet under it, and
folds the instructions executed per translated block onto the firmware's functions with
binutils' `addr2line -i` (inlined frames resolved: the innermost function at each block's start,
and its crate), in guest instructions per array byte. Counted per block start, so a block left early (an exception) counts whole.
"""
import argparse
import collections
import gc
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dmapickle.pytest_plugin import QemuTarget

from builds import embassy_elf, firmware_elf
from hil_ethernet import ETHERNET

# (link, block, messages, ADC rows/s)
RUNS = [
    ("uart inline", 256, 400, 128_000),
    ("uart inline", 1024, 100, 128_000),
    ("uart shared", 256, 2000, 512_000),
    ("uart shared", 1024, 1000, 512_000),
    ("ethernet", 256, 16000, 4_096_000),
    ("ethernet", 1024, 6000, 4_096_000),
]


def timed(stream, count):
    first = stream.next(timeout=120)
    assert first is not None, stream.stats
    first.load()
    t0 = time.monotonic()
    n = 1
    while n < count:
        m = stream.next(timeout=120)
        assert m is not None, (n, stream.stats)
        obj = m.load()
        assert obj["adc"].shape[1] == 4
        n += 1
        del m, obj
    dt = time.monotonic() - t0
    del first
    gc.collect()
    return dt, stream.stats


def run(link, block, count, rate):
    params = {"n": block, "count": count, "rate": rate}
    if link == "ethernet":
        board = QemuTarget(embassy_elf(), params, timeout=600, **ETHERNET)
    else:
        shared = link == "uart shared"
        params["mode"] = "shared" if shared else "inline"
        board = QemuTarget(firmware_elf(), params, psram=shared, timeout=600)
    with board:
        with board.stream() as stream:
            dt, stats = timed(stream, count)
        assert board.wait() == 0
    assert stats["frames_ok"] == count and stats["lost"] == 0 and stats["corrupt"] == 0, stats
    payload = (count - 1) * block * 8
    return {"msg/s": (count - 1) / dt, "MB/s": payload / dt / 1e6,
            "link MB/s": stats["bytes_read"] * (count - 1) / count / dt / 1e6}


def guest_instructions(block, count):
    """Guest instructions per array byte over an Ethernet stream (see the module doc)."""
    board = QemuTarget(embassy_elf(), {"n": block, "count": count, "rate": 10_000_000},
                       timeout=600, extra=["-icount", "shift=0,sleep=off"], **ETHERNET)
    with board:
        with board.stream() as stream:
            timed(stream, count)
        assert board.wait() == 0, board.log()
        log = board.log()
    at = {int(seq): float(t) for t, seq in
          re.findall(r"^\s*([0-9.]+) INFO\s+published seq (\d+)", log, re.M)}
    first, last = sorted(at)[1], max(at)  # past the first block: connection set-up
    return (at[last] - at[first]) * 1e9 / ((last - first) * block * 8)


def guest_profile(block, count):
    """Guest instructions per array byte by firmware function (see the module doc)."""
    here = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory() as tmp:
        plugin, counts = Path(tmp) / "tb_count.so", Path(tmp) / "tb_count.txt"
        subprocess.run([os.environ.get("CC", "cc"), "-O2", "-Wall", "-shared", "-fPIC", "-o", str(plugin),
                        str(here / "guest_profile" / "tb_count.c")], check=True)
        elf = embassy_elf()
        board = QemuTarget(elf, {"n": block, "count": count, "rate": 10_000_000}, timeout=600,
                           extra=["-plugin", f"file={plugin},out={counts}"], **ETHERNET)
        with board:
            with board.stream() as stream:
                timed(stream, count)
            assert board.wait() == 0, board.log()
        tbs = [tuple(int(x, 16) if i == 0 else int(x) for i, x in enumerate(line.split()))
               for line in counts.read_text().splitlines()]
    pcs = sorted({pc for pc, _, _ in tbs})
    out = subprocess.run(["addr2line", "-a", "-i", "-f", "-C", "-e", elf],
                         input="".join(f"0x{pc:x}\n" for pc in pcs), capture_output=True, text=True,
                         check=True).stdout
    inner_of = {}
    for chunk in re.split(r"^0x", out, flags=re.M)[1:]:
        lines = chunk.splitlines()
        name = re.sub(r"::h[0-9a-f]{16}$", "", lines[1]) if len(lines) > 1 else "?"
        inner_of[int(lines[0], 16)] = name
    inner, crate = collections.Counter(), collections.Counter()
    total = 0
    for pc, n, execs in tbs:
        name = inner_of.get(pc, "?")
        inner[name] += n * execs
        crate[re.sub(r"^[<&*]*(?:dyn )?", "", name).split("::")[0].split("<")[0]] += n * execs
        total += n * execs
    per_byte = 1.0 / (count * block * 8)
    return {"total": total * per_byte,
            "function": {k: v * per_byte for k, v in inner.most_common()},
            "crate": {k: v * per_byte for k, v in crate.most_common()}}


def print_profile(block, count, profile):
    print(f"ethernet ({block}, 4), {count} messages: {profile['total']:.2f} guest instructions per array byte in all")
    for title, key in (("function (innermost inlined frame at the block start)", "function"), ("crate", "crate")):
        print(f"\n| {title} | instructions per array byte | share |\n|---|---:|---:|")
        for name, v in list(profile[key].items())[:25]:
            print(f"| `{name[:110]}` | {v:.3f} | {100 * v / profile['total']:.1f}% |")


def main():
    only = os.environ.get("BENCH_ONLY")
    if only:
        RUNS[:] = [r for r in RUNS if r[0] == only]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=1, help="rounds (interleaved); the table gives the median")
    ap.add_argument("--guest-instructions", action="store_true",
                    help="guest instructions per array byte over Ethernet, under -icount")
    ap.add_argument("--guest-profile", type=int, nargs="?", const=1024, metavar="BLOCK",
                    help="guest instructions per array byte by firmware function (a QEMU plugin)")
    args = ap.parse_args()
    if args.guest_profile:
        print_profile(args.guest_profile, 3000, guest_profile(args.guest_profile, 3000))
        return
    if args.guest_instructions:
        for block, count in ((256, 6000), (1024, 3000)):
            print(f"ethernet ({block}, 4): {guest_instructions(block, count):.2f} guest instructions per array byte")
        return
    load = open("/proc/loadavg").read().strip()
    rounds = [[run(*r) for r in RUNS] for _ in range(args.repeat)]
    print(f"/proc/loadavg at start: {load}; at end: {open('/proc/loadavg').read().strip()}")
    print(f"| link (median of {args.repeat}) | block | messages | ADC rows/s | messages/s | array MB/s to numpy (range) | link bytes MB/s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    table = {}
    for i, (link, block, count, rate) in enumerate(RUNS):
        rs = sorted((r[i] for r in rounds), key=lambda r: r["MB/s"])
        med = rs[len(rs) // 2]
        table[(link, block)] = med["MB/s"]
        print(f"| {link} | ({block}, 4) | {count} | {rate} | {med['msg/s']:.0f} | {med['MB/s']:.3f} ({rs[0]['MB/s']:.3f}-{rs[-1]['MB/s']:.3f}) | {med['link MB/s']:.3f} |")
    for block in (256, 1024) if not only else ():
        print(f"ethernet / uart inline, ({block}, 4): {table[('ethernet', block)] / table[('uart inline', block)]:.0f}x")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Size of the firmware ELF for docs/performance.md: sections, and flash per crate.

    python3 firmware/size_report.py ELF

Sections come from `llvm-size -A` (rustup's llvm-tools); the per-crate split sums the sizes of
`llvm-nm --print-size` symbols in flash (text and read-only data), attributed to the first
`crate::` path in each demangled name. With LTO and opt-level "z" much of dmapickle-core and
dmapickle-hal is inlined into the firmware's own functions (e.g. `message::encode` holds the
inlined Pickler calls), so the crate shares are a lower bound for the libraries.
"""
import collections
import re
import subprocess
import sys
from pathlib import Path


def llvm_tool(name):
    sysroot = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True, check=True).stdout.strip()
    host = re.search(r"host: (\S+)", subprocess.run(["rustc", "-vV"], capture_output=True, text=True, check=True).stdout)[1]
    tool = Path(sysroot) / "lib" / "rustlib" / host / "bin" / name
    if not tool.exists():
        sys.exit(f"{tool} missing: rustup component add llvm-tools (scripts/setup.sh does)")
    return str(tool)


def sections(elf):
    out = subprocess.run([llvm_tool("llvm-size"), "-A", elf], capture_output=True, text=True, check=True).stdout
    sizes = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith("."):
            sizes[parts[0]] = int(parts[1])
    return sizes


LEGACY = [("$LT$", "<"), ("$GT$", ">"), ("$u20$", " "), ("$RF$", "&"), ("$C$", ","), ("..", "::")]


def crate_of(name):
    for old, new in LEGACY:  # legacy-mangled names llvm-nm leaves half-demangled
        name = name.replace(old, new)
    if name.startswith(".L") or name.startswith("anon"):
        return "(anonymous constants)"
    m = re.search(r"\b([A-Za-z_][A-Za-z0-9_]*)::", name)
    if not m:
        return "(compiler-builtins / runtime)"
    crate = m[1]
    return {"__cortex_m_rt_main": "dmapickle_firmware"}.get(crate, crate)


def per_crate(elf):
    out = subprocess.run(
        [llvm_tool("llvm-nm"), "--print-size", "--size-sort", "-C", elf], capture_output=True, text=True, check=True
    ).stdout
    flash = collections.Counter()
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) != 4:
            continue
        _addr, size, kind, name = parts
        if kind.lower() not in ("t", "r"):
            continue
        crate = crate_of(name)
        if name in ("SysTick", "HardFault", "main", "Reset", "DefaultHandler_", "HardFault_"):
            crate = "dmapickle_firmware" if name in ("SysTick",) else "cortex_m_rt"
        if name == "__INTERRUPTS" or name == "__RESET_VECTOR" or name == "__EXCEPTIONS":
            crate = "cortex_m_rt"
        flash[crate] += int(size, 16)
    return flash


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    elf = sys.argv[1]
    s = sections(elf)
    text = s.get(".vector_table", 0) + s.get(".text", 0) + s.get(".rodata", 0)
    print("| section | bytes | where |")
    print("|---|---:|---|")
    print(f"| `.text` (+ `.vector_table`, `.rodata`) | {text} | flash |")
    print(f"| `.data` | {s.get('.data', 0)} | flash image, copied to RAM |")
    print(f"| `.bss` + `.uninit` | {s.get('.bss', 0) + s.get('.uninit', 0)} | RAM (of which 65536 inline block buffers) |")
    print(f"| `.psram` | {s.get('.psram', 0)} | PSRAM shared region (NOLOAD, not in the image) |")
    print()
    flash = per_crate(elf)
    total = sum(flash.values())
    print(f"| crate (flash in named symbols: {total} of {text} bytes) | bytes | share |")
    print("|---|---:|---:|")
    for crate, size in flash.most_common():
        print(f"| `{crate}` | {size} | {100 * size / total:.1f}% |")
    print(f"| (no symbol: string constants, tables, padding) | {text - total} | |")


if __name__ == "__main__":
    main()

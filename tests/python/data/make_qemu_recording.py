"""Makes tests/python/data/qemu-board.rec: the raw link stream of the instrument firmware on
QEMU's mps2-an386 board (inline mode, 64 blocks of 256 x 4 int16 at 64 kHz), recorded by
`dmapickle record`. test_export.py exports it; committed so the Python tests need no QEMU.

    python tests/python/data/make_qemu_recording.py   # needs the firmware ELF, QEMU, the CLI
"""
import os
import subprocess
import sys
from pathlib import Path

from dmapickle.pytest_plugin import QemuTarget

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT / "tests" / "hil"))
from builds import firmware_elf  # noqa: E402

OUT = HERE / "qemu-board.rec"
MESSAGES = 64


def main() -> None:
    cli = os.environ.get("DMAPICKLE_BIN", str(ROOT / "target" / "debug" / "dmapickle"))
    with QemuTarget(firmware_elf(), {"n": 256, "count": MESSAGES, "rate": 64000}) as board:
        subprocess.run([cli, "record", "--no-reconnect", "--force", board.source, str(OUT)], check=True, timeout=120)
    print(f"{OUT}: {OUT.stat().st_size} B")


if __name__ == "__main__":
    main()

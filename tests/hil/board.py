"""Runs the dmapickle firmware in QEMU (mps2-an386) for the HIL tests, and always cleans up.

`Board` starts `firmware/qemu.sh` in its own process group with a bounded timeout, UART0 on a
unix socket (QEMU waits for the host to connect before the firmware runs), the defmt stream in a
file, and optionally the PSRAM backed by a file the host maps. Leaving the `with` block, normally
or by an exception, kills the whole process group, so no QEMU outlives a test.
"""
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QEMU_SH = ROOT / "firmware" / "qemu.sh"
PSRAM_SIZE = 16 << 20
PSRAM_BASE = 0x21000000


def track(pid):
    """Records a process group we started in $DMAPICKLE_HIL_PIDFILE, so 60-hil.sh can kill it and
    prove nothing outlived the tests even if pytest itself dies."""
    path = os.environ.get("DMAPICKLE_HIL_PIDFILE")
    if path:
        with open(path, "a") as f:
            f.write(f"{pid}\n")


def firmware_elf():
    """The release ELF built by scripts/test.d/60-hil.sh (DMAPICKLE_FIRMWARE_ELF)."""
    elf = os.environ.get("DMAPICKLE_FIRMWARE_ELF")
    if not elf:
        target = os.environ.get("CARGO_TARGET_DIR") or ROOT / "firmware" / "target"
        elf = Path(target) / "thumbv7em-none-eabihf" / "release" / "dmapickle-firmware"
    elf = Path(elf)
    if not elf.is_file():
        raise RuntimeError(
            f"firmware ELF {elf} missing: build it with `cd firmware && cargo build --release` "
            "(scripts/test.d/60-hil.sh does) or set DMAPICKLE_FIRMWARE_ELF"
        )
    return elf


class Board:
    """One QEMU run of the firmware with boot parameters `params` (a dict)."""

    def __init__(self, workdir, params, *, serial=True, psram=False, timeout=240, elf=None, nic=None):
        self.dir = Path(workdir)
        self.elf = Path(elf) if elf else firmware_elf()
        # `nic`: (host port, guest port) of the LAN9118 on QEMU's user network (Embassy build).
        self.nic = nic
        self.params = params
        # A unix socket path must fit in 108 bytes, which a deep pytest tmp_path may not.
        self.sockdir = Path(tempfile.mkdtemp(prefix="dmapickle-hil-")) if serial else None
        self.sock = self.sockdir / "uart0.sock" if serial else None
        shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else self.dir
        self.psram = shm / f"dmapickle-hil-{os.getpid()}-{id(self)}" if psram else None
        self.log_path = self.dir / "defmt.bin"
        self.timeout = timeout
        self.proc = None

    def __enter__(self):
        if self.psram is not None:
            # QEMU creates the file too; making it first (zeroed, the full size) lets the host map
            # it before the firmware runs.
            with open(self.psram, "wb") as f:
                f.truncate(PSRAM_SIZE)
        cmd = [str(QEMU_SH), "--log", str(self.log_path), "--timeout", str(self.timeout)]
        if self.sock is not None:
            cmd += ["--serial", f"unix:{self.sock},server=on,wait=on"]
        if self.psram is not None:
            cmd += ["--psram", str(self.psram)]
        if self.nic is not None:
            cmd += ["--nic", f"{self.nic[0]}:{self.nic[1]}"]
        cmd += [str(self.elf)] + [f"{k}={v}" for k, v in self.params.items()]
        self.proc = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.PIPE)
        track(self.proc.pid)
        return self

    def __exit__(self, *exc):
        self.kill()
        if self.psram is not None:
            self.psram.unlink(missing_ok=True)
        if self.sockdir is not None:
            shutil.rmtree(self.sockdir, ignore_errors=True)
        return False

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)

    def wait_socket(self, limit=30.0):
        """The UART socket path, once QEMU listens on it (QEMU holds the CPU until we connect)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.sock.exists():
                return str(self.sock)
            if self.proc.poll() is not None:
                raise RuntimeError(f"QEMU exited with {self.proc.returncode}: {self.stderr()}")
            time.sleep(0.02)
        raise TimeoutError(f"QEMU did not open {self.sock} within {limit}s")

    def wait(self, limit=None):
        """QEMU's exit status (the firmware's semihosting exit code; 124 on timeout)."""
        return self.proc.wait(timeout=limit if limit is not None else self.timeout + 10)

    def stderr(self):
        return self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""

    def log(self):
        """The firmware's defmt log, decoded by defmt-print against the ELF."""
        with open(self.log_path, "rb") as raw:
            out = subprocess.run(
                ["defmt-print", "-e", str(self.elf)],
                stdin=raw,
                capture_output=True,
                timeout=60,
            )
        return out.stdout.decode(errors="replace") + out.stderr.decode(errors="replace")

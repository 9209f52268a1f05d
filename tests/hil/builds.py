"""Where the HIL tests, benchmarks and demo find what scripts/test.d/60-hil.sh built: the firmware
ELFs (QEMU, Embassy, the hal guide's minimal firmware) and `dmapickle-hil-feeder`. Each is the
path in its environment variable if set, else the default cargo output; a missing one is an
error that says how to build it (never a skip: a missing build is a broken setup).

Targets themselves are started by the dmapickle pytest plugin (`dmapickle_start`, or
`dmapickle.pytest_plugin.QemuTarget` outside pytest).
"""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _built(env, default, how):
    path = Path(os.environ.get(env) or default)
    if not path.is_file():
        raise RuntimeError(f"{path} missing: {how} (scripts/test.d/60-hil.sh does) or set {env}")
    return str(path)


def _target(root):
    return Path(os.environ.get("CARGO_TARGET_DIR") or root / "target")


def firmware_elf():
    """The QEMU build of the instrument firmware (DMAPICKLE_FIRMWARE_ELF)."""
    return _built("DMAPICKLE_FIRMWARE_ELF",
                  _target(ROOT / "firmware") / "thumbv7em-none-eabihf/release/dmapickle-firmware",
                  "build it with `cd firmware && cargo build --release`")


def embassy_elf():
    """The Embassy build, served over the LAN9118 (DMAPICKLE_EMBASSY_ELF)."""
    return _built("DMAPICKLE_EMBASSY_ELF",
                  _target(ROOT / "firmware") / "thumbv7em-none-eabihf/release/dmapickle-embassy",
                  "build it with `cd firmware && cargo build --release --features embassy "
                  "--bin dmapickle-embassy`")


def minimal_elf():
    """tests/minimal-firmware, the hal guide's example (DMAPICKLE_MINIMAL_ELF)."""
    return _built("DMAPICKLE_MINIMAL_ELF",
                  _target(ROOT / "tests/minimal-firmware") / "thumbv7em-none-eabihf/release/minimal-firmware",
                  "`cd tests/minimal-firmware && cargo build --release`")


def cli_exe():
    """The `dmapickle` CLI (DMAPICKLE_BIN; 60-hil.sh builds it with the zmq feature, as
    55-readme.sh does)."""
    return _built("DMAPICKLE_BIN", _target(ROOT) / "debug/dmapickle",
                  "build it with `cargo build -p dmapickle-host --features zmq --bin dmapickle`")


def feeder_exe():
    """dmapickle-host's frame reader as a process (DMAPICKLE_HIL_FEEDER, tests/hil/feeder)."""
    return _built("DMAPICKLE_HIL_FEEDER", _target(ROOT) / "debug/dmapickle-hil-feeder",
                  "build it with `cargo build -p dmapickle-hil-feeder`")

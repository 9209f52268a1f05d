#!/usr/bin/env bash
# Installs everything the test suite and the demo need on a fresh machine. Idempotent: a second run
# only checks. Everything lands in the repo (.venv/) or in the user's rustup / apt.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# Rust targets and components: embedded targets for core's no_std builds and the firmware.
need_targets=(thumbv6m-none-eabi thumbv7em-none-eabihf riscv32imac-unknown-none-elf)
have=$(rustup target list --installed)
for t in "${need_targets[@]}"; do
  grep -qx "$t" <<<"$have" || { log "rustup target add $t"; rustup target add "$t"; }
done
# The declared rust-version (Cargo.toml), which 10-rust.sh checks core and hal with (host and
# thumbv7em). About 70 s to download once.
source scripts/lib.sh
v=$(msrv)
if ! rustup run "$v" rustc -V >/dev/null 2>&1; then
  log "rustup toolchain install $v --profile minimal"
  rustup toolchain install "$v" --profile minimal
fi
rustup +"$v" target list --installed | grep -qx thumbv7em-none-eabihf || rustup +"$v" target add thumbv7em-none-eabihf
rustup component list --installed | grep -q '^llvm-tools' || rustup component add llvm-tools
rustup component list --installed | grep -q '^clippy' || rustup component add clippy

# QEMU for the hardware-in-the-loop tests (mps2-an386 Cortex-M4 board).
if ! command -v qemu-system-arm >/dev/null 2>&1; then
  log "apt-get install qemu-system-arm"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq qemu-system-arm >/dev/null
fi

# libzmq for `dmapickle bridge` (host feature `zmq`, also built by clippy/test --all-features).
if ! pkg-config --exists libzmq 2>/dev/null; then
  log "apt-get install libzmq3-dev pkg-config"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq libzmq3-dev pkg-config >/dev/null
fi

# defmt-print decodes the firmware's defmt log (HIL tests, demo). About 75 s to build once.
if ! command -v defmt-print >/dev/null 2>&1; then
  log "cargo install --locked defmt-print"
  cargo install --locked --quiet defmt-print
fi

# The link (scripts/test.d/40-link.sh): nightly with miri for the hal's unsafe code, and
# cargo-fuzz for the frame reader's fuzz target in fuzz/ (about 2 min to build once).
if ! rustup +nightly component list --installed 2>/dev/null | grep -q '^miri'; then
  log "rustup +nightly component add miri rust-src"
  rustup toolchain install nightly --profile minimal >/dev/null 2>&1 || true
  rustup +nightly component add miri rust-src
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  log "cargo install --locked cargo-fuzz"
  cargo install --locked --quiet cargo-fuzz
fi

# Python: one venv with numpy 2.x (main), one with numpy 1.26 (compatibility).
py=${PYTHON:-python3}
mkvenv() { # name, numpy spec
  local dir=".venv/$1"
  if [ ! -x "$dir/bin/python" ]; then
    log "python venv $dir ($2)"
    "$py" -m venv "$dir"
  fi
  if ! "$dir/bin/python" -c "import numpy, pytest, zmq, maturin" 2>/dev/null; then
    "$dir/bin/pip" install -q --disable-pip-version-check "$2" pytest pyzmq maturin
  fi
}
mkvenv np2 'numpy>=2,<3'
# The export extra (host/pyproject.toml), for tests/python/test_export.py and bench/export.py.
.venv/np2/bin/python -c "import h5py, zarr" 2>/dev/null || .venv/np2/bin/pip install -q --disable-pip-version-check 'h5py>=3.8' 'zarr>=3'
mkvenv np1 'numpy==1.26.*'
# dmapickle.dask (tests/python/test_bridge.py, bench/bridge.py): a real dask.distributed
# cluster in numpy 2.x's venv; wheels only (distributed and its dependencies are pure Python
# or ship wheels).
if ! .venv/np2/bin/python -c "import distributed" 2>/dev/null; then
  log "pip install distributed into .venv/np2"
  .venv/np2/bin/pip install -q --disable-pip-version-check --only-binary=:all: 'distributed>=2024.1'
fi
log "ok: $(.venv/np2/bin/python -c 'import numpy;print("numpy",numpy.__version__)'), $(.venv/np1/bin/python -c 'import numpy;print("numpy",numpy.__version__)')"

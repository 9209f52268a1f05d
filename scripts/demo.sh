#!/usr/bin/env bash
# The main job, live: the instrument firmware boots in QEMU (Cortex-M4, mps2-an386), samples its
# simulated 4-channel ADC, and publishes every block through dmapickle; Python receives each one
# as a numpy array whose memory is the device's own buffer, checks every sample, and prints a
# line per 50 messages. No hardware needed.
#
#   scripts/demo.sh                     shared-region link (arrays stay in the device's PSRAM)
#   scripts/demo.sh --mode inline       arrays travel over the UART after each frame
#   scripts/demo.sh --count 5000 --block 128 --rate 128000
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh >/dev/null
py=${DMAPICKLE_PYTHON:-$root/.venv/np2/bin/python}

echo "building the firmware (thumbv7em-none-eabihf, size profile) and the dmapickle package..."
(cd firmware && cargo build -q --release)
bash tests/hil/ensure-package.sh "$py"
export DMAPICKLE_FIRMWARE_ELF=${CARGO_TARGET_DIR:-$root/firmware/target}/thumbv7em-none-eabihf/release/dmapickle-firmware

cd tests/hil
exec "$py" demo.py "$@"

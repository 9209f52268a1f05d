#!/usr/bin/env bash
# README.md as a new user runs it: every shell and Python example (tests/readme/test_readme.py,
# with the live source each one names: the firmware in QEMU or the device simulator), each shown
# output compared, and the example pickles equal to what examples/pickles/make_examples.py writes.
# Reuses the debug CLI 50-python.sh builds and the firmware 60-hil.sh builds (built here if
# missing). About 1.5 minutes; every process a block starts is killed when the block ends.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
need_python "$py"
need_command qemu-system-arm
target=$(target_dir)
cargo build -q -p dmapickle-host --features zmq --bin dmapickle --example device
(cd firmware && cargo build -q --release)
bash tests/hil/ensure-package.sh "$py"
export DMAPICKLE_BIN="$target/debug/dmapickle"
cd tests/readme
"$py" -m pytest -q -p no:cacheprovider test_readme.py

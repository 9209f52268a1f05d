#!/usr/bin/env bash
# The Python package, the CLI's live sources and the ZeroMQ bridge, end to end: builds the
# `dmapickle` CLI (with ZeroMQ) and the device simulator (real core Pickler + hal Publisher),
# builds the abi3 wheel with maturin and installs it into both venvs, then runs pytest in
# tests/python/ under numpy 2.x and the zero-copy source tests again under numpy 1.26.
# Debug builds, so the dependencies 10-rust.sh already compiled are reused: about 1 min after
# 10-rust.sh, about 4 min cold on 2 cores. (bench/python.sh builds release for measurements.)
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
need_python "$py" "$py1"
target=$(target_dir)
cargo build -p dmapickle-host --features zmq --bin dmapickle --example device
install_package -- "$py" "$py1"
export DMAPICKLE_BIN="$target/debug/dmapickle"
export DMAPICKLE_DEVICE="$target/debug/examples/device"
cd tests/python
"$py" -m pytest -q -p no:cacheprovider test_sources.py test_defence.py test_cli.py test_link.py test_first_hour.py test_export.py test_bridge.py test_direct.py
# numpy 1.26: the same zero-copy loads from every source kind, and the direct build against
# pickle.loads (its fuzz for 10 s here).
DMAPICKLE_DIRECT_FUZZ_SECONDS=${DMAPICKLE_DIRECT_FUZZ_SECONDS:-10} \
  "$py1" -m pytest -q -p no:cacheprovider test_sources.py test_direct.py

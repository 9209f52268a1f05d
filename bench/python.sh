#!/usr/bin/env bash
# Python delivery benchmark (bench/python_delivery.py): messages/s and GB/s delivered to Python
# as numpy arrays by dmapickle.open(), next to CPython's pickle.loads floor and the raw read of
# the same recording, measured in the same run. Results go in docs/performance.md
# ("## Python delivery"). `bench/python.sh --quick` for a short run.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
need_python "$py"
target=$(target_dir)
cargo build --release -p dmapickle-host --example device
install_package --release -- "$py"
"$py" bench/python_delivery.py "$target/release/examples/device" "$@"

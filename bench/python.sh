#!/usr/bin/env bash
# Python delivery benchmark (bench/python_delivery.py): messages/s and GB/s delivered to Python
# as numpy arrays by dmapickle.open(), next to CPython's pickle.loads floor and the raw read of
# the same recording, measured in the same run. Results go in docs/performance.md
# ("## Python delivery"). `bench/python.sh --quick` for a short run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
py=${DMAPICKLE_PYTHON:-$root/.venv/np2/bin/python}
[ -x "$py" ] || { echo "missing $py: run scripts/setup.sh"; exit 1; }
target=${CARGO_TARGET_DIR:-$root/target}
cargo build --release -p dmapickle-host --example device
wheels="$target/wheels-python"
rm -rf "$wheels"
(cd host && "$(dirname "$py")/maturin" build --release --quiet -o "$wheels")
"$py" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$wheels"/dmapickle-*.whl
"$py" bench/python_delivery.py "$target/release/examples/device" "$@"

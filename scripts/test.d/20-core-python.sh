#!/usr/bin/env bash
# Cross-language: thousands of proptest-generated values encoded by dmapickle-core's Pickler,
# loaded by CPython with pickle.loads(data, buffers=...) under numpy 2.x AND numpy 1.26, each
# checked against an independent description of the expected value and by pickletools.dis.
# (core/tests/python_cross.rs + tests/python/check_encoded.py; about 10 s after the build.)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
export DMAPICKLE_PYTHON=${DMAPICKLE_PYTHON:-$root/.venv/np2/bin/python}
export DMAPICKLE_PYTHON_NP1=${DMAPICKLE_PYTHON_NP1:-$root/.venv/np1/bin/python}
for py in "$DMAPICKLE_PYTHON" "$DMAPICKLE_PYTHON_NP1"; do
  [ -x "$py" ] || { echo "missing $py: run scripts/setup.sh"; exit 1; }
done
cargo test -p dmapickle-core --test python_cross -- --nocapture

#!/usr/bin/env bash
# Validation throughput: dmapickle's validator (criterion, core/benches/validate.rs) next to
# CPython's pickletools.dis and a restricted Unpickler on the same sensor message, in one run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
py=${DMAPICKLE_PYTHON:-$root/.venv/np2/bin/python}
[ -x "$py" ] || { echo "missing $py: run scripts/setup.sh"; exit 1; }
echo "== dmapickle validator (criterion)"
cargo bench -q -p dmapickle-core --bench validate -- --noplot 2>&1 | grep -E "^validate|time:|thrpt:"
echo "== CPython"
"$py" bench/validate_cpython.py

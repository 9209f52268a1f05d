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
echo "== instructions per message (callgrind, independent of the machine's load)"
if command -v valgrind >/dev/null 2>&1; then
  cargo build -q --release -p dmapickle-core --example validate_loop
  loop_bin=$(cargo metadata --format-version 1 --no-deps | "$py" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/examples/validate_loop
  count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$loop_bin" "$1" "$2" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'; }
  for profile in strict general strict-layout general-layout; do
    a=$(count "$profile" 10000); b=$(count "$profile" 20000)
    echo "$profile: $(( (b - a) / 10000 )) instructions per message"
  done
else
  echo "valgrind not installed: skipped"
fi

#!/usr/bin/env bash
# Validation throughput: dmapickle's validator (criterion, core/benches/validate.rs) next to
# CPython's pickletools.dis and a restricted Unpickler on the same sensor message, in one run.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
need_python "$py"
echo "== dmapickle validator (criterion)"
cargo bench -q -p dmapickle-core --bench validate -- --noplot 2>&1 | grep -E "^validate|time:|thrpt:"
echo "== CPython"
"$py" bench/validate_cpython.py
echo "== instructions per message (callgrind, independent of the machine's load)"
if command -v valgrind >/dev/null 2>&1; then
  cargo build -q --release -p dmapickle-core --example validate_loop
  loop_bin=$(target_dir)/release/examples/validate_loop
  count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$loop_bin" "$1" "$2" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'; }
  for profile in strict general strict-layout general-layout general-encoder; do
    a=$(count "$profile" 10000); b=$(count "$profile" 20000)
    echo "$profile: $(( (b - a) / 10000 )) instructions per message"
  done
else
  echo "valgrind not installed: skipped"
fi

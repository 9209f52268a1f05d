#!/usr/bin/env bash
# The whole test suite, as README.md gives it. Installs what it needs first (scripts/setup.sh),
# then runs every part in scripts/test.d/ in order, and ends with one summary line.
#   scripts/test.sh            every part
#   scripts/test.sh 20 40      only the parts whose names start with 20 or 40
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh || { echo "setup failed"; exit 2; }
export DMAPICKLE_ROOT="$root"
export DMAPICKLE_PYTHON="$root/.venv/np2/bin/python"
export DMAPICKLE_PYTHON_NP1="$root/.venv/np1/bin/python"
export CARGO_TERM_COLOR=never

passed=0; failed=0; failed_names=()
for part in scripts/test.d/*.sh; do
  name=$(basename "$part" .sh)
  if [ $# -gt 0 ]; then
    keep=0; for p in "$@"; do [[ $name == "$p"* ]] && keep=1; done
    [ $keep = 1 ] || continue
  fi
  printf '\n\033[1m=== %s ===\033[0m\n' "$name"
  start=$(date +%s)
  if bash "$part"; then
    passed=$((passed + 1)); verdict=ok
  else
    failed=$((failed + 1)); failed_names+=("$name"); verdict=FAILED
  fi
  printf '\033[1m=== %s: %s (%ss) ===\033[0m\n' "$name" "$verdict" "$(( $(date +%s) - start ))"
done
[ $failed -eq 0 ] || echo "failed parts: ${failed_names[*]}"
echo "suites: $passed passed, $failed failed"
[ $failed -eq 0 ]

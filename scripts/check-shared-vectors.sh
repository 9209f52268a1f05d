#!/usr/bin/env bash
# Checks the validator against a shared vector set (called by .ci/run with ../shared/vectors):
# every DIR/cpython/*.pkl accepted under the general profile with `dmapickle inspect` agreeing
# with pickletools, every DIR/hostile/*.pkl rejected (with a reason, within 1 s of CPU time, no crash).
# Prints `N passed, N failed`; exits non-zero on any failure.
#   scripts/check-shared-vectors.sh DIR
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR (containing cpython/ and hostile/)"; exit 2; }
dir=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
py=${DMAPICKLE_PYTHON:-$root/.venv/np2/bin/python}
[ -x "$py" ] || { echo "missing $py: run scripts/setup.sh"; exit 1; }
cargo build -q -p dmapickle-host --bin dmapickle
target=$(cargo metadata --format-version 1 --no-deps | "$py" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
"$py" tests/vectors/check_vectors.py --bin "$target/debug/dmapickle" \
  --accept "$dir/cpython" --reject "$dir/hostile"

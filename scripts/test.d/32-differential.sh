#!/usr/bin/env bash
# Differential fuzzing of the validator with CPython as the oracle (issue 10,
# tests/fuzz/differential.py): mutants of CPython/numpy, encoder-like, constructed and hostile
# pickles; every one `dmapickle check` accepts is loaded in a sandboxed worker (numpy 2.x, and
# numpy 1.26 for a quarter of them). A crash, a timeout, a MemoryError, a global, type or dtype
# outside the allowlist, an array outside its buffer or a load allocating more than the
# validator's bound fails this part.
#   bounded run: 120 s (DMAPICKLE_FUZZ_SECONDS to change), seed DMAPICKLE_FUZZ_SEED (default 1)
#   long run:    DMAPICKLE_LONG_FUZZ=1 (1800 s, a fresh random seed unless one is given)
# Divergent mutants are kept in DMAPICKLE_FUZZ_OUT (default: a temp dir, printed).
set -euo pipefail
root=${DMAPICKLE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root"
py2=${DMAPICKLE_PYTHON:-$root/.venv/np2/bin/python}
py1=${DMAPICKLE_PYTHON_NP1:-$root/.venv/np1/bin/python}
for py in "$py2" "$py1"; do
  [ -x "$py" ] || { echo "missing $py: run scripts/setup.sh"; exit 1; }
done

cargo build -q -p dmapickle-host --bin dmapickle
target=$(cargo metadata --format-version 1 --no-deps | "$py2" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

if [ "${DMAPICKLE_LONG_FUZZ:-0}" = 1 ]; then
  seconds=${DMAPICKLE_FUZZ_SECONDS:-1800}
  seed=${DMAPICKLE_FUZZ_SEED:+--seed $DMAPICKLE_FUZZ_SEED}
else
  seconds=${DMAPICKLE_FUZZ_SECONDS:-120}
  seed="--seed ${DMAPICKLE_FUZZ_SEED:-1}"
fi
out=${DMAPICKLE_FUZZ_OUT:-$(mktemp -d /tmp/dmapickle-diff-out.XXXXXX)}
# shellcheck disable=SC2086
"$py2" tests/fuzz/differential.py --bin "$target/debug/dmapickle" --python-np1 "$py1" \
  --seconds "$seconds" $seed --out "$out"

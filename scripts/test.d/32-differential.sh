#!/usr/bin/env bash
# Differential fuzzing of the validator with CPython as the oracle
# (tests/fuzz/differential.py): mutants of CPython/numpy, encoder-like, constructed and hostile
# pickles; every one `dmapickle check` accepts is loaded in a sandboxed worker (numpy 2.x, and
# numpy 1.26 for a quarter of them). A crash, a timeout, a MemoryError, a global, type or dtype
# outside the allowlist, an array outside its buffer, a load allocating more than the
# validator's bound or a dict/set with more keys of one CPython hash than the limit fails this part.
#   bounded run: 120 s (DMAPICKLE_FUZZ_SECONDS to change), seed DMAPICKLE_FUZZ_SEED (default 1)
#   long run:    DMAPICKLE_LONG_FUZZ=1 (1800 s, a fresh random seed unless one is given)
# Then the strict profile on mutants of flat records only (what `validate` proves without the
# machine, core/src/validate/record.rs): 45 s, a quarter of a long run's seconds.
# Divergent mutants are kept in DMAPICKLE_FUZZ_OUT (default: a temp dir, printed).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
py2=$py
need_python "$py2" "$py1"

cargo build -q -p dmapickle-host --bin dmapickle
target=$(target_dir)

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
  --seconds "$seconds" $seed --out "$out" || exit 1
echo "--- the strict profile's flat records"
# shellcheck disable=SC2086
"$py2" tests/fuzz/differential.py --bin "$target/debug/dmapickle" --python-np1 "$py1" \
  --seconds "$(( ${DMAPICKLE_LONG_FUZZ:-0} == 1 ? seconds / 4 : 45 ))" $seed --out "$out/strict" \
  --check-arg=--profile --check-arg=strict --seeds '^built_record'

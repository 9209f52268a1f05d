#!/usr/bin/env bash
# Validator (issue 3): CPython/numpy vectors generated now with both venvs (numpy 2.x and 1.26)
# are all accepted by `dmapickle check` and `dmapickle inspect` agrees with pickletools on each
# (and on protocol 0/1 pickles, which check refuses);
# every committed hostile case is rejected with its expected reason, within 1 s, never crashing;
# the committed hostile files are what the generator writes; the strict-profile property test
# (everything the encoder emits is accepted under strict) and the reader/validator unit tests.
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
bin="$target/debug/dmapickle"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py2" tests/vectors/make_cpython_vectors.py "$tmp/cpython" --legacy "$tmp/legacy"
"$py1" tests/vectors/make_cpython_vectors.py "$tmp/cpython"

# The committed hostile files are exactly what their generator writes.
"$py2" tests/vectors/hostile/make_hostile.py "$tmp/hostile" >/dev/null
for f in "$tmp"/hostile/*; do
  cmp -s "$f" "tests/vectors/hostile/$(basename "$f")" || { echo "tests/vectors/hostile/$(basename "$f") differs from make_hostile.py's output"; exit 1; }
done

"$py2" tests/vectors/check_vectors.py --bin "$bin" --accept "$tmp/cpython" --reject tests/vectors/hostile
# Protocols 0/1 are refused by the validator, but inspect still reads them as pickletools does.
"$py2" tests/vectors/compare_dis.py --bin "$bin" "$tmp/legacy"

cargo test -q -p dmapickle-core --all-features --lib -- reader:: validate::
cargo test -q -p dmapickle-core --all-features --test validate_strict

#!/usr/bin/env bash
# Validator: CPython/numpy vectors generated now with both venvs (numpy 2.x and 1.26)
# are all accepted by `dmapickle check` and `dmapickle inspect` agrees with pickletools on each
# (and on protocol 0/1 pickles, which check refuses);
# every committed hostile case is rejected with its expected reason, within 1 s of CPU time, never crashing;
# the committed hostile files are what the generator writes; the strict-profile property test
# (everything the encoder emits is accepted under strict) and the reader/validator unit tests.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
py2=$py
need_python "$py2" "$py1"

cargo build -q -p dmapickle-host --bin dmapickle
bin="$(target_dir)/debug/dmapickle"

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

#!/usr/bin/env bash
# Fuzzes the pickle reader + validator (fuzz/fuzz_targets/validate.rs) for 60 s with libFuzzer,
# the corpus seeded from CPython/numpy vectors generated now and the committed hostile cases.
# No crash, no timeout. Installs cargo-fuzz and the nightly toolchain if absent.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
need_python "$py"
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py" tests/vectors/make_cpython_vectors.py "$tmp/vectors" >/dev/null
mkdir -p "$tmp/corpus"
# Fuzz input layout: [buffer count][u32 LE length per buffer][pickle] (see the target's docs).
"$py" - "$tmp/corpus" "$tmp/vectors" tests/vectors/hostile <<'PY'
import glob, os, struct, sys
out = sys.argv[1]
n = 0
for d in sys.argv[2:]:
    for pkl in sorted(glob.glob(os.path.join(d, "*.pkl"))):
        data = open(pkl, "rb").read()
        if len(data) > 4096:
            continue  # keep the seeds small; libFuzzer's -max_len would cut them anyway
        stem = pkl[:-4]
        lens = []
        while os.path.exists("%s.buf%d" % (stem, len(lens))) and len(lens) < 7:
            lens.append(os.path.getsize("%s.buf%d" % (stem, len(lens))))
        seed = bytes([len(lens)]) + b"".join(struct.pack("<I", l) for l in lens) + data
        open(os.path.join(out, "%05d" % n), "wb").write(seed)
        n += 1
print("fuzz corpus: %d seeds" % n)
PY
cd fuzz
cargo +nightly fuzz run validate "$tmp/corpus" -- -max_total_time=60 -timeout=5 -max_len=8192 -print_final_stats=1 2>&1 \
  | grep -E "^#|Done|ERROR|panicked|SUMMARY|stat::number_of_executed_units|stat::peak_rss" | tail -8
test "${PIPESTATUS[0]}" -eq 0

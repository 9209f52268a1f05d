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
# Flat records as the encoder writes them (the strict profile's fast path), with their buffers.
adc = b"\x8c\x05numpy\x8c\x07ndarray\x93\x94(M\x00\x04K\x04\x86\x8c\x03<i2\x97K\x00N\x8c\x01Ct\x81"
records = [
    (b"\x80\x05}(\x8c\x03seqK)\x8c\x04t_ns\x8a\x08\x15\xcd\x85=\xfe\x9c\x97\x17\x8c\x03adc" + adc
     + b"\x8c\x04gainG?\xe0\x00\x00\x00\x00\x00\x00u.", [8192]),
    (b"\x80\x05}(\x8c\x01aN\x8c\x01b\x88\x8c\x01cJ\xff\xff\xff\xff\x8c\x01d\x8c\x02hi\x8c\x01e\x97\x98"
     b"\x8c\x01f" + adc + b"\x8c\x01gh\x00((K\x02K\x02K\x02K\x02t\x8c\x03|b1\x97\x98K\x00N\x8c\x01Ft\x81u.",
     [3, 8192, 16]),
]
for data, lens in records:
    seed = bytes([len(lens)]) + b"".join(struct.pack("<I", l) for l in lens) + data
    open(os.path.join(out, "%05d" % n), "wb").write(seed)
    n += 1
print("fuzz corpus: %d seeds" % n)
PY
cd fuzz
cargo +nightly fuzz run validate "$tmp/corpus" -- -max_total_time=60 -timeout=5 -max_len=8192 -print_final_stats=1 2>&1 \
  | grep -E "^#|Done|ERROR|panicked|SUMMARY|stat::number_of_executed_units|stat::peak_rss" | tail -8
test "${PIPESTATUS[0]}" -eq 0

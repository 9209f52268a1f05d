#!/usr/bin/env bash
# The link: the worked examples of docs/wire-format.md decoded from their exact
# bytes; every reading rule over its byte-exact stream; a second reader written in Python from the
# document alone (tests/wire/spec_decoder.py, stdlib only) agreeing with the Rust reader on every
# message and counter of those streams and of the fault-injection streams;
# the hal's ownership proofs (trybuild compile-fail) and its unsafe code under miri; 10,000 random
# numpy messages device -> socketpair -> host -> CPython (numpy 2 and 1.26); fault injection with
# exact delivery and loss accounting; shared-region round trip with releases; 30 s of fuzzing the
# frame reader. Test binaries are the ones 10-rust builds (same --workspace --all-features), and
# the fuzz build shares fuzz/target with 35-fuzz, so after those parts this takes about 3 to 4
# minutes on 2 cores (miri's first build is the largest share); from cold, about 13.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
need_python "$py" "$py1"

echo "--- link: wire-format examples, round trip, faults, shared regions, hal proofs"
cargo test --workspace --all-features --lib -- frame:: release:: ring::
cargo test --workspace --all-features --test wire_format --test roundtrip --test faults \
  --test spec_decoder --test shared --test publish --test compile_fail --test cli_link -- --nocapture
# The CLI without optional features: rtt:// must then fail at once, not retry forever.
cargo test -p dmapickle-host --test cli_link

echo "--- link: miri on dmapickle-hal (file mapping and trybuild tests are skipped under miri)"
# The DMA buffers are leaked on purpose ('static, as on a device), hence -Zmiri-ignore-leaks.
MIRIFLAGS="-Zmiri-ignore-leaks" cargo +nightly miri test -p dmapickle-hal --features std

echo "--- link: fuzzing the frame reader for 30 s"
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
python3 - "$corpus" <<'PY'
import re, sys
doc = open("docs/wire-format.md").read()
for name, body in re.findall(r"```hex (\S+)\n(.*?)```", doc, re.S):
    b = bytes(int(t, 16) for line in body.splitlines() for t in line.split("#")[0].split())
    for mode in (0x00, 0x05, 0x3A):
        open(f"{sys.argv[1]}/{name}-{mode:02x}", "wb").write(bytes([mode]) + b + b)
PY
(cd fuzz && env -u CARGO_TARGET_DIR cargo +nightly fuzz run frame "$corpus" -- \
  -max_total_time=30 -max_len=65536 2>&1 | tail -n 3)

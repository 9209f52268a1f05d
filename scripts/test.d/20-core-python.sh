#!/usr/bin/env bash
# Cross-language: thousands of proptest-generated values encoded by dmapickle-core's Pickler,
# loaded by CPython with pickle.loads(data, buffers=...) under numpy 2.x AND numpy 1.26, each
# checked against an independent description of the expected value and by pickletools.dis.
# (core/tests/python_cross.rs + tests/python/check_encoded.py; about 10 s after the build.)
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
need_python "$py" "$py1"
cargo test -p dmapickle-core --test python_cross -- --nocapture

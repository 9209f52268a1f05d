#!/usr/bin/env bash
# serde messages and templates: what 10-rust.sh (`cargo test --workspace --all-features`, which
# runs the CPython round trips in core/tests/serde_template_python.rs and template_image.rs)
# does not cover: the code-size crate bench/size, its own workspace on thumbv7em-none-eabihf.
# It must be rustfmt- and clippy-clean and link every path; its .text table is printed.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
CARGO_TARGET_DIR=$(target_dir)
export CARGO_TARGET_DIR
cd "$root/bench/size"
cargo fmt --check
CARGO_TARGET_DIR="$CARGO_TARGET_DIR/size" cargo clippy -q --release -- -D warnings
bash "$root/bench/size.sh"

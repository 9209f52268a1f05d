#!/usr/bin/env bash
# Fixed layout vs postcard for the frame header + 4 descriptor entries: host encode/decode time,
# then code size of each function on thumbv7em-none-eabihf (opt-level s, LTO).
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo run -q --release --bin header-codec
cargo rustc -q --release --lib --target thumbv7em-none-eabihf --crate-type staticlib
nm=$(ls "$(rustc --print sysroot)"/lib/rustlib/*/bin/llvm-nm | head -n1)
lib="$CARGO_TARGET_DIR"/thumbv7em-none-eabihf/release/libheader_codec.a
echo "| function (thumbv7em, opt-level s) | bytes |"
echo "|---|---|"
"$nm" --size-sort -S --radix=d "$lib" 2>/dev/null | awk '$4 ~ /^(fixed|postcard)_/ || $4 ~ /crc/ {printf "| %s | %d |\n", $4, $2}'

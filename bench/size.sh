#!/usr/bin/env bash
# Code size of the sensor message's encode paths on thumbv7em-none-eabihf (opt-level "z", LTO,
# panic=abort): builds bench/size (one tiny no_std binary per path, no runtime crate) and prints
# each binary's .text with llvm-size, net of the `baseline` binary (the same entry loop without
# encoding), and how much of it is compiler-builtins (memcpy/memmove/memset, soft-float, 64-bit
# shifts) that most firmware links anyway.
#   bench/size.sh            table
#   bench/size.sh --markdown the same as a markdown table (for docs/performance.md)
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
CARGO_TARGET_DIR="$(target_dir)/size"
export CARGO_TARGET_DIR
cd "$root/bench/size"
rustup component add llvm-tools >/dev/null 2>&1 || true
rustup target add thumbv7em-none-eabihf >/dev/null 2>&1 || true
cargo build -q --release
bin="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin"
out="$CARGO_TARGET_DIR/thumbv7em-none-eabihf/release"

text() { "$bin/llvm-size" -A "$out/$1" | awk '$1 == ".text" {print $2}'; }
builtins() {
  "$bin/llvm-nm" -S --size-sort --radix=d "$out/$1" \
    | awk '$4 ~ /compiler_builtins|__aeabi/ {s += $2} END {print s + 0}'
}
base_text=$(text baseline)
base_builtins=$(builtins baseline)
markdown=0; [ "${1:-}" = --markdown ] && markdown=1
if [ $markdown = 1 ]; then
  echo "| binary | .text | net of baseline | of which compiler-builtins | net, without builtins |"
  echo "|---|---:|---:|---:|---:|"
else
  printf '%-24s %8s %16s %18s %22s\n' binary .text "net of baseline" "compiler-builtins" "net without builtins"
fi
for b in baseline builder serde template template_checked_at_boot template_built_at_boot postcard; do
  t=$(text "$b"); c=$(builtins "$b")
  net=$((t - base_text)); cb=$((c - base_builtins)); own=$((net - cb))
  if [ $markdown = 1 ]; then
    echo "| \`$b\` | $t | $net | $cb | $own |"
  else
    printf '%-24s %8d %16d %18d %22d\n' "$b" "$t" "$net" "$cb" "$own"
  fi
done

#!/usr/bin/env bash
# Rust: formatting, clippy on host and embedded targets, the workspace tests and doctests, and
# core/hal builds for every no_std target with and without each feature.
set -euo pipefail
cargo fmt --all --check
cargo clippy --workspace --all-targets --all-features -- -D warnings
for target in thumbv7em-none-eabihf riscv32imac-unknown-none-elf; do
  cargo clippy -p dmapickle-core -p dmapickle-hal --target "$target" -- -D warnings
done
for target in thumbv6m-none-eabi thumbv7em-none-eabihf riscv32imac-unknown-none-elf; do
  for features in "" defmt std serde control; do
    if [ "$features" = std ]; then continue; fi  # std is host-only by definition
    if [ -n "$features" ] && ! cargo metadata --no-deps --format-version 1 \
        | python3 -c "import json,sys;m=json.load(sys.stdin);p=[p for p in m['packages'] if p['name']=='dmapickle-core'][0];sys.exit(0 if '$features' in p['features'] else 1)"; then
      continue
    fi
    echo "build dmapickle-core --target $target --features '$features'"
    cargo build -q -p dmapickle-core --target "$target" --no-default-features ${features:+--features "$features"}
  done
done
# The hal builds unchanged for Cortex-M0/M0+ (thumbv6m: no compare-and-swap), Cortex-M4F and
# RISC-V, with no feature and with each no_std feature on its own (std is host-only).
hal_features=$(cargo metadata --no-deps --format-version 1 | python3 -c "import json,sys;m=json.load(sys.stdin);p=[p for p in m['packages'] if p['name']=='dmapickle-hal'][0];print(' '.join(f for f in p['features'] if f not in ('default','std')))")
for target in thumbv6m-none-eabi thumbv7em-none-eabihf riscv32imac-unknown-none-elf; do
  for features in "" $hal_features; do
    echo "build dmapickle-hal --target $target --features '$features'"
    cargo build -q -p dmapickle-hal --target "$target" --no-default-features ${features:+--features "$features"}
  done
done
cargo test --workspace --all-features
# API docs: no broken intra-doc links, with and without the optional features.
RUSTDOCFLAGS="-D warnings" cargo doc -q --no-deps -p dmapickle-core -p dmapickle-hal
RUSTDOCFLAGS="-D warnings" cargo doc -q --no-deps -p dmapickle-core -p dmapickle-hal --all-features

#!/usr/bin/env bash
# Rust: the code is rustfmt- and clippy-clean (host, Cortex-M4F, RISC-V); every workspace test and
# doctest passes; core and hal build on each no_std target (thumbv6m: Cortex-M0+, no
# compare-and-swap; thumbv7em; riscv32imac) with no feature and with each feature on its own, and
# each host feature builds on its own (features are additive: none leans on another); the API docs
# have no broken links; core and hal build with the toolchain of the declared rust-version.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
cargo fmt --all --check
cargo clippy --workspace --all-targets --all-features -- -D warnings
for target in thumbv7em-none-eabihf riscv32imac-unknown-none-elf; do
  cargo clippy -p dmapickle-core -p dmapickle-hal --target "$target" -- -D warnings
done
for crate in dmapickle-core dmapickle-hal; do
  features=$(crate_features "$crate")  # std is host-only by definition: not built here
  for target in thumbv6m-none-eabi thumbv7em-none-eabihf riscv32imac-unknown-none-elf; do
    for f in "" $features; do
      echo "build $crate --target $target --features '$f'"
      cargo build -q -p "$crate" --target "$target" --no-default-features ${f:+--features "$f"}
    done
  done
done
# clippy, not build: the metadata of every dependency is the --all-features run's, so each costs
# seconds; a feature that only compiles beside another fails here.
for f in $(crate_features dmapickle-host); do
  echo "clippy dmapickle-host --features '$f'"
  cargo clippy -q -p dmapickle-host --lib --bins --no-default-features --features "$f" -- -D warnings
done
cargo test --workspace --all-features
# API docs: no broken intra-doc links, with and without the optional features.
RUSTDOCFLAGS="-D warnings" cargo doc -q --no-deps -p dmapickle-core -p dmapickle-hal -p dmapickle-host
RUSTDOCFLAGS="-D warnings" cargo doc -q --no-deps -p dmapickle-core -p dmapickle-hal -p dmapickle-host --all-features
# and the private items' docs, which explain the validator's proofs to the next reader
RUSTDOCFLAGS="-D warnings" cargo doc -q --no-deps -p dmapickle-core -p dmapickle-hal -p dmapickle-host --document-private-items
# The declared rust-version is true for core and hal (host and thumbv7em, every feature; the host
# crate's dependencies set its floor, see host/Cargo.toml). scripts/setup.sh installs the toolchain;
# its own target dir, as its artifacts are never the stable toolchain's.
v=$(msrv)
rustup run "$v" rustc -V >/dev/null 2>&1 || { echo "10-rust: rust $v missing: run scripts/setup.sh"; exit 1; }
echo "check dmapickle-core dmapickle-hal with rust $v"
export CARGO_TARGET_DIR="$(target_dir)/msrv"
cargo +"$v" check -q -p dmapickle-core -p dmapickle-hal --all-features
cargo +"$v" check -q -p dmapickle-core -p dmapickle-hal --target thumbv7em-none-eabihf \
  --features "$(for c in dmapickle-core dmapickle-hal; do for f in $(crate_features $c); do printf '%s/%s,' $c $f; done; done)"

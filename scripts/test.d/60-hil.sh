#!/usr/bin/env bash
# Firmware and hardware-in-the-loop: the firmware's own checks (fmt, clippy for the board, the
# RTT build and the host unit-test build), its unit tests on the host, then the QEMU mps2-an386
# runs in tests/hil/ (inline and shared-region links through dmapickle-host's reader, and the
# shared region through the `dmapickle` Python package; >= 1000 messages each, every sample
# checked in Python; faults and exit codes; the Embassy build over Ethernet, 4096 messages and a
# connection dropped mid-frame; host -> device control over the UART with a proxy that damages
# commands and drops replies, hil_control.py; the same over Ethernet and `ctl` beside a reader,
# hil_control_ethernet.py). Budget: 5 minutes. Every QEMU run has a timeout and is killed
# with its process group when its test ends, pass or fail.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
need_python "$py" "$py1"
need_command qemu-system-arm defmt-print

cd "$root/firmware"
host=$(rustc -vV | sed -n 's/^host: //p')
cargo fmt --check
cargo clippy -q --release -- -D warnings
cargo clippy -q --release --no-default-features --features rtt -- -D warnings
cargo clippy -q --release --features embassy --bin dmapickle-embassy -- -D warnings
cargo clippy -q --lib --tests --no-default-features --features std --target "$host" -- -D warnings
# The firmware's logic on the host (the binary itself is thumb-only).
cargo test -q --lib --no-default-features --features std --target "$host"
cargo test -q --doc --no-default-features --features std --target "$host"
fw_target=${CARGO_TARGET_DIR:-$root/firmware/target}
# The real-board (probe-rs/RTT) build links too; its own target dir keeps the QEMU ELF intact.
CARGO_TARGET_DIR=$fw_target/rtt cargo build -q --release --no-default-features --features rtt
# ... and carries the RTT control block probe-rs looks for, with the frame channel's name in it.
rtt_elf=$fw_target/rtt/thumbv7em-none-eabihf/release/dmapickle-firmware
llvm_bin=$(rustc --print sysroot)/lib/rustlib/$host/bin
symbols=$("$llvm_bin/llvm-nm" "$rtt_elf")  # not piped into grep -q: pipefail + SIGPIPE
grep -q ' _SEGGER_RTT$' <<<"$symbols" || { echo "60-hil: no _SEGGER_RTT in $rtt_elf"; exit 1; }
rodata=$(mktemp)
"$llvm_bin/llvm-objcopy" -O binary --only-section=.rodata "$rtt_elf" "$rodata"
grep -aq 'dmapickle' "$rodata" || { echo "60-hil: RTT channel name 'dmapickle' missing from $rtt_elf"; exit 1; }
rm -f "$rodata"
cargo build -q --release
export DMAPICKLE_FIRMWARE_ELF=$fw_target/thumbv7em-none-eabihf/release/dmapickle-firmware
# The Embassy build (async tasks, LAN9118 Ethernet, embassy-net TCP): hil_ethernet.py.
cargo build -q --release --features embassy --bin dmapickle-embassy
export DMAPICKLE_EMBASSY_ELF=$fw_target/thumbv7em-none-eabihf/release/dmapickle-embassy
# A real Embassy chip, compile-checked: the RP2040 (thumbv6m, embassy-rp, DMA UART) example.
(cd boards/rp2040 && cargo fmt --check && cargo clippy -q --release -- -D warnings)
export DMAPICKLE_FIRMWARE_RTT_ELF=$rtt_elf  # qemu.sh must refuse it
# The hal guide's minimal firmware (its own crate, public API only): fmt, clippy, the release ELF
# tests/hil/hil_minimal.py runs.
(cd "$root/tests/minimal-firmware" && cargo fmt --check && cargo clippy -q --release -- -D warnings \
  && cargo build -q --release)
minimal_target=${CARGO_TARGET_DIR:-$root/tests/minimal-firmware/target}
export DMAPICKLE_MINIMAL_ELF=$minimal_target/thumbv7em-none-eabihf/release/minimal-firmware

# The host end: dmapickle-host's frame reader feeding the Python checks, and the Python package.
cd "$root"
cargo build -q -p dmapickle-hil-feeder
# `dmapickle ctl` for hil_control_ethernet.py (the features 55-readme.sh builds it with).
cargo build -q -p dmapickle-host --features zmq --bin dmapickle
export DMAPICKLE_BIN=$(target_dir)/debug/dmapickle
bash tests/hil/ensure-package.sh "$py"
bash tests/hil/ensure-package.sh "$py1"  # its pytest plugin starts QEMU for the numpy 1.26 run
export DMAPICKLE_HIL_FEEDER=$(target_dir)/debug/dmapickle-hil-feeder

# Every QEMU and feeder process group the tests start is listed here; whatever happens to
# pytest, the trap kills what is left, and a survivor fails the part.
export DMAPICKLE_HIL_PIDFILE=$(mktemp)
cleanup() {
  while read -r pgid; do kill -KILL -- "-$pgid" 2>/dev/null || true; done <"$DMAPICKLE_HIL_PIDFILE"
  rm -f "$DMAPICKLE_HIL_PIDFILE"
}
trap cleanup EXIT

cd "$root/tests/hil"
# hil_*.py, not test_*.py: a plain `pytest tests/` elsewhere does not pick up the QEMU runs.
status=0
# The dmapickle pytest plugin (installed with the package) starts every QEMU run of every
# hil_*.py (hil_plugin.py tests the plugin itself with pytester).
"$py" -m pytest -q -s -p no:cacheprovider -p pytester -o python_files='hil_*.py' \
  --dmapickle-firmware "$DMAPICKLE_FIRMWARE_ELF" . || status=$?
# numpy 1.26 loads the same arrays zero-copy: the shared-region run once more under it.
"$py1" -m pytest -q -s -p no:cacheprovider -o python_files='hil_*.py' \
  --dmapickle-firmware "$DMAPICKLE_FIRMWARE_ELF" hil_link.py -k shared || status=$?
left=0
while read -r pgid; do
  if kill -0 -- "-$pgid" 2>/dev/null; then echo "60-hil: process group $pgid outlived its test"; left=1; fi
done <"$DMAPICKLE_HIL_PIDFILE"
echo "60-hil: $(wc -l <"$DMAPICKLE_HIL_PIDFILE") QEMU/feeder process groups started, leftovers: $left"
[ "$status" -eq 0 ] && [ "$left" -eq 0 ]

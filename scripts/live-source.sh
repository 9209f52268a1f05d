#!/usr/bin/env bash
# A live dmapickle source on tcp://127.0.0.1:PORT for the README's examples, until Ctrl-C.
#
#   scripts/live-source.sh [inline|shared|sim] [PORT] [--psram FILE] [-- KEY=VALUE ...]
#
#   inline  (default) the instrument firmware in QEMU (mps2-an386); each message's array follows
#           its frame on the UART, which QEMU serves on PORT (default 4000). Hosts may come and
#           go (bytes sent while none is connected are dropped; the next host resynchronises).
#   shared  the same firmware with mode=shared: the arrays stay in the board's PSRAM, which QEMU
#           backs with FILE (default /dev/shm/psram); read it with --region 2=FILE (CLI) or
#           regions={2: FILE} (Python). A slot is reused only once the host that received it
#           released it, so one run serves one host: start it again for the next one.
#   sim     the device simulator (host/examples/device.rs: the same core Pickler and hal
#           Publisher on the host, no QEMU), inline, restarted for each host.
#
# QEMU waits for the first host to connect before the firmware runs. Words after -- are more
# firmware boot parameters (e.g. -- n=128 rate=128000; see firmware/src/config.rs). The firmware
# ELF is firmware/target/thumbv7em-none-eabihf/release/dmapickle-firmware (built here if needed),
# its defmt log is shown on stderr. Needs what scripts/setup.sh installs (qemu-system-arm,
# defmt-print).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd -P)
kind=inline port=4000 psram=/dev/shm/psram params=()
while [ $# -gt 0 ]; do
  case $1 in
    inline|shared|sim) kind=$1; shift ;;
    [0-9]*) port=$1; shift ;;
    --psram) psram=$2; shift 2 ;;
    --) shift; params=("$@"); break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "live-source.sh: unknown argument $1 (see --help)" >&2; exit 64 ;;
  esac
done

pids=()
cleanup() {
  for pid in ${pids[@]+"${pids[@]}"}; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
  if [ "$kind" = shared ]; then rm -f "$psram"; fi
}
trap cleanup EXIT
trap 'exit 0' INT  # Ctrl-C is the way to stop it: a clean end
trap 'exit 143' TERM

target=${CARGO_TARGET_DIR:-$root/target}
if [ "$kind" = sim ]; then
  (cd "$root" && cargo build -q -p dmapickle-host --example device)
  echo "live source: device simulator on tcp://127.0.0.1:$port (inline); Ctrl-C stops" >&2
  echo "  read it:   dmapickle listen tcp://127.0.0.1:$port" >&2
  # The simulator serves one host and ends when it leaves: start it again for the next one.
  while true; do
    set +e
    "$target/debug/examples/device" --to "tcp-listen:127.0.0.1:$port" --count 1000000000 \
      --rows 256 --interval-ms 4 &
    pids=($!)
    wait "$!"
    set -e
    sleep 0.2
  done
fi

command -v qemu-system-arm >/dev/null || { echo "live-source.sh: qemu-system-arm missing: run scripts/setup.sh" >&2; exit 69; }
(cd "$root/firmware" && cargo build -q --release)
elf=${CARGO_TARGET_DIR:-$root/firmware/target}/thumbv7em-none-eabihf/release/dmapickle-firmware
qemu=("$root/firmware/qemu.sh" --serial "tcp:127.0.0.1:$port,server=on,wait=on")
region=""
if [ "$kind" = shared ]; then
  qemu+=(--psram "$psram")
  region=" --region 2=$psram"
fi
echo "live source: firmware in QEMU, mode=$kind, on tcp://127.0.0.1:$port; Ctrl-C stops" >&2
echo "  ELF:       $elf" >&2
[ "$kind" = shared ] && echo "  PSRAM:     $psram (region 2; one host per run)" >&2
echo "  read it:   dmapickle listen tcp://127.0.0.1:$port$region" >&2
# Its own process group, so Ctrl-C here (or a kill of this script) stops QEMU and defmt-print.
set -m
"${qemu[@]}" "$elf" "mode=$kind" ${params[@]+"${params[@]}"} &
pids=($!)
set +m
wait "$!"

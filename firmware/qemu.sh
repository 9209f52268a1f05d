#!/usr/bin/env bash
# Boots the dmapickle firmware in QEMU's mps2-an386 (Cortex-M4) with semihosting on.
#
#   firmware/qemu.sh [options] ELF [key=value ...]
#
# key=value words are the firmware's boot parameters (mode= n= count= rate= fault= reboot=; see
# firmware/src/config.rs); they reach it as the semihosting command line.
#
# options:
#   --serial SPEC   QEMU -serial backend for UART0, the data link (default: null). Examples:
#                   tcp:127.0.0.1:5555,server=on,wait=on   unix:/tmp/fw.sock,server=on,wait=on
#   --psram FILE    back the 16 MiB PSRAM at 0x21000000 with FILE (created if missing, 16 MiB),
#                   shared with the host: mode=shared puts its buffers and release ring there
#   --log FILE      write the raw defmt stream (semihosting output) to FILE instead of decoding it
#   --timeout SECS  stop QEMU after SECS seconds (exit status 124), default: no limit
#   --nic HOSTPORT[:PORT]  the LAN9118 on QEMU's user network, host 127.0.0.1:HOSTPORT forwarded
#                   to the guest's TCP PORT (default 4000): the Embassy build's Ethernet link
#
# Without --log the defmt stream is decoded with `defmt-print -e ELF` (installed by
# scripts/setup.sh). The exit status is the firmware's: 0 after `count` messages, 2 for bad boot
# parameters, 3 if a message cannot be published, 101 for a panic, 102 for a HardFault (QEMU's
# own errors: 1).
# This is also the cargo runner (.cargo/config.toml): `cargo run --release -- count=10`. Options
# may also follow the ELF, so cargo run can pass them:
#   cargo run --release -- --serial tcp:127.0.0.1:4000,server=on,wait=on --psram /dev/shm/psram mode=shared
# mode=shared needs --serial and --psram (and a host reading both, which releases the buffers);
# without them it is refused, since the firmware would stop once every PSRAM slot is lent.
# An ELF built for a real board (feature rtt, symbol _SEGGER_RTT) is refused: QEMU cannot run it.
set -euo pipefail
serial=null psram="" log="" limit="" nic="" elf="" params=()
while [ $# -gt 0 ]; do
  case $1 in
    --serial) serial=$2; shift 2 ;;
    --psram) psram=$2; shift 2 ;;
    --log) log=$2; shift 2 ;;
    --timeout) limit=$2; shift 2 ;;
    --nic) nic=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --) shift; if [ -z "$elf" ] && [ $# -gt 0 ]; then elf=$1; shift; fi; params+=("$@"); break ;;
    -*) echo "qemu.sh: unknown option $1 (see --help)" >&2; exit 64 ;;
    *) if [ -z "$elf" ]; then elf=$1; else params+=("$1"); fi; shift ;;
  esac
done
[ -n "$elf" ] || { echo "qemu.sh: no ELF given (see --help)" >&2; exit 64; }
[ -f "$elf" ] || { echo "qemu.sh: $elf: no such firmware ELF (build it: cd firmware && cargo build --release)" >&2; exit 66; }
if grep -aq _SEGGER_RTT "$elf"; then
  echo "qemu.sh: $elf is the real-board (RTT) build, which QEMU cannot run; build the QEMU one with \`cd firmware && cargo build --release\` (\`cargo build-rtt\` puts the RTT build in firmware/target/rtt)" >&2
  exit 65
fi
set -- ${params[@]+"${params[@]}"}
for word in "$@"; do
  if [ "$word" = mode=shared ] && { [ "$serial" = null ] || [ -z "$psram" ]; }; then
    cat >&2 <<EOF
qemu.sh: mode=shared lends each array to the host until the host releases it, so it needs the
frames on --serial, the PSRAM in a --psram file, and a host reading both (else the firmware stops
once all its slots are lent). For example:
  ./qemu.sh --serial tcp:127.0.0.1:4000,server=on,wait=on --psram /dev/shm/psram $elf mode=shared
  dmapickle listen tcp://127.0.0.1:4000 --region 2=/dev/shm/psram     # the host, in a second terminal
With cargo run the options go after --: cargo run --release -- --serial ... --psram ... mode=shared
scripts/live-source.sh shared does all of this.
EOF
    exit 64
  fi
done

semi="enable=on,target=native,arg=dmapickle-firmware"
for word in "$@"; do
  case $word in
    *,*) echo "qemu.sh: boot parameter '$word' must not contain a comma" >&2; exit 64 ;;
  esac
  semi+=",arg=$word"
done

machine=(-machine mps2-an386)
if [ -n "$psram" ]; then
  # The machine's RAM on mps2-an386 is the 16 MiB PSRAM at 0x21000000 (not the SSRAM at 0x0 or
  # 0x20000000), so a file backend for it makes exactly that range visible to the host.
  machine=(-machine mps2-an386,memory-backend=psram
           -object "memory-backend-file,id=psram,size=16M,mem-path=$psram,share=on")
fi
cmd=(qemu-system-arm "${machine[@]}" -cpu cortex-m4 -display none -monitor none
     -serial "$serial" -semihosting-config "$semi" -kernel "$elf")
if [ -n "$nic" ]; then
  cmd+=(-nic "user,model=lan9118,hostfwd=tcp:127.0.0.1:${nic%%:*}-:$([[ $nic == *:* ]] && echo "${nic#*:}" || echo 4000)")
fi
[ -n "$limit" ] && cmd=(timeout --kill-after=5 "$limit" "${cmd[@]}")

if [ -n "$log" ]; then
  exec "${cmd[@]}" >"$log"
fi
if ! command -v defmt-print >/dev/null 2>&1; then
  echo "qemu.sh: defmt-print not found (run scripts/setup.sh); showing raw defmt bytes" >&2
  exec "${cmd[@]}"
fi
set +e
"${cmd[@]}" | defmt-print -e "$elf"
status=("${PIPESTATUS[@]}")
exit "${status[0]}"

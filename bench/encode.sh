#!/usr/bin/env bash
# Encoding speed: dmapickle-core's Pickler (criterion, core/benches/encode.rs) against CPython's
# pickle.dumps(protocol=5, buffer_callback=...) (bench/cpython_dumps.py) on the same sensor message,
# in one run on this machine. Prints a markdown table with the ratio, for docs/performance.md.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
python=$py
need_python "$python"
target=$(target_dir)

cargo bench -p dmapickle-core --bench encode -- --noplot >&2
cpython=$("$python" bench/cpython_dumps.py)

"$python" - "$target" "$cpython" <<'PY'
import json, os, platform, sys
target, cpython = sys.argv[1], json.loads(sys.argv[2])
load = open("/proc/loadavg").read().split()[0] if os.path.exists("/proc/loadavg") else "?"
print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, load average {load}; "
      f"CPython {cpython['python']}, numpy {cpython['numpy']}; medians")
print()
print("| message | dmapickle-core (ns) | CPython pickle.dumps (ns) | ratio |")
print("|---|---:|---:|---:|")
for name in ("adc_1024x4", "adc_1048576x4"):
    with open(os.path.join(target, "criterion", "sensor_message", name, "new", "estimates.json")) as f:
        ours = json.load(f)["median"]["point_estimate"]
    theirs = cpython[name]["ns_per_message"]
    print(f"| {name} | {ours:.1f} | {theirs:.0f} | {theirs / ours:.0f}x |")
PY

#!/usr/bin/env bash
# Makes `import dmapickle` work in the given Python (default .venv/np2), and current: if it is
# missing or older than a source under host/, core/src or hal/src
# (scripts/test.d/50-python.sh installs it on a full run), build the abi3 wheel from host/ with
# maturin and install it, as 50-python.sh does.   tests/hil/ensure-package.sh [PYTHON]
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"
py=${1:-$py}
# Installed and no older than every source it is built from: nothing to do.
installed=$("$py" -c "import dmapickle._native as m; print(m.__file__)" 2>/dev/null || true)
if [ -n "$installed" ] && [ -z "$(find "$root/host/src" "$root/host/python" "$root/host/Cargo.toml" \
    "$root/core/src" "$root/hal/src" -newer "$installed" -print -quit)" ]; then
  exit 0
fi
echo "building the dmapickle Python package (maturin, host/)..."
install_package --release -- "$py"

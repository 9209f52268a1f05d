# shellcheck shell=bash
# The preamble the test parts (scripts/test.d/*.sh), bench/*.sh and tests/hil/ensure-package.sh
# share. Source it with a path relative to the caller, e.g. `source "$(dirname "$0")/../lib.sh"`.
# It sets `root` (the repository, and cds there), `py` and `py1` (the numpy 2.x and numpy 1.26
# Pythons: DMAPICKLE_PYTHON / DMAPICKLE_PYTHON_NP1, else the venvs scripts/setup.sh makes), exports
# both for the tests that start Python themselves, and defines the helpers below.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
py=${DMAPICKLE_PYTHON:-$root/.venv/np2/bin/python}
py1=${DMAPICKLE_PYTHON_NP1:-$root/.venv/np1/bin/python}
export DMAPICKLE_PYTHON=$py DMAPICKLE_PYTHON_NP1=$py1

# need_python PY...: stop unless each is an executable Python.
need_python() {
  local p
  for p in "$@"; do
    [ -x "$p" ] || { echo "$(basename "$0"): no Python at $p: run scripts/setup.sh" >&2; exit 1; }
  done
}

# need_command CMD...: stop unless each is on PATH.
need_command() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null || { echo "$(basename "$0"): $c missing: run scripts/setup.sh" >&2; exit 1; }
  done
}

# target_dir: the workspace's cargo target directory (CARGO_TARGET_DIR, cargo config, or target/).
target_dir() {
  cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])'
}

# crate_features CRATE: the workspace crate's features but `default` and `std`, one line.
crate_features() {
  cargo metadata --format-version 1 --no-deps | python3 -c '
import json, sys
pkg = [p for p in json.load(sys.stdin)["packages"] if p["name"] == sys.argv[1]][0]
print(" ".join(f for f in sorted(pkg["features"]) if f not in ("default", "std")))' "$1"
}

# msrv: the rust-version the workspace declares (Cargo.toml), e.g. 1.88.
msrv() { sed -n 's/^rust-version = "\([0-9.]*\)".*/\1/p' "$root/Cargo.toml" | head -n 1; }

# install_package [MATURIN-ARG...] -- PY...: build the `dmapickle` abi3 wheel from host/ with
# maturin (debug unless --release is given) and install it into each PY.
install_package() {
  local args=() wheels
  while [ $# -gt 0 ] && [ "$1" != -- ]; do args+=("$1"); shift; done
  shift
  # The build runs in host/: make each Python's path absolute first (a relative one, as in
  # `tests/hil/ensure-package.sh .venv/np2/bin/python`, would name nothing there).
  local abs=() p
  for p in "$@"; do
    case $p in /*) abs+=("$p") ;; */*) abs+=("$PWD/$p") ;; *) abs+=("$(command -v "$p")") ;; esac
  done
  set -- "${abs[@]}"
  wheels=$(mktemp -d)
  (cd "$root/host" && "$(dirname "$1")/maturin" build --quiet "${args[@]}" -o "$wheels")
  for p in "$@"; do
    "$p" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$wheels"/dmapickle-*.whl
  done
  rm -rf "$wheels"
}

#!/usr/bin/env bash
# Per-binding throughput in one command: builds the C++ peer and libeshm.so optimized (--config=bench),
# makes sure the Node package's dependencies and a Python with the eshm package are there, then runs
# run.py: one-way 64-byte messages, writer and reader as two processes, for C++, Python (Cython, single
# and batch), Python ctypes and Node.js; median of --reps runs per binding.
#
# Usage: benchmarks/bindings/run.sh [--seconds S] [--reps N] [--only cpp,node,...] [--json]
# PYTHON selects the interpreter (default python3); without the eshm package it is built into a temporary
# venv (offline, as tests/interop/run.sh does).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
PYTHON=${PYTHON:-python3}
command="bash benchmarks/bindings/run.sh${*:+ $*}"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/eshm_bindings.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

cd "$repo" || exit 2
echo "=== bindings: bazel build --config=bench //benchmarks/bindings:cpp_peer //eshm:libeshm.so ===" >&2
if ! bazel build --config=bench //benchmarks/bindings:cpp_peer //eshm:libeshm.so >"$tmp/bazel.log" 2>&1; then
  cat "$tmp/bazel.log" >&2
  exit 2
fi
bin=$(bazel info --config=bench bazel-bin 2>/dev/null) || exit 2
cp "$bin/benchmarks/bindings/cpp_peer" "$bin/eshm/libeshm.so" "$tmp/" || exit 2

if [[ ! -d "$repo/node/node_modules/koffi" ]]; then
  echo "=== bindings: npm ci in node/ ===" >&2
  (cd "$repo/node" && npm ci --no-audit --no-fund) >"$tmp/npm.log" 2>&1 || { cat "$tmp/npm.log" >&2; exit 2; }
fi

py=$PYTHON
if ! (cd "$tmp" && "$py" -c 'import eshm; eshm.ESHM') 2>/dev/null; then
  echo "=== bindings: building the Python package into a temporary venv ===" >&2
  "$PYTHON" -m venv --system-site-packages "$tmp/venv" || exit 2
  py="$tmp/venv/bin/python"
  mkdir -p "$tmp/src"
  tar -cf - --exclude=build --exclude='*.egg-info' --exclude='*.so' --exclude='_eshm.cpp' \
    --exclude=__pycache__ python | tar -xf - -C "$tmp/src" || exit 2
  if ! ESHM_SOURCE_ROOT="$repo" "$py" -m pip install --quiet --disable-pip-version-check --no-build-isolation \
    --no-index --no-deps "$tmp/src/python" >"$tmp/pip.log" 2>&1; then
    cat "$tmp/pip.log" >&2
    exit 2
  fi
fi

echo "=== bindings: measuring ===" >&2
# From $tmp, so the Python peers import the installed package, not python/eshm of the work tree.
cd "$tmp" || exit 2
"$py" "$here/run.py" --cpp-peer "$tmp/cpp_peer" --lib "$tmp/libeshm.so" --python "$py" \
  --command "$command" "$@"

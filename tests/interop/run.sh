#!/usr/bin/env bash
# Runs the cross-language interop tests (tests/interop: C++ <-> Python <-> Node.js) against freshly built binaries and a freshly built
# Python package:
#   1. bazel build //tools:eshm_demo //eshm:libeshm.so (the plain configuration), copied to a temp dir (so
#      builds in other configurations, which move the bazel-bin symlink, cannot change them mid-run);
#   2. the Python binding built into a fresh venv exactly as tools/run_python_tests.sh does (offline:
#      --system-site-packages, --no-build-isolation, --no-index);
#   3. the Node.js package's dependencies (npm ci in node/, when node is installed and they are missing);
#   4. pytest tests/interop with ESHM_DEMO, ESHM_LIBESHM set and that venv's python (which the tests use,
#      as sys.executable, to run python/examples and tests/interop/peer.py).
#
# Usage: tests/interop/run.sh JUNIT_XML [extra pytest arguments...]
# Exits with pytest's exit code (2 if a build fails). PYTHON selects the interpreter (default python3).
set -uo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: $0 JUNIT_XML [pytest args...]" >&2
  exit 2
fi
junit=$(realpath -m "$1")
shift
repo=$(cd "$(dirname "$0")/../.." && pwd)
PYTHON=${PYTHON:-python3}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/eshm_interop_tests.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "=== Interop: building //tools:eshm_demo //eshm:libeshm.so ==="
cd "$repo" || exit 2
if ! bazel build //tools:eshm_demo //eshm:libeshm.so >"$tmp/bazel.log" 2>&1; then
  cat "$tmp/bazel.log" >&2
  echo "interop: bazel build failed" >&2
  exit 2
fi
bin=$(bazel info bazel-bin 2>/dev/null) || exit 2
mkdir -p "$tmp/bin"
cp "$bin/tools/eshm_demo" "$bin/eshm/libeshm.so" "$tmp/bin/" || exit 2
export ESHM_DEMO="$tmp/bin/eshm_demo"
export ESHM_LIBESHM="$tmp/bin/libeshm.so"

echo "=== Interop: building the Python binding into $tmp/venv ==="
"$PYTHON" -m venv --system-site-packages "$tmp/venv" || exit 2
py="$tmp/venv/bin/python"
# Build from a copy of python/ (so the work tree gets no build products), against the repository's engine.
mkdir -p "$tmp/src"
(cd "$repo" && tar -cf - --exclude=build --exclude='*.egg-info' --exclude='*.so' --exclude='_eshm.cpp' \
  --exclude=__pycache__ --exclude=.pytest_cache python) | tar -xf - -C "$tmp/src" || exit 2
export ESHM_SOURCE_ROOT="$repo"
if ! "$py" -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-index --no-deps \
  "$tmp/src/python" >"$tmp/build.log" 2>&1; then
  cat "$tmp/build.log" >&2
  echo "interop: building the Python binding failed" >&2
  exit 2
fi

# The Node.js package's dependencies (koffi), for the Node <-> C++ / Python tests (skipped without node).
if command -v node >/dev/null && [[ ! -d "$repo/node/node_modules/koffi" ]]; then
  echo "=== Interop: npm ci in node/ ==="
  if ! (cd "$repo/node" && npm ci --no-audit --no-fund) >"$tmp/npm.log" 2>&1; then
    cat "$tmp/npm.log" >&2
    echo "interop: npm ci in node/ failed" >&2
    exit 2
  fi
fi

# Import the installed package, not python/eshm from the work tree: run from $tmp.
cd "$tmp" || exit 2
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ in tests/interop or python/examples
"$py" -c 'import eshm, sys; assert eshm.__file__.startswith(sys.prefix), eshm.__file__' || exit 2

echo "=== Interop tests ==="
# A watchdog for the whole run, far above its normal length (every wait inside has its own timeout).
timeout -k 30 1800 "$py" -m pytest "$repo/tests/interop" -q -p no:cacheprovider --junitxml="$junit" "$@"
exit $?

#!/usr/bin/env bash
# Runs the Node.js package's tests (node/test/*.test.js, Node's built-in runner) against a freshly built
# libeshm.so, copied to a temp dir (so a build in another configuration cannot swap it mid-run), and
# writes JUnit XML; the spec report goes to stdout.
#
# Usage: node/run_tests.sh JUNIT_XML
# Exits non-zero if a test fails (2 if the build or the npm install fails).
set -uo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 JUNIT_XML" >&2
  exit 2
fi
junit=$(realpath -m "$1")
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/eshm_node_tests.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "=== Node: building //eshm:libeshm.so ==="
cd "$repo" || exit 2
if ! bazel build //eshm:libeshm.so >"$tmp/bazel.log" 2>&1; then
  cat "$tmp/bazel.log" >&2
  echo "node: bazel build failed" >&2
  exit 2
fi
bin=$(bazel info bazel-bin 2>/dev/null) || exit 2
cp "$bin/eshm/libeshm.so" "$tmp/" || exit 2
export ESHM_LIBESHM="$tmp/libeshm.so"

cd "$here" || exit 2
if [[ ! -d node_modules/koffi || ! -d node_modules/typescript ]]; then
  echo "=== Node: npm ci ==="
  npm ci --no-audit --no-fund >"$tmp/npm.log" 2>&1 || { cat "$tmp/npm.log" >&2; exit 2; }
fi

echo "=== Node tests ==="
mkdir -p "$(dirname "$junit")"
# A watchdog far above the normal run (each test bounds its own waits).
timeout -k 10 600 node --test --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=junit --test-reporter-destination="$junit" test/*.test.js
exit $?

#!/usr/bin/env bash
# Builds the eshm Python binding (python/) into a fresh virtual environment and runs its tests with pytest.
# Works offline: the venv sees the interpreter's site-packages (pytest, Cython, setuptools from
# requirements.txt / tools/setup.sh), and the package is built without pip's isolated build environment.
#
# The tests include python/tests/test_sdist.py: it builds the source distribution, installs it offline into
# another fresh venv (without the repository in reach) and runs a round trip with it, as one JUnit case.
#
# Usage: tools/run_python_tests.sh JUNIT_XML [extra pytest arguments...]
# Exits with pytest's exit code (or 2 if the build fails). PYTHON selects the interpreter (default python3).
set -uo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: $0 JUNIT_XML [pytest args...]" >&2
  exit 2
fi
junit=$(realpath -m "$1")
shift
repo=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/eshm_python_tests.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "=== Python binding: building into $tmp/venv ==="
"$PYTHON" -m venv --system-site-packages "$tmp/venv" || exit 2
py="$tmp/venv/bin/python"

# Build from a copy of python/ (so the work tree gets no build products), against the repository's engine.
mkdir -p "$tmp/src"
(cd "$repo" && tar -cf - --exclude=build --exclude=dist --exclude='*.egg-info' --exclude='*.so' --exclude='_eshm.cpp' \
  --exclude=__pycache__ --exclude=.pytest_cache python) | tar -xf - -C "$tmp/src" || exit 2
export ESHM_SOURCE_ROOT="$repo"

# tools/setup.sh installs a setuptools that builds wheels by itself, so this works without the network.
"$py" -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-index --no-deps \
  "$tmp/src/python" >"$tmp/build.log" 2>&1
rc=$?
if [[ $rc -ne 0 ]]; then
  cat "$tmp/build.log" >&2
  echo "run_python_tests: building the Python binding failed" >&2
  exit 2
fi

# The tests must import the installed package, not python/eshm from the work tree: run them from $tmp.
cd "$tmp" || exit 2
"$py" -c 'import eshm, sys; assert eshm.__file__.startswith(sys.prefix), eshm.__file__' || exit 2

echo "=== Python tests ==="
"$py" -m pytest "$repo/python/tests" -q -p no:cacheprovider --junitxml="$junit" "$@"
exit $?

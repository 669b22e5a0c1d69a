#!/usr/bin/env bash
# Sets up the machine, builds eshm and runs every test: the C++ suite plain, under ASan+UBSan and under
# TSan, then the Python binding's tests (built and installed with pip into a fresh virtual environment), its
# wheels for CPython 3.9-3.13 (tools/build_wheels.sh: built, repaired, smoke-tested, the suite on 3.9 and 3.13),
# the cross-language interop tests (real eshm_demo, Python and Node.js processes), the Node.js package's
# tests, the libFuzzer harnesses, and a separate Bazel workspace that depends on eshm.
# Ends with "N passed, N failed" counting every test case that ran, and exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh || exit 1

total_passed=0
total_failed=0
status=0

# run_bazel_suite LABEL [bazel flags...]
run_bazel_suite() {
  local label=$1
  shift
  local log
  log=$(mktemp)
  echo "=== C++ tests ($label) ==="
  bazel test "$@" --build_tests_only //... 2>&1 | tee "$log" | grep -E "^//|Executed|FAILED|ERROR" || true
  local rc=${PIPESTATUS[0]}
  local testlogs
  testlogs=$(readlink -f bazel-testlogs)
  local targets
  # Manual targets (long stress runs) are not part of `bazel test //...`, and the sanitizer configs filter out
  # the no_sanitizer ones (.bazelrc: test:asan/test:tsan --test_tag_filters=-no_sanitizer).
  local query='tests(//...) except attr(tags, "manual", tests(//...))'
  case " $* " in
    *" --config=asan "* | *" --config=tsan "*) query+=' except attr(tags, "no_sanitizer", tests(//...))' ;;
  esac
  targets=$(bazel query "$query" 2>/dev/null)
  grep -E "^//[^ ]+ +(FAILED|TIMEOUT|NO STATUS|INCOMPLETE|FAILED TO BUILD)" "$log" | awk '{print $1}' >"$log.failed"
  local counts
  # shellcheck disable=SC2086
  counts=$(python3 tools/count_test_results.py "$testlogs" "$log.failed" $targets)
  local passed=${counts% *} failed=${counts#* }
  if [[ $rc -ne 0 && $failed -eq 0 ]]; then failed=1; fi  # a build failure runs no test but must count
  echo "--- $label: $passed passed, $failed failed"
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed))
  [[ $rc -eq 0 ]] || status=1
  rm -f "$log" "$log.failed"
}

# The soak runs 60 s in CI (ESHM_SOAK_SECONDS; longer runs by hand: see tests/reliability/BUILD.bazel).
run_bazel_suite "plain" --test_env=ESHM_SOAK_SECONDS=60
# Sanitized builds run the stress tests at a fraction of their size: they are 5-20x slower.
run_bazel_suite "asan+ubsan" --config=asan --test_env=ESHM_STRESS_SCALE=0.1
run_bazel_suite "tsan" --config=tsan --test_env=ESHM_STRESS_SCALE=0.05

# run_junit_suite LABEL SCRIPT: runs SCRIPT with a JUnit XML path and counts that file's cases.
run_junit_suite() {
  local label=$1 script=$2
  local dir
  dir=$(mktemp -d)
  echo "=== $label ==="
  bash "$script" "$dir/junit.xml"
  local rc=$?
  local counts
  counts=$(python3 tools/count_test_results.py --junit "$dir/junit.xml")
  local passed=${counts% *} failed=${counts#* }
  if [[ $rc -ne 0 && $failed -eq 0 ]]; then failed=1; fi  # a failed build runs no test but must count
  echo "--- $label: $passed passed, $failed failed"
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed))
  [[ $rc -eq 0 ]] || status=1
  rm -rf "$dir"
}

run_junit_suite "python" tools/run_python_tests.sh
# Self-contained manylinux wheels for CPython 3.9-3.13, each smoke-tested in a fresh venv, and the Python suite
# against the 3.9 and 3.13 wheels (about 3-4 minutes).
run_junit_suite "python wheels (CPython 3.9-3.13; the suite on the 3.9 and 3.13 wheels)" tools/build_wheels.sh
run_junit_suite "interop (C++ <-> Python <-> Node.js, C ABI <-> Cython)" tests/interop/run.sh
run_junit_suite "node" node/run_tests.sh
# libFuzzer + ASan/UBSan over arbitrary shared memory, 60 s per fuzzer (ESHM_FUZZ_SECONDS to change it).
run_junit_suite "fuzz (libFuzzer: segment open, ring reader)" fuzz/run.sh

echo "=== eshm as a Bazel dependency (a separate workspace using local_repository) ==="
if bash tools/test_bazel_dependency.sh; then
  echo "--- bazel dependency: 1 passed, 0 failed"
  total_passed=$((total_passed + 1))
else
  echo "--- bazel dependency: 0 passed, 1 failed"
  total_failed=$((total_failed + 1))
  status=1
fi

echo "$total_passed passed, $total_failed failed"
exit $status

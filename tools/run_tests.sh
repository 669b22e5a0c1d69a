#!/usr/bin/env bash
# Sets up the machine, builds eshm and runs every test: the C++ suite plain, under ASan+UBSan and under
# TSan. Ends with "N passed, N failed" counting every test case that ran, and exits non-zero on any failure.
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
  targets=$(bazel query 'tests(//...)' 2>/dev/null)
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

run_bazel_suite "plain"
# Sanitized builds run the stress tests at a fraction of their size: they are 5-20x slower.
run_bazel_suite "asan+ubsan" --config=asan --test_env=ESHM_STRESS_SCALE=0.1
run_bazel_suite "tsan" --config=tsan --test_env=ESHM_STRESS_SCALE=0.05

echo "$total_passed passed, $total_failed failed"
exit $status

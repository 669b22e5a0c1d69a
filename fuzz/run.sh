#!/usr/bin/env bash
# Builds the libFuzzer harnesses and runs each for a fixed time over its committed seed corpus.
# Usage: bash fuzz/run.sh SECONDS JUNIT_XML
#        bash fuzz/run.sh JUNIT_XML            (SECONDS from ESHM_FUZZ_SECONDS, default 60)
# Writes one JUnit test case per fuzzer (a failure carries the crash summary), prints the executions each
# reached, and exits non-zero if any fuzzer failed or the build did. The fuzzers work on a scratch copy of
# fuzz/corpus/, so the repository is left as it was; a crashing input is kept in the scratch directory
# (its path is printed) and copied to $ESHM_FUZZ_ARTIFACTS if that is set.
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ $# -eq 1 ]]; then
  seconds=${ESHM_FUZZ_SECONDS:-60}
  junit=$1
elif [[ $# -eq 2 ]]; then
  seconds=$1
  junit=$2
else
  echo "usage: $0 [SECONDS] JUNIT_XML" >&2
  exit 2
fi
mkdir -p "$(dirname "$junit")"
junit=$(cd "$(dirname "$junit")" && pwd)/$(basename "$junit")

FUZZERS=(segment_open_fuzzer:segment_open:70000 ring_reader_fuzzer:ring_reader:9000)  # name:corpus:max_len (a valid segment is at least 65,664 bytes)

work=$(mktemp -d -t eshm_fuzz.XXXXXX)
results="$work/results.tsv"  # name, status (pass/fail), seconds, executions, exec/s, summary file
: >"$results"

write_junit() {
  python3 - "$results" "$junit" <<'PY'
import sys
import xml.etree.ElementTree as ET
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
suite = ET.Element("testsuite", name="fuzz", tests=str(len(rows)),
                   failures=str(sum(1 for r in rows if r[1] != "pass")))
for name, status, secs, execs, rate, summary in rows:
    case = ET.SubElement(suite, "testcase", classname="fuzz", name=name, time=secs)
    text = open(summary, errors="replace").read() if summary and summary != "-" else ""
    if status != "pass":
        failure = ET.SubElement(case, "failure", message=text.splitlines()[0] if text else status)
        failure.text = text
    ET.SubElement(case, "system-out").text = "%s executions (%s exec/s)\n" % (execs, rate)
root = ET.Element("testsuites")
root.append(suite)
ET.ElementTree(root).write(sys.argv[2], encoding="utf-8", xml_declaration=True)
PY
}

echo "fuzz: building (clang++-14, libFuzzer + ASan + UBSan)"
if ! bash fuzz/build.sh "$work/build" >"$work/build.log" 2>&1; then
  tail -40 "$work/build.log"
  tail -40 "$work/build.log" >"$work/build.summary"
  for entry in "${FUZZERS[@]}"; do
    printf '%s\tfail\t0\t0\t0\t%s\n' "${entry%%:*}" "$work/build.summary" >>"$results"
  done
  write_junit
  echo "fuzz: build failed (scratch: $work)"
  exit 1
fi

status=0
for entry in "${FUZZERS[@]}"; do
  IFS=: read -r name corpus max_len <<<"$entry"
  mkdir -p "$work/corpus/$name" "$work/artifacts/$name"
  cp -r "fuzz/corpus/$corpus/." "$work/corpus/$name/"
  log="$work/$name.log"
  echo "=== $name: $seconds s over fuzz/corpus/$corpus ($(ls "fuzz/corpus/$corpus" | wc -l) seeds) ==="
  start=$(date +%s)
  # -timeout: one input taking 10 s is a hang. -rss_limit_mb: a leak or runaway allocation fails the run.
  "$work/build/$name" "$work/corpus/$name" -max_total_time="$seconds" -max_len="$max_len" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/artifacts/$name/" >"$log" 2>&1 &
  pid=$!
  wait "$pid"
  rc=$?
  rm -f "/dev/shm/eshm_fuzz_$pid"  # the segment fuzzer's file, if it died holding one
  elapsed=$(($(date +%s) - start))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if [[ -z $execs ]]; then execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' "$log" | tail -1); fi
  execs=${execs:-0}
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  rate=${rate:-$((elapsed > 0 ? execs / elapsed : execs))}
  grep -E "^(#[0-9]+ +DONE|Done [0-9]+ runs)" "$log" | tail -1
  echo "$name: $execs executions in ${elapsed} s ($rate exec/s), exit code $rc"
  if [[ $rc -eq 0 ]]; then
    printf '%s\tpass\t%s\t%s\t%s\t-\n' "$name" "$elapsed" "$execs" "$rate" >>"$results"
  else
    status=1
    summary="$work/$name.summary"
    {
      grep -E "^(==[0-9]+==ERROR|SUMMARY:|[a-z_]+_fuzzer: |.*runtime error:|ERROR: libFuzzer)" "$log" | head -20
      echo "exit code $rc; crashing input(s):"
      ls -1 "$work/artifacts/$name/" 2>/dev/null | sed "s|^|  $work/artifacts/$name/|"
      echo "--- last lines of the log ---"
      tail -60 "$log"
    } >"$summary"
    printf '%s\tfail\t%s\t%s\t%s\t%s\n' "$name" "$elapsed" "$execs" "$rate" "$summary" >>"$results"
    head -25 "$summary"
    if [[ -n ${ESHM_FUZZ_ARTIFACTS:-} ]]; then
      mkdir -p "$ESHM_FUZZ_ARTIFACTS" && cp "$work/artifacts/$name/"* "$ESHM_FUZZ_ARTIFACTS/" 2>/dev/null
    fi
  fi
done
write_junit
if [[ $status -eq 0 ]]; then
  rm -rf "$work"
else
  echo "fuzz: failures; logs and crashing inputs kept in $work"
fi
exit $status

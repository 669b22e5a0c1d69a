#!/usr/bin/env bash
# Checks that eshm works as an external Bazel repository: builds and runs tests/bazel_dependency (a separate
# workspace that declares eshm with local_repository and calls eshm_dependencies()) against this checkout,
# checks that a consumer compiling as C++17 gets exactly one error, eshm's "needs C++20", and that a
# workspace with its own abseil (WORKSPACE.own_abseil: eshm_dependencies(abseil = "@com_google_absl"))
# gets eshm built against that one (its binary links none of Debian's libabsl_*.so, which the default does).
#
# Run from anywhere: bash tools/test_bazel_dependency.sh   (exit 0 on success)
# It uses its own Bazel server and output root under a temporary directory, so it never disturbs the main
# workspace's server. The first build takes about 15-40 s.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ -f "$ROOT/WORKSPACE" && -d "$ROOT/tests/bazel_dependency" ]] || { echo "FAIL: $ROOT is not an eshm checkout"; exit 1; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/eshm_bazel_dep.XXXXXX")"
WS="$TMP/workspace"
WS2="$TMP/workspace_own_abseil"
OUT="$TMP/output_user_root"
BAZEL=(bazel --output_user_root="$OUT" --max_idle_secs=60)

cleanup() {
  (cd "$WS" 2>/dev/null && "${BAZEL[@]}" shutdown >/dev/null 2>&1) || true
  (cd "$WS2" 2>/dev/null && "${BAZEL[@]}" shutdown >/dev/null 2>&1) || true
  chmod -R u+w "$TMP" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

mkdir -p "$WS"
cp -r "$ROOT/tests/bazel_dependency/." "$WS/"
# Point local_repository at this checkout (paths may hold any character but '|').
sed -i "s|ESHM_CHECKOUT|$ROOT|" "$WS/WORKSPACE" "$WS/WORKSPACE.own_abseil"
grep -q "path = \"$ROOT\"" "$WS/WORKSPACE" || { echo "FAIL: could not set the eshm path in WORKSPACE"; exit 1; }
# The same workspace with its own abseil, beside it.
cp -r "$WS" "$WS2"
mv "$WS2/WORKSPACE.own_abseil" "$WS2/WORKSPACE"

cd "$WS"
echo "== bazel build //:hello_eshm (eshm from $ROOT)"
if ! timeout 600 "${BAZEL[@]}" build //:hello_eshm; then
  echo "FAIL: the dependent workspace does not build"
  exit 1
fi
# What a user must install is what these repositories need: eshm's own library reaches no repository but
# its abseil (and Bazel's built-in ones), so no other Debian package of tools/setup.sh is needed for it.
REPOS="$("${BAZEL[@]}" query 'deps(@eshm//eshm:channel) + deps(@eshm//eshm:c_api)' --output package 2>/dev/null |
  sed -n 's|^@\([^/]*\)//.*|\1|p' | sort -u | tr '\n' ' ')"
echo "== repositories //eshm:channel and //eshm:c_api reach: $REPOS"
for repo in $REPOS; do
  case "$repo" in
    eshm | eshm_abseil | bazel_tools | local_config_cc | local_config_platform | platforms | rules_cc) ;;
    *) echo "FAIL: //eshm:channel reaches @$repo, which the README does not list as needed"; exit 1 ;;
  esac
done
[[ " $REPOS " == *" eshm_abseil "* ]] || { echo "FAIL: the query found no @eshm_abseil (it proves nothing)"; exit 1; }
echo "== running hello_eshm"
if ! OUTPUT="$(timeout 60 ./bazel-bin/hello_eshm 2>&1)"; then
  echo "$OUTPUT"
  echo "FAIL: hello_eshm failed"
  exit 1
fi
echo "$OUTPUT"
[[ "$OUTPUT" == *OK* ]] || { echo "FAIL: hello_eshm did not print OK"; exit 1; }
echo "== bazel build //:cxx17_consumer (must fail with one clear error)"
if timeout 600 "${BAZEL[@]}" build //:cxx17_consumer >"$TMP/cxx17.log" 2>&1; then
  echo "FAIL: a C++17 consumer of eshm compiled"
  exit 1
fi
ERRORS="$(grep -c "error:" "$TMP/cxx17.log" || true)"
if [[ "$ERRORS" != 1 ]] || ! grep -q "error: #error \"eshm needs C++20: compile with -std=c++20" "$TMP/cxx17.log"; then
  cat "$TMP/cxx17.log"
  echo "FAIL: a C++17 consumer should get exactly one error, eshm's 'needs C++20' (got $ERRORS error lines)"
  exit 1
fi
grep "error:" "$TMP/cxx17.log"
# ldd's output is captured before grep reads it: with pipefail, `ldd | grep -q` fails whenever grep exits at
# its first match and ldd then dies of SIGPIPE.
LIBS="$(ldd ./bazel-bin/hello_eshm)"
if [[ "$LIBS" != *libabsl_* ]]; then
  echo "FAIL: by default hello_eshm should link Debian's libabsl_*.so (the check below would prove nothing)"
  exit 1
fi
"${BAZEL[@]}" shutdown >/dev/null 2>&1 || true

cd "$WS2"
echo "== bazel build //:hello_eshm with the workspace's own abseil (eshm_dependencies(abseil = \"@com_google_absl\"))"
if ! timeout 600 "${BAZEL[@]}" build //:hello_eshm; then
  echo "FAIL: the workspace with its own abseil does not build"
  exit 1
fi
if ! OUTPUT="$(timeout 60 ./bazel-bin/hello_eshm 2>&1)" || [[ "$OUTPUT" != *OK* ]]; then
  echo "$OUTPUT"
  echo "FAIL: hello_eshm built with the workspace's abseil failed"
  exit 1
fi
LIBS="$(ldd ./bazel-bin/hello_eshm)"
if grep "libabsl_" <<<"$LIBS"; then
  echo "FAIL: eshm was built against Debian's abseil, not the workspace's @com_google_absl"
  exit 1
fi
echo "hello_eshm with the workspace's abseil: OK, no libabsl_*.so linked"
echo "test_bazel_dependency: PASSED"

#!/usr/bin/env bash
# Everything CI checks, on a fresh Debian 12:
#   1. install the packages (scripts/setup.sh)
#   2. build build/ (-Werror) and build-san/ (ASan + UBSan, -Werror)
#   3. unit tests (`make check`) in each build
#   4. `make -j2 distcheck` in build/: the release tarball configures, builds,
#      passes `make check`, installs (checked by scripts/check_install.sh:
#      binary, 0640 config, systemd unit verified, man pages linted) and
#      uninstalls cleanly; counted as one check
#   5. the end-to-end suite (tests/e2e, real Glance + nginx TLS) against each binary
#   6. the libFuzzer targets (scripts/fuzz.sh, tests/fuzz), each for 15 s, two
#      at a time; one check per target
# Prints a summary per phase; the last line is exactly "N passed, N failed".
# Exits non-zero when anything failed or nothing ran.
#
# Environment: MB_SKIP_SETUP=1 skips step 1; MB_E2E_ARGS adds pytest arguments
# (e.g. "-k framing"); MB_TEST_FLAVORS="normal" runs only one build;
# MB_SKIP_DISTCHECK=1 skips step 4; MB_SKIP_FUZZ=1 skips step 6,
# MB_FUZZ_SECONDS=N runs each fuzz target N seconds instead of 15.
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
PY=/usr/bin/python3
run_dir="$top/_test_runs/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$run_dir"
# Keep the logs of the last 5 runs only.
ls -1d "$top"/_test_runs/*/ 2>/dev/null | head -n -5 | xargs -r rm -rf
export PYTHONDONTWRITEBYTECODE=1

total_pass=0
total_fail=0
summaries=()

note() { summaries+=("$1"); echo "== $1"; }
elapsed() { echo $(( $(date +%s) - $1 ))s; }

# ---------------------------------------------------------------- setup
if [ "${MB_SKIP_SETUP:-0}" != 1 ]; then
  t=$(date +%s)
  if bash "$top/scripts/setup.sh"; then
    note "setup: ok ($(elapsed "$t"))"
  else
    note "setup: FAILED ($(elapsed "$t"))"
    total_fail=$((total_fail + 1))
  fi
fi

# Sum the Check results of one build's unit tests: "NN%: Checks: N, Failures: F, Errors: E".
# A test program that ran but printed no such line (a crash) counts as one failure.
count_unit() {
  local dir=$1 pass=0 fail=0 log trs line checks failures errors
  shopt -s nullglob
  for trs in "$dir"/tests/unit/*.trs; do
    log=${trs%.trs}.log
    line=$(grep -Eo '[0-9]+%: Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+' "$log" 2>/dev/null | tail -n 1)
    if [ -n "$line" ]; then
      checks=$(sed -E 's/.*Checks: ([0-9]+).*/\1/' <<<"$line")
      failures=$(sed -E 's/.*Failures: ([0-9]+).*/\1/' <<<"$line")
      errors=$(sed -E 's/.*Errors: ([0-9]+).*/\1/' <<<"$line")
      pass=$((pass + checks - failures - errors))
      fail=$((fail + failures + errors))
      # A leak or sanitizer report after all checks passed still fails the program.
      if [ $((failures + errors)) -eq 0 ] && grep -q '^:test-result: \(FAIL\|ERROR\)' "$trs"; then
        fail=$((fail + 1))
      fi
    elif grep -q '^:test-result: \(FAIL\|ERROR\)' "$trs"; then
      fail=$((fail + 1))
    fi
  done
  shopt -u nullglob
  echo "$pass $fail"
}

# Count a junit xml: per test case, failed (failure/error), skipped, or passed.
count_junit() {
  "$PY" - "$1" <<'PYEOF'
import sys
import xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    print("0 0 0")
    sys.exit(0)
p = f = s = 0
for case in root.iter("testcase"):
    tags = {child.tag for child in case}
    if tags & {"failure", "error"}:
        f += 1
    elif "skipped" in tags:
        s += 1
    else:
        p += 1
print(p, f, s)
PYEOF
}

san_env=(ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1)

for flavor in ${MB_TEST_FLAVORS:-normal san}; do
  case "$flavor" in
    normal) dir=build;     envs=() ;;
    san)    dir=build-san; envs=("${san_env[@]}") ;;
    *) echo "unknown flavor $flavor" >&2; total_fail=$((total_fail + 1)); continue ;;
  esac

  # ------------------------------------------------------------ build
  t=$(date +%s)
  if bash "$top/scripts/build.sh" "$flavor" >"$run_dir/build-$flavor.log" 2>&1; then
    note "build $dir: ok ($(elapsed "$t"))"
  else
    tail -n 40 "$run_dir/build-$flavor.log"
    note "build $dir: FAILED ($(elapsed "$t"), log $run_dir/build-$flavor.log)"
    total_fail=$((total_fail + 1))
    continue
  fi

  # ------------------------------------------------------------ unit tests
  t=$(date +%s)
  env "${envs[@]}" bash "$top/scripts/build.sh" "$flavor" check >"$run_dir/unit-$flavor.log" 2>&1
  rc=$?
  read -r up uf < <(count_unit "$top/$dir")
  if [ "$rc" -ne 0 ] && [ "$uf" -eq 0 ]; then
    uf=1  # make check failed before any test reported (e.g. a test did not build)
    tail -n 40 "$run_dir/unit-$flavor.log"
  fi
  total_pass=$((total_pass + up)); total_fail=$((total_fail + uf))
  note "unit $dir: $up passed, $uf failed ($(elapsed "$t"))"

  # ------------------------------------------------------------ distcheck
  if [ "$flavor" = normal ] && [ "${MB_SKIP_DISTCHECK:-0}" != 1 ]; then
    t=$(date +%s)
    if (cd "$top/$dir" && make -j2 distcheck) >"$run_dir/distcheck.log" 2>&1; then
      total_pass=$((total_pass + 1))
      note "distcheck $dir: ok, the tarball builds, passes make check, installs and uninstalls ($(elapsed "$t"))"
    else
      tail -n 40 "$run_dir/distcheck.log"
      total_fail=$((total_fail + 1))
      note "distcheck $dir: FAILED ($(elapsed "$t"), log $run_dir/distcheck.log)"
    fi
  fi

  # ------------------------------------------------------------ e2e
  t=$(date +%s)
  junit="$run_dir/e2e-$flavor.xml"
  work="$run_dir/e2e-$flavor"
  mkdir -p "$work"
  # shellcheck disable=SC2086
  env "${envs[@]}" MB_BINARY="$top/$dir/src/memberbridge" MB_E2E_WORKDIR="$work" \
    timeout 1200 "$PY" -m pytest -q -p no:cacheprovider --junitxml="$junit" \
    ${MB_E2E_ARGS:-} "$top/tests/e2e" 2>&1 | tee "$run_dir/e2e-$flavor.log" | tail -n 60
  rc=${PIPESTATUS[0]}
  read -r ep ef es < <(count_junit "$junit")
  if [ "$rc" -ne 0 ] && [ "$ef" -eq 0 ]; then
    ef=1  # pytest itself failed (collection error, timeout...)
  fi
  total_pass=$((total_pass + ep)); total_fail=$((total_fail + ef))
  note "e2e $dir: $ep passed, $ef failed, $es skipped ($(elapsed "$t"), logs $work)"
done

# ---------------------------------------------------------------- fuzz
# scripts/fuzz.sh prints "fuzz <target>: ok, ..." or "fuzz <target>: FAILED (...)"
# per target: one pass or one failure each. A non-zero exit with no FAILED
# line (e.g. no clang) counts as one failure.
if [ "${MB_SKIP_FUZZ:-0}" != 1 ]; then
  t=$(date +%s)
  bash "$top/scripts/fuzz.sh" --seconds "${MB_FUZZ_SECONDS:-15}" --jobs 2 >"$run_dir/fuzz.log" 2>&1
  rc=$?
  grep -aE '^fuzz [a-z0-9_]+: ' "$run_dir/fuzz.log"
  fp=$(grep -acE '^fuzz [a-z0-9_]+: ok' "$run_dir/fuzz.log")
  ff=$(grep -acE '^fuzz [a-z0-9_]+: FAILED' "$run_dir/fuzz.log")
  if [ "$rc" -ne 0 ] && [ "$ff" -eq 0 ]; then
    ff=1
    tail -n 40 "$run_dir/fuzz.log"
  fi
  total_pass=$((total_pass + fp)); total_fail=$((total_fail + ff))
  note "fuzz: $fp passed, $ff failed ($(elapsed "$t"), log $run_dir/fuzz.log, crashes in build-fuzz/artifacts-*)"
fi

echo
echo "Summary (logs in $run_dir):"
for s in "${summaries[@]}"; do echo "  $s"; done
echo "$total_pass passed, $total_fail failed"
if [ "$total_fail" -ne 0 ] || [ "$total_pass" -eq 0 ]; then
  exit 1
fi
exit 0

#!/usr/bin/env bash
# libFuzzer targets for every parser the gateway owns (tests/fuzz/fuzz_*.c):
#
#   fuzz_v1_body        the incremental v1 membership body parser (v1_body.c)
#   fuzz_route          routes, percent-decoding, id validation (route.c)
#   fuzz_conf           the configuration file loader (mb_conf.c, inih)
#   fuzz_v2_parse       Glance v2 member/image lists, top strings, error text (v2_parse.c)
#   fuzz_h1_response    the incremental HTTP/1.x response parser (h1_response.c)
#   fuzz_keystone_json  Keystone token reply, times, URLs, auth body (keystone_json.c)
#   fuzz_framing        request framing checks, header-block and chunked-body scanners (framing.c)
#
# Each target checks invariants besides memory safety (ASan, UBSan, leaks):
# the incremental parsers are fed whole and in pieces (cut as the input's
# first byte says, see tests/fuzz/fuzz_split.h) and must agree. The comment
# at the top of each target says what it checks and how its input is laid out.
#
# Usage:
#   scripts/fuzz.sh [--seconds N] [--jobs J] [--long] [--fresh] [--build-only] [target ...]
#     --seconds N   run each target N seconds (default 20)
#     --long        the same as --seconds 3600: an hour per target, e.g. overnight
#                   with --jobs 2 (or any --seconds; a day is --seconds 86400)
#     --jobs J      run J targets at a time (default 2); each uses one core
#     --fresh       forget what earlier runs added to the working corpora
#     --build-only  build the targets, run nothing
#   targets are named with or without "fuzz_" (default: all)
#
# Builds with clang into build-fuzz/ (not tracked). Each target runs on
# build-fuzz/corpus-<target>: the seeds of tests/fuzz/corpus/<target>/ copied
# in (tests/fuzz is never written), plus what earlier runs found, unless
# --fresh. Crashes go to build-fuzz/artifacts-<target>/, logs to
# build-fuzz/<target>.log. To reproduce a crash, and to shrink it before
# putting it into a unit test (tests/unit/test_*.c):
#   build-fuzz/fuzz_<target> build-fuzz/artifacts-<target>/crash-...
#   build-fuzz/fuzz_<target> -minimize_crash=1 -runs=100000 build-fuzz/artifacts-<target>/crash-...
# Prints one line per target,
#   fuzz <target>: ok, <execs> executions in <s> s (cov: C, ft: F, corpus: N)
#   fuzz <target>: FAILED (<crash file or log>)
# and exits non-zero when any failed.
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
out=build-fuzz

seconds=20
jobs=2
fresh=0
build_only=0
wanted=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=${2:?--seconds needs a number}; shift 2 ;;
    --seconds=*) seconds=${1#*=}; shift ;;
    --long) seconds=3600; shift ;;
    --jobs) jobs=${2:?--jobs needs a number}; shift 2 ;;
    --jobs=*) jobs=${1#*=}; shift ;;
    --fresh) fresh=1; shift ;;
    --build-only) build_only=1; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) wanted+=("${1#fuzz_}"); shift ;;
  esac
done
case "$seconds$jobs" in
  *[!0-9]*) echo "fuzz.sh: --seconds and --jobs take whole numbers" >&2; exit 2 ;;
esac
[ "$jobs" -ge 1 ] || jobs=1

# Each target is tests/fuzz/fuzz_<target>.c; it links only the gateway
# sources it needs: src/x.c for every "x.h" it includes, followed through
# the includes of those files (so a parser that starts using another module
# is followed without editing this list). The pkg-config modules come from
# the system headers those files include. -max_len is in bytes of input (the
# first one or two are the target's own control bytes).
declare -A MAX_LEN=(
  [v1_body]=4096 [route]=1024 [conf]=8192 [v2_parse]=8192
  [h1_response]=8192 [keystone_json]=4096 [framing]=4096
)
ALL=(v1_body route conf v2_parse h1_response keystone_json framing)

# Prints the src/*.c files that tests/fuzz/fuzz_<target>.c needs, one a line.
sources_of() {
  local todo=("tests/fuzz/fuzz_$1.c") seen=" " f h
  while [ ${#todo[@]} -gt 0 ]; do
    f=${todo[0]}; todo=("${todo[@]:1}")
    for h in $(sed -nE 's/^#include "([a-z0-9_]+)\.h".*/\1/p' "$f"); do
      case "$seen" in *" $h "*) continue ;; esac
      seen="$seen$h "
      [ -f "src/$h.h" ] && todo+=("src/$h.h")
      [ -f "src/$h.c" ] && { echo "src/$h.c"; todo+=("src/$h.c"); }
    done
  done
}

# Prints the pkg-config modules that the given files' system includes need.
modules_of() {
  local inc
  inc=$(cat "$@" | sed -nE 's/^#include <([^>]+)>.*/\1/p')
  grep -q '^yajl/' <<<"$inc" && echo yajl
  grep -q '^event2/' <<<"$inc" && echo libevent
  grep -q '^ini\.h$' <<<"$inc" && echo inih
  grep -q '^openssl/' <<<"$inc" && echo openssl
  return 0
}

targets=()
if [ ${#wanted[@]} -eq 0 ]; then
  targets=("${ALL[@]}")
else
  for t in "${wanted[@]}"; do
    if [ -z "${MAX_LEN[$t]+x}" ]; then
      echo "fuzz.sh: no target $t (have: ${ALL[*]})" >&2
      exit 2
    fi
    targets+=("$t")
  done
fi

CC=${FUZZ_CC:-clang}
if ! command -v "$CC" >/dev/null; then
  for t in "${targets[@]}"; do echo "fuzz $t: FAILED (no $CC: run scripts/setup.sh)"; done
  exit 1
fi
# The warnings of configure.ac's MB_CFLAGS, as errors; -O1 and the sanitizers
# libFuzzer wants.
CFLAGS=(-std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wstrict-prototypes
        -Wmissing-prototypes -Wformat=2 -Werror
        -g -O1 -fno-omit-frame-pointer
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
        -Isrc -Itests/fuzz)

mkdir -p "$out"

build() {
  local t=$1 srcs=() mods=() cflags=() libs=()
  mapfile -t srcs < <(sources_of "$t")
  mapfile -t mods < <(modules_of "tests/fuzz/fuzz_$t.c" "${srcs[@]}")
  if [ ${#mods[@]} -gt 0 ]; then
    # shellcheck disable=SC2207
    cflags=($(pkg-config --cflags "${mods[@]}")) && libs=($(pkg-config --libs "${mods[@]}")) || return 1
  fi
  echo "fuzz_$t: ${srcs[*]} (${mods[*]:-no modules})"
  "$CC" "${CFLAGS[@]}" "${cflags[@]}" -o "$out/fuzz_$t" "tests/fuzz/fuzz_$t.c" \
    "${srcs[@]}" "${libs[@]}" -lpthread -lm
}

# The last "key: value" of a libFuzzer log, e.g. cov from "#123 DONE cov: 456 ...".
# (-a: the log may quote input bytes.)
last_field() {
  grep -aEo "$2: [0-9]+" "$1" | tail -n 1 | sed -E 's/.*: //'
}

run() {
  local t=$1 corpus="$out/corpus-$t" art="$out/artifacts-$t" log="$out/$t.log"
  local dict=() start rc
  [ "$fresh" = 1 ] && rm -rf "$corpus"
  mkdir -p "$corpus" "$art"
  cp -f "tests/fuzz/corpus/$t"/* "$corpus/" 2>/dev/null
  [ -f "tests/fuzz/fuzz_$t.dict" ] && dict=("-dict=tests/fuzz/fuzz_$t.dict")
  start=$(date +%s)
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
  timeout $((seconds + 120)) "$out/fuzz_$t" "${dict[@]}" \
    -max_total_time="$seconds" -max_len="${MAX_LEN[$t]}" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$art/" "$corpus" >"$log" 2>&1
  rc=$?
  local took=$(( $(date +%s) - start )) execs cov ft corp crash
  execs=$(last_field "$log" 'stat::number_of_executed_units')
  cov=$(last_field "$log" 'cov')
  ft=$(last_field "$log" 'ft')
  corp=$(last_field "$log" 'corp')
  crash=$(grep -aEo 'Test unit written to [^ ]+' "$log" | tail -n 1 | sed 's/Test unit written to //')
  if [ "$rc" -eq 0 ] && [ -z "$crash" ] && [ -n "$execs" ]; then
    echo "fuzz $t: ok, $execs executions in $took s (cov: ${cov:-?}, ft: ${ft:-?}, corpus: ${corp:-?})"
  else
    echo "fuzz $t: FAILED (${crash:-exit status $rc, log $log})"
    [ -n "$crash" ] && echo "  log: $log; reproduce: $out/fuzz_$t $crash" >&2
    grep -aE '^(==[0-9]+==ERROR|SUMMARY|.*invariant failed|.*runtime error)' "$log" | head -n 5 >&2
    return 1
  fi
}

# Build every target first (jobs at a time), so a build error shows at once.
failed=0
declare -A built=()
pids=()
for t in "${targets[@]}"; do
  ( build "$t" >"$out/build-$t.log" 2>&1 ) &
  pids+=("$!:$t")
  if [ ${#pids[@]} -ge "$jobs" ]; then
    entry=${pids[0]}; pids=("${pids[@]:1}")
    if wait "${entry%%:*}"; then built[${entry#*:}]=1; fi
  fi
done
for entry in "${pids[@]}"; do
  if wait "${entry%%:*}"; then built[${entry#*:}]=1; fi
done
for t in "${targets[@]}"; do
  if [ -z "${built[$t]+x}" ]; then
    echo "fuzz $t: FAILED (build, log $out/build-$t.log)"
    tail -n 20 "$out/build-$t.log" >&2
    failed=1
  fi
done
[ "$build_only" = 1 ] && exit "$failed"

# Run them, jobs at a time; each prints its own line when it ends.
running=0
for t in "${targets[@]}"; do
  [ -n "${built[$t]+x}" ] || continue
  if [ "$running" -ge "$jobs" ]; then
    wait -n || failed=1
    running=$((running - 1))
  fi
  run "$t" &
  running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
  wait -n || failed=1
  running=$((running - 1))
done
exit "$failed"

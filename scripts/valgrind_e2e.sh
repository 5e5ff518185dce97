#!/usr/bin/env bash
# The end-to-end suite with every gateway under valgrind memcheck.
#
#   bash scripts/valgrind_e2e.sh [pytest arguments, e.g. -k framing]
#
# Builds build/ if needed (-O2 -g, no sanitizers: valgrind and ASan do not
# mix), puts a wrapper in place of the binary that runs it under
#   valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite
# with one log per gateway process, runs tests/e2e against it, and sums the
# logs: memcheck errors (invalid reads/writes, uninitialised values, bad
# frees) and definitely lost bytes. Prints "valgrind: N gateway runs, E
# errors, L bytes definitely lost" and exits non-zero when E or L is not 0.
# Test failures are reported but do not change the exit status: under
# valgrind the gateway is 20-50x slower and tests that bound a time (client
# timeouts, shutdown grace) can miss it; those are timing, not memory.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)"; exit 2; }
[ -x build/src/memberbridge ] || bash scripts/build.sh normal -j2 >/dev/null || exit 2

work=$(mktemp -d /tmp/mb-valgrind-XXXXXX)
logs="$work/logs"
mkdir -p "$logs"
wrapper="$work/memberbridge"
cat > "$wrapper" <<EOF
#!/bin/sh
exec valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite \\
  --show-leak-kinds=definite --num-callers=30 --log-file="$logs/vg.%p.log" \\
  "$top/build/src/memberbridge" "\$@"
EOF
chmod +x "$wrapper"

echo "valgrind: logs in $logs"
[ $# -gt 0 ] || set -- .
(cd tests/e2e && MB_BINARY="$wrapper" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
   --junitxml="$work/e2e.xml" "$@" 2>&1 | tail -n 40)

runs=0 errors=0 lost=0
for f in "$logs"/vg.*.log; do
  [ -e "$f" ] || continue
  # --check-config and --version runs exit before the loop: they count too
  runs=$((runs + 1))
  e=$(sed -n 's/.*ERROR SUMMARY: \([0-9,]*\) errors.*/\1/p' "$f" | tr -d , | tail -n 1)
  l=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes.*/\1/p' "$f" | tr -d , | tail -n 1)
  errors=$((errors + ${e:-0}))
  lost=$((lost + ${l:-0}))
  if [ "${e:-0}" != 0 ]; then echo "  $f: ${e} errors"; fi
done
echo "valgrind: $runs gateway runs, $errors errors, $lost bytes definitely lost"
[ "$errors" -eq 0 ] && [ "$lost" -eq 0 ]

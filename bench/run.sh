#!/usr/bin/env bash
# The benchmark suite, one command, on a fresh Debian 12 machine:
#   bash bench/run.sh            # every figure (about 15 minutes)
#   bash bench/run.sh --quick    # shorter wrk runs, fewer connections in figure 4
#   bash bench/run.sh --only 1,3 # some figures
# Installs what it needs (the project's packages, wrk, valgrind), builds the
# gateway (build/, optimised, no sanitizers), runs bench/bench.py, and writes
# bench/results.json. See docs/PERFORMANCE.md.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
need=()
for p in wrk valgrind util-linux; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=(); [ "$(id -u)" -ne 0 ] && SUDO=(sudo)
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
bash scripts/build.sh normal -j"$(nproc)" >/dev/null
exec /usr/bin/python3 bench/bench.py --binary build/src/memberbridge "$@"

#!/usr/bin/env bash
# Out-of-tree build of memberbridge.
#   scripts/build.sh          -> build/      (--enable-werror)
#   scripts/build.sh san      -> build-san/  (--enable-sanitizers --enable-werror)
# Extra arguments after the flavor go to make (e.g. `scripts/build.sh normal check`).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
flavor=${1:-normal}
[ $# -gt 0 ] && shift

case "$flavor" in
  normal) dir=build;     flags=(--enable-werror) ;;
  san)    dir=build-san; flags=(--enable-sanitizers --enable-werror) ;;
  *) echo "usage: $0 [normal|san] [make targets...]" >&2; exit 2 ;;
esac

cd "$top"
if [ ! -x configure ]; then
  mkdir -p m4
  autoreconf -fi
fi
mkdir -p "$dir"
cd "$dir"
# Reconfigure when configure is newer than the last run, or there was none.
if [ ! -f config.status ] || [ ../configure -nt config.status ]; then
  "$top/configure" "${flags[@]}" >/dev/null
fi
make -j"$(nproc)" "$@"

#!/bin/sh
# Checks an installed memberbridge tree: `make installcheck` runs it (and so
# does `make distcheck`, after installing under its own prefix). Needs no root.
#
# Environment (set by Makefile.am's installcheck-local):
#   MB_BINDIR MB_CONFDIR MB_UNITDIR MB_MANDIR  where the files are (with DESTDIR)
#   MB_EXPECT_BINDIR MB_EXPECT_CONFDIR         the paths the unit must name (without DESTDIR)
#   MB_VERSION                                 the version --version must print
# Prints one line per check; exits 1 when any failed.
set -u
fails=0
ok() { echo "check_install: ok: $*"; }
bad() { echo "check_install: FAILED: $*"; fails=$((fails + 1)); }

bin=$MB_BINDIR/memberbridge
conf=$MB_CONFDIR/memberbridge.conf
unit=$MB_UNITDIR/memberbridge.service
man8=$MB_MANDIR/man8/memberbridge.8
man5=$MB_MANDIR/man5/memberbridge.conf.5
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

# ---- the binary
if [ -x "$bin" ]; then
  v=$("$bin" --version 2>&1)
  if [ "$v" = "memberbridge $MB_VERSION" ]; then ok "$bin --version: $v"
  else bad "$bin --version printed '$v', expected 'memberbridge $MB_VERSION'"; fi
else
  bad "$bin is missing or not executable"
fi

# ---- the sample configuration: 0640, and valid
if [ -f "$conf" ]; then
  mode=$(stat -c %a "$conf")
  if [ "$mode" = 640 ]; then ok "$conf mode $mode"; else bad "$conf mode $mode, expected 640"; fi
  if [ -x "$bin" ]; then
    if out=$("$bin" --check-config -c "$conf" 2>&1); then ok "$out"
    else bad "--check-config -c $conf: $out"; fi
  fi
else
  bad "$conf is missing"
fi

# ---- the unit: configured paths put in, and systemd accepts it
if [ -f "$unit" ]; then
  want="ExecStart=$MB_EXPECT_BINDIR/memberbridge -c $MB_EXPECT_CONFDIR/memberbridge.conf"
  if grep -qxF "$want" "$unit"; then ok "$unit: $want"
  else bad "$unit has no line '$want'"; fi
  if grep -n '@[a-z_]*@' "$unit"; then bad "$unit still holds @placeholders@"; fi
  if command -v systemd-analyze >/dev/null 2>&1; then
    # verify looks for the ExecStart binary and the Documentation= man pages;
    # under DESTDIR they are not at the paths the unit names: point it there.
    sed -e "s|$MB_EXPECT_BINDIR/memberbridge|$bin|g" "$unit" > "$tmp/memberbridge.service"
    man_opt=--man=yes
    command -v man >/dev/null 2>&1 || man_opt=--man=no
    MANPATH=$MB_MANDIR systemd-analyze verify "$man_opt" "$tmp/memberbridge.service" > "$tmp/verify.out" 2>&1
    rc=$?
    if [ "$rc" -eq 0 ] && ! grep -q . "$tmp/verify.out"; then
      ok "systemd-analyze verify memberbridge.service: no complaints"
    elif grep -q 'Failed to \(initialize\|connect\|setup\)' "$tmp/verify.out" && [ "$rc" -ne 0 ]; then
      echo "check_install: skipped: systemd-analyze verify cannot run here: $(head -n 1 "$tmp/verify.out")"
    else
      cat "$tmp/verify.out"
      bad "systemd-analyze verify memberbridge.service (rc $rc)"
    fi
  else
    echo "check_install: skipped: no systemd-analyze"
  fi
else
  bad "$unit is missing"
fi

# ---- the man pages: installed, and groff/mandoc find nothing to say
for page in "$man8" "$man5"; do
  if [ ! -f "$page" ]; then bad "$page is missing"; continue; fi
  if command -v groff >/dev/null 2>&1; then
    LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z "$page" > "$tmp/groff.out" 2>&1
    if [ $? -eq 0 ] && ! grep -q . "$tmp/groff.out"; then ok "groff -man -ww $(basename "$page"): no warnings"
    else cat "$tmp/groff.out"; bad "groff -man -ww $(basename "$page")"; fi
  fi
  if command -v mandoc >/dev/null 2>&1; then
    mandoc -Tlint -Wwarning "$page" > "$tmp/mandoc.out" 2>&1
    if [ $? -eq 0 ] && ! grep -q . "$tmp/mandoc.out"; then ok "mandoc -Tlint $(basename "$page"): no warnings"
    else cat "$tmp/mandoc.out"; bad "mandoc -Tlint $(basename "$page")"; fi
  fi
done

if [ "$fails" -ne 0 ]; then
  echo "check_install: $fails check(s) failed"
  exit 1
fi
echo "check_install: all checks passed"

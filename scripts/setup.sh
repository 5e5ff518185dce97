#!/usr/bin/env bash
# Install everything memberbridge needs to build, test and demo on Debian 12.
# Idempotent: installs only what is missing, runs `apt-get update` at most once.
set -euo pipefail

BUILD_DEPS=(autoconf automake libtool pkg-config gcc make
            libevent-dev libevhtp-dev libyajl-dev libssl-dev
            libinih-dev check uuid-dev)
TEST_DEPS=(python3-glance python3-keystone python3-keystonemiddleware python3-werkzeug
           python3-pytest python3-requests python3-glanceclient
           nginx-light openssl curl ca-certificates
           systemd groff-base mandoc)   # the last three: make installcheck (distcheck)
FUZZ_DEPS=(clang libclang-rt-14-dev)   # scripts/fuzz.sh: libFuzzer and the sanitizer runtimes

missing=()
for p in "${BUILD_DEPS[@]}" "${TEST_DEPS[@]}" "${FUZZ_DEPS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all packages present"
  exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO=(sudo)
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null
echo "setup: done"

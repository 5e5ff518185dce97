#!/usr/bin/env bash
# Demonstration on a fresh Debian 12 (needs root for apt-get: `sudo scripts/demo.sh`):
# installs the packages, builds memberbridge, starts a real Glance behind nginx
# (TLS, throwaway CA) with memberbridge in front, sends ONE legacy v1 bulk
# membership call with curl, prints the HTTP status and the members Glance
# then has (Image API v2), and stops everything.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

bash scripts/setup.sh
echo "Building memberbridge (build/)..."
bash scripts/build.sh normal >/dev/null
export PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 tests/e2e/demo.py "$top/build/src/memberbridge"

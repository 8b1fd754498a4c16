#!/usr/bin/env bash
# Set up everything (Python packages, Debian's Chromium), then run the whole test suite:
# the JavaScript unit tests, then pytest inside a loopback-only network namespace so that
# WebRTC candidates and every test connection stay on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v "${CHROMIUM:-chromium}" >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
scripts/setup.sh test
npm test --silent
exec unshare -n sh -c 'ip link set lo up && exec "$@"' sh .venv/bin/python -m pytest "$@"

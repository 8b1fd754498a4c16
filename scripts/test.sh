#!/usr/bin/env bash
# Set up everything, then run every check: lint and type checks, the JavaScript unit tests, the sdist and wheel
# as users get them, the tests that need no browser, and last the browser tests inside a loopback-only network
# namespace, so that WebRTC candidates and every test connection stay on 127.0.0.1. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages, each only when missing (apt needs root, as CI has): Debian's Chromium for the browser tests,
# `ip` for the namespace, Node.js and npm for the browser bundle, venv support for Debian's python3, and for
# the TURN and cluster tests coturn and redis-server, for the SFU tests Debian's janus (each test starts its own
# on free ports with a configuration of its own; its system service is never started: a missing one fails them
# in CI).
missing=()
command -v "${CHROMIUM:-chromium}" >/dev/null || missing+=(chromium)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v turnserver >/dev/null || missing+=(coturn)
command -v janus >/dev/null || missing+=(janus)
command -v ip >/dev/null || missing+=(iproute2)
command -v npm >/dev/null || missing+=(nodejs npm)
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    scripts/apt-install.sh "${missing[@]}"
fi
scripts/setup.sh test

# Static checks: configured in pyproject.toml (ruff, mypy, import-linter's contracts on which side may import
# which) and tsconfig.json (tsc over js/).
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports
npm run --silent typecheck
npm test --silent

# Build and check the sdist and wheel, and install the wheel into a venv of its own for tests/e2e/test_wheel.py.
# Everything that downloads happens here, before the namespace, where no registry is reachable.
work=$(mktemp -d "${TMPDIR:-/tmp}/nbcall-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
scripts/package.sh "$work"
export NBCALL_WHEEL_VENV="$work/venv"

# pytest exits 5 when it collected nothing, which is fine when the arguments select tests of one kind only.
run_pytest() { "$@" || [ $? = 5 ]; }
# Tests that only use sockets they open on 127.0.0.1 need neither root nor a namespace.
run_pytest .venv/bin/python -m pytest -m "not e2e and not webrtc" "$@"
# The browser tests (marked e2e by tests/e2e/conftest.py) and the WebRTC tests without a browser (marked webrtc:
# aiortc gathers candidates on every interface too) get a network namespace with only loopback up, plus a veth
# carrying 127.0.0.2 for Janus, which skips loopback interfaces for ICE (the SFU tests name it: jns0). The kernel
# routes 127.0.0.2 through lo, so nothing leaves 127/8.
run_pytest unshare -n sh -c 'ip link set lo up && ip link add jns0 type veth peer name jns1 &&
    ip addr add 127.0.0.2/32 dev jns0 && ip link set jns1 up && ip link set jns0 up && exec "$@"' \
    sh .venv/bin/python -m pytest -m "e2e or webrtc" "$@"
# The tests of aiortc on a loopback-only machine (they skip where the veth is) get a namespace with only lo.
run_pytest unshare -n sh -c 'ip link set lo up && exec "$@"' sh .venv/bin/python -m pytest -m webrtc \
    tests/peer/test_aiortc_patches.py "$@"

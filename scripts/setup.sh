#!/usr/bin/env bash
# Idempotent set-up shared by lab.sh and test.sh: a .venv with nbcall (editable) and the browser bundle built.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-lab}"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
if [ ! -d node_modules/esbuild ]; then
    npm install --no-audit --no-fund --silent
fi
npm run --silent build
.venv/bin/python -m pip install -q -e ".[$extras]"

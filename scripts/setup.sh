#!/usr/bin/env bash
# Idempotent set-up shared by lab.sh and test.sh: the npm packages, and a .venv with nbcall installed editable.
# Installing nbcall builds the browser bundle nbcall/widget/static/phone.js (hatch_build.py runs `npm run build`).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-lab}"
# The checks build the documentation site too (scripts/docs.sh): the test set-up installs its extra.
if [ "$extras" = test ]; then extras="test,docs"; fi
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# npm ci installs exactly package-lock.json (esbuild; typescript for the type check). Again when the lock file
# is newer than the last install, so a pull that changes it is picked up.
if [ ! node_modules/.package-lock.json -nt package-lock.json ]; then
    npm ci --no-audit --no-fund --silent
fi
.venv/bin/python -m pip install -q -e ".[$extras]"

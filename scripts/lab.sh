#!/usr/bin/env bash
# Set up everything, then open the first lesson in JupyterLab.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh lab
# Jupyter refuses to run as root unless told; root is what a fresh container or VM often is.
if [ "$(id -u)" = 0 ]; then set -- --allow-root "$@"; fi
exec .venv/bin/jupyter lab notebooks/01_hello_datachannel.ipynb "$@"

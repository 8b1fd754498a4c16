#!/usr/bin/env bash
# Set up everything, then open the first lesson in JupyterLab.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh lab
exec .venv/bin/jupyter lab notebooks/01_hello_datachannel.ipynb "$@"

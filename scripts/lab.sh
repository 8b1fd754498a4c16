#!/usr/bin/env bash
# Set up everything, then open the first lesson in JupyterLab.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh lab
# coturn, for the lesson on ICE and TURN (a relay on loopback), where this user may install packages; the lesson
# says how to get it otherwise.
if ! command -v turnserver >/dev/null && command -v apt-get >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        (apt-get update -qq && scripts/apt-install.sh coturn) || echo "coturn not installed: the TURN lesson will say how" >&2
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        (sudo -n apt-get update -qq && sudo -n scripts/apt-install.sh coturn) || echo "coturn not installed" >&2
    else
        echo "coturn is not installed (sudo apt-get install coturn): the TURN lesson needs it" >&2
    fi
fi
# Jupyter refuses to run as root unless told; root is what a fresh container or VM often is.
if [ "$(id -u)" = 0 ]; then set -- --allow-root "$@"; fi
exec .venv/bin/jupyter lab notebooks/01_hello_datachannel.ipynb "$@"

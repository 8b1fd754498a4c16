#!/usr/bin/env bash
# Build the documentation site into docs/_build/html with Sphinx, warnings as errors (a broken reference, a missing
# page or a docstring that does not parse fails). `scripts/docs.sh serve` builds it, serves it on
# http://127.0.0.1:8000 and rebuilds on every change. Needs the docs extra: scripts/setup.sh test installs it, or
# `.venv/bin/pip install -e '.[docs]'`. The build downloads nothing and runs no notebook.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/_build/html
if [ "${1:-}" = serve ]; then
    shift
    exec .venv/bin/sphinx-autobuild -W --keep-going -b html docs "$out" --host 127.0.0.1 --port 8000 \
        --ignore docs/course/lessons "$@"
fi
.venv/bin/sphinx-build -W --keep-going -q -b html docs "$out" "$@"
echo "built $out/index.html"

#!/usr/bin/env bash
# Build nbcall as users get it and check it: an sdist from a clean copy of the tree, a wheel from that sdist
# without Node.js, then a fresh venv at OUT/venv with that wheel and JupyterLab (what a user needs to show a
# phone) and no source tree around. Usage: scripts/package.sh OUT (OUT/dist gets the sdist and the wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
out="$1"
python=.venv/bin/python  # has `build` (the test extra)
mkdir -p "$out/src" "$out/dist"

# What a fresh clone has: tracked and untracked files, nothing git ignores (no node_modules, .venv, bundle).
# Unlike `git archive HEAD` this includes uncommitted changes; CI runs on a clean clone, where both agree.
git ls-files -z --cached --others --exclude-standard |
    tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -xf - -C "$out/src"

# The sdist: hatch_build.py runs npm ci and npm run build in the copy, and the sdist must carry the bundle.
"$python" -m build --sdist --outdir "$out/dist" "$out/src" >"$out/sdist.log" 2>&1 ||
    { cat "$out/sdist.log"; exit 1; }
sdist=$(echo "$out"/dist/nbcall-*.tar.gz)
tar -tzf "$sdist" >"$out/sdist.txt"
for f in nbcall/widget/static/phone.js nbcall/widget/static/phone.css nbcall/__init__.py hatch_build.py package-lock.json \
    js/index.js jupyter-config/jupyter_server_config.d/nbcall.json; do
    grep -qx "nbcall-[^/]*/$f" "$out/sdist.txt" || { echo "the sdist lacks $f" >&2; exit 1; }
done
if grep -q -e /node_modules/ -e /.venv/ "$out/sdist.txt"; then echo "the sdist carries node_modules or .venv" >&2; exit 1; fi

# The wheel from that sdist, with a PATH that has no node or npm: proves a user's build needs no Node.js.
PATH="$PWD/.venv/bin" "$python" -m pip wheel -q --no-deps -w "$out/dist" "$sdist"
wheel=$(echo "$out"/dist/nbcall-*.whl)
"$python" -c 'import sys, zipfile; print(*zipfile.ZipFile(sys.argv[1]).namelist(), sep="\n")' "$wheel" >"$out/wheel.txt"
for f in nbcall/widget/static/phone.js nbcall/widget/static/phone.css nbcall/__init__.py \
    etc/jupyter/jupyter_server_config.d/nbcall.json; do
    grep -Eqx "(nbcall-[^/]*\.data/data/)?$f" "$out/wheel.txt" || { echo "the wheel lacks $f" >&2; exit 1; }
done

python3 -m venv "$out/venv"
"$out/venv/bin/python" -m pip install -q "$wheel" jupyterlab
echo "sdist $(basename "$sdist") ($(wc -l <"$out/sdist.txt") files), wheel $(basename "$wheel"): bundle present; venv $out/venv"

"""Hatch build hook: bundle the browser half (js/) into nbcall/widget/static/phone.js before hatch packs a wheel or sdist.

From a git checkout the bundle is always rebuilt (a stale one must never ship); this needs Node.js and npm.
From an sdist, which carries the bundle, nothing is rebuilt and no Node.js is needed.
NBCALL_SKIP_JS=1 skips the JavaScript build altogether, for those who built the bundle themselves.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

BUNDLE = Path("nbcall", "widget", "static", "phone.js")


class BuildError(RuntimeError):
    """The browser bundle could not be built: says why and what to do."""


class JSBundleHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        bundle = root / BUNDLE
        if os.environ.get("NBCALL_SKIP_JS") == "1":
            if not bundle.is_file():
                self.app.display_warning(
                    f"NBCALL_SKIP_JS=1 and no {BUNDLE}: this build's phone will not render"
                )
            return
        # hatchling writes PKG-INFO into every sdist; a git checkout has none.
        if (root / "PKG-INFO").is_file() and bundle.is_file():
            self.app.display_info(f"using the {BUNDLE} that this sdist carries")
            return
        npm = shutil.which("npm")
        if npm is None:
            raise BuildError(
                f"nbcall's build bundles the browser code (js/) into {BUNDLE}, which needs Node.js (18+) and npm "
                "on PATH, and npm was not found. Install them (Debian: apt-get install nodejs npm), or install "
                "nbcall from its sdist or wheel, which carry the bundle, or set NBCALL_SKIP_JS=1 if you built "
                f"{BUNDLE} yourself."
            )
        if not (root / "node_modules" / ".package-lock.json").is_file():
            # npm ci installs exactly what package-lock.json names; npm writes that marker file when it is done.
            self._npm(npm, "ci", "--no-audit", "--no-fund")
        self._npm(npm, "run", "build")
        if not bundle.is_file():
            raise BuildError(
                f"`npm run build` succeeded but wrote no {BUNDLE}: check package.json's build script"
            )

    def _npm(self, npm: str, *args: str) -> None:
        command = [npm, *args]
        self.app.display_info(f"nbcall: {' '.join(['npm', *args])}")
        try:
            subprocess.run(command, cwd=self.root, check=True)
        except subprocess.CalledProcessError as err:
            raise BuildError(
                f"`npm {' '.join(args)}` failed (exit status {err.returncode}) while building the browser bundle "
                f"{BUNDLE}; its output is above. Set NBCALL_SKIP_JS=1 to build without it, if you built it yourself."
            ) from None

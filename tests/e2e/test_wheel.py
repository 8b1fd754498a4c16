"""The package as users get it: a phone renders from the wheel, installed with JupyterLab into a venv of its own.

scripts/package.sh builds that wheel from an sdist of a clean copy of the tree (no node_modules, no prebuilt
bundle), installs it into a fresh venv away from the source tree, and scripts/test.sh hands the venv over in
NBCALL_WHEEL_VENV.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from harness import start_lab
from playwright.sync_api import Page, expect

SOURCE_TREE = Path(__file__).resolve().parents[2]
VENV = os.environ.get("NBCALL_WHEEL_VENV")
# Skipped where no venv was built, but never in CI (CI=true): there scripts/test.sh always builds it.
pytestmark = pytest.mark.skipif(
    not VENV and not os.environ.get("CI"), reason="NBCALL_WHEEL_VENV is unset (scripts/test.sh sets it)"
)


@pytest.fixture
def wheel_venv() -> Path:
    if not VENV:
        pytest.fail("NBCALL_WHEEL_VENV is unset in CI: scripts/test.sh must build the wheel's venv")
    return Path(VENV).resolve()


def test_phone_from_the_installed_wheel_renders_and_shows_its_state(
    wheel_venv: Path, page: Page, tmp_path: Path
) -> None:
    with start_lab(tmp_path, python=wheel_venv / "bin" / "python") as lab:
        cells = ['import nbcall\np = nbcall.Phone("W"); p']
        nb = lab.open(page, lab.write_notebook("wheel.ipynb", cells))
        nb.run_all()
        phone = nb.phone("W", "idle")
        expect(phone).to_be_visible(timeout=30_000)
        expect(phone).to_contain_text("online")  # registered with the kernel's signaling server, and says so
        nb.wait_idle()
        where = Path(str(nb.value("nbcall.__file__"))).resolve()
        assert where.is_relative_to(wheel_venv), f"the kernel imported nbcall from {where}"
        assert not where.is_relative_to(SOURCE_TREE), f"the kernel imported nbcall from {where}"
        assert (where.parent / "widget" / "static" / "phone.js").is_file()

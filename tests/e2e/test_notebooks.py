"""The lessons run top to bottom in a real JupyterLab, as a learner would run them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from harness import ARTIFACTS, Lab
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
#: Each lesson as it ran here, outputs included: the documentation site shows these (docs/conf.py).
EXECUTED = ARTIFACTS / "notebooks"


# How many cells the kernel itself ran, asked outside the notebook's queue (so answered once the queued cells
# are done): JupyterLab sometimes never shows the execution count of a cell the kernel ran and replied to
# (seen with lesson 4 under load: every output there, the kernel idle, two counts missing).
KERNEL_RAN = """async () => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const future = kernel.requestExecute({code: "print(len(In) - 1)", store_history: false});
  let out = "";
  future.onIOPub = (msg) => { if (msg.header.msg_type === "stream") out += msg.content.text; };
  const timeout = new Promise((resolve) => setTimeout(() => resolve(""), 10000));
  return Promise.race([future.done.then(() => out), timeout]);
}"""


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_lesson_runs_without_errors(lab: Lab, page: Page, name: str) -> None:
    shutil.copy(NOTEBOOKS / name, lab.root / name)
    nb = lab.open(page, name)
    nb.run_all()
    # Read the notebook's model, not the DOM: JupyterLab renders only the cells in view.
    read_cells = """() => {
      const cells = window.jupyterapp.shell.currentWidget.content.model.cells;
      return Array.from({length: cells.length}, (_, i) => cells.get(i))
        .filter((c) => c.type === 'code')
        .map((c) => ({count: c.executionCount, outputs: c.outputs.toJSON()}));
    }"""
    # Run-all stops at a cell that raised: the cells after it never run, so an error ends the wait too.
    done = f"""() => {{
      const cells = ({read_cells})();
      return cells.every((c) => c.count !== null) || cells.some((c) => c.outputs.some((o) => o.output_type === 'error'));
    }}"""
    try:
        page.wait_for_function(done, timeout=120_000)
    except PlaywrightTimeoutError:
        cells = page.evaluate(read_cells)
        ran = sum(c["count"] is not None for c in cells)
        said = page.evaluate(KERNEL_RAN).strip()
        print(
            f"{name}: {ran} of {len(cells)} code cells show a count, the kernel ran {said or '(no answer)'}"
        )
        if said != str(len(cells)):
            print(f"{name}: the outputs:", [c["outputs"] for c in cells])
            raise
    nb.wait_idle()
    cells = page.evaluate(read_cells)
    errors = [o for c in cells for o in c["outputs"] if o["output_type"] == "error"]
    assert errors == []
    save_executed(page, lab.root / name)
    text = "\n".join(
        str(o.get("text", "")) for c in cells for o in c["outputs"] if o["output_type"] == "stream"
    )
    nb.screenshot(f"lesson-{Path(name).stem}")
    if name.startswith("01"):
        assert "m=application" in text and "hello from A" in text
        expect(nb.phone("B", "ended")).to_be_visible()
    if name.startswith("08"):
        # Lesson 8's large transfer: both ends heard its progress to the end, and the phone's is over.
        assert text.count("the last 30 of 30 MiB") == 2 and "phone.progress == {}" in text, text[-600:]
    if name.startswith("10"):
        # Lesson 10's measurement: one broadcast costs a mesh member one copy per other member, an SFU member one.
        assert "mesh room of 5: P0 uploaded" in text and "sfu room of 5: P0 uploaded" in text, text[-600:]
        times = {
            line.split(":")[0]: float(line.split("=")[1].split("x")[0])
            for line in text.splitlines()
            if "P0 uploaded" in line
        }
        assert round(times["mesh room of 5"]) == 4 and round(times["sfu room of 5"]) == 1, times
        assert "P0's publisher DTLS peer" in text


def save_executed(page: Page, path: Path) -> None:
    """Save the lesson from JupyterLab, outputs included, and keep a copy in test-artifacts/notebooks/."""
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=30_000)
    EXECUTED.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, EXECUTED / path.name)

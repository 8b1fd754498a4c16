"""The examples of the site and the README that need a browser (``% test: browser``, see tests/test_docs.py) run in a real
JupyterLab, each page's as one notebook: what a page makes beforehand, then its examples in page order, a cell
each, as a reader would paste them."""

from __future__ import annotations

import pytest
from harness import Lab
from playwright.sync_api import Page
from test_docs import BLOCKS, ROOT

# What a page's examples take as given (its text says so): the phones of earlier sections, files to send.
GIVEN = {
    "README.md": "",
    "docs/getting-started.md": "",
    "docs/guides/calls-and-data.md": (
        'open("big.bin", "wb").write(bytes(3 * 2**20))\nopen("data.csv", "w").write("t,v\\n0,1\\n")'
    ),
    "docs/guides/video-and-audio.md": "import nbcall",
    "docs/guides/rooms.md": (
        "import nbcall\n"
        'a, b, c, d = (nbcall.Phone(name) for name in ("A", "B", "C", "D"))\n'
        "display(a, b, c, d)"
    ),
    "docs/guides/teaching.md": (
        "import json, nbcall\n"
        'a = nbcall.Phone("A"); b = nbcall.Phone("B", auto_answer=True)\n'
        "display(a, b)\n"
        'a.call("B")\n'
        'await a.wait_for("connected", timeout=20)\n'
        'offer = json.loads(next(e for e in a.log if e["type"] == "call")["detail"]["sdp"])'
    ),
}
PAGES = sorted({str(b.page.relative_to(ROOT)) for b in BLOCKS if b.how == "browser"})


def test_every_page_with_browser_examples_is_run() -> None:
    assert set(PAGES) <= set(GIVEN), f"say in GIVEN what these pages' examples take as given: {PAGES}"


@pytest.mark.parametrize("page_name", PAGES)
def test_the_browser_examples_of_a_page_run(lab: Lab, page: Page, page_name: str) -> None:
    blocks = [b for b in BLOCKS if str(b.page.relative_to(ROOT)) == page_name and b.how == "browser"]
    name = page_name.replace("/", "-").removesuffix(".md") + ".ipynb"
    nb = lab.open(page, lab.write_notebook(name, [f"# the examples of {page_name}"]))
    steps = [("what the page takes as given", GIVEN[page_name])] if GIVEN[page_name] else []
    steps += [(f"the example at {b.where}", b.code) for b in blocks]
    for what, code in steps:
        out = nb.run_expecting_error(code)
        assert "Traceback" not in out, f"{what} failed in JupyterLab:\n{code}\n---\n{out}"
    nb.screenshot(f"docs-{name.removesuffix('.ipynb')}")

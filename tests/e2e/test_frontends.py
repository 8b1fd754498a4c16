"""The phone in front ends other than JupyterLab: Jupyter Notebook 7 and marimo, in real Chromium."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import Lab, screenshot, start_marimo
from playwright.sync_api import Locator, Page, expect

# Each phone in its own cell's output. B's Python half answers every message with an echo: marimo has no
# cell to run once the app is served, so this is how the test sees data sent from Python.
MARIMO_APP = """\
import marimo

app = marimo.App()


@app.cell
def _():
    import marimo as mo
    import nbcall

    # No UI element feeds this cell: marimo would re-run it, and re-create the phones, on every click.
    a = nbcall.Phone("A")
    b = nbcall.Phone("B")

    @b.on_message
    def echo(message):
        b.send({"echo": message.data})

    return a, b, mo


@app.cell
def _(a, mo):
    mo.ui.anywidget(a)
    return


@app.cell
def _(b, mo):
    mo.ui.anywidget(b)
    return


if __name__ == "__main__":
    app.run()
"""


@pytest.fixture(scope="session")
def marimo_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    app_file = tmp_path_factory.mktemp("marimo") / "phones.py"
    app_file.write_text(MARIMO_APP)
    with start_marimo(app_file) as url:
        yield url


def phone(page: Page, user: str) -> Locator:
    # CSS locators pierce open shadow roots, where marimo renders anywidgets.
    return page.locator(f".nbcall-phone[data-user='{user}']")


def chat(widget: Locator, direction: str) -> Locator:
    """The texts of the widget's chat rows received ("in") or sent ("out")."""
    return widget.locator(f".nbcall-msg.nbcall-{direction} .nbcall-msg-text")


def expect_state(widget: Locator, state: str, timeout: float = 5_000) -> None:
    """What the user sees: the phone's state attribute and its badge."""
    expect(widget).to_have_attribute("data-state", state, timeout=timeout)
    expect(widget.locator(".nbcall-badge")).to_have_text(state)


def test_notebook7_two_phones_call_answer_and_exchange_data(notebook7: Lab, page: Page) -> None:
    cells = ["import nbcall, asyncio\na = nbcall.Phone('A'); a", "b = nbcall.Phone('B'); b"]
    nb = notebook7.run_notebook(page, "notebook7.ipynb", cells, phones=("A", "B"))
    assert page.evaluate("window.jupyterapp.name") == "Jupyter Notebook"  # Notebook 7, not JupyterLab
    a, b = nb.phone("A"), nb.phone("B")
    expect_state(a, "idle")

    nb.run('a.call("B")\nawait b.wait_for("ringing")')
    expect_state(b, "ringing")
    b.locator(".nbcall-answer").click()
    nb.run('await a.wait_for("connected", timeout=20)\nawait b.wait_for("connected", timeout=20)')
    expect_state(a, "connected")
    expect_state(b, "connected")

    nb.run('a.send({"from": "A", "n": [1, 2]})')
    nb.wait_until("b.messages")
    assert nb.value("[(m.data, m.sender) for m in b.messages]") == [[{"from": "A", "n": [1, 2]}, "A"]]
    expect(chat(b, "in")).to_have_text(['{"from":"A","n":[1,2]}'])

    b.locator(".nbcall-input").fill("typed in B's widget")
    b.locator(".nbcall-send").click()
    nb.wait_until("a.messages")
    assert nb.value("[(m.data, m.sender) for m in a.messages]") == [["typed in B's widget", "B"]]
    expect(chat(a, "in")).to_have_text(["typed in B's widget"])
    screenshot(page, "notebook7-connected")


def test_marimo_widgets_call_answer_and_exchange_data(marimo_app: str, page: Page) -> None:
    page.goto(marimo_app)
    a, b = phone(page, "A"), phone(page, "B")
    expect_state(a, "idle", timeout=30_000)
    expect_state(b, "idle", timeout=30_000)
    screenshot(page, "marimo-idle")

    a.locator(".nbcall-peer-select").select_option("B")
    a.locator(".nbcall-call").click()
    expect_state(b, "ringing")
    expect(b.locator(".nbcall-status")).to_have_text("A is calling you")
    b.locator(".nbcall-answer").click()
    expect_state(a, "connected", timeout=20_000)
    expect_state(b, "connected", timeout=20_000)
    expect(a.locator(".nbcall-status")).to_have_text("In a call with B")

    a.locator(".nbcall-input").fill("hello from A")
    a.locator(".nbcall-send").click()
    expect(chat(b, "in")).to_have_text(["hello from A"])
    # B's Python half got it: its on_message callback echoed it back from Python.
    expect(chat(b, "out")).to_have_text(['{"echo":"hello from A"}'])
    expect(chat(a, "in")).to_have_text(['{"echo":"hello from A"}'])
    expect(chat(a, "out")).to_have_text(["hello from A"])
    screenshot(page, "marimo-connected")

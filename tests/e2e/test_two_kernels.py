"""Two notebooks, two kernels: a server started in one kernel serves a phone in the other."""

from __future__ import annotations

import re

from harness import Lab
from playwright.sync_api import BrowserContext, Page, expect


def test_phones_in_two_kernels_call_each_other_through_one_server(
    lab: Lab, page: Page, context: BrowserContext
) -> None:
    first = lab.run_notebook(page, "kernel1.ipynb", ["import nbcall, asyncio\nserver = nbcall.serve()"])
    url = first.value("server.url")
    assert re.match(r"wss?://127\.0\.0\.1:\d+/ws", url)
    first.run("a = nbcall.Phone('A'); a")
    expect(first.phone("A", "idle")).to_be_visible(timeout=30_000)

    page2 = context.new_page()
    second = lab.run_notebook(page2, "kernel2.ipynb", [f"import nbcall, asyncio, os\nURL = {url!r}"])
    assert second.value("__import__('os').getpid()") != first.value(
        "__import__('os').getpid()"
    )  # really two kernels
    second.run("b = nbcall.Phone('B', server=URL); b")
    expect(second.phone("B", "idle")).to_be_visible(timeout=30_000)

    first.wait_until("a.peers")
    assert first.value("a.peers") == ["B"]
    # B's kernel is busy in a blocking cell, yet B rings: its signaling runs on a background thread.
    second.start("import time; time.sleep(6); print('slept')")
    second.page.wait_for_function(
        "() => document.querySelector('.jp-CodeCell:last-child .jp-InputArea-prompt')"
        "?.textContent.includes('*')"
    )
    first.run("a.call('B')")
    expect(second.phone("B", "ringing")).to_be_visible(timeout=5_000)
    expect(second.page.locator(".jp-CodeCell").last.locator(".jp-InputArea-prompt")).to_have_text("[*]:")
    second.run("await b.wait_for('ringing')\nb.answer()\nawait b.wait_for('connected', timeout=20)")
    first.run("await a.wait_for('connected', timeout=20)\na.send({'from': 'kernel 1'})")
    second.wait_until("b.messages")
    assert second.value("b.messages[-1].data") == {"from": "kernel 1"}

    second.run("b.hangup()")
    first.run("await a.wait_for('ended', timeout=10)")
    expect(first.phone("A", "ended")).to_be_visible()

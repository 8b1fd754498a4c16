"""Interoperability with a browser client written for the seed's server (its wire protocol, nothing more)."""

from __future__ import annotations

import shutil
import urllib.parse
from pathlib import Path

from harness import TOKEN, Lab
from playwright.sync_api import BrowserContext, Page, expect

SEED_PAGE = Path(__file__).with_name("seed_client.html")


def open_seed_client(lab: Lab, context: BrowserContext, signaling_url: str, user: str) -> Page:
    shutil.copy(SEED_PAGE, lab.root / SEED_PAGE.name)
    query = urllib.parse.urlencode({"token": TOKEN, "signaling": signaling_url, "id": user})
    page = context.new_page()
    page.goto(f"{lab.url}/files/{SEED_PAGE.name}?{query}")
    page.wait_for_function("() => window.seed && window.seed.registered")
    return page


def test_seed_client_calls_a_phone_and_a_phone_calls_the_seed_client(
    lab: Lab, page: Page, context: BrowserContext
) -> None:
    nb = lab.open(
        page, lab.write_notebook("seed.ipynb", ["import nbcall, asyncio\nb = nbcall.Phone('B'); b"])
    )
    nb.run_all()
    expect(nb.phone("B", "idle")).to_be_visible(timeout=30_000)
    nb.wait_idle()
    seed = open_seed_client(lab, context, nb.value("b.server_url"), "S")
    nb.run("for _ in range(100):\n    if 'S' in b.peers: break\n    await asyncio.sleep(0.05)")
    assert nb.value("b.peers") == ["S"]

    # The seed client calls the phone.
    seed.evaluate("window.seed.call('B')")
    nb.run("await b.wait_for('ringing')\nb.answer()\nawait b.wait_for('connected', timeout=20)")
    nb.run("for _ in range(100):\n    if b.messages: break\n    await asyncio.sleep(0.05)")
    assert nb.value("[(m.kind, m.data) for m in b.messages]") == [["str", "Hello from S"]]
    nb.run("b.send('hi seed'); b.send({'n': 1}); b.send(b'\\x01\\x02')")
    seed.wait_for_function("() => window.seed.received.length >= 3")
    assert seed.evaluate("window.seed.received") == ["hi seed", '{"n":1}', "<binary 2>"]
    seed.evaluate("window.seed.send('typed in the seed app')")
    nb.run("for _ in range(100):\n    if len(b.messages) >= 2: break\n    await asyncio.sleep(0.05)")
    assert nb.value("b.messages[-1].data") == "typed in the seed app"

    # The seed client knows no hangup message: closing its connection ends the call through the data channel.
    seed.evaluate("window.seed.hangup()")
    nb.run("await b.wait_for('ended', timeout=20)")
    assert "closed" in nb.value("b.error")

    # The phone calls the seed client, which answers on its own.
    seed.evaluate("window.seed.received = []")
    nb.run("b.call('S')\nawait b.wait_for('connected', timeout=20)")
    nb.run("for _ in range(100):\n    if len(b.messages) >= 3: break\n    await asyncio.sleep(0.05)")
    assert nb.value("b.messages[-1].data") == "Hello from S"
    nb.run("b.send('hello back')")
    seed.wait_for_function("() => window.seed.received.includes('hello back')")
    nb.run("b.hangup()")
    # Messages the seed client does not know (presence, hangup) are ignored by it, as old clients should.
    assert "hangup" in seed.evaluate("window.seed.ignored")

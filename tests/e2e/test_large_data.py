"""Payloads far larger than one data-channel message travel in frames and arrive whole, in order."""

from __future__ import annotations

from harness import Lab
from playwright.sync_api import Page, expect

CELLS = [
    (
        "import nbcall, asyncio, hashlib, os\n"
        "a = nbcall.Phone('A', auto_answer=True); b = nbcall.Phone('B', auto_answer=True)\n"
        "display(a, b)"
    ),
]


def test_fifty_mebibytes_arrive_whole_and_in_order(lab: Lab, page: Page) -> None:
    nb = lab.run_notebook(page, "large.ipynb", CELLS, phones=("B",))
    nb.run(
        "a.call('B')\nawait a.wait_for('connected', timeout=20)\nawait b.wait_for('connected', timeout=20)"
    )
    nb.run(
        "big = os.urandom(50 * 2**20)\n"
        "text = 'ü' * (3 * 2**20)\n"  # a 6 MiB str: multi-byte characters cut across frame borders
        "a.send('before'); a.send(big); a.send(text); a.send({'after': True})\n"
    )
    nb.wait_until("len(b.messages) >= 4", timeout=60)
    got = nb.value(
        "[(m.kind, m.size, hashlib.sha256(m.data if m.kind == 'bytes' else repr(m.data).encode()).hexdigest())"
        " for m in b.messages]"
    )
    expected = nb.value(
        "[('str', 6, hashlib.sha256(repr('before').encode()).hexdigest()),"
        " ('bytes', len(big), hashlib.sha256(big).hexdigest()),"
        " ('str', len(text.encode()), hashlib.sha256(repr(text).encode()).hexdigest()),"
        " ('json', 14, hashlib.sha256(repr({'after': True}).encode()).hexdigest())]"
    )
    assert got == expected
    assert nb.value("(a.error, b.error, a.state, b.state)") == ["", "", "connected", "connected"]
    expect(nb.phone("B").locator(".nbcall-msg.nbcall-in").nth(1)).to_contain_text("52428800 bytes")

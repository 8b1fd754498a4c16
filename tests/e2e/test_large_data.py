"""Payloads far larger than one data-channel message travel in frames and arrive whole, in order."""

from __future__ import annotations

import itertools

from harness import Lab
from playwright.sync_api import Page, expect

CELLS = [
    (
        "import nbcall, asyncio, hashlib, os\n"
        "a = nbcall.Phone('A', auto_answer=True); b = nbcall.Phone('B', auto_answer=True)\n"
        "display(a, b)"
    ),
]


RECORD_TEXTS = """el => {
  el.__shown = []; el.__at = [];
  new MutationObserver(() => { el.__shown.push(el.textContent); el.__at.push(performance.now()); }).observe(el, {subtree: true, childList: true, characterData: true});
}"""


def test_fifty_mebibytes_arrive_whole_and_in_order(lab: Lab, page: Page) -> None:
    nb = lab.run_notebook(page, "large.ipynb", CELLS, phones=("B",))
    nb.run(
        "a.call('B')\nawait a.wait_for('connected', timeout=20)\nawait b.wait_for('connected', timeout=20)"
    )
    nb.run("a_seen, b_seen = [], []\na.on_progress(a_seen.append); b.on_progress(b_seen.append)")
    # Every text B's progress line shows, recorded as it changes (a transfer may be over in a second).
    nb.phone("B").locator(".nbcall-progress").evaluate(RECORD_TEXTS)
    nb.run(
        "big = os.urandom(50 * 2**20)\n"
        "text = 'ü' * (3 * 2**20)\n"  # a 6 MiB str: multi-byte characters cut across frame borders
        "a.send('before'); a.send(big); a.send(text); a.send({'after': True})\n"
    )
    nb.wait_until("len(b.messages) >= 4", timeout=60)
    # While it travelled, B's widget showed it coming: how much of how much, how fast, how long still.
    shown = nb.phone("B").locator(".nbcall-progress").evaluate("el => el.__shown")
    assert any(
        t.startswith("↓ a message from A: ") and "of 50.0 MiB" in t and "s left" in t for t in shown
    ), shown
    expect(nb.phone("B").locator(".nbcall-progress")).to_be_hidden()
    # A few times a second, not at every frame: redrawing it each frame cost the page up to as much CPU per MiB
    # as the data channel's own work (bench/bounds.py).
    at = nb.phone("B").locator(".nbcall-progress").evaluate("el => el.__at")
    gaps = [round(b - a) for a, b in itertools.pairwise(at)]
    assert len(at) >= 2 and min(gaps) >= 150, gaps
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
    # And Python heard of it on both sides, ending at the whole payload, with the total known to the receiver.
    for side, direction in (("a", "out"), ("b", "in")):
        reports = nb.value(
            f"[(p['direction'], p['done'], p['total']) for p in {side}_seen if p['total'] == len(big)]"
        )
        assert reports and {r[0] for r in reports} == {direction}, reports
        assert reports[-1][1] == 50 * 2**20 and len(reports) > 2
    assert nb.value("(a.progress, b.progress)") == [{}, {}]
    expect(nb.phone("B").locator(".nbcall-msg.nbcall-in").nth(1)).to_contain_text("52428800 bytes")


# Counts the binary bytes the page sends its kernels: what a phone passes on of the data it receives.
COUNT_UPLOADED_JS = """(() => {
  window.__uploaded = 0;
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (typeof data !== 'string') window.__uploaded += data.byteLength ?? data.size ?? 0;
    return send.call(this, data);
  };
})();"""

RSS_SAMPLER = """\
import hashlib, threading, time
def rss():
    with open('/proc/self/status') as f:
        return int(next(line for line in f if line.startswith('VmRSS')).split()[1]) * 1024
path = receive_dir.parent / 'big.bin'
with open(path, 'wb') as f:
    for _ in range(64):
        f.write(os.urandom(2**20))
peak, stop = [0], threading.Event()
def sample():
    while not stop.wait(0.005):
        peak[0] = max(peak[0], rss())
base = rss()
threading.Thread(target=sample, daemon=True).start()
"""


def test_a_large_file_from_a_phone_arrives_whole_with_the_kernel_and_a_blocking_cell_bounded(
    lab: Lab, page: Page, tmp_path
) -> None:
    page.add_init_script(COUNT_UPLOADED_JS)
    receive_dir = tmp_path / "in"
    cells = [
        (
            "import nbcall, asyncio, os, pathlib\n"
            f"receive_dir = pathlib.Path({str(receive_dir)!r})\n"
            "a = nbcall.Phone('A'); b = nbcall.Phone('B', auto_answer=True, receive_dir=receive_dir)\n"
            "display(a, b)"
        )
    ]
    nb = lab.run_notebook(page, "large_file.ipynb", cells, phones=("B",))
    nb.run(
        "a.call('B')\nawait a.wait_for('connected', timeout=20)\nawait b.wait_for('connected', timeout=20)"
    )
    nb.run(RSS_SAMPLER)
    # The cell blocks after starting the send: the browser's answers cannot reach the kernel meanwhile, so
    # only the first parts go; the rest waits for the cell to end.
    before = page.evaluate("() => window.__uploaded")
    nb.run("sending = a.send_file(path)\ntime.sleep(4)")
    during_block = page.evaluate("() => window.__uploaded") - before
    assert during_block <= 24 * 2**20, f"{during_block} bytes went while the cell blocked"
    verdict = nb.value("(await asyncio.wrap_future(sending))['code']")
    grew = nb.value("stop.set() or (peak[0] - base) / 2**20")
    assert verdict == "ok"
    # The kernel sent and received 64 MiB holding a few MiB of it at a time (generous bound: 40 MiB).
    assert isinstance(grew, float) and grew < 40, f"the kernel's memory grew by {grew:.1f} MiB"
    assert nb.value(
        "hashlib.sha256((receive_dir / 'big.bin').read_bytes()).digest() == hashlib.sha256(path.read_bytes()).digest()"
    )
    assert nb.value("(a.error, b.error)") == ["", ""]

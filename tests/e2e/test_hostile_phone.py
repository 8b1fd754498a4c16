"""A browser phone (real JupyterLab + Chromium) facing a hostile peer: a raw aiortc peer in this test process
calls it and sends hypothesis's garbage in nbcall's framing. The phone stays in the call and echoes a probe
after each burst, its kernel's memory stays bounded, no file appears outside its receive directory, and it
answers a later call."""

from __future__ import annotations

import json
from pathlib import Path

from harness import Lab
from hostile import probe, run_bursts
from playwright.sync_api import Page
from support import RawRtcPeer
from test_peer import peers, wait_until  # noqa: F401 (a fixture)

from nbcall import Peer
from nbcall.call import kernel

TIMEOUT = 20.0
LIMIT = 16 * 1024
SETUP = f"""import nbcall, os, pathlib, tempfile
root = pathlib.Path(tempfile.mkdtemp(prefix="nbcall-hostile-"))
inbox, outside = root / "inbox", root / "outside"
inbox.mkdir(); outside.mkdir()
(inbox / "link").symlink_to(outside, target_is_directory=True)
(inbox / "file").write_text("a file where a folder may be asked for")
b = nbcall.Phone("B", auto_answer=True, receive_dir=inbox, max_receive_size={LIMIT})
echo = lambda m: b.send(m.data) if isinstance(m.data, dict) and "probe" in m.data else None
b.on_message(echo)
def rss_mib():
    with open(f"/proc/{{os.getpid()}}/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))
b"""


def test_a_hostile_peer_sending_garbage_leaves_the_browser_phone_up_bounded_and_its_files_inside(
    lab: Lab,
    page: Page,
    peers: list[Peer],  # noqa: F811 (the fixture imported above)
) -> None:
    nb = lab.run_notebook(page, "hostile.ipynb", [SETUP], phones=("B",))
    url, root = str(nb.value("b.server_url")), Path(str(nb.value("str(root)")))
    before = {p for p in root.rglob("*")}
    rss_before = float(nb.value("rss_mib()"))  # type: ignore[arg-type]
    raw = RawRtcPeer("X")
    kernel.run(raw.register(url), timeout=TIMEOUT)
    kernel.run(raw.call("B"), timeout=40)

    def send_and_check(messages: list[bytes | str], n: int) -> None:
        kernel.run(raw.send(*messages), timeout=TIMEOUT)
        echoed = ("json", json.dumps(probe(n), separators=(",", ":")).encode())
        wait_until(lambda: echoed in raw.received, f"the phone to echo probe {n} after {messages!r:.300}")

    run_bursts(send_and_check, examples=30)
    assert nb.value("b.state") == "connected"
    assert nb.value("[e['type'] for e in b.log].count('dropped') > 0")  # the browser said what it dropped
    assert float(nb.value("rss_mib()")) - rss_before < 150  # type: ignore[arg-type]
    assert not list((root / "outside").iterdir()), "a file was written through the symlink"
    new = {p for p in root.rglob("*")} - before
    assert all((root / "inbox").resolve() in p.resolve().parents for p in new), sorted(map(str, new))

    # It answers a later call: the hostile peer hangs up, and a Python peer calls and is echoed.
    kernel.run(raw.hang_up("B"), timeout=TIMEOUT)
    nb.run("await b.wait_for('ended', 'failed', timeout=20)")
    kernel.run(raw.close(), timeout=TIMEOUT)
    p = Peer("P", server=url)
    peers.append(p)
    p.call("B")
    p.wait("connected", timeout=TIMEOUT)
    p.send({"probe": "after"}).result(TIMEOUT)
    wait_until(lambda: any(m.data == {"probe": "after"} for m in p.messages), "the echo to a later caller")

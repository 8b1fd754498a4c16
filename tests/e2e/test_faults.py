"""Faults in real browsers and kernels: a server restart, a peer's browser going away, a kernel shutting down."""

from __future__ import annotations

import json
import urllib.request

import pytest
from harness import TOKEN, Lab
from playwright.sync_api import BrowserContext, Page, expect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect


def test_a_call_survives_a_server_restart_and_phones_come_back_online(lab: Lab, page: Page) -> None:
    setup = (
        "import nbcall, asyncio, urllib.parse\nfrom nbcall.call import kernel\n"
        "server = nbcall.serve()\n"
        "token = urllib.parse.parse_qs(urllib.parse.urlsplit(server.url).query)['token'][0]\n"
        "a = nbcall.Phone('A'); b = nbcall.Phone('B', auto_answer=True)\ndisplay(a, b)"
    )
    nb = lab.run_notebook(page, "restart.ipynb", [setup], phones=("B",))
    nb.run(
        "a.call('B')\nawait a.wait_for('connected', timeout=20)\nawait b.wait_for('connected', timeout=20)"
    )

    nb.run("kernel.close_server(server)")
    nb.wait_until("not a.online and not b.online")
    assert nb.value("(a.online, b.online, a.state)") == [False, False, "connected"]
    expect(nb.phone("A").locator(".nbcall-error")).to_contain_text("reconnecting")
    # Peer to peer, the call does not need the server.
    nb.run("a.send('while the server is down')")
    nb.wait_until("b.messages")
    assert nb.value("b.messages[-1].data") == "while the server is down"

    nb.run("server = nbcall.serve(port=server.port, token=token)")
    nb.wait_until("a.online and b.online", timeout=15)
    assert nb.value("(a.online, b.online, a.error, a.peers, b.peers)") == [True, True, "", ["B"], ["A"]]
    assert nb.value("(a.state, b.state)") == ["connected", "connected"]
    nb.run("a.hangup()\nawait b.wait_for('ended')")  # the hangup travels through the new server
    assert nb.value("b.error") == "A hung up"


def test_a_peer_whose_browser_goes_away_ends_the_call_on_the_other_side(
    lab: Lab, page: Page, context: BrowserContext
) -> None:
    cells = ["import nbcall, asyncio\nserver = nbcall.serve()\na = nbcall.Phone('A'); a"]
    first = lab.run_notebook(page, "drop1.ipynb", cells, phones=("A",))
    url = first.value("server.url")
    page2 = context.new_page()
    cells = [f"import nbcall\nb = nbcall.Phone('B', server={url!r}, auto_answer=True); b"]
    lab.run_notebook(page2, "drop2.ipynb", cells, phones=("B",))
    first.run("a.call('B')\nawait a.wait_for('connected', timeout=20)")

    page2.close()  # B's browser is gone; its kernel, and its registration, stay
    first.run("try:\n    await a.wait_for('idle', timeout=30)\nexcept nbcall.CallError as e:\n    print(e)")
    state, error = first.value("(a.state, a.error)")
    assert state in ("ended", "failed") and "B" in error, (state, error)
    expect(first.phone("A").locator(".nbcall-error")).to_have_text(error)


def test_shutting_down_the_kernel_closes_its_server_with_going_away(lab: Lab, page: Page) -> None:
    nb = lab.run_notebook(page, "shutdown.ipynb", ["import nbcall\nserver = nbcall.serve()"])
    url = nb.value("server.url")
    kernel_id = page.evaluate("window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.id")

    with connect(url) as ws, connect(url) as other:
        ws.send(json.dumps({"type": "register", "from": "watcher"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "registered"
        # The server keeps relaying while the kernel is blocked in a cell.
        nb.start("import time; time.sleep(5)")
        page.wait_for_function(
            "() => document.querySelector('.jp-CodeCell:last-child .jp-InputArea-prompt')?.textContent.includes('*')"
        )
        other.send(json.dumps({"type": "register", "from": "other"}))
        assert json.loads(other.recv(timeout=3))["type"] == "registered"
        other.send(json.dumps({"type": "hangup", "from": "other", "to": "watcher"}))
        relayed = json.loads(ws.recv(timeout=3))
        while relayed["type"] == "joined":  # presence news, if the server sends it to this client
            relayed = json.loads(ws.recv(timeout=3))
        assert relayed == {"type": "hangup", "from": "other", "to": "watcher"}
        # Jupyter kills a kernel still running 5 s after its shutdown request (shutdown_wait_time): on a loaded
        # machine the rest of the sleep took those 5 s, and the kill, not nbcall, closed the socket (1006).
        nb.wait_idle()
        request = urllib.request.Request(f"{lab.url}/api/kernels/{kernel_id}?token={TOKEN}", method="DELETE")
        urllib.request.urlopen(request, timeout=30)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=30)
    assert ws.close_code == 1001  # going away: the kernel closed its server on the way out

"""Two phones in one notebook: real JupyterLab, real Chromium, real WebRTC between them."""

from __future__ import annotations

import re

from harness import Lab, screenshot
from playwright.sync_api import Page, expect

SETUP = """\
import nbcall, asyncio
a = nbcall.Phone("A"); a
"""


def open_two_phones(lab: Lab, page: Page, name: str):
    nb = lab.open(page, lab.write_notebook(name, [SETUP, 'b = nbcall.Phone("B"); b']))
    # The browser must never need a connection of its own to the signaling server: block any it tries.
    page.route_web_socket(re.compile(r".*/ws$"), lambda ws: ws.close())
    signaling_sockets: list[str] = []
    page.on("websocket", lambda ws: signaling_sockets.append(ws.url) if ws.url.endswith("/ws") else None)
    nb.run_all()
    expect(nb.phone("A", "idle")).to_be_visible(timeout=30_000)
    expect(nb.phone("B", "idle")).to_be_visible(timeout=30_000)
    nb.wait_idle()
    return nb, signaling_sockets


def test_call_answer_exchange_typed_data_both_ways_and_hang_up(lab: Lab, page: Page) -> None:
    nb, signaling_sockets = open_two_phones(lab, page, "call.ipynb")
    assert nb.value("a.peers") == ["B"]
    nb.screenshot("phone-idle", "A")

    nb.run('a.call("B")\nawait b.wait_for("ringing")')
    expect(nb.phone("B", "ringing").locator(".nbcall-answer")).to_be_visible()
    expect(nb.phone("A", "calling")).to_be_visible()
    nb.screenshot("phone-ringing", "B")

    nb.phone("B").locator(".nbcall-answer").click()  # the Answer button, as a user would
    nb.run('await a.wait_for("connected", timeout=20)\nawait b.wait_for("connected", timeout=20)')
    expect(nb.phone("A", "connected")).to_be_visible()
    expect(nb.phone("B", "connected")).to_be_visible()

    nb.run(
        "got_b, got_a = [], []\n"
        "b.on_message(got_b.append); a.on_message(got_a.append)\n"
        'a.send("hi"); a.send(b"\\x00\\x01\\xff"); a.send({"x": [1, 2]}); a.send([1.5, None, "é"])\n'
        'b.send("hello back"); b.send(bytearray(b"\\x10\\x20"))\n'
    )
    nb.wait_until("len(got_b) >= 4 and len(got_a) >= 2")
    received = nb.value("[(type(m.data).__name__, repr(m.data), m.sender) for m in b.messages]")
    assert received == [
        ["str", "'hi'", "A"],
        ["bytes", "b'\\x00\\x01\\xff'", "A"],
        ["dict", "{'x': [1, 2]}", "A"],
        ["list", "[1.5, None, 'é']", "A"],
    ]
    assert nb.value("[repr(m.data) for m in got_a]") == ["'hello back'", "b'\\x10 '"]
    assert nb.value("len(got_b)") == 4  # the callback saw each message once

    # A message typed in A's widget reaches B's Python.
    nb.phone("A").locator(".nbcall-input").fill("typed in the widget")
    nb.phone("A").locator(".nbcall-send").click()
    nb.wait_until("len(b.messages) >= 5")
    assert nb.value("b.messages[-1].data") == "typed in the widget"
    expect(nb.phone("B").locator(".nbcall-msg.nbcall-in").last).to_contain_text("typed in the widget")
    expect(nb.phone("A").locator(".nbcall-msg.nbcall-in").last).to_contain_text("10 20")

    # The signaling log is readable from Python and shown in the widget.
    types = nb.value("[(e['dir'], e['type']) for e in a.log]")
    assert ["out", "call"] in types and ["in", "answer"] in types and ["out", "ice"] in types
    assert ["event", "connectionState"] in types
    offer = nb.value("next(e['detail'] for e in a.log if e['type'] == 'call')")
    assert offer["to"] == "B" and '"type":"offer"' in offer["sdp"].replace(" ", "")
    nb.phone("A").locator(".nbcall-log-details > summary").click()
    call_row = nb.phone("A").locator(".nbcall-log-entry[data-type='call']")
    call_row.locator("summary").click()
    expect(call_row.locator("pre")).to_contain_text("m=application")
    nb.phone("A").locator(".nbcall-rtc-details > summary").click()
    expect(nb.phone("A").locator(".nbcall-rtc")).to_contain_text("host")  # the stats panel's candidate pair
    nb.screenshot("phone-connected", "A")
    assert nb.value("a.stats['local_candidate']['type']") == "host"

    nb.run('a.hangup()\nawait b.wait_for("ended", timeout=10)')
    assert nb.value("(a.state, b.state, b.error)") == ["ended", "ended", "A hung up"]
    assert ["in", "hangup"] in nb.value(
        "[(e['dir'], e['type']) for e in b.log]"
    )  # told by the peer, not a timeout
    expect(nb.phone("B", "ended")).to_be_visible()
    assert signaling_sockets == []


def test_decline_and_call_to_unknown_peer(lab: Lab, page: Page) -> None:
    nb, _ = open_two_phones(lab, page, "decline.ipynb")
    nb.run('a.call("B")\nawait b.wait_for("ringing")')
    nb.phone("B").locator(".nbcall-decline").click()
    nb.run(
        'try:\n    await a.wait_for("connected")\nexcept nbcall.CallError as e:\n    print("CallError", e)'
    )
    assert nb.value("(a.state, a.error, b.state)") == ["ended", "B declined the call", "ended"]
    expect(nb.phone("A").locator(".nbcall-error")).to_have_text("B declined the call")

    out = nb.run(
        'a.call("Nobody")\ntry:\n    await a.wait_for("connected")\nexcept nbcall.CallError as e:\n    print(e)'
    )
    assert "'Nobody' is not online" in out
    assert nb.value("a.state") == "failed"
    expect(nb.phone("A").locator(".nbcall-error")).to_contain_text("Nobody")

    out = nb.run_expecting_error("a.send('too early')")
    assert "CallError" in out and "not in a connected call" in out
    # Phone("A") again in this kernel, as a re-run cell does, takes the ID over: the old phone ends saying why.
    nb.run('a_again = nbcall.Phone("A")')
    assert nb.value("(a.error, a_again.online)") == ["replaced by a new phone", True]
    # The old phone's widget stays where it was, saying it was replaced, with no buttons left to press.
    old = nb.page.locator(".nbcall-phone[data-user='A'][data-closed]")
    expect(old.locator(".nbcall-status")).to_have_text(
        "This phone is closed (replaced by a new phone): use the new A phone"
    )
    expect(old.locator(".nbcall-badge")).to_have_text("closed")
    expect(old.locator(".nbcall-call")).to_be_hidden()
    screenshot(old, "phone-replaced")


def test_configured_turn_server_reaches_the_peer_connection_without_leaking_its_credential(
    lab: Lab, page: Page
) -> None:
    # Nothing listens at this TURN address: ICE finds no relay, and the host candidates still connect.
    turn = {"urls": "turn:127.0.0.1:3478", "username": "learner", "credential": "s3cret"}
    setup = (
        f"import nbcall\na = nbcall.Phone('A', ice_servers=[{turn!r}, 'stun:127.0.0.1:3479'])\n"
        "b = nbcall.Phone('B', auto_answer=True)\ndisplay(a, b)"
    )
    cells = [setup]
    nb = lab.run_notebook(page, "turn.ipynb", cells, phones=("A", "B"))
    nb.run("a.call('B')\nawait a.wait_for('connected', timeout=30)")
    assert nb.value("a.rtc['iceServers']") == ["turn:127.0.0.1:3478", "stun:127.0.0.1:3479"]
    assert nb.value("b.rtc['iceServers']") == []  # B configured none: never a public server by default
    assert "s3cret" not in nb.value("repr(a.log)")
    nb.phone("A").locator(".nbcall-log-details > summary").click()
    expect(nb.phone("A").locator(".nbcall-log-entry[data-type='iceServers']").first).to_contain_text("turn:")

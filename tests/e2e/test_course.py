"""The course's tools through the real widget in a real browser: ICE through a real TURN server (coturn),
TURN credentials refused, the SDP panel, the negotiation as a sequence diagram, and the connectivity check.

coturn runs in the kernel (``nbcall.coturn``), inside the test's loopback-only namespace; a missing coturn fails
these tests in CI and skips them elsewhere.
"""

from __future__ import annotations

import os
import shutil

import pytest
from harness import Lab
from playwright.sync_api import Page, expect


def needs_coturn() -> None:
    if shutil.which("turnserver") is None:
        if os.environ.get("CI"):
            pytest.fail("coturn is not installed: scripts/test.sh installs it (apt-get install coturn)")
        pytest.skip("coturn is not installed (apt-get install coturn)")


RELAY_SETUP = """\
import asyncio, nbcall
from nbcall.coturn import start_turn_server
turn = start_turn_server(username="learner", credential="s3cret")
relay = dict(ice_servers=[turn.ice_server], ice_transport_policy="relay", video=True)
a = nbcall.Phone("A", **relay)
b = nbcall.Phone("B", auto_answer=True, **relay)
display(a, b)
"""


def test_phones_forced_through_coturn_connect_by_relay_with_data_and_video(lab: Lab, page: Page) -> None:
    needs_coturn()
    nb = lab.run_notebook(page, "relay.ipynb", [RELAY_SETUP], phones=("A", "B"))
    nb.run(
        'a.call("B")\nawait a.wait_for("connected", timeout=20)\nawait b.wait_for("connected", timeout=20)'
    )
    nb.run("got = []\nb.on_message(got.append)\na.send('through the relay'); b.send({'back': 1})")
    nb.wait_until("got and a.messages")
    assert nb.value("(got[0].data, a.messages[-1].data)") == ["through the relay", {"back": 1}]
    # The selected pair, on both sides, is relay to relay; the video's frames came through it.
    nb.wait_until("all((p.stats.get('video_in') or {}).get('frames', 0) > 5 for p in (a, b))", timeout=15)
    pairs = nb.value(
        "[(p.stats['local_candidate']['type'], p.stats['remote_candidate']['type']) for p in (a, b)]"
    )
    assert pairs == [["relay", "relay"], ["relay", "relay"]]
    assert nb.value("a.stats['pair']") is not None
    # Only relay candidates were offered to the peer, and coturn logged the allocations for our user.
    types = nb.value(
        "sorted({__import__('json').loads(e['detail']['candidate'])['candidate'].split()[7] "
        "for e in a.log if e['type'] == 'ice' and e['dir'] == 'out'})"
    )
    assert types == ["relay"]
    assert nb.value("'learner' in turn.log()") is True
    nb.phone("A").locator(".nbcall-rtc-details > summary").click()
    expect(nb.phone("A").locator(".nbcall-rtc")).to_contain_text("relay udp 127.0.0.1")
    nb.screenshot("course-relay-stats", "A")
    nb.run("a.hangup()\nawait b.wait_for('ended')")


def test_wrong_turn_credentials_give_a_clear_error(lab: Lab, page: Page) -> None:
    needs_coturn()
    setup = (
        "import nbcall\nfrom nbcall.coturn import start_turn_server\n"
        'turn = start_turn_server(username="learner", credential="s3cret")\n'
        'wrong = {**turn.ice_server, "credential": "not-the-password"}\n'
        'c = nbcall.Phone("C", ice_servers=[wrong], ice_transport_policy="relay")\n'
        'd = nbcall.Phone("D", auto_answer=True)\ndisplay(c, d)'
    )
    nb = lab.run_notebook(page, "wrong-turn.ipynb", [setup], phones=("C", "D"))
    nb.run('c.call("D")')
    nb.wait_until("'refused the username and credential' in c.error", timeout=15)
    error = nb.value("c.error")
    assert "turn:127.0.0.1" in error and "401" in error, error
    expect(nb.phone("C").locator(".nbcall-error")).to_contain_text("refused the username and credential")
    nb.run("c.hangup(); turn.close()")


def test_the_sdp_panel_shows_both_descriptions_explained_and_what_the_answer_chose(
    lab: Lab, page: Page
) -> None:
    setup = 'import nbcall\na = nbcall.Phone("A")\nb = nbcall.Phone("B", auto_answer=True)\ndisplay(a, b)'
    nb = lab.run_notebook(page, "sdp-panel.ipynb", [setup], phones=("A", "B"))
    nb.run(
        'a.call("B")\nawait a.wait_for("connected", timeout=20)\nawait b.wait_for("connected", timeout=20)'
    )
    # Python explains what it relayed: A's offer and B's answer.
    assert nb.value("(a.explain().local.type, a.explain().remote.type, b.explain('A').local.type)") == [
        "offer",
        "answer",
        "answer",
    ]
    assert nb.value("a.explain().choices[0]['dtls']") == "the answerer is the DTLS client"
    panel = nb.phone("A").locator(".nbcall-sdp-details")
    panel.locator("summary").click()
    local = panel.locator(".nbcall-sdp-column[data-side='local']")
    remote = panel.locator(".nbcall-sdp-column[data-side='remote']")
    expect(local.locator(".nbcall-sdp-title")).to_have_text("offer from this phone")
    expect(remote.locator(".nbcall-sdp-title")).to_have_text("answer from B")
    setup_line = local.locator(".nbcall-sdp-line", has_text="a=setup:actpass")
    expect(setup_line.locator(".nbcall-sdp-meaning")).to_contain_text("the answerer chooses")
    expect(remote.locator(".nbcall-sdp-line", has_text="a=setup:active")).to_contain_text("client")
    expect(remote.locator(".nbcall-sdp-section").first).to_have_text("session")
    expect(remote.locator(".nbcall-sdp-line", has_text="a=sctp-port")).to_contain_text("SCTP port")
    expect(panel.locator(".nbcall-sdp-choices")).to_contain_text("application (mid 0): the data channel")
    # As many explained lines in the widget as the offer has lines.
    lines = nb.value("len(a.explain().local)")
    expect(local.locator(".nbcall-sdp-line")).to_have_count(lines)
    nb.screenshot("course-sdp-panel", "A")
    nb.run("a.hangup()\nawait b.wait_for('ended')")

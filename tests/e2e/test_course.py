"""The course's tools through the real widget in a real browser: ICE through a real TURN server (coturn),
TURN credentials refused, the SDP panel, the negotiation as a sequence diagram, and the connectivity check.

coturn runs in the kernel (``nbcall.teach.coturn``), inside the test's loopback-only namespace; a missing coturn fails
these tests in CI and skips them elsewhere.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

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
from nbcall.teach.coturn import start_turn_server
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
        "import nbcall\nfrom nbcall.teach.coturn import start_turn_server\n"
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
    nb.run("c.hangup()")

    # The connectivity check, from Python and from the widget's button: one server good, one refusing.
    nb.run('f = nbcall.Phone("F", ice_servers=[turn.ice_server, wrong]); f')
    nb.run("report = await f.diagnose()\nprint(report)")
    good, refused = nb.value("report['servers']")
    assert good["ok"] and "relay" in good["candidate_types"], good
    assert not refused["ok"] and "refused the username and credential" in refused["advice"], refused
    assert nb.value("(report.ok, report['secure_context'], report['media']['video']['available'])") == [
        False,
        True,
        True,
    ]
    assert "refused the username" in nb.value("str(report)")
    # The report Python asked for opened the widget's panel; its button runs the check again.
    expect(nb.phone("F").locator(".nbcall-diagnosis-table")).to_be_visible()
    nb.phone("F").locator(".nbcall-diagnose").click()
    expect(nb.phone("F").locator(".nbcall-diagnosis")).to_contain_text("Checking")
    table = nb.phone("F").locator(".nbcall-diagnosis-table")
    expect(table.locator("caption")).to_have_text("1 problem(s) found", timeout=15_000)
    expect(table).to_contain_text("refused the username and credential")
    expect(table.locator("tr", has_text="camera")).to_contain_text("found")
    nb.screenshot("course-diagnose", "F")
    nb.run("turn.close()")


def test_the_sdp_panel_and_the_sequence_diagram_show_the_negotiation(lab: Lab, page: Page) -> None:
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
    panel.locator("summary").first.click()  # closed again

    # The sequence diagram: one arrow per signaling message, lanes for browser, kernel, server and peer.
    sequence = nb.phone("A").locator(".nbcall-sequence-details")
    sequence.locator("summary").click()
    svg = sequence.locator("svg.nbcall-sequence-svg")
    expect(svg).to_contain_text("A browser")
    expect(svg).to_contain_text("B's side")
    arrows = svg.locator(".nbcall-seq-arrow")
    expected = nb.value("len([e for e in a.log if e['dir'] != 'event'])")
    expect(arrows).to_have_count(expected)
    expect(svg.locator(".nbcall-seq-mark[data-label='connectionState: connected']")).to_have_count(1)
    # Live: a new message adds an arrow while the diagram is open.
    nb.run("a.hangup()\nawait b.wait_for('ended')")
    expect(svg.locator(".nbcall-seq-arrow[data-label='hangup']")).to_have_count(1)
    # Clicking the offer's arrow shows the message itself.
    svg.locator(".nbcall-seq-arrow[data-label='call']").click()
    expect(sequence.locator(".nbcall-sequence-message")).to_contain_text("m=application")
    nb.screenshot("course-sequence", "A")
    with page.expect_download() as download:
        sequence.locator(".nbcall-sequence-save").click()
    saved = download.value
    assert saved.suggested_filename == "nbcall-A-negotiation.svg"
    text = Path(saved.path()).read_text("utf-8")
    assert text.startswith("<svg") and ">call<" in text and ">hangup<" in text

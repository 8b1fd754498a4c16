"""What a browser phone shows and does in an SFU room beyond data and one presenter (issue 18): its statistics
panel (its own two links to the SFU, and each member's feed), the grid's tile cap with more video publishers
than it shows, and a file sent to the room from the browser.

Janus skips loopback interfaces for ICE: the namespace needs the veth ``jns0`` carrying 127.0.0.2 (see
tests/e2e/test_sfu.py).
"""

from __future__ import annotations

import re

from harness import Lab, screenshot
from playwright.sync_api import Page, expect

START = """\
import nbcall, asyncio, hashlib
from nbcall.teach.janus import start_janus
janus = start_janus(interface='jns0')
server = nbcall.serve(sfu=janus.url, sfu_secret=janus.api_secret)"""


def _number(text: str, label: str) -> list[int]:
    """The whole numbers in the statistics table's row ``label``."""
    match = re.search(rf"{re.escape(label)}\s*([^\n]*)", text)
    assert match, f"no row {label!r} in {text!r}"
    return [int(n) for n in re.findall(r"\d+", match.group(1))]


def test_the_statistics_panel_shows_this_phones_two_links_to_the_sfu_and_each_members_feed(
    lab: Lab, page: Page
) -> None:
    nb = lab.run_notebook(
        page,
        "sfu_stats.ipynb",
        [
            START,
            "a = nbcall.Phone('A'); a",
            "t = nbcall.Phone('T', auto_answer=True, video={'width': 160, 'height': 120}); t",
            "p = nbcall.Peer('P', auto_answer=True)",
        ],
        phones=("A", "T"),
    )
    nb.run("a.invite('T', 'P', sfu=True)\nawait t.wait_for('connected', timeout=20)")
    nb.run(
        "for x in (a, t, p):\n    await x.wait_for_members(*[m for m in 'ATP' if m != x.user_id], timeout=30)"
    )
    nb.run("a.send(bytes(100_000)); p.send(b'p' * 50_000)")
    nb.wait_until(
        "a.remote_media.get('video') and any(m.sender == 'P' for m in a.messages)"
        " and any(m.sender == 'A' for m in t.messages)",
        timeout=30,
    )
    # Python: A's own links once, under its ID; under each member only what came from it.
    nb.wait_until(
        "a.stats.get('A', {}).get('publisher', {}).get('bytes_sent', 0) >= 100_000"
        " and (a.stats['A'].get('subscriber') or {}).get('rtt_ms') is not None"
        " and a.stats.get('P', {}).get('bytes_received', 0) >= 50_000"
        " and (a.stats.get('T', {}).get('video_in') or {}).get('frames', 0) > 0",
        timeout=20,
    )
    stats = nb.value("{m: a.stats[m] for m in ('A', 'T', 'P')}")
    assert isinstance(stats, dict)
    own, from_t, from_p = stats["A"], stats["T"], stats["P"]
    assert sorted(own) == ["publisher", "subscriber"]
    assert own["publisher"]["remote_candidate"]["address"] == "127.0.0.2"  # Janus, on the veth
    assert own["subscriber"]["bytes_received"] >= 50_000
    # P's feed carried its 50,000 bytes (and a few of pacing), not the room's; T's feed its video, little data.
    assert from_p["via"] == "sfu" and 50_000 <= from_p["bytes_received"] < 60_000
    assert from_t["bytes_received"] < 10_000 and from_t["video_in"]["bytes"] > 0
    assert from_p["video_in"] is None

    # The panel: the two links, labelled as links to the SFU, with what went through them.
    phone = nb.phone("A")
    phone.locator(".nbcall-rtc-details summary").click()
    choice = phone.locator(".nbcall-stats-peer")
    expect(choice.locator("option")).to_have_text(
        [
            "publisher link to the SFU (what this phone sends)",
            "subscriber link to the SFU (every member's feed)",
        ]
    )
    table = phone.locator(".nbcall-rtc")
    expect(table).to_contain_text("publisher, to the SFU (Janus)")
    expect(table).to_contain_text(re.compile(r"round-trip time\s*[\d.]+ ms"))
    expect(table).to_contain_text(re.compile(r"remote candidate\s*host udp 127\.0\.0\.2:\d+"))
    sent, _ = _number(table.inner_text(), "sent / received")
    assert sent >= 100_000
    choice.select_option("subscriber")
    expect(table).to_contain_text("subscriber, from the SFU (Janus)")
    expect(table).to_contain_text(re.compile(r"video from T\s*[\d.…]+ kbit/s, \d+ packets"))
    text = table.inner_text()
    p_bytes, p_messages = _number(text, "feed from P")
    assert 50_000 <= p_bytes < 60_000 and p_messages >= 1
    _, received = _number(text, "sent / received")
    assert received >= 50_000
    screenshot(phone, "sfu-stats-panel-A")
    nb.run("p.close(); janus.close()")

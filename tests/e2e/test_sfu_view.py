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


def test_the_grid_shows_nine_of_ten_video_publishers_and_takes_video_only_for_those_it_shows(
    lab: Lab, page: Page
) -> None:
    nb = lab.run_notebook(
        page,
        "sfu_grid.ipynb",
        [
            START,
            "v = nbcall.Phone('V'); v",
            # Ten publishers as light as video gets: 64x48 frames, 2 per second, from Python peers.
            (
                "import numpy as np\nframe = np.full((48, 64, 3), 200, np.uint8)\n"
                "peers = [nbcall.Peer(f'P{i}', auto_answer=True, video=lambda: frame, fps=2) for i in range(10)]\n"
                "names = [p.user_id for p in peers]"
            ),
        ],
        phones=("V",),
    )
    nb.run(
        "v.invite(*names, sfu=True)\n"
        "await v.wait_until(lambda: len(v.members) == 11, 'members', timeout=60)\n"
        "await v.wait_for_members(*names, timeout=60)"
    )
    phone = nb.phone("V")
    grid = phone.locator(".nbcall-grid")
    expect(grid).to_have_attribute("data-count", "9", timeout=30_000)
    expect(grid).to_have_attribute("data-hidden", "1")
    expect(phone.locator(".nbcall-grid-note")).to_have_text("1 more member not shown (heard, not seen)")
    expect(phone.locator(".nbcall-tile.nbcall-has-video:not([hidden])")).to_have_count(9, timeout=60_000)
    hidden = phone.locator(".nbcall-tile[hidden]")
    expect(hidden).to_have_count(1)
    unseen = hidden.get_attribute("data-peer")
    shown = sorted(set(nb.value("names")) - {unseen})  # type: ignore[arg-type]
    assert unseen in nb.value("names") and len(shown) == 9  # type: ignore[operator]
    # V asked the server for the video of the nine it shows; the tenth's video never reaches it.
    views = nb.value("[e['detail'] for e in v.log if e['type'] == 'sfu-view' and e['dir'] == 'out']")
    assert isinstance(views, list) and views, "V sent no sfu-view"
    assert sorted(views[-1]["video"]) == shown
    nb.wait_until(
        f"all((v.stats.get(m, {{}}).get('video_in') or {{}}).get('frames', 0) > 0 for m in {shown!r})",
        timeout=30,
    )
    nb.run("await asyncio.sleep(3)")  # three more samples: the tenth's video would show by now
    assert nb.value(f"v.stats[{unseen!r}].get('video_in')") is None
    assert nb.value(f"v.stats[{unseen!r}]['bytes_received']") > 0  # type: ignore[operator]
    assert nb.value(f"v.connections[{unseen!r}]") == "connected"  # its data and audio still come
    screenshot(phone, "sfu-grid-9-of-10")
    nb.run("for p in peers:\n    p.close()\njanus.close()")


def test_a_browser_phone_sends_a_file_to_an_sfu_room_checked_by_each_member_and_refused_by_one(
    lab: Lab, page: Page
) -> None:
    nb = lab.run_notebook(
        page,
        "sfu_file.ipynb",
        [
            START,
            "import pathlib\npathlib.Path('data.bin').write_bytes(bytes(range(256)) * 6000)  # 1.5 MB",
            "a = nbcall.Phone('A'); a",
            "b = nbcall.Phone('B', auto_answer=True, receive_dir='at_b'); b",
            # R already has a folder named data.bin where the file would go: it refuses the file.
            (
                "p = nbcall.Peer('P', auto_answer=True, receive_dir='at_p')\n"
                "pathlib.Path('at_r/data.bin').mkdir(parents=True)\n"
                "r = nbcall.Peer('R', auto_answer=True, receive_dir='at_r')"
            ),
        ],
        phones=("A", "B"),
    )
    nb.run(
        "a.invite('B', 'P', 'R', sfu=True)\n"
        "await a.wait_until(lambda: len(a.members) == 4, 'members', timeout=30)\n"
        "for x in (a, b, p, r):\n"
        "    await x.wait_for_members(*[m for m in 'ABPR' if m != x.user_id], timeout=30)"
    )
    nb.run("verdict = await asyncio.wait_for(asyncio.wrap_future(a.send_file('data.bin')), 90)")
    files = nb.value("sorted([f['peer'], f['code']] for f in verdict['files'])")
    assert files == [["B", "ok"], ["P", "ok"], ["R", "exists"]], nb.value("verdict")
    expected = nb.value("hashlib.sha256(pathlib.Path('data.bin').read_bytes()).hexdigest()")
    for where in ("at_b", "at_p"):
        assert (
            nb.value(f"hashlib.sha256(pathlib.Path('{where}/data.bin').read_bytes()).hexdigest()") == expected
        )
    assert nb.value("sorted(str(x) for x in pathlib.Path('at_r').rglob('*'))") == ["at_r/data.bin"]
    assert nb.value("[m.name for m in r.messages]") == []
    assert nb.value("[(m.sender, m.name, m.sha256) for m in b.messages]") == [["A", "data.bin", expected]]
    # The file's row; its verdicts go through the signaling server in an SFU room, not through the browser,
    # and the chat shows them all the same: the sender's as they came in, B's as it went out.
    expect(nb.phone("B").locator(".nbcall-in[data-kind='file']")).to_have_text(
        re.compile(r"A\s*file\s*data\.bin \(")
    )
    expect(nb.phone("B").locator(".nbcall-out[data-kind='file']")).to_have_text(
        re.compile(r"to A\s*file\s*data\.bin: received whole, sha256 checked")
    )
    verdicts = nb.phone("A").locator(".nbcall-in[data-kind='file']")
    expect(verdicts.filter(has_text="data.bin: received whole, sha256 checked")).to_have_count(2)
    refused = verdicts.filter(has_text=re.compile(r"data\.bin: failed: \S"))
    expect(refused).to_have_count(1)
    expect(refused).to_have_attribute("data-peer", "R")
    screenshot(nb.phone("A"), "sfu-file-verdicts")
    nb.run("p.close(); r.close(); janus.close()")


def test_browser_members_sending_right_after_wait_for_members_reach_a_joiner_and_hear_it(
    lab: Lab, page: Page
) -> None:
    # wait_for_members(newcomer) returns once the newcomer receives our feed and we receive its (it acknowledged
    # ours): a send at once reaches it, however the subscriber links settle; its first sends reach us.
    nb = lab.run_notebook(
        page,
        "sfu_join.ipynb",
        [
            START,
            "a = nbcall.Phone('A'); a",
            "b = nbcall.Phone('B', auto_answer=True); b",
            "d = nbcall.Phone('D', auto_answer=True); d",
        ],
        phones=("A", "B", "D"),
    )
    nb.run(
        "a.invite('B', sfu=True)\nawait b.wait_for('connected', timeout=20)\nawait b.wait_for_members('A', timeout=30)\nawait a.wait_for_members('B', timeout=30)"
    )
    nb.run(
        "b.invite('D')\n"
        "await a.wait_until(lambda: 'D' in a.members, 'members', timeout=30)\n"
        "await b.wait_until(lambda: 'D' in b.members, 'members', timeout=30)\n"
        "await a.wait_for_members('D', timeout=30); a.send('a at once'); a.send(bytes(300_000))\n"
        "await b.wait_for_members('D', timeout=30); b.send('b at once')\n"
        "await d.wait_for_members('A', 'B', timeout=30); d.send('d at once')"
    )
    nb.wait_until("len(d.messages) >= 3 and len(a.messages) >= 2 and len(b.messages) >= 2", timeout=30)
    assert nb.value("[m.data if isinstance(m.data, str) else len(m.data) for m in d.messages]") in (
        ["a at once", 300_000, "b at once"],
        ["a at once", "b at once", 300_000],
        ["b at once", "a at once", 300_000],
    )
    assert nb.value("sorted([m.sender, m.data] for m in a.messages)") == [
        ["B", "b at once"],
        ["D", "d at once"],
    ]
    assert nb.value("[[m.sender, m.data] for m in b.messages if m.sender == 'D']") == [["D", "d at once"]]
    nb.run("janus.close()")

"""SFU rooms (issue 18) in real JupyterLab + Chromium with a real Janus: browser phones and a Python peer in one
room, data both ways with directed sends reaching only their target, a member leaving; the error when Janus
cannot be reached; a server restart past Janus's reclaim timeout (sfu-restart: the phones publish again), with
none of the room's locks reaching the page; a member's browser closing.

Janus skips loopback interfaces for ICE: scripts/test.sh gives the namespace the veth ``jns0`` carrying
127.0.0.2, and the kernel starts Janus on it (docs/rooms.md, "Rooms on an SFU").
"""

from __future__ import annotations

import json
import re
import time

from harness import Lab, screenshot
from playwright.sync_api import BrowserContext, Page, expect

START = """\
import nbcall, asyncio, hashlib, json
from nbcall.teach.janus import start_janus
janus = start_janus(interface='jns0')
server = nbcall.serve(sfu=janus.url, sfu_secret=janus.api_secret)"""


def test_four_browser_phones_and_a_peer_share_an_sfu_room_broadcast_direct_and_leave(
    lab: Lab, page: Page
) -> None:
    nb = lab.run_notebook(
        page,
        "sfu4.ipynb",
        [
            START,
            "a = nbcall.Phone('A'); a",
            "b = nbcall.Phone('B', auto_answer=True); b",
            "c = nbcall.Phone('C', auto_answer=True); c",
            "d = nbcall.Phone('D', auto_answer=True); d",
            "p = nbcall.Peer('P', auto_answer=True)",
        ],
        phones=("A", "B", "C", "D"),
    )
    nb.run("a.invite('B', 'C', 'D', 'P', sfu=True)\nawait b.wait_for('connected', timeout=20)")
    nb.wait_until("all(x.state == 'connected' for x in (b, c, d, p))", timeout=20)
    nb.run(
        "for x in (b, c, d, p, a):\n"
        "    await x.wait_for_members(*[m for m in 'ABCDP' if m != x.user_id], timeout=30)"
    )
    assert nb.value("[a.room_mode, d.room_mode, p.room_mode, a.room == p.room, sorted(c.connections)]") == [
        "sfu",
        "sfu",
        "sfu",
        True,
        ["A", "B", "D", "P"],
    ]
    assert nb.value("a.sfu_links") == {"publisher": "connected", "subscriber": "connected"}
    expect(nb.phone("A").locator(".nbcall-member[data-state='connected']")).to_have_count(4)

    # Everyone sends to everyone: each receives one message from each other member, through Janus.
    nb.run("for x in (a, b, c, d, p):\n    x.send(f'hi from {x.user_id}')")
    nb.wait_until("all(len(x.messages) >= 4 for x in (a, b, c, d, p))", timeout=20)
    for x in "abcdp":
        me = x.upper()
        assert nb.value(f"sorted([m.sender, m.data] for m in {x}.messages)") == [
            [q, f"hi from {q}"] for q in "ABCDP" if q != me
        ]

    # 1 MiB from a browser phone and 1 MiB from the peer: whole and in order at every member.
    nb.run(
        "big = bytes(range(256)) * 4096\nbig_p = bytes(reversed(range(256))) * 4096\n"
        "b.send(big); p.send(big_p)"
    )
    nb.wait_until(
        "all(sum(isinstance(m.data, bytes) for m in x.messages) == (1 if x in (b, p) else 2)"
        " for x in (a, b, c, d, p))",
        timeout=60,
    )
    assert nb.value(
        "[[m.sender, m.data == (big if m.sender == 'B' else big_p)] for m in c.messages if isinstance(m.data, bytes)]"
    ) in ([["B", True], ["P", True]], [["P", True], ["B", True]])

    # Directed sends go through the server and reach only their target.
    nb.run("c.send('secret for D', to='D'); p.send({'only': 'A'}, to='A'); a.send(b'A to P', to='P')")
    nb.wait_until(
        "d.messages[-1].data == 'secret for D' and a.messages[-1].data == {'only': 'A'}"
        " and p.messages[-1].data == b'A to P'",
        timeout=20,
    )
    assert (
        nb.value(
            "[m.data for x in (a, b, p) for m in x.messages if m.data == 'secret for D']"
            " + [m.data for x in (b, c, d) for m in x.messages if m.data in ({'only': 'A'}, b'A to P')]"
        )
        == []
    )
    out = nb.run_expecting_error("d.send(b'x' * 100_000, to='A')")
    assert "goes through the signaling server" in out and "at most" in out
    screenshot(nb.phone("A"), "sfu-room-of-5-A")

    # D leaves (its browser half closes both links to Janus): the others go on among themselves.
    nb.run("d.leave()")
    nb.wait_until("sorted(a.members) == ['A', 'B', 'C', 'P'] == sorted(p.members)", timeout=20)
    assert nb.value("[d.state, d.room, d.room_mode, d.sfu_links]") == ["ended", "", "", {}]
    nb.run("a.send('after D left')")
    nb.wait_until("all(x.messages[-1].data == 'after D left' for x in (b, c, p))", timeout=20)
    nb.run("p.close(); janus.close()")


def test_a_presenter_with_a_camera_reaches_three_viewers_whose_grids_show_its_video(
    lab: Lab, page: Page
) -> None:
    nb = lab.run_notebook(
        page,
        "sfu_presenter.ipynb",
        [
            START,
            "t = nbcall.Phone('T', video={'width': 320, 'height': 240}); t",
            "v1 = nbcall.Phone('V1', auto_answer=True); v1",
            "v2 = nbcall.Phone('V2', auto_answer=True); v2",
            "v3 = nbcall.Phone('V3', auto_answer=True); v3",
            # A Python peer among the viewers: the browser's camera reaches it through on_room_frame.
            (
                "p = nbcall.Peer('P', auto_answer=True)\nframes = []\n"
                "p.on_room_frame(lambda member, frame, t: frames.append((member, frame.shape)))"
            ),
        ],
        phones=("T", "V1", "V2", "V3"),
    )
    nb.run("t.invite('V1', 'V2', 'V3', 'P', sfu=True)\nawait v1.wait_for('connected', timeout=20)")
    nb.run(
        "for x in (v1, v2, v3):\n    await x.wait_for('connected', timeout=20)\n    await x.wait_for_members(timeout=30)"
    )
    nb.wait_until("all(x.remote_media.get('video') for x in (v1, v2, v3))", timeout=30)
    assert nb.value("[t.local_media, v1.local_media, v2.room_mode]") == [
        {"audio": False, "video": True},
        {"audio": False, "video": False},  # a data-only member publishes only a data channel
        "sfu",
    ]
    # What each publishes, in its publisher offer: T its video and data channel, a viewer its data channel only.
    published = (
        "sorted(line.split()[0] for line in json.loads([e['detail']['sdp'] for e in {}.log if e['type'] == "
        "'sfu-offer' and e['dir'] == 'out' and e['detail'].get('role') == 'publisher'][-1])['sdp'].splitlines()"
        " if line.startswith('m='))"
    )
    assert nb.value(published.format("t")) == ["m=application", "m=video"]
    for viewer in ("v1", "v2", "v3"):
        assert nb.value(published.format(viewer)) == ["m=application"]
    for viewer in ("V1", "V2", "V3"):
        tile = nb.phone(viewer).locator(".nbcall-tile[data-peer='T']")
        expect(tile).to_have_class(re.compile("nbcall-has-video"), timeout=20_000)
        page.wait_for_function(
            """(user) => { const v = document.querySelector(
                 `.nbcall-phone[data-user='${user}'] .nbcall-tile[data-peer='T'] video`);
               return v && v.videoWidth > 0 && v.getVideoPlaybackQuality().totalVideoFrames > 5; }""",
            arg=viewer,
            timeout=30_000,
        )
        # The viewers send nothing: their tiles at the presenter stay without video.
        expect(nb.phone("T").locator(f".nbcall-tile[data-peer='{viewer}']")).not_to_have_class(
            re.compile("nbcall-has-video")
        )
    assert nb.value("t.sfu_links") == {"publisher": "connected", "subscriber": "connected"}
    nb.wait_until("len(frames) >= 5", timeout=30)
    member, shape = nb.value("frames[-1]")  # type: ignore[misc]
    assert member == "T" and shape[2] == 3 and shape[0] > 0
    screenshot(nb.phone("V1"), "sfu-presenter-viewer-V1")
    nb.run("p.close(); janus.close()")


def test_an_sfu_room_without_a_reachable_janus_says_so_within_ten_seconds(lab: Lab, page: Page) -> None:
    nb = lab.run_notebook(
        page,
        "sfu_down.ipynb",
        [
            "import nbcall, asyncio, time\nserver = nbcall.serve(sfu='http://127.0.0.1:9/janus', sfu_secret='x')",
            "a = nbcall.Phone('A'); a",
            "b = nbcall.Phone('B', auto_answer=True); b",
        ],
        phones=("A", "B"),
    )
    started = time.monotonic()
    out = nb.run_expecting_error(
        "a.invite('B', sfu=True)\nt0 = time.monotonic()\n"
        "try:\n    await a.wait_for_members(timeout=30)\nexcept nbcall.CallError as exc:\n"
        "    print('raised after', round(time.monotonic() - t0, 1), exc)"
    )
    assert "raised after" in out and time.monotonic() - started < 20
    assert float(out.split("raised after")[1].split()[0]) <= 10
    error = str(nb.value("a.error"))
    assert "Janus" in error and "http://127.0.0.1:9/janus" in error, error
    expect(nb.phone("A").locator(".nbcall-error")).to_contain_text("127.0.0.1:9/janus")
    # Mesh rooms are unaffected.
    nb.wait_until("a.room == '' and b.room == '' and b.state != 'connected'", timeout=10)
    # B may still show the "ended" of the SFU invitation withdrawn while it rang: wait until the new one rings.
    nb.run(
        "a.invite('B')\nawait b.wait_until(lambda: b.state != 'ended', 'state', timeout=20)\n"
        "await b.wait_for('connected', timeout=20)\nawait b.wait_for_members('A', timeout=20)"
    )
    assert nb.value("a.room_mode") == "mesh"


RESTART_START = """\
import nbcall, asyncio, secrets, time
from nbcall.teach.janus import start_janus
janus = start_janus(interface='jns0', reclaim_session_timeout=1)
KEY = secrets.token_hex(16)
server = nbcall.serve(sfu=janus.url, sfu_secret=janus.api_secret, room_key=KEY)"""


def test_browser_phones_publish_again_after_a_restart_longer_than_janus_keeps_the_room(
    lab: Lab, page: Page
) -> None:
    # Janus keeps a session whose connection closed for 1 s only: the restarted server cannot claim the room's
    # session, starts the room again on a new VideoRoom and says so (sfu-restart); each browser half closes its
    # two links to Janus and publishes again from new ones.
    nb = lab.run_notebook(
        page,
        "sfu_restart.ipynb",
        [
            RESTART_START,
            "a = nbcall.Phone('A'); a",
            "b = nbcall.Phone('B', auto_answer=True); b",
        ],
        phones=("A", "B"),
    )
    nb.run(
        "a.invite('B', sfu=True)\nawait b.wait_for('connected', timeout=20)\n"
        "await a.wait_for_members('B', timeout=30)\nawait b.wait_for_members('A', timeout=30)"
    )
    room = nb.value("a.room")
    before = nb.value("server.server.sfu.janus_state(a.room)['videoroom']")
    # The locks go to a file, not into a cell's output: the page must not show them.
    locks = lab.root / "sfu_locks.json"
    save_locks = f"open({str(locks)!r}, 'a').write(json.dumps(server.server.sfu.secrets()) + '\\n')"
    nb.run(f"import json\n{save_locks}")
    port, token = nb.value("server.port"), nb.value("server.url.split('token=')[1]")
    nb.run(
        "server.close()\nt0 = time.monotonic()\n"
        "while 'Timeout expired for session' not in janus.log() and time.monotonic() - t0 < 20:\n"
        "    await asyncio.sleep(0.2)\n"
        f"server = nbcall.serve(port={port}, token={token!r}, sfu=janus.url, sfu_secret=janus.api_secret,"
        " room_key=KEY)"
    )
    nb.wait_until(
        "all(x.sfu_links == {'publisher': 'connected', 'subscriber': 'connected'} for x in (a, b))"
        " and a.connections == {'B': 'connected'} and b.connections == {'A': 'connected'}"
        " and all(any(e['type'] == 'sfu-restart' for e in x.log) for x in (a, b))",
        timeout=40,
    )
    after = nb.value("server.server.sfu.janus_state(a.room)")
    assert isinstance(after, dict) and after["videoroom"] != before, (before, after)
    # Each was told why it published again.
    said = nb.value("[e['detail']['reason'] for x in (a, b) for e in x.log if e['type'] == 'sfu-restart']")
    assert isinstance(said, list) and len(said) >= 2 and all("publish again" in r for r in said), said
    assert nb.value("[a.room, b.room, a.room_mode, sorted(b.members)]") == [room, room, "sfu", ["A", "B"]]
    # Data flows both ways on the new VideoRoom, through the browsers' new links.
    nb.run("await a.wait_for_members('B', timeout=30)\nawait b.wait_for_members('A', timeout=30)")
    nb.run("a.send('after the restart'); b.send(b'back to A')")
    nb.wait_until(
        "[m.data for m in b.messages] == ['after the restart'] and [m.data for m in a.messages] == [b'back to A']",
        timeout=20,
    )
    expect(nb.phone("A").locator(".nbcall-member[data-state='connected']")).to_have_count(1)
    # Neither the API secret nor a room's pin, secret or tokens reached a browser, a phone's log or its traits,
    # before the restart or after it.
    nb.run(save_locks)
    secrets = [s for line in locks.read_text().splitlines() for s in json.loads(line)]
    shown = page.content() + str(
        nb.value("repr([x.log for x in (a, b)]) + repr([x.get_state() for x in (a, b)])")
    )
    assert len(secrets) >= 5 and [s for s in secrets if s in shown] == []
    nb.run("janus.close()")


def test_a_members_browser_closing_leaves_the_others_exchanging_through_janus(
    lab: Lab, page: Page, context: BrowserContext
) -> None:
    nb = lab.run_notebook(
        page,
        "sfu_close.ipynb",
        [START, "a = nbcall.Phone('A'); a", "b = nbcall.Phone('B', auto_answer=True); b"],
        phones=("A", "B"),
    )
    # M's phone is in a page of its own (its kernel too): that browser closes below.
    page2 = context.new_page()
    other = lab.run_notebook(
        page2,
        "sfu_member.ipynb",
        [f"import nbcall\nm = nbcall.Phone('M', server={nb.value('server.url')!r}, auto_answer=True); m"],
        phones=("M",),
    )
    nb.run(
        "a.invite('B', 'M', sfu=True)\nawait a.wait_until(lambda: len(a.members) == 3, 'members', timeout=30)\n"
        "await a.wait_for_members('B', 'M', timeout=30)"
    )
    nb.run("await b.wait_for_members('A', 'M', timeout=30)")
    other.run("await m.wait_for_members('A', 'B', timeout=30)")
    page2.close()
    # M's links to Janus close with its browser: the server takes it out of the room, whose others go on.
    nb.wait_until("'M' not in a.members and 'M' not in b.members", timeout=30)
    assert nb.value("[a.room_mode, a.room == b.room != '', a.connections, b.connections, a.error]") == [
        "sfu",
        True,
        {"B": "connected"},
        {"A": "connected"},
        "",
    ]
    nb.run("a.send('after M left'); b.send(b'B still here')")
    nb.wait_until(
        "[m.data for m in b.messages] == ['after M left'] and [m.data for m in a.messages] == [b'B still here']",
        timeout=20,
    )
    expect(nb.phone("A").locator(".nbcall-member[data-peer='B'][data-state='connected']")).to_have_count(1)
    nb.run("janus.close()")

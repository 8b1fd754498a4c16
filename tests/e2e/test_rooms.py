"""Rooms (issue 8) in real JupyterLab + Chromium: phones in two kernels invite each other into a full mesh,
message every member, leave, invite more, survive a server restart; invitations declined, expired and refused;
a member's browser closing; a video room of three made from a 1:1 call."""

from __future__ import annotations

import re

from harness import Lab, Notebook, screenshot
from playwright.sync_api import BrowserContext, Page, expect

# Every ordered pair of `phones` (a dict of ID -> Phone in this kernel) sends one message; then the messages
# each received, as (sender, data), sorted.
SEND_PAIRS = """\
for _p in {phones}:
    for _q in {members}:
        if _q != _p.user_id:
            _p.send(f"{{_p.user_id}}->{{_q}}", to=_q)
"""


def received(nb: Notebook, phone: str) -> list[list[str]]:
    return nb.value(f"sorted([m.sender, m.data] for m in {phone}.messages)")  # type: ignore[return-value]


def tiles(nb: Notebook, user: str) -> dict:
    """Each remote tile of ``user``'s widget: its state and decoded frames."""
    return nb.page.evaluate(
        """(user) => Object.fromEntries([...document.querySelectorAll(
             `.nbcall-phone[data-user='${user}'] .nbcall-tile:not(.nbcall-self)`)].map((t) => {
           const v = t.querySelector('video');
           return [t.dataset.peer, {state: t.dataset.state, width: v.videoWidth,
                   frames: v.getVideoPlaybackQuality().totalVideoFrames}];
         }))""",
        user,
    )


def test_four_phones_in_two_kernels_make_a_room_message_leave_invite_a_fifth_and_survive_a_restart(
    lab: Lab, page: Page, context: BrowserContext
) -> None:
    one = lab.run_notebook(
        page,
        "rooms1.ipynb",
        [
            # A room key kept across the restart below: with it the members re-create their room.
            "import nbcall, asyncio, secrets\nKEY = secrets.token_hex(16)\nserver = nbcall.serve(max_room_size=4, room_key=KEY)",
            "a = nbcall.Phone('A'); a",
            "b = nbcall.Phone('B'); b",
        ],
        phones=("A", "B"),
    )
    url = one.value("server.url")
    page2 = context.new_page()
    two = lab.run_notebook(
        page2,
        "rooms2.ipynb",
        [
            f"import nbcall, asyncio\nURL = {url!r}",
            "c = nbcall.Phone('C', server=URL); c",
            "d = nbcall.Phone('D', server=URL); d",
            "e = nbcall.Phone('E', server=URL); e",
        ],
        phones=("C", "D", "E"),
    )
    one.wait_until("len(a.peers) == 4")

    # A invites three; each rings with the invitation, and answers.
    one.run("a.invite('B', 'C', 'D')\nawait b.wait_for('ringing')")
    two.run("await c.wait_for('ringing'); await d.wait_for('ringing')")
    assert two.value("[c.invitation['from'], c.invitation['members'], c.state]") == ["A", ["A"], "ringing"]
    expect(two.phone("C", "ringing").locator(".nbcall-status")).to_have_text(
        "A invites you into a room with A"
    )
    assert one.value("a.state") == "calling"
    two.run("c.answer(); d.answer()")
    one.run("b.answer()\nawait a.wait_for_members(timeout=20)\nawait b.wait_for_members(timeout=20)")
    two.run("await c.wait_for_members(timeout=20)\nawait d.wait_for_members(timeout=20)")
    room = one.value("a.room")
    assert re.fullmatch(r"r-[\w-]+", str(room))
    assert one.value("[a.state, a.peer, a.members[0], sorted(a.members)]") == [
        "connected",
        "",
        "A",
        list("ABCD"),
    ]
    assert two.value("[c.room, c.connections]") == [room, {m: "connected" for m in "ABD"}]
    expect(one.phone("A").locator(".nbcall-member[data-state='connected']")).to_have_count(3)
    expect(two.phone("C")).to_have_attribute("data-room", str(room))

    # Every ordered pair: 12 messages, each with its sender
    members = "['A', 'B', 'C', 'D']"
    one.run(SEND_PAIRS.format(phones="(a, b)", members=members))
    two.run(SEND_PAIRS.format(phones="(c, d)", members=members))
    one.wait_until("len(a.messages) == 3 and len(b.messages) == 3")
    two.wait_until("len(c.messages) == 3 and len(d.messages) == 3")
    for nb, phones in ((one, "ab"), (two, "cd")):
        for p in phones:
            me = p.upper()
            assert received(nb, p) == [[q, f"{q}->{me}"] for q in "ABCD" if q != me]

    # A broadcast reaches the three others, from A.
    one.run("a.send({'to': 'all'})")
    one.wait_until("len(b.messages) == 4")
    two.wait_until("len(c.messages) == 4 and len(d.messages) == 4")
    assert (
        two.value("[(m.sender, m.data) for m in (c.messages[-1], d.messages[-1])]")
        == [["A", {"to": "all"}]] * 2
    )
    assert one.value("b.messages[-1].sender") == "A"
    expect(one.phone("B").locator(".nbcall-msg-peer").last).to_have_text("A")
    for nb, user in ((one, "A"), (one, "B"), (two, "C"), (two, "D")):
        screenshot(nb.phone(user), f"room-of-4-{user}")

    # D leaves: the other three go on among themselves.
    two.run("d.leave()")
    one.wait_until("sorted(a.members) == ['A', 'B', 'C'] == sorted(b.members)")
    assert two.value("[d.state, d.room, sorted(c.members)]") == ["ended", "", ["A", "B", "C"]]
    two.run("c.send('after D left')")
    one.wait_until("a.messages[-1].data == 'after D left' and b.messages[-1].sender == 'C'")

    # C, not the creator, invites E, who connects to everyone.
    two.run("c.invite('E')\nawait e.wait_for('ringing')\ne.answer()\nawait e.wait_for_members(timeout=20)")
    one.run("await a.wait_for_members('E', timeout=20)\nawait b.wait_for_members('E', timeout=20)")
    assert two.value("[sorted(e.members), sorted(e.connections)]") == [["A", "B", "C", "E"], ["A", "B", "C"]]
    two.run("e.send('hello from E')")
    one.wait_until("a.messages[-1].sender == 'E' and b.messages[-1].data == 'hello from E'")

    # The server restarts with its room key: the links stay up, and the members re-create the room on the new
    # server with the credentials the old one gave them.
    port, token = one.value("server.port"), one.value("server.url.split('token=')[1]")
    one.run(
        f"server.close()\nserver = nbcall.serve(port={port}, token={token!r}, max_room_size=4, room_key=KEY)"
    )
    one.wait_until("a.online and b.online", timeout=20)
    two.wait_until("c.online and e.online and d.online", timeout=20)
    assert one.value("[a.room, sorted(a.members), a.connections]") == [
        room,
        ["A", "B", "C", "E"],
        {m: "connected" for m in "BCE"},
    ]
    one.run("b.send('after the restart', to='E')")
    two.wait_until("e.messages[-1].data == 'after the restart'")
    # The new server knows the room and its four members: a fifth is refused, the room is full.
    one.wait_until("len(a.peers) == 4", timeout=10)
    one.run("b.invite('D')")
    one.wait_until("'room-full' in b.error")
    assert two.value("d.state") == "ended"  # never rang

    # Leaving: the leaver's connections close; the others' connections to it go.
    one.run("a.leave()")
    two.wait_until("sorted(c.members) == ['B', 'C', 'E'] and sorted(c.connections) == ['B', 'E']")
    assert one.value("[a.state, a.connections]") == ["ended", {}]


def test_invitations_declined_expired_and_refused_and_a_member_whose_browser_closes(
    lab: Lab, page: Page, context: BrowserContext
) -> None:
    nb = lab.run_notebook(
        page,
        "invitations.ipynb",
        [
            "import nbcall, asyncio\nserver = nbcall.serve(invitation_ttl=2)",
            "f = nbcall.Phone('F'); f",
            "g = nbcall.Phone('G'); g",
            "h = nbcall.Phone('H', auto_answer=True); h",
        ],
        phones=("F", "G", "H"),
    )
    nb.wait_until("len(f.peers) == 2")

    # Declined, from the widget: the creator's room ends, back to idle with the reason.
    f_widget, g_widget = nb.phone("F"), nb.phone("G")
    f_widget.locator(".nbcall-peer-select").select_option("G")
    f_widget.locator(".nbcall-invite").click()
    expect(g_widget.locator(".nbcall-status")).to_have_text("F invites you into a room with F")
    expect(f_widget).to_have_attribute("data-state", "calling")
    nb.run("g.decline('not now')")
    nb.wait_until("f.state == 'idle' and 'not now' in f.error")
    assert nb.value("[f.room, g.state, g.invitation]") == ["", "ended", {}]

    # Expired: nobody answers within invitation_ttl.
    nb.run("f.invite('G')\nawait g.wait_for('ringing')")
    nb.wait_until("f.state == 'idle' and 'expired' in f.error and g.state == 'ended'", timeout=10)
    assert "expired" in str(nb.value("g.error"))

    # Accepted from the widget; auto_answer accepts too.
    nb.run("f.invite('G', 'H')\nawait g.wait_for('ringing')")
    g_widget.locator(".nbcall-answer").click()
    nb.run("await f.wait_for_members(timeout=20)")
    assert nb.value("[sorted(f.members), h.state]") == [["F", "G", "H"], "connected"]

    # Refused: accepting with no invitation; a non-member inviting into the room; inviting a member elsewhere.
    assert "no incoming call" in nb.run_expecting_error("h.answer()")
    nb.run("k = nbcall.Phone('K'); k")
    expect(nb.phone("K", "idle")).to_be_visible(timeout=30_000)
    nb.run(
        "k._client.send({'type': 'room-accept', 'from': 'K', 'room': f.room})\n"
        "k._client.send({'type': 'room-invite', 'from': 'K', 'to': 'G', 'room': f.room})"
    )
    nb.wait_until("len([e for e in k.log if e['type'] == 'error']) >= 2")
    codes = nb.value("[e['detail'].get('code') for e in k.log if e['type'] == 'error']")
    assert codes == ["not-invited", "not-a-member"]
    nb.run("k.invite('F')")
    nb.wait_until("k.state != 'calling'")
    assert "in-another-room" in str(nb.value("k.error")) and nb.value("sorted(g.members)") == ["F", "G", "H"]

    # A member's browser closes (its kernel and signaling go on): the others lose their links to it, report
    # them, and the server takes it out of the room.
    page2 = context.new_page()
    other = lab.run_notebook(
        page2,
        "member.ipynb",
        [f"import nbcall\nm = nbcall.Phone('M', server={nb.value('server.url')!r}); m"],
        phones=("M",),
    )
    nb.run("f.invite('M')")
    other.run("await m.wait_for('ringing')\nm.answer()\nawait m.wait_for_members(timeout=20)")
    nb.run("await g.wait_for_members('M', timeout=20)")
    page2.close()
    nb.wait_until("'M' not in f.members and 'M' not in g.members and 'M' not in h.members", timeout=20)
    assert nb.value("f.connections") == {"G": "connected", "H": "connected"}


def test_a_call_becomes_a_video_room_of_three_with_a_tile_per_member_and_leaving_stops_tracks(
    lab: Lab, page: Page
) -> None:
    nb = lab.run_notebook(
        page,
        "video_room.ipynb",
        [
            "import nbcall, asyncio",
            "v1 = nbcall.Phone('V1', video=True, audio=True); v1",
            "v2 = nbcall.Phone('V2', video=True, audio=True, auto_answer=True); v2",
            "v3 = nbcall.Phone('V3', video=True, audio=True); v3",
        ],
        phones=("V1", "V2", "V3"),
    )
    nb.wait_until("len(v1.peers) == 2")
    nb.run("v1.call('V2')\nawait v1.wait_for('connected', timeout=20)")
    # The 1:1 call becomes a room: V2 joins without ringing, keeping its link to V1; V3 is invited.
    nb.run("v1.invite('V3')\nawait v3.wait_for('ringing')\nv3.answer()")
    nb.run("\n".join(f"await v{i}.wait_for_members(timeout=20)" for i in (1, 2, 3)))
    assert nb.value("[v1.members, v2.state, v2.peer]") == [["V1", "V2", "V3"], "connected", ""]
    for user, others in (("V1", {"V2", "V3"}), ("V2", {"V1", "V3"}), ("V3", {"V1", "V2"})):
        page.wait_for_function(
            f"""() => {{ const t = ({_TILES_JS})('{user}');
                 return t.length === 2 && t.every((x) => x.state === 'connected' && x.frames > 10); }}""",
            timeout=15_000,
        )
        assert set(tiles(nb, user)) == others
    nb.wait_until("sorted(v1.stats) == ['V2', 'V3']")  # in a room, statistics per member
    # The single remote video is gone in a room: the grid replaces it.
    expect(nb.phone("V1").locator(".nbcall-remote-video")).to_be_hidden()
    for user in ("V1", "V2", "V3"):
        screenshot(nb.phone(user), f"video-room-of-3-{user}")

    # mute() and camera() reach every link: the one shared track.
    nb.run("v1.mute(); v1.camera(False)")
    page.wait_for_function(_SELF_TRACKS_JS + "('V1').every((t) => !t.enabled)")

    # V3 leaves: its camera and microphone stop; V1 and V2 go on with one tile each.
    page.evaluate(f"window._v3 = {_SELF_TRACKS_JS}('V3')")
    nb.run("v3.leave()")
    page.wait_for_function(
        "() => window._v3.length === 2 && window._v3.every((t) => t.readyState === 'ended')"
    )
    nb.wait_until("v1.members == ['V1', 'V2'] and v2.members == ['V1', 'V2']")
    expect(nb.phone("V1").locator(".nbcall-tile:not(.nbcall-self)")).to_have_count(1)
    expect(nb.phone("V3").locator(".nbcall-tile")).to_have_count(0)
    assert nb.value("v3.local_media") == {"audio": False, "video": False}


_TILES_JS = """(user) => [...document.querySelectorAll(
  `.nbcall-phone[data-user='${user}'] .nbcall-tile:not(.nbcall-self)`)].map((t) => {
  const v = t.querySelector('video');
  return {state: t.dataset.state, frames: v.getVideoPlaybackQuality().totalVideoFrames};
})"""

# The tracks of a phone's own tile (its shared camera and microphone stream).
_SELF_TRACKS_JS = """((user) => document.querySelector(
  `.nbcall-phone[data-user='${user}'] .nbcall-tile.nbcall-self video`)?.srcObject?.getTracks() ?? [])"""


def test_a_camera_phone_that_invites_data_only_members_sends_them_its_video_by_renegotiating(
    lab: Lab, page: Page
) -> None:
    # The members join by offering to T, with no media section (they send none): T adds its camera by a new
    # offer of its own, so that a data-only Peer and a data-only phone still see it.
    nb = lab.run_notebook(
        page,
        "camera_invites.ipynb",
        [
            "import nbcall\nserver = nbcall.serve()",
            "t = nbcall.Phone('T', video={'width': 160, 'height': 120}); t",
            "v = nbcall.Phone('V', auto_answer=True); v",
            (
                "frames = []\np = nbcall.Peer('P', auto_answer=True)\n"
                "p.on_room_frame(lambda member, frame, ts: frames.append((member, frame.shape)))"
            ),
        ],
        phones=("T", "V"),
    )
    nb.run(
        "t.invite('V', 'P')\nawait v.wait_for('connected', timeout=20)\n"
        "await t.wait_until(lambda: len(t.members) == 3, 'members', timeout=20)\n"
        "for x in (t, v, p):\n    await x.wait_for_members(*[m for m in 'TVP' if m != x.user_id], timeout=30)"
    )
    assert nb.value("t.room_mode") == "mesh"
    nb.wait_until("len(frames) >= 5", timeout=30)
    assert nb.value("sorted({m for m, _ in frames})") == ["T"]
    nb.wait_until("v.remote_media.get('video')", timeout=30)
    page.wait_for_function(
        """() => { const v = document.querySelector(
             ".nbcall-phone[data-user='V'] .nbcall-tile[data-peer='T'] video");
           return v && v.videoWidth > 0 && v.getVideoPlaybackQuality().totalVideoFrames > 5; }""",
        timeout=30_000,
    )
    assert nb.value("t.error") == ""  # no "not offered" camera
    nb.run("p.close()")


def test_a_camera_peer_that_invites_data_only_members_sends_them_its_video_by_renegotiating(
    lab: Lab, page: Page
) -> None:
    # As the camera phone above, for a Python Peer with a camera: the data-only phone V joins by offering no
    # media section, and T adds its video by an offer of its own right after its answer.
    nb = lab.run_notebook(
        page,
        "camera_peer_invites.ipynb",
        [
            "import nbcall, numpy as np\nserver = nbcall.serve()",
            "v = nbcall.Phone('V', auto_answer=True); v",
            (
                "frames = []\nred = np.zeros((120, 160, 3), np.uint8); red[..., 0] = 220\n"
                "t = nbcall.Peer('T', video=lambda: red, fps=10)\n"
                "p = nbcall.Peer('P', auto_answer=True)\n"
                "p.on_room_frame(lambda member, frame, ts: frames.append(member))"
            ),
        ],
        phones=("V",),
    )
    nb.run(
        "t.invite('V', 'P')\n"
        "await t.wait_until(lambda: len(t.members) == 3, 'members', timeout=20)\n"
        "for x in (t, v, p):\n    await x.wait_for_members(*[m for m in 'TVP' if m != x.user_id], timeout=30)"
    )
    nb.wait_until("len(frames) >= 5", timeout=30)
    nb.wait_until("v.remote_media.get('video')", timeout=30)
    page.wait_for_function(
        """() => { const v = document.querySelector(
             ".nbcall-phone[data-user='V'] .nbcall-tile[data-peer='T'] video");
           return v && v.videoWidth === 160 && v.getVideoPlaybackQuality().totalVideoFrames > 5; }""",
        timeout=30_000,
    )
    nb.run("t.close(); p.close()")

"""An SFU room across a restart of the nbcall server (docs/rooms.md, "An SFU room across a restart"): real Janus
(with a ``reclaim_session_timeout``), a real server with a room key stopped and started again on its port, Peers
on aiortc. Data and video keep flowing through Janus while the server is away, and the restarted server claims
the room's Janus session from the members' records: nobody publishes again.

Marked ``webrtc``: run in the network namespace with the veth carrying 127.0.0.2 (Janus needs it for ICE).
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Iterator
from typing import Any, Self

import numpy as np
import pytest
from sfu_support import SfuMember, janus_or_skip, record_of
from support import wait_until, wait_until_sync

from nbcall import CallError, Peer
from nbcall.call import kernel
from nbcall.server.server import SignalingServer, serve
from nbcall.teach.janus import JanusServer

pytestmark = pytest.mark.webrtc
TIMEOUT = 20.0
KEY = "a room key that outlives the server"


@pytest.fixture(scope="module")
def janus() -> Iterator[JanusServer]:
    with janus_or_skip(media=True) as server:
        yield server


@pytest.fixture(scope="module")
def forgetful_janus() -> Iterator[JanusServer]:
    """A Janus that keeps a session whose connection closed for 1 s only."""
    with janus_or_skip(media=True, reclaim_session_timeout=1) as server:
        yield server


async def _stop(server: SignalingServer) -> None:
    server.close()
    await server.wait_closed()


def _start(janus: JanusServer, port: int = 0) -> SignalingServer:
    return kernel.run(
        serve(port=port, sfu=janus.url, sfu_secret=janus.api_secret, room_key=KEY), timeout=TIMEOUT
    )


class Counter:
    """Sends numbered messages from ``peer`` every ``every`` seconds on a thread, until stopped."""

    def __init__(self, peer: Peer, every: float = 0.05) -> None:
        self.peer, self.every, self.sent = peer, every, 0
        self.failed: Exception | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)
        assert self.failed is None, f"a send failed: {self.failed!r}"

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.peer.send(f"n{self.sent}").result(TIMEOUT)
            except (CallError, ConnectionError, TimeoutError) as exc:  # the test fails, saying so
                self.failed = exc
                return
            self.sent += 1


def _sfu_room(inviter: Peer, *invited: Peer) -> str:
    """``inviter`` invites the others into an SFU room: its ID once every member sees every other and holds its
    record of its links to the SFU."""
    inviter.invite(*(peer.user_id for peer in invited), sfu=True)
    for peer in invited:
        peer.wait("connected", timeout=TIMEOUT)
    members = (inviter, *invited)
    for peer in members:
        peer.wait_members(*(other.user_id for other in members if other is not peer), timeout=TIMEOUT)
    wait_until_sync(
        lambda: all(peer._machine._sfu_record for peer in members), "every member holds its record", TIMEOUT
    )
    return inviter.room


def _close(peers: tuple[Peer, ...], *servers: SignalingServer | None) -> None:
    for peer in peers:
        peer.close()
    for server in servers:
        if server is not None:
            kernel.run(_stop(server), timeout=TIMEOUT)


def _numbers(peer: Peer, sender: str) -> list[int]:
    return [
        int(m.data[1:]) for m in list(peer.messages) if m.sender == sender and str(m.data).startswith("n")
    ]


def test_a_server_restart_leaves_data_and_video_flowing_through_janus_and_the_room_comes_back_unchanged(
    janus: JanusServer,
) -> None:
    frame = np.zeros((120, 160, 3), np.uint8)
    frame[:, :, 2] = 200
    first = _start(janus)
    port = first.port
    frames: list[float] = []
    a = Peer("A", server=first.url, auto_answer=True, video=lambda: frame)
    b = Peer("B", server=first.url, auto_answer=True, max_messages=10_000)
    c = Peer("C", server=first.url, auto_answer=True, max_messages=10_000)
    second: SignalingServer | None = None
    try:
        b.on_room_frame(lambda member, image, timestamp: frames.append(time.monotonic()))
        a.invite("B", "C", sfu=True)
        b.wait("connected", timeout=TIMEOUT)
        c.wait("connected", timeout=TIMEOUT)
        for peer, others in ((b, ("A", "C")), (c, ("A", "B")), (a, ("B", "C"))):
            peer.wait_members(*others, timeout=TIMEOUT)
        room = a.room
        wait_until_sync(lambda: len(frames) >= 3, "B receives A's video", TIMEOUT)
        assert first.sfu is not None
        before = first.sfu.janus_state(room)
        assert before is not None and set(before["feeds"]) == {"A", "B", "C"}
        wait_until_sync(
            lambda: all(p._machine._sfu_record for p in (a, b, c)),
            "every member holds its record",
            TIMEOUT,
        )
        secrets = first.sfu.secrets()
        for peer in (a, b, c):  # a record names Janus's numbers, never a lock
            record = peer._machine._sfu_record
            body = base64.urlsafe_b64decode(record.split(".")[0] + "==").decode()
            assert not any(secret in body or secret in record for secret in secrets)
        with Counter(a) as counter:
            wait_until_sync(
                lambda: len(_numbers(c, "A")) >= 5 or counter.failed, "C receives A's numbers", TIMEOUT
            )
            assert counter.failed is None, f"a send failed: {counter.failed!r}"
            kernel.run(_stop(first), timeout=TIMEOUT)
            stopped = time.monotonic()
            wait_until_sync(lambda: not a.online and not b.online and not c.online, "the server to be gone")
            # Through Janus alone: the numbers and the video keep coming while no nbcall server runs.
            sent_then, frames_then = counter.sent, len(frames)
            wait_until_sync(
                lambda: (
                    max(_numbers(c, "A"), default=-1) >= sent_then + 20 and len(frames) >= frames_then + 10
                ),
                "data and video while the server is away",
                TIMEOUT,
            )
            second = _start(janus, port)
            started = time.monotonic()
            assert second.sfu is not None
            bridge = second.sfu

            def settled() -> bool:
                state = bridge.janus_state(room)
                return state is not None and state["session"] != 0 and not state["settling"]

            wait_until_sync(
                lambda: sorted(second.protocol.rooms.members(room)) == ["A", "B", "C"] and settled(),
                "the room re-established",
                TIMEOUT,
            )
            back = time.monotonic() - started
            after = bridge.janus_state(room)
            time.sleep(1)  # some more numbers after the restart
        sent = counter.sent
        deadline = time.monotonic() + TIMEOUT
        while (
            min(max(_numbers(p, "A"), default=-1) for p in (b, c)) < sent - 1 and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        got = _numbers(c, "A")
        missing = sorted(set(range(sent)) - set(got))
        assert got == list(range(sent)), (
            f"lost or reordered through the restart: {missing=} of {sent}, {got=}"
        )
        assert _numbers(b, "A") == got
        gaps = np.diff([t for t in frames if stopped - 2 < t < started + back + 2])
        usual = np.diff([t for t in frames if t < stopped])
        print(
            f"\nrestart: room re-established {back * 1000:.0f} ms after the new server started; "
            f"{sent} numbers, none lost; longest gap between B's video frames around the restart "
            f"{gaps.max() * 1000:.0f} ms (before the stop: {usual.max() * 1000 if len(usual) else 0:.0f} ms)"
        )
        # The same Janus session, VideoRoom and feeds: nobody published again.
        assert after is not None
        assert after is not None and (after["session"], after["videoroom"], after["feeds"]) == (
            before["session"],
            before["videoroom"],
            before["feeds"],
        )
        assert [p.room_mode for p in (a, b, c)] == ["sfu"] * 3
        assert [p.sfu_links for p in (a, b, c)] == [{"publisher": "connected", "subscriber": "connected"}] * 3
        assert b.members == ["A", "B", "C"]
        c.send("after the restart").result(TIMEOUT)
        b.send(b"only for C", to="C").result(TIMEOUT)
        wait_until_sync(lambda: "after the restart" in [m.data for m in b.messages], "C's message", TIMEOUT)
        wait_until_sync(
            lambda: b"only for C" in [m.data for m in c.messages], "B's directed message", TIMEOUT
        )
        assert b"only for C" not in [m.data for m in a.messages]
        c.leave()
        wait_until_sync(lambda: a.members == ["A", "B"] and b.members == ["A", "B"], "C gone", TIMEOUT)
        wait_until_sync(
            lambda: set(second.sfu.janus_state(room)["feeds"]) == {"A", "B"},  # type: ignore[union-attr, index]
            "C's feed gone from the SFU room",
            TIMEOUT,
        )
        b.send("two left").result(TIMEOUT)
        wait_until_sync(lambda: "two left" in [m.data for m in a.messages], "B's message to A", TIMEOUT)
    finally:
        _close((a, b, c), first, second)


def test_a_restart_longer_than_the_janus_reclaim_timeout_starts_the_room_again_and_says_so(
    forgetful_janus: JanusServer,
) -> None:
    janus = forgetful_janus
    first = _start(janus)
    port = first.port
    a = Peer("A", server=first.url, auto_answer=True)
    b = Peer("B", server=first.url, auto_answer=True)
    second: SignalingServer | None = None
    try:
        a.invite("B", sfu=True)
        b.wait("connected", timeout=TIMEOUT)
        a.wait_members("B", timeout=TIMEOUT)
        b.wait_members("A", timeout=TIMEOUT)
        room = a.room
        assert first.sfu is not None
        before = first.sfu.janus_state(room)
        wait_until_sync(lambda: a._machine._sfu_record and b._machine._sfu_record, "records", TIMEOUT)
        shown: dict[str, list[dict[str, str]]] = {"A": [], "B": []}
        for peer in (a, b):
            peer.observe(
                lambda change, peer=peer: shown[peer.user_id].append(dict(change["new"])), "connections"
            )
        kernel.run(_stop(first), timeout=TIMEOUT)
        wait_until_sync(
            lambda: "Timeout expired for session" in janus.log(), "Janus to drop the session", TIMEOUT
        )
        second = _start(janus, port)
        wait_until_sync(
            lambda: sorted(second.protocol.rooms.members(room)) == ["A", "B"], "the room", TIMEOUT
        )
        for peer, other in ((a, "B"), (b, "A")):
            wait_until_sync(
                lambda peer=peer, other=other: (
                    peer.connections == {other: "connected"}
                    and peer.sfu_links == {"publisher": "connected", "subscriber": "connected"}
                ),
                f"{peer.user_id} connected again through the SFU",
                TIMEOUT,
            )
        assert second.sfu is not None
        after = second.sfu.janus_state(room)
        assert before is not None and after is not None
        assert after["session"] != before["session"] and after["videoroom"] != before["videoroom"]
        for peer in (a, b):  # told why it published again
            said = [entry["detail"] for entry in peer.log if entry["type"] == "sfu-restart"]
            assert said and "could not be claimed" in said[-1]["reason"], said
        # Told to publish again, each showed the other as connecting until data flowed both ways on the new
        # VideoRoom (the old one's "connected" said nothing of it): wait_members waits for that.
        assert {"B": "connecting"} in shown["A"] and {"A": "connecting"} in shown["B"], shown
        a.wait_members("B", timeout=TIMEOUT)
        b.wait_members("A", timeout=TIMEOUT)
        a.send("on the new VideoRoom").result(TIMEOUT)
        wait_until_sync(
            lambda: "on the new VideoRoom" in [m.data for m in b.messages], "A's message", TIMEOUT
        )
        assert (a.room_mode, b.members) == ("sfu", ["A", "B"])
    finally:
        _close((a, b), first, second)


def test_a_member_that_hangs_up_while_the_server_is_away_is_gone_from_the_room_it_comes_back_as(
    janus: JanusServer,
) -> None:
    # Janus tells of C's publisher hanging up on a session nobody listens to: the restarted server learns it
    # from Janus (listparticipants), waits for nobody that is gone, and tells the others.
    first = _start(janus)
    port = first.port
    a, b, c = (Peer(name, server=first.url, auto_answer=True) for name in "ABC")
    second: SignalingServer | None = None
    try:
        room = _sfu_room(a, b, c)
        kernel.run(_stop(first), timeout=TIMEOUT)
        wait_until_sync(lambda: not a.online and not b.online and not c.online, "the server to be gone")
        freed = janus.log().count("WebRTC resources freed")
        c.close()  # its room-leave has no server to go to
        wait_until_sync(
            lambda: janus.log().count("WebRTC resources freed") >= freed + 2,
            "Janus to see C's links close",
            TIMEOUT,
        )
        second = _start(janus, port)
        started = time.monotonic()
        for peer in (a, b):
            wait_until_sync(
                lambda peer=peer: (
                    peer.members == ["A", "B"]
                    and peer.connections == {"B" if peer is a else "A": "connected"}
                ),
                f"{peer.user_id} to see C gone",
                TIMEOUT,
            )
        took = time.monotonic() - started
        assert took < 10, f"the room waited {took:.1f} s for C, which Janus said was gone"
        said = [entry["detail"] for entry in a.log if entry["type"] == "room-left"]
        assert said and said[-1]["id"] == "C", said
        assert said[-1]["reason"] == "its link to the SFU closed while the server restarted", said
        assert second.sfu is not None
        state = second.sfu.janus_state(room)
        assert state is not None and set(state["feeds"]) == {"A", "B"} and not state["settling"]
        b.send("after C left").result(TIMEOUT)
        wait_until_sync(lambda: "after C left" in [m.data for m in a.messages], "B's message", TIMEOUT)
    finally:
        _close((a, b, c), first, second)


def test_a_member_gone_when_the_room_starts_again_on_a_new_videoroom_is_gone_for_the_others(
    forgetful_janus: JanusServer,
) -> None:
    # The restart outlasts Janus's reclaim timeout: the room starts again on a new VideoRoom, so no subscription
    # on Janus says who was in it. The members' records do: C, which closed while the server was away, never
    # comes back, and once the room's grace has passed the others hear that it left, and stop waiting for it.
    janus = forgetful_janus
    first = _start(janus)
    port = first.port
    a, b, c = (Peer(name, server=first.url, auto_answer=True) for name in "ABC")
    second: SignalingServer | None = None
    try:
        _sfu_room(a, b, c)
        expired = janus.log().count("Timeout expired for session")
        kernel.run(_stop(first), timeout=TIMEOUT)
        wait_until_sync(lambda: not a.online and not b.online and not c.online, "the server to be gone")
        c.close()  # its room-leave has no server to go to
        wait_until_sync(
            lambda: janus.log().count("Timeout expired for session") > expired,
            "Janus to drop the session",
            TIMEOUT,
        )
        grace = 3.0
        second = kernel.run(
            serve(port=port, sfu=janus.url, sfu_secret=janus.api_secret, room_key=KEY, room_grace=grace),
            timeout=TIMEOUT,
        )
        for peer, other in ((a, "B"), (b, "A")):
            wait_until_sync(
                lambda peer=peer, other=other: (
                    peer.members == ["A", "B"] and peer.connections == {other: "connected"}
                ),
                f"{peer.user_id} to see C gone and {other} connected",
                TIMEOUT,
            )
            restarted = [entry["detail"] for entry in peer.log if entry["type"] == "sfu-restart"]
            assert restarted and "could not be claimed" in restarted[-1]["reason"], restarted
            said = [entry["detail"] for entry in peer.log if entry["type"] == "room-left"]
            assert [(s["id"], s["reason"]) for s in said] == [
                ("C", f"it did not come back within {grace:g} s of the server restart")
            ], said
        a.wait_members("B", timeout=TIMEOUT)
        b.send("after C left").result(TIMEOUT)
        wait_until_sync(lambda: "after C left" in [m.data for m in a.messages], "B's message", TIMEOUT)
    finally:
        _close((a, b, c), first, second)


def test_a_member_back_after_the_restored_room_settled_hears_who_left_and_publishes_again(
    janus: JanusServer,
) -> None:
    # Bare members, to choose who comes back when. While the server is away C closes and B's publisher link
    # goes. A comes back: Janus says neither publishes, so the room settles at once and A hears that both left.
    # B comes back only then (a member still, by its credential): it hears that C left, which it missed, and is
    # told to publish again, its feed being gone (its record names it).
    first = _start(janus)
    port = first.port
    a, b, c = (SfuMember(name) for name in "ABC")
    second: SignalingServer | None = None

    async def make_room() -> str:
        for member in (a, b, c):
            await member.open(first.url, secret=member.secret)
        for invitee in (b, c):
            await a.send(type="room-invite", to=invitee.id, sfu=True)
        room = (await a.next("room-state"))["room"]
        for invitee in (b, c):
            await invitee.next("room-invitation")
            await invitee.send(type="room-accept", room=room)
            await invitee.next("room-state")
        await asyncio.gather(*(member.publish(room) for member in (a, b, c)))
        for member in (a, b, c):
            await wait_until(lambda m=member: m.channel.readyState == "open", f"{member.id}'s channel open")
            await wait_until(lambda m=member: m.subscriber.connectionState == "connected", "subscriber links")
        for member in (a, b, c):
            await member.reaches_all([m for m in (a, b, c) if m is not member], f"hello from {member.id}")
        await wait_until(lambda: all(len(record_of(m)["subscribed"]) == 2 for m in (a, b, c)), "records")
        return room

    async def said(member: SfuMember, *types: str) -> list[dict[str, Any]]:
        """What ``member`` was told, once it holds a message of each of ``types``."""
        out: list[dict[str, Any]] = []
        await wait_until(
            lambda: bool(out.extend(member.pending())) or set(types) <= {m["type"] for m in out},
            f"{member.id} to be told {types}",
        )
        return out

    try:
        room = kernel.run(make_room(), timeout=TIMEOUT * 2)
        kernel.run(_stop(first), timeout=TIMEOUT)
        freed = janus.log().count("WebRTC resources freed")
        kernel.run(c.close(), timeout=TIMEOUT)
        kernel.run(b.publisher.close(), timeout=TIMEOUT)
        wait_until_sync(
            lambda: janus.log().count("WebRTC resources freed") >= freed + 3, "Janus to see the links close"
        )
        second = _start(janus, port)
        url = second.url
        assert kernel.run(a.rejoin(url), timeout=TIMEOUT)["type"] == "registered"
        to_a = kernel.run(said(a, "room-state"), timeout=TIMEOUT)
        while sorted(m["id"] for m in to_a if m["type"] == "room-left") != ["B", "C"]:
            to_a += kernel.run(said(a, "room-left"), timeout=TIMEOUT)
        state = second.sfu.janus_state(room)  # type: ignore[union-attr]
        assert state is not None and not state["settling"], state
        assert kernel.run(b.rejoin(url), timeout=TIMEOUT)["type"] == "registered"
        to_b = kernel.run(said(b, "room-state", "room-left", "sfu-restart"), timeout=TIMEOUT)
        assert [m["members"] for m in to_b if m["type"] == "room-state"] == [["A", "B"]], to_b
        left = [(m["id"], m["reason"]) for m in to_b if m["type"] == "room-left"]
        assert left == [("C", "its link to the SFU closed while the server restarted")], to_b
        restart = [m["reason"] for m in to_b if m["type"] == "sfu-restart"]
        assert restart == ["its links to the SFU were not kept after the restart: publish again"], to_b
        joined = kernel.run(said(a, "room-joined"), timeout=TIMEOUT)
        assert [m["id"] for m in joined if m["type"] == "room-joined"] == ["B"]
    finally:
        for member in (a, b, c):
            kernel.run(member.close(), timeout=TIMEOUT)
        _close((), first, second)

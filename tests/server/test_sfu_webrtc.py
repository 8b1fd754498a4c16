"""SFU rooms end to end: a real Janus, a real server with ``sfu=``, members on aiortc exchanging data through it.

Marked ``webrtc``: scripts/test.sh runs these inside the loopback-only network namespace, with the veth
carrying 127.0.0.2 that Janus needs for ICE (docs/rooms.md, "Rooms on an SFU").
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from sfu_support import SfuMember
from support import wait_until

from nbcall.server.limits import DEFAULT_LIMITS
from nbcall.server.server import SignalingServer, serve
from nbcall.teach.janus import JanusServer

pytestmark = pytest.mark.webrtc


async def sfu_room(
    server: SignalingServer,
    *ids: str,
    video: frozenset[str] = frozenset(),
    audio: frozenset[str] = frozenset(),
) -> tuple[str, list[SfuMember]]:
    """Members ``ids`` in one new SFU room, each publishing a data channel (and those in ``video`` a video
    track, those in ``audio`` an audio track): the room's ID and the members."""
    members = [SfuMember(member_id) for member_id in ids]
    for member in members:
        registered = await member.open(server.url)
        assert registered["sfu"] is True
    first = members[0]
    await first.send(type="room-invite", to=members[1].id, sfu=True)
    state = await first.next("room-state")
    room = state["room"]
    assert state["mode"] == "sfu"
    for member in members[2:]:
        await first.send(type="room-invite", to=member.id)
    for member in members[1:]:
        invitation = await member.next("room-invitation")
        assert invitation["sfu"] is True and invitation["room"] == room
        await member.send(type="room-accept", room=room)
        assert (await member.next("room-state"))["mode"] == "sfu"
    await asyncio.gather(
        *(member.publish(room, video=member.id in video, audio=member.id in audio) for member in members)
    )
    return room, members


async def test_members_exchange_data_through_janus(sfu_server: SignalingServer) -> None:
    room, members = await sfu_room(sfu_server, "A", "B", "C")
    try:
        for member in members:
            others = {other.id for other in members if other is not member}
            await wait_until(lambda member=member, others=others: set(member.feeds.values()) == others,
                             f"{member.id} subscribed to {others}", 15)  # fmt: skip
            await wait_until(lambda member=member: member.channel.readyState == "open", "publisher open", 15)
        # Each member's broadcast reaches every other member (labelled by the SFU with its feed), never itself.
        for member in members:
            await wait_until(lambda member=member: member.subscriber.connectionState == "connected",
                             f"{member.id}'s subscriber link", 15)  # fmt: skip
        for member in members:
            for other in members:
                if other is not member:
                    await member.reaches(other, f"hello from {member.id}")
        for member in members:
            expected = {(other.id, f"hello from {other.id}") for other in members if other is not member}
            await wait_until(lambda member=member, expected=expected: set(member.received) >= expected,
                             f"{member.id} got {expected}", 10)  # fmt: skip
            assert all(sender != member.id for sender, _ in member.received)
        # A directed send goes through the server, to its target only.
        a, b, c = members
        await a.send(type="room-message", room=room, to="B", data={"secret": 42})
        assert await b.next("room-message") == {
            "type": "room-message",
            "room": room,
            "from": "A",
            "to": "B",
            "data": {"secret": 42},
        }
        await a.send(type="room-message", room=room, to="C", data="for C")
        assert (await c.next("room-message"))["data"] == "for C"
        assert not [msg for msg in b.pending() if msg["type"] == "room-message"]
    finally:
        for member in members:
            await member.close()


async def test_janus_gets_an_answer_to_its_sctp_init_on_every_subscriber_link(janus: JanusServer) -> None:
    """Both ends of a data channel send an SCTP INIT (RFC 8841). Janus, the DTLS server of a subscriber link,
    sends its own right behind its last handshake flight; nbcall's DTLS transport read both in one batch before
    its SCTP transport had started and dropped the INIT (in about 2 links of 5), which Janus then sent again."""
    async with await serve(sfu=janus.url, sfu_secret=janus.api_secret) as server:
        _, members = await sfu_room(server, "A", "B", "C", "D", "E", "F")
        try:
            for member in members:
                await wait_until(lambda member=member: member.subscriber.sctp.state == "connected",
                                 f"{member.id}'s subscriber association", 15)  # fmt: skip
            assert [member.id for member in members if member.inits == 0] == []
        finally:
            for member in members:
                await member.close()


async def test_a_member_leaving_or_losing_its_link_leaves_the_others_exchanging(
    sfu_server: SignalingServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    room, members = await sfu_room(sfu_server, "A", "B", "C", "D")
    a, b, c, d = members
    try:
        for member in members:
            await wait_until(lambda member=member: len(member.feeds) == 3
                             and member.subscriber.connectionState == "connected",
                             f"{member.id} subscribed to 3", 15)  # fmt: skip
        # B leaves: its feed leaves the others' subscriptions.
        await b.send(type="room-leave", room=room)
        assert (await a.next("room-left"))["id"] == "B"
        for member in (a, c, d):
            await wait_until(
                lambda member=member: "B" not in member.feeds.values(), f"B out of {member.id}'s feeds"
            )
        # C's browser goes away (its links close, its signaling stays): C stays a member, its feed goes.
        await c.publisher.close()
        for member in (a, d):
            await wait_until(
                lambda member=member: "C" not in member.feeds.values(), f"C out of {member.id}'s feeds"
            )
        assert sfu_server.protocol.rooms.members(room) == ["A", "C", "D"]
        # A and D still exchange through Janus.
        await wait_until(lambda: d.subscriber.connectionState == "connected", "D's subscriber link", 15)
        await a.reaches(d, "still here")
        # Nothing secret reached the log: not the API secret, nor any room's pin or token.
        bridge = sfu_server.sfu
        assert bridge is not None
        for secret in bridge.secrets():
            assert secret not in caplog.text
    finally:
        for member in members:
            await member.close()


async def test_a_room_of_max_sfu_room_size_members_connects_and_broadcasts(janus: JanusServer) -> None:
    size = DEFAULT_LIMITS.max_sfu_room_size
    assert size is not None
    async with await serve(sfu=janus.url, sfu_secret=janus.api_secret) as server:
        ids = [f"M{n:02d}" for n in range(size)]
        _, members = await sfu_room(server, *ids)
        try:
            for member in members:
                await wait_until(
                    lambda member=member: (
                        len(member.feeds) == size - 1 and member.subscriber.connectionState == "connected"
                    ),
                    f"{member.id} subscribed to the {size - 1} others",
                    30,
                )
            # Every subscriber answer (the largest message a member sends) is far within max_message_size.
            limit = DEFAULT_LIMITS.max_message_size
            assert limit is not None
            assert max(len(member.subscriber.localDescription.sdp) for member in members) < limit // 8
            # A link connected is not yet a link Janus relays to (SfuMember.reaches_all): wait until every member
            # got something from M00 through Janus, as a Peer's hello does. Then one broadcast reaches all, once.
            first, others = members[0], members[1:]
            await first.reaches_all(others, "hello", 30)
            first.channel.send("to everyone")
            for member in others:
                await wait_until(
                    lambda member=member: ("M00", "to everyone") in member.received, f"{member.id} got it", 10
                )
            assert [member.received.count(("M00", "to everyone")) for member in others] == [1] * (size - 1)
        finally:
            for member in members:
                await member.close()


async def test_a_presenters_video_reaches_the_others_and_a_view_leaves_out_its_video_not_its_audio(
    sfu_server: SignalingServer,
) -> None:
    room, members = await sfu_room(sfu_server, "A", "B", "C", video=frozenset("A"), audio=frozenset("A"))
    a, b, c = members
    try:
        for viewer in (b, c):
            await wait_until(
                lambda viewer=viewer: sorted(_kinds_of(viewer, "A")) == ["audio", "video"],
                f"{viewer.id} offered A's video and audio",
                15,
            )
            for mid in (mid for mid, member in viewer.mids.items() if member == "A"):
                await wait_until(
                    lambda viewer=viewer, mid=mid: mid in viewer.tracks, f"{viewer.id} got A's tracks", 15
                )
            # Frames themselves are not awaited here: on this machine, aiortc now and then receives no RTP on a
            # subscriber link that Janus offered and started correctly (the browser tests check the pictures).
        # C shows no tile for A: it takes A's data and audio (a grid hears every member), not its video.
        offers = c.offers
        await c.send(type="sfu-view", room=room, video=[])
        await wait_until(
            lambda: c.offers > offers and "video" not in _kinds_of(c, "A"), "C's link without A's video", 15
        )
        assert _kinds_of(c, "A") == ["audio"] and sorted(_kinds_of(b, "A")) == ["audio", "video"]
        assert set(c.feeds.values()) == {"A", "B"}
        # A's data still reaches C over the renegotiated link.
        await a.reaches(c, "data still")
        await c.send(type="sfu-view", room=room, video="A")
        error = await c.next("error")
        assert error["code"] == "bad-message" and "'video'" in error["message"]
    finally:
        for member in members:
            await member.close()


async def test_a_member_publishing_again_from_new_connections_is_back_in_the_exchange(
    sfu_server: SignalingServer,
) -> None:
    room, members = await sfu_room(sfu_server, "A", "B")
    a, b = members
    try:
        for member in members:
            await wait_until(lambda member=member: member.subscriber.connectionState == "connected",
                             f"{member.id} subscribed", 15)  # fmt: skip
        old_feed = next(iter(a.feeds))
        # B's page reloads: its old connections close, and it publishes from new ones.
        await b.publisher.close()
        await b.subscriber.close()
        answer = await b.publish(room)
        assert answer["feed"] != old_feed
        await wait_until(lambda: list(a.feeds) == [answer["feed"]], "A subscribed to B's new feed", 15)
        await wait_until(lambda: "A" in b.feeds.values(), "B subscribed to A again", 15)
        await a.reaches(b, "welcome back")
        await b.reaches(a, "thanks")
    finally:
        for member in members:
            await member.close()


def _kinds_of(viewer: SfuMember, member: str) -> list[str]:
    """The kinds of the media streams of ``member`` in ``viewer``'s last subscriber offer."""
    return [viewer.kinds[mid] for mid, who in viewer.mids.items() if who == member]

"""SFU rooms end to end: a real Janus, a real server with ``sfu=``, members on aiortc exchanging data through it.

Marked ``webrtc``: scripts/test.sh runs these inside the loopback-only network namespace, with the veth
carrying 127.0.0.2 that Janus needs for ICE (docs/rooms.md, "Rooms on an SFU").
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from sfu_support import SfuMember, janus_or_skip
from support import wait_until

from nbcall.server.server import SignalingServer, serve
from nbcall.teach.janus import JanusServer

pytestmark = pytest.mark.webrtc


@pytest.fixture(scope="module")
def janus() -> Iterator[JanusServer]:
    with janus_or_skip(media=True) as server:
        yield server


@pytest.fixture
async def sfu_server(janus: JanusServer) -> AsyncIterator[SignalingServer]:
    async with await serve(sfu=janus.url, sfu_secret=janus.api_secret) as server:
        yield server


async def sfu_room(server: SignalingServer, *ids: str) -> tuple[str, list[SfuMember]]:
    """Members ``ids`` in one new SFU room, each publishing a data channel: the room's ID and the members."""
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
    await asyncio.gather(*(member.publish(room) for member in members))
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
        await asyncio.sleep(0.5)  # the relayed channels open on the subscribers
        for member in members:
            member.channel.send(f"hello from {member.id}")
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

"""An SFU room whose node dies, taken over by another node of the deployment (docs/rooms.md, "An SFU room across
a restart"): real redis-server, two ``nbcall serve --redis --sfu`` processes, real Janus, members on aiortc.
The room's data keeps flowing through Janus while its node is gone, and the node its members come back to
claims the room's Janus session from their records: the same VideoRoom, the same feeds, nobody publishes again.

Marked ``webrtc``: run in the network namespace with the veth carrying 127.0.0.2 (Janus needs it for ICE).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sfu_support import SfuMember, janus_or_skip, record_of
from support import TIMEOUT, Node, RedisServer, wait_until

from nbcall.server.janus import JanusSession
from nbcall.teach.janus import JanusServer

pytestmark = [
    pytest.mark.webrtc,
    pytest.mark.skipif(
        __import__("shutil").which("redis-server") is None,
        reason="needs redis-server (scripts/test.sh installs it)",
    ),
]


@pytest.fixture(scope="module")
def janus() -> Iterator[JanusServer]:
    with janus_or_skip(media=True) as server:
        yield server


@pytest.fixture
def nodes(redis_server: RedisServer, janus: JanusServer, tmp_path: Path) -> Iterator[list[Node]]:
    sfu = ("--sfu", janus.url, "--sfu-secret", janus.api_secret)
    started = [Node(redis_server.url, name, tmp_path, extra=sfu) for name in ("n1", "n2")]
    yield started
    for node in started:
        node.stop()


def numbers(member: SfuMember, sender: str) -> list[int]:
    return [int(text[1:]) for who, text in list(member.received) if who == sender and text.startswith("n")]


async def participants(janus: JanusServer, videoroom: int) -> dict[int, str]:
    """The publishers of ``videoroom`` as Janus lists them: feed -> display name (the member's ID)."""
    session = await JanusSession.open(janus.url, janus.api_secret, lambda *_: None, lambda _: None)
    try:
        handle = await session.attach("janus.plugin.videoroom")
        data, _ = await session.message(handle, {"request": "listparticipants", "room": videoroom})
        return {p["id"]: p["display"] for p in data["participants"] if p.get("publisher")}
    finally:
        await session.destroy()


async def test_the_node_holding_an_sfu_room_dies_and_the_next_node_drives_the_same_janus_session(
    nodes: list[Node], janus: JanusServer
) -> None:
    n1, n2 = nodes
    a, b = SfuMember("A"), SfuMember("B")
    try:
        for member in (a, b):
            await member.open(n1.url, secret=member.secret)
        await a.send(type="room-invite", to="B", sfu=True)
        room = (await a.next("room-state"))["room"]
        await b.send(type="room-accept", room=room)
        await b.next("room-state")
        await asyncio.gather(a.publish(room), b.publish(room))
        for member in (a, b):
            await wait_until(lambda member=member: member.channel.readyState == "open", "publisher open", 15)
            await wait_until(lambda member=member: member.subscriber.connectionState == "connected",
                             f"{member.id}'s subscriber link", 15)  # fmt: skip
        await a.reaches(b, "hello")
        await b.reaches(a, "hello back")
        await wait_until(lambda: a.record and b.record and record_of(a)["subscribed"], "both hold records")
        videoroom = record_of(a)["videoroom"]
        before = await participants(janus, videoroom)
        assert sorted(before.values()) == ["A", "B"]

        sent = 0

        async def count() -> None:
            nonlocal sent
            while True:
                a.channel.send(f"n{sent}")
                sent += 1
                await asyncio.sleep(0.05)

        counter = asyncio.create_task(count())
        try:
            await wait_until(lambda: len(numbers(b, "A")) >= 5, "B receives A's numbers")
            n1.kill()
            killed = time.monotonic()
            # Through Janus alone: the numbers keep coming with no node driving the room.
            await wait_until(lambda: max(numbers(b, "A")) >= sent - 1 and time.monotonic() > killed + 1.5,
                             "numbers while the room's node is gone")  # fmt: skip
            taken_over = time.monotonic()
            for member in (a, b):
                assert (await member.rejoin(n2.url))["type"] == "registered"
            for member in (a, b):
                state = await member.next("room-state", TIMEOUT)
                assert state["rejoined"] and state["mode"] == "sfu"
            await wait_until(lambda: "claimed SFU room" in n2.log.read_text(), "node 2 claims the session")
            back = time.monotonic() - taken_over
            await asyncio.sleep(1)
        finally:
            counter.cancel()
        await wait_until(lambda: max(numbers(b, "A")) == sent - 1, "the last number")
        assert numbers(b, "A") == list(range(sent)), "a number was lost or reordered through the takeover"
        print(f"\ntakeover: both members back in the room on node 2 {back * 1000:.0f} ms after they reconnected; "
              f"{sent} numbers, none lost")  # fmt: skip
        # Nobody was asked to publish again: the same VideoRoom and feeds in Janus, no sfu-restart.
        assert await participants(janus, videoroom) == before
        assert [m["type"] for m in a.pending() + b.pending() if m["type"] == "sfu-restart"] == []
        log = n2.log.read_text()
        assert "could not claim" not in log and janus.api_secret not in log
        # Node 2 drives the room: data both ways, then a leave takes A's feed out of the VideoRoom.
        await b.reaches(a, "after the takeover")
        await a.send(type="room-leave", room=room)
        left = await b.next("room-left")
        assert left["id"] == "A"
        await wait_until_async_participants(janus, videoroom, ["B"])
    finally:
        for member in (a, b):
            await member.close()


async def wait_until_async_participants(janus: JanusServer, videoroom: int, names: list[str]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while sorted((await participants(janus, videoroom)).values()) != names:
        assert time.monotonic() < deadline, f"the VideoRoom's publishers never became {names}"
        await asyncio.sleep(0.2)

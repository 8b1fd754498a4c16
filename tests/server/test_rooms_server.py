"""Rooms over real sockets: a server on port 0, real websockets clients, on both message paths.

Each rule is tested in test_rooms_protocol.py; these show what only a running server can: the
messages reach the right sockets, and the server's clock expires invitations and absent members.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from support import OFFER, TIMEOUT, free_port, wait_until
from websockets.asyncio.client import ClientConnection, connect

import nbcall.server.server
from nbcall.server import fastpath
from nbcall.server.room_model import new_room_id, room_credential
from nbcall.server.server import SignalingServer

Serve = Callable[..., Any]

CANDIDATE = json.dumps(
    {"candidate": "candidate:1 1 udp 2122260223 192.168.1.2 50000 typ host", "sdpMid": "0"}
)


@pytest.fixture(params=[True, False], ids=["fast-path", "public-api"])
def serve(request: pytest.FixtureRequest) -> Serve:
    """``nbcall.server.serve`` on nbcall's fast path, then on websockets' public API."""
    if request.param and (why := fastpath.unavailable_reason()) is not None:
        pytest.skip(f"no fast path: {why}")
    return functools.partial(nbcall.server.serve, fast_path=request.param)


async def recv(ws: ClientConnection) -> dict[str, Any]:
    """The next message, decoded; fails the test if none arrives in time."""
    return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))


async def send(ws: ClientConnection, **fields: Any) -> None:
    await ws.send(json.dumps(fields))


async def register(ws: ClientConnection, peer_id: str, **fields: Any) -> dict[str, Any]:
    await send(ws, type="register", rooms=True, secret=f"secret-of-{peer_id}", **{"from": peer_id}, **fields)
    msg = await recv(ws)
    assert msg == {"type": "registered", "id": peer_id}, msg
    return msg


@asynccontextmanager
async def phones(server: SignalingServer, *names: str) -> AsyncIterator[list[ClientConnection]]:
    """Clients registered with rooms (and a secret each), without presence news."""
    clients: list[ClientConnection] = []
    try:
        for name in names:
            clients.append(await connect(server.url))
            await register(clients[-1], name)
        yield clients
    finally:
        for client in clients:
            await client.close()


def without_credential(state: dict[str, Any], credentials: dict[str, str] | None = None) -> dict[str, Any]:
    """A ``room-state`` without the member's credential (kept in ``credentials``, by the room's last member)."""
    credential = state.pop("credential")
    assert isinstance(credential, str) and 20 < len(credential) < 100, credential
    if credentials is not None:
        credentials[state["members"][-1]] = credential
    return state


async def form_room(
    creator: ClientConnection,
    *joiners: tuple[ClientConnection, str],
    credentials: dict[str, str] | None = None,
) -> str:
    """``creator`` invites each joiner, who accepts; every member's notices are consumed."""
    await send(creator, type="room-invite", to=joiners[0][1])
    state = without_credential(await recv(creator), credentials)
    assert state["type"] == "room-state", state
    room: str = state["room"]
    members = state["members"]
    for ws, name in joiners[1:]:
        await send(creator, type="room-invite", to=name)
    for ws, name in joiners:
        invitation = await recv(ws)
        assert invitation["type"] == "room-invitation" and invitation["room"] == room, invitation
    for ws, name in joiners:
        await send(ws, type="room-accept", room=room)
        members = [*members, name]
        assert without_credential(await recv(ws), credentials) == {
            "type": "room-state",
            "mode": "mesh",
            "room": room,
            "members": members,
        }
        for other, _ in [(creator, None), *joiners[: len(members) - 2]]:
            assert await recv(other) == {"type": "room-joined", "room": room, "id": name}
    return room


async def test_four_phones_form_a_room_and_relay_offers_and_candidates_between_members(serve: Serve) -> None:
    async with (
        await serve() as server,
        phones(server, "A", "B", "C", "D") as (a, b, c, d),
        connect(server.url) as seed,
    ):
        await send(seed, type="register", **{"from": "Seed"})
        assert await recv(seed) == {"type": "registered", "id": "Seed"}
        room = await form_room(a, (b, "B"), (c, "C"), (d, "D"))
        assert server.protocol.rooms.members(room) == ["A", "B", "C", "D"]
        # The last joiner offers to each member already there; they answer; candidates flow.
        for member, name in ((a, "A"), (b, "B"), (c, "C")):
            offer = json.dumps({"type": "call", "from": "D", "to": name, "sdp": OFFER, "room": room})
            await d.send(offer)
            assert await asyncio.wait_for(member.recv(), TIMEOUT) == offer  # forwarded untouched
            await send(member, type="answer", to="D", sdp=OFFER, room=room)
            assert (await recv(d))["from"] == name
            await send(d, type="ice", to=name, candidate=CANDIDATE, room=room)
            assert await recv(member) == {
                "type": "ice", "from": "D", "to": name, "candidate": CANDIDATE, "room": room
            }  # fmt: skip
        # The seed client heard nothing of it: the next thing it receives is a 1:1 call.
        await send(a, type="call", to="Seed", sdp=OFFER)
        assert await recv(seed) == {"type": "call", "from": "A", "to": "Seed", "sdp": OFFER}
        await send(a, type="room-invite", to="Seed")
        assert (await recv(a))["code"] == "no-rooms"


async def test_a_non_members_relay_and_invite_are_refused_with_their_codes(serve: Serve) -> None:
    async with await serve() as server, phones(server, "A", "B", "Eve") as (a, b, eve):
        room = await form_room(a, (b, "B"))
        await send(eve, type="call", to="A", sdp=OFFER, room=room)
        refused = await recv(eve)
        assert (refused["type"], refused["code"], refused["in_reply_to"]) == ("error", "not-a-member", "call")
        await send(eve, type="room-invite", to="B", room=room)
        refused = await recv(eve)
        assert (refused["code"], refused["in_reply_to"]) == ("not-a-member", "room-invite")
        await send(a, type="ice", to="Eve", candidate=CANDIDATE, room=room)
        assert (await recv(a))["code"] == "not-a-member"
        # Nothing reached the members, and the room is as it was.
        await send(a, type="call", to="B", sdp=OFFER, room=room)
        assert (await recv(b))["from"] == "A"
        assert server.protocol.rooms.members(room) == ["A", "B"]


async def test_an_unanswered_invitation_expires_declined_to_the_inviter_and_cancelled_to_the_invitee(
    serve: Serve,
) -> None:
    async with await serve(invitation_ttl=0.3) as server, phones(server, "A", "B", "C") as (a, b, c):
        room = await form_room(a, (b, "B"))
        await send(b, type="room-invite", to="C")
        assert (await recv(c))["type"] == "room-invitation"
        started = asyncio.get_running_loop().time()
        expired = "the invitation expired"
        assert await recv(b) == {"type": "room-declined", "room": room, "id": "C", "reason": expired}
        assert await recv(c) == {"type": "room-cancelled", "room": room, "from": "B", "reason": expired}
        assert asyncio.get_running_loop().time() - started >= 0.3
        await send(c, type="room-accept", room=room)
        assert (await recv(c))["code"] == "invitation-expired"
        assert server.protocol.rooms.members(room) == ["A", "B"]


async def test_a_member_gone_longer_than_the_grace_is_reported_left_to_the_others(serve: Serve) -> None:
    async with await serve(room_grace=0.3) as server, phones(server, "A", "B", "C") as (a, b, c):
        room = await form_room(a, (b, "B"), (c, "C"))
        c.transport.abort()  # C's network goes away without a closing handshake
        await wait_until(lambda: server.protocol.peers == ["A", "B"], "C's connection is noticed gone")
        assert server.protocol.rooms.members(room) == ["A", "B", "C"]  # still a member, within its grace
        for ws in (a, b):
            msg = await recv(ws)
            assert msg["type"] == "room-left" and msg["id"] == "C", msg
            assert msg["reason"] == "its signaling connection was gone longer than 0.3 s"
        assert server.protocol.rooms.members(room) == ["A", "B"]


async def test_a_member_reconnecting_within_the_grace_with_its_secret_keeps_its_place(serve: Serve) -> None:
    async with await serve(room_grace=0.5) as server, phones(server, "A", "B", "C") as (a, b, c):
        room = await form_room(a, (b, "B"), (c, "C"))
        b.transport.abort()
        await wait_until(lambda: server.protocol.peers == ["A", "C"], "B's connection is noticed gone")
        c.transport.abort()  # C goes too, after B, and stays away: the witness that B's grace has passed
        async with connect(server.url) as b2:
            await register(b2, "B", room=room, members=["A", "B", "C"])
            rejoined = {
                "type": "room-state",
                "mode": "mesh",
                "room": room,
                "members": ["A", "B", "C"],
                "rejoined": True,
            }
            assert without_credential(await recv(b2)) == rejoined
            # A's next room news is C's departure, not B's: B kept its place.
            msg = await recv(a)
            assert (msg["type"], msg["id"]) == ("room-left", "C"), msg
            assert (await recv(b2))["id"] == "C"
            assert server.protocol.rooms.members(room) == ["A", "B"]
            await send(b2, type="ice", to="A", candidate=CANDIDATE, room=room)
            assert (await recv(a))["type"] == "ice"


KEY = "a room key of the deployment, kept secret"


async def test_after_a_server_restart_members_re_create_the_room_under_the_same_id(serve: Serve) -> None:
    port = free_port()
    credentials: dict[str, str] = {}
    async with await serve(port=port, room_key=KEY) as server, phones(server, "A", "B", "C") as (a, b, c):
        room = await form_room(a, (b, "B"), (c, "C"), credentials=credentials)
    async with await serve(port=port, room_key=KEY) as server:
        assert server.protocol.rooms.rooms == []

        def claim(member: str) -> dict[str, Any]:
            return {"room": room, "members": ["A", "B", "C"], "credential": credentials[member]}

        async with connect(server.url) as b, connect(server.url) as a, connect(server.url) as c:
            await register(b, "B", **claim("B"))
            assert without_credential(await recv(b)) == {
                "type": "room-state", "mode": "mesh", "room": room, "members": ["B"], "rejoined": True
            }  # fmt: skip
            await register(a, "A", **claim("A"))
            assert without_credential(await recv(a)) == {
                "type": "room-state",
                "mode": "mesh",
                "room": room,
                "members": ["B", "A"],
                "rejoined": True,
            }
            assert await recv(b) == {"type": "room-joined", "room": room, "id": "A"}
            await register(c, "C", **claim("C"))
            assert (await recv(c))["members"] == ["B", "A", "C"]
            for ws in (b, a):
                assert await recv(ws) == {"type": "room-joined", "room": room, "id": "C"}
            assert server.protocol.rooms.rooms == [room]
            await send(c, type="call", to="A", sdp=OFFER, room=room)
            assert (await recv(a))["from"] == "C"


async def test_after_a_restart_a_declined_invitee_cannot_re_create_the_room_nor_end_up_in_it(
    serve: Serve,
) -> None:
    """Issue 16's reproduction: V declined, then claims the room first after the restart."""
    port = free_port()
    credentials: dict[str, str] = {}
    async with await serve(port=port, room_key=KEY) as server, phones(server, "A", "B", "V") as (a, b, v):
        await send(a, type="room-invite", to="B")
        room = without_credential(await recv(a), credentials)["room"]
        await send(a, type="room-invite", to="V")
        for ws in (b, v):
            assert (await recv(ws))["type"] == "room-invitation"
        await send(v, type="room-decline", room=room)
        await send(b, type="room-accept", room=room)
        without_credential(await recv(b), credentials)
    async with (
        await serve(port=port, room_key=KEY) as server,
        connect(server.url) as v,
        connect(server.url) as a,
        connect(server.url) as b,
    ):
        for members in (["A", "B"], []):  # naming the members, or nobody (to deny them their room)
            await register(v, "V", room=room, members=members)
            refused = await recv(v)
            assert (refused["type"], refused["code"]) == ("error", "not-a-member"), refused
            assert "nothing shows that you were a member" in refused["message"]
        assert server.protocol.rooms.rooms == []
        for ws, name in ((a, "A"), (b, "B")):
            await register(ws, name, room=room, members=["A", "B"], credential=credentials[name])
            assert (await recv(ws))["rejoined"] is True
        assert server.protocol.rooms.members(room) == ["A", "B"]
        await send(v, type="call", to="A", sdp=OFFER, room=room)
        assert (await recv(v))["code"] == "not-a-member"


async def test_without_a_room_key_the_members_hear_that_the_room_ended_with_the_restart(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    credentials: dict[str, str] = {}
    async with await serve(port=port) as server, phones(server, "A", "B") as (a, b):
        room = await form_room(a, (b, "B"), credentials=credentials)
    async with await serve(port=port) as server, connect(server.url) as a:
        await register(a, "A", room=room, members=["A", "B"], credential=credentials["A"])
        ended = await recv(a)
        assert (ended["type"], ended["room"]) == ("room-ended", room)
        assert ended["reason"].startswith("the room ended with the server restart")
        assert server.protocol.rooms.rooms == []
    assert "rooms cannot be re-established" in caplog.text


async def test_an_id_lost_without_a_close_frame_is_held_for_its_secret_a_closed_one_is_freed(
    serve: Serve,
) -> None:
    async with await serve(id_grace=30) as server, phones(server, "A", "B") as (a, b):
        b.transport.abort()  # B's network goes away: no close frame
        await wait_until(lambda: server.protocol.peers == ["A"], "B's connection is noticed gone")
        async with connect(server.url) as stranger:
            await send(stranger, type="register", **{"from": "B"})
            refused = await recv(stranger)
            assert refused["code"] == "duplicate-id", refused
            assert "held for the phone whose connection was lost, for 30 s more" in refused["message"]
            await send(a, type="call", to="B", sdp=OFFER)
            assert (await recv(a))["type"] == "unavailable"
        async with connect(server.url) as b2:
            await register(b2, "B")  # its secret: back at once
            await send(a, type="call", to="B", sdp=OFFER)
            assert (await recv(b2))["from"] == "A"
            await b2.close()  # a close frame: freed at once
            await wait_until(lambda: server.protocol.peers == ["A"], "B's close is noticed")
        async with connect(server.url) as other:
            await send(other, type="register", **{"from": "B"})
            assert await recv(other) == {"type": "registered", "id": "B"}


async def test_unavailable_lists_online_ids_only_to_presence_and_long_room_ids_are_not_echoed(
    serve: Serve,
) -> None:
    async with await serve() as server, phones(server, "A", "Secret-name") as (a, _):
        await send(a, type="call", to="nobody", sdp=OFFER)
        reply = await recv(a)
        assert reply["type"] == "unavailable" and "Secret-name" not in reply["message"], reply
        async with connect(server.url) as watcher:
            await send(watcher, type="register", presence=True, **{"from": "W"})
            await recv(watcher)
            await send(watcher, type="call", to="nobody", sdp=OFFER)
            assert "online: A, Secret-name" in (await recv(watcher))["message"]
        await send(a, type="call", to="Secret-name", sdp=OFFER, room="r" * 20_000)
        refused = await recv(a)
        assert refused["code"] == "not-a-member" and len(refused["message"]) < 300, len(refused["message"])


async def test_unproven_room_claims_are_bounded_per_address_and_dropped_when_nobody_rejoins(
    serve: Serve,
) -> None:
    async with await serve(room_key=KEY, max_room_claims=2, room_grace=0.5) as server:
        rooms = [new_room_id() for _ in range(3)]
        clients = [await connect(server.url) for _ in rooms]
        try:
            for n, (ws, room) in enumerate(zip(clients, rooms)):
                # Signed as the server before the restart signed them: claims by members, each from 127.0.0.1.
                await register(
                    ws, f"M{n}", room=room, credential=room_credential(KEY.encode(), room, f"M{n}", 0)
                )
                reply = await recv(ws)
            assert (reply["code"], reply["in_reply_to"]) == ("too-many-claims", "register"), reply
            assert "max_room_claims=2" in reply["message"]
            assert server.protocol.rooms.rooms == rooms[:2]
            for ws in clients[:2]:
                ended = await recv(ws)
                assert ended["type"] == "room-ended", ended
                assert ended["reason"] == "nobody else came back within 0.5 s of the server restart"
            assert server.protocol.rooms.rooms == []
        finally:
            for ws in clients:
                await ws.close()


async def test_with_room_grace_0_a_member_whose_connection_is_lost_is_removed_at_once(serve: Serve) -> None:
    async with await serve(room_grace=0) as server, phones(server, "A", "B") as (a, b):
        room = await form_room(a, (b, "B"))
        b.transport.abort()
        left = await recv(a)  # at the next ticks (about a second), not never
        assert (left["type"], left["id"]) == ("room-left", "B"), left
        assert server.protocol.rooms.members(room) == ["A"]

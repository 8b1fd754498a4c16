"""Several `nbcall serve --redis` processes as one deployment: a real redis-server, real nodes, real websockets.

Heartbeats and the registry's TTL are shortened (0.25 s and 1 s) so that faults play out in seconds.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import TIMEOUT, Node, RedisServer, wait_until
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from nbcall.call.client import SignalingClient

pytestmark = pytest.mark.skipif(
    __import__("shutil").which("redis-server") is None,
    reason="needs redis-server (scripts/test.sh installs it)",
)


def two_nodes(
    redis_server: RedisServer, tmp_path: Path, names: tuple[str, str], room_grace: str
) -> Iterator[list[Node]]:
    """Two nodes sharing ``redis_server``, stopped at the end."""
    started = [Node(redis_server.url, name, tmp_path, extra=("--room-grace", room_grace)) for name in names]
    yield started
    for node in started:
        node.stop()


@pytest.fixture
def nodes(redis_server: RedisServer, tmp_path: Path) -> Iterator[list[Node]]:
    # A room member's grace shortened too, to 1 s.
    yield from two_nodes(redis_server, tmp_path, ("n1", "n2"), "1")


async def recv(ws: ClientConnection, timeout: float = TIMEOUT) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_until(ws: ClientConnection, msg_type: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    """The next message of ``msg_type``, skipping presence news and others."""
    deadline = time.monotonic() + timeout
    while True:
        msg = await recv(ws, max(0.01, deadline - time.monotonic()))
        if msg["type"] == msg_type:
            return msg


async def phone(
    node: Node, peer_id: str, closing: list[ClientConnection], **fields: Any
) -> tuple[ClientConnection, dict[str, Any]]:
    """A connection to ``node`` (closed at the end of the test with ``closing``) that registered as ``peer_id``,
    and the server's reply."""
    ws = await connect(node.url)
    closing.append(ws)
    await ws.send(json.dumps({"type": "register", "from": peer_id, **fields}))
    return ws, await recv(ws)


@pytest.fixture
async def closing() -> AsyncIterator[list[ClientConnection]]:
    """Connections to close at the end of the test."""
    opened: list[ClientConnection] = []
    yield opened
    for ws in opened:
        await ws.close()


async def test_an_id_is_unique_across_nodes_and_reclaimed_only_with_its_secret(
    nodes: list[Node], closing: list[ClientConnection]
) -> None:
    n1, n2 = nodes
    a, reply = await phone(n1, "A", closing, secret="s3cret")
    assert reply == {"type": "registered", "id": "A"}
    for fields in ({}, {"secret": "wrong"}):
        _, reply = await phone(n2, "A", closing, **fields)
        assert reply["type"] == "error" and reply["code"] == "duplicate-id", reply
        assert "another server node (n1)" in reply["message"]
    # The same phone (same secret) takes its ID over on the other node; its old connection is closed.
    _, reply = await phone(n2, "A", closing, secret="s3cret")
    assert reply == {"type": "registered", "id": "A"}
    with pytest.raises(ConnectionClosed) as closed:
        await recv(a)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert "on another server node" in closed.value.rcvd.reason


async def test_presence_lists_merge_and_news_crosses_nodes(
    nodes: list[Node], closing: list[ClientConnection]
) -> None:
    n1, n2 = nodes
    a, reply = await phone(n1, "A", closing, presence=True)
    assert reply["peers"] == []
    c, _ = await phone(n1, "C", closing)
    b, reply = await phone(n2, "B", closing, presence=True)
    assert reply["peers"] == ["A", "C"]
    assert await recv_until(a, "joined") == {"type": "joined", "id": "C"}
    assert await recv_until(a, "joined") == {"type": "joined", "id": "B"}
    await c.close()
    assert await recv_until(b, "left") == {"type": "left", "id": "C"}


async def test_a_call_crosses_nodes_in_order_without_duplicates_and_unknown_peers_are_unavailable(
    nodes: list[Node], closing: list[ClientConnection]
) -> None:
    n1, n2 = nodes
    a, _ = await phone(n1, "A", closing, presence=True)
    b, _ = await phone(n2, "B", closing)
    assert await recv(a) == {"type": "joined", "id": "B"}  # A's node knows where B is
    sent = [json.dumps({"type": "call", "from": "A", "to": "B", "sdp": '{"n": 0}'})]
    sent += [
        json.dumps({"type": "ice", "from": "A", "to": "B", "candidate": json.dumps({"n": n})})
        for n in range(1, 150)
    ]
    for frame in sent:
        await a.send(frame)
    received = [await asyncio.wait_for(b.recv(), TIMEOUT) for _ in sent]
    assert received == sent  # the very frames, in order
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(b.recv(), 0.3)  # and not one more
    await b.send(json.dumps({"type": "answer", "to": "A", "sdp": "{}"}))
    assert await recv(a) == {"type": "answer", "to": "A", "sdp": "{}", "from": "B"}
    # Nobody by that name on any node: the same answer as on one node.
    await a.send(json.dumps({"type": "call", "to": "nobody", "sdp": "{}"}))
    reply = await recv(a)
    assert reply["type"] == "unavailable" and reply["peer"] == "nobody" and reply["in_reply_to"] == "call"


async def test_a_message_to_a_phone_that_left_its_node_meanwhile_comes_back_unavailable(
    nodes: list[Node], closing: list[ClientConnection]
) -> None:
    n1, n2 = nodes
    a, _ = await phone(n1, "A", closing)
    b, _ = await phone(n2, "B", closing)
    await b.close()
    # Sent right away: node 1 may not have heard yet that B left, and still publishes to node 2, which
    # answers `unavailable` in B's place. Either way A hears it.
    await a.send(json.dumps({"type": "ice", "to": "B", "candidate": "{}"}))
    reply = await recv(a)
    assert reply["type"] == "unavailable" and reply["peer"] == "B", reply


async def test_a_killed_node_s_phones_fail_over_keep_their_ids_and_its_others_expire(
    nodes: list[Node], closing: list[ClientConnection]
) -> None:
    n1, n2 = nodes
    watcher, _ = await phone(n2, "W", closing, presence=True)
    await phone(n1, "gone", closing)  # a phone that will not come back
    states: list[tuple[bool, Any]] = []
    online = threading.Event()
    loop = asyncio.get_running_loop()

    received: list[dict[str, Any]] = []
    client = SignalingClient([n1.url, n2.url], "P", reconnect_delays=(0.25, 0.5, 1))
    registered = await client.register()
    assert registered["type"] == "registered" and client.url == n1.url

    def on_state(up: bool, detail: Any) -> None:
        states.append((up, detail))
        if up:
            loop.call_soon_threadsafe(online.set)

    client.start(lambda message, size: received.append(message), on_state)
    killed = time.monotonic()
    n1.kill()
    await wait_until(online.is_set, "P is back online on node 2", timeout=10)
    assert time.monotonic() - killed < 10
    assert client.url == n2.url and states[-1][1]["id"] == "P"
    # P never looked offline to the watcher; the phone that did not come back is gone once the TTL passed.
    news = []
    deadline = time.monotonic() + 5
    while ("left", "gone") not in news and time.monotonic() < deadline:
        msg = await recv(watcher, 5)
        news.append((msg["type"], msg.get("id")))
    assert ("left", "gone") in news
    assert ("left", "P") not in news
    # And P is reachable on its new node.
    await watcher.send(json.dumps({"type": "ice", "to": "P", "candidate": "{}"}))
    await wait_until(lambda: any(m.get("from") == "W" for m in received), "P got W's message on node 2")
    client._close()
    await asyncio.sleep(0.05)


async def test_without_redis_nodes_relay_their_own_phones_refuse_the_rest_and_recover(
    redis_server: RedisServer, nodes: list[Node], closing: list[ClientConnection]
) -> None:
    n1, n2 = nodes
    a, _ = await phone(n1, "A", closing, presence=True)
    c, _ = await phone(n1, "C", closing)
    b, _ = await phone(n2, "B", closing)
    redis_server.stop()
    await asyncio.sleep(0.6)  # a couple of heartbeats: both nodes know
    # Local relays go on.
    await a.send(json.dumps({"type": "call", "to": "C", "sdp": "{}"}))
    assert (await recv(c))["type"] == "call"
    # A cross-node message is refused, clearly.
    await a.send(json.dumps({"type": "call", "to": "B", "sdp": "{}"}))
    reply = await recv_until(a, "unavailable")
    assert reply["peer"] == "B" and "cannot reach the registry" in reply["message"], reply
    # New registrations are refused until Redis is back.
    _, reply = await phone(n2, "D", closing)
    assert reply["type"] == "error" and reply["code"] == "registry-unavailable", reply
    # Redis comes back, empty: the nodes claim their IDs again and cross-node calls work again.
    redis_server.start()

    async def crosses() -> bool:
        await a.send(json.dumps({"type": "ice", "to": "B", "candidate": "{}"}))
        try:
            msg = await recv(b, 0.3)
        except asyncio.TimeoutError:
            return False
        return msg["type"] == "ice"

    deadline = time.monotonic() + 10
    while not await crosses():
        assert time.monotonic() < deadline, "cross-node relays did not come back"
    _, reply = await phone(n2, "D", closing, presence=True)
    assert reply["type"] == "registered" and reply["peers"] == ["A", "B", "C"], reply
    # The ID claimed again is still unique.
    _, reply = await phone(n1, "B", closing)
    assert reply["code"] == "duplicate-id"


async def test_a_node_paused_longer_than_the_ttl_leaves_one_holder_of_each_id(
    nodes: list[Node], closing: list[ClientConnection]
) -> None:
    n1, n2 = nodes
    old, _ = await phone(n1, "A", closing)
    n1.pause()  # to Redis, a process pause and a network partition look the same
    try:
        deadline = time.monotonic() + 5
        while True:  # once n1 is taken for gone, its ID is free
            new, reply = await phone(n2, "A", closing)
            if reply["type"] == "registered":
                break
            assert time.monotonic() < deadline, reply
            await asyncio.sleep(0.2)
    finally:
        n1.resume()
    # n1 comes back, finds A registered elsewhere, and closes its own A.
    with pytest.raises(ConnectionClosed) as closed:
        await recv(old, 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert "while this one was cut off" in closed.value.rcvd.reason
    # Messages for A from n1 reach the one holder, on n2.
    x, _ = await phone(n1, "X", closing)
    await x.send(json.dumps({"type": "ice", "to": "A", "candidate": "{}"}))
    assert (await recv(new))["from"] == "X"


def test_without_redis_nothing_of_the_cluster_is_imported() -> None:
    code = (
        "import asyncio, sys, nbcall.cli, nbcall.server.server\n"
        "async def main():\n"
        "    async with await nbcall.server.serve():\n"
        "        pass\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in sys.modules if m == 'redis' or m.startswith(('redis.', 'nbcall.server.cluster'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


async def test_a_room_forms_relays_and_loses_a_member_across_nodes(
    nodes: list[Node], closing: list[ClientConnection]
) -> None:
    n1, n2 = nodes
    a, _ = await phone(n1, "A", closing, rooms=True, presence=True)
    b, _ = await phone(n2, "B", closing, rooms=True, secret="b")
    c, _ = await phone(n2, "C", closing, rooms=True, secret="c")
    await recv_until(a, "joined")
    await recv_until(a, "joined")  # A's node knows where B and C are
    # A's node makes the room and holds it; B and C, on node 2, are invited through their node.
    await a.send(json.dumps({"type": "room-invite", "to": "B"}))
    state = await recv_until(a, "room-state")
    room = state["room"]
    invitation = await recv_until(b, "room-invitation")
    assert invitation == {"type": "room-invitation", "room": room, "members": ["A"], "from": "A"}
    await b.send(json.dumps({"type": "room-accept", "room": room}))
    state = await recv_until(b, "room-state")
    assert state.pop("credential") and state == {
        "type": "room-state",
        "mode": "mesh",
        "room": room,
        "members": ["A", "B"],
    }
    assert await recv_until(a, "room-joined") == {"type": "room-joined", "room": room, "id": "B"}
    # B, a member held on node 1, invites C (its own node's phone) into its room without naming it.
    await b.send(json.dumps({"type": "room-invite", "to": "C"}))
    assert (await recv_until(c, "room-invitation"))["from"] == "B"
    await c.send(json.dumps({"type": "room-accept", "room": room}))
    assert (await recv_until(c, "room-state"))["members"] == ["A", "B", "C"]
    for ws in (a, b):
        assert await recv_until(ws, "room-joined") == {"type": "room-joined", "room": room, "id": "C"}
    # Offers between members cross nodes with their room; C offers to each member already in it.
    for to, ws in (("A", a), ("B", b)):
        await c.send(json.dumps({"type": "call", "to": to, "room": room, "sdp": "{}"}))
        offer = await recv_until(ws, "call")
        assert (offer["from"], offer["to"], offer["room"]) == ("C", to, room)
    await a.send(json.dumps({"type": "answer", "to": "C", "room": room, "sdp": "{}"}))
    assert (await recv_until(c, "answer"))["from"] == "A"
    # A phone outside the room may not use it, on either node.
    outsider, _ = await phone(n2, "D", closing, rooms=True)
    await outsider.send(json.dumps({"type": "ice", "to": "A", "room": room, "candidate": "{}"}))
    assert (await recv_until(outsider, "error"))["code"] == "not-a-member"
    # A phone in the room is not invited into another one: its node declines for it.
    await outsider.send(json.dumps({"type": "room-invite", "to": "A"}))
    other = (await recv_until(outsider, "room-state"))["room"]
    declined = await recv_until(outsider, "room-declined")
    assert (declined["room"], declined["id"], declined["reason"]) == (
        other,
        "A",
        "it is a member of another room",
    )
    # B leaves: the others, on both nodes, are told; B's relays with the room are refused from now on.
    await b.send(json.dumps({"type": "room-leave", "room": room}))
    for ws in (a, c):
        left = await recv_until(ws, "room-left")
        assert (left["room"], left["id"], left["reason"]) == (room, "B", "left the room")
    await b.send(json.dumps({"type": "ice", "to": "A", "room": room, "candidate": "{}"}))
    assert (await recv_until(b, "error"))["code"] == "not-a-member"
    # C's connection goes away: the room's node hears it from the registry, and C leaves after its grace.
    await c.close()
    left = await recv_until(a, "room-left", timeout=5)
    assert (left["id"], left["reason"]) == ("C", "its signaling connection was gone longer than 1 s")


async def test_nodes_share_a_redis_that_wants_a_password_over_tls(
    tmp_path: Path, certificate: tuple[Path, Path], closing: list[ClientConnection]
) -> None:
    cert, key = certificate
    redis_tls = RedisServer(tmp_path / "redis-tls")
    redis_tls.extra = ("--port", "0", "--tls-port", str(redis_tls.port), "--tls-cert-file", str(cert),
                       "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
                       "--requirepass", "pa55word")  # fmt: skip
    redis_tls.start()
    url = f"rediss://:pa55word@127.0.0.1:{redis_tls.port}/0?ssl_ca_certs={cert}"
    # A node connects to Redis within min(2 s, its heartbeat), and is taken for gone a TTL after its last one: a
    # 0.25 s heartbeat failed here on a loaded machine, where a TLS handshake took longer. The heartbeat is made
    # from this machine's connects now, with room to spare, as an operator would set it.
    heartbeat = max(0.25, round(10 * await slowest_connect(url), 2))
    started = [Node(url, name, tmp_path, heartbeat=heartbeat, ttl=4 * heartbeat) for name in ("t1", "t2")]
    try:
        a, _ = await phone(started[0], "A", closing, presence=True)
        b, reply = await phone(started[1], "B", closing)
        assert reply["type"] == "registered"
        assert await recv(a, timeout=8 * heartbeat + TIMEOUT) == {"type": "joined", "id": "B"}
        await a.send(json.dumps({"type": "call", "to": "B", "sdp": "{}"}))
        assert (await recv(b, timeout=8 * heartbeat + TIMEOUT))["from"] == "A"
        assert "pa55word" not in started[0].log.read_text()  # the password never reaches the logs
    finally:
        for n in started:
            n.stop()
        redis_tls.stop()


async def slowest_connect(url: str, tries: int = 3) -> float:
    """The longest of ``tries`` connects to the Redis at ``url`` (TCP, TLS, AUTH) with a PING, in seconds."""
    import redis.asyncio as aioredis

    slowest = 0.0
    for _ in range(tries):
        started = time.monotonic()
        client = aioredis.from_url(url)
        try:
            assert await client.ping()
        finally:
            await client.aclose()
        slowest = max(slowest, time.monotonic() - started)
    return slowest


def test_a_phone_that_fails_over_says_which_node_it_is_registered_at(nodes: list[Node]) -> None:
    from nbcall import Phone

    n1, n2 = nodes
    phone = Phone("F", server=[n1.url, n2.url])
    try:
        assert phone.server_url == n1.url
        n1.kill()
        deadline = time.monotonic() + 15
        while not (phone.online and phone.server_url == n2.url) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert phone.online and phone.server_url == n2.url, (phone.online, phone.server_url)
    finally:
        phone.close()


@pytest.fixture
def patient_nodes(redis_server: RedisServer, tmp_path: Path) -> Iterator[list[Node]]:
    """Two nodes whose room members keep their place 10 s: long enough for a test to try to take over."""
    yield from two_nodes(redis_server, tmp_path, ("p1", "p2"), "10")


async def room_across(a: ClientConnection, b: ClientConnection, member: str) -> tuple[str, str]:
    """``a`` (on the first node) invites ``member`` (on ``b``), who joins: the room's ID and its credential."""
    await a.send(json.dumps({"type": "room-invite", "to": member}))
    room: str = (await recv_until(a, "room-state"))["room"]
    await recv_until(b, "room-invitation")
    await b.send(json.dumps({"type": "room-accept", "room": room}))
    credential: str = (await recv_until(b, "room-state")).get("credential", "")
    await recv_until(a, "room-joined")
    return room, credential


async def wait_held(node: Node, peer_id: str, closing: list[ClientConnection]) -> dict[str, Any]:
    """Ask ``node`` for ``peer_id`` without its secret until it says the ID is held: each attempt is refused."""
    deadline = time.monotonic() + 5
    while True:
        _, reply = await phone(node, peer_id, closing, rooms=True)
        assert reply["type"] == "error" and reply["code"] == "duplicate-id", reply
        if "held for the phone whose connection was lost" in reply["message"]:
            return reply
        assert time.monotonic() < deadline, reply
        await asyncio.sleep(0.05)


async def member_lost(
    n1: Node, n2: Node, member: str, closing: list[ClientConnection]
) -> tuple[ClientConnection, str, str]:
    """A (on ``n1``) and ``member`` (on ``n2``) make a room held by ``n1``; ``member``'s connection is then lost
    without a close frame. Returns A's connection, the room and ``member``'s credential."""
    a, _ = await phone(n1, "A", closing, rooms=True, secret="a")
    m, _ = await phone(n2, member, closing, rooms=True, secret=member.lower())
    await asyncio.sleep(0.2)  # n1 hears that the member is on n2
    room, credential = await room_across(a, m, member)
    m.transport.abort()  # a network fault
    await wait_held(n2, member, closing)
    return a, room, credential


async def back_in_room(a: ClientConnection, node: Node, member: str, room: str, credential: str,
                       closing: list[ClientConnection]) -> None:  # fmt: skip
    """``member`` registers on ``node`` with its secret and credential: registered at once, in its room again."""
    ws, reply = await phone(
        node, member, closing, rooms=True, secret=member.lower(), room=room, credential=credential
    )
    assert reply == {"type": "registered", "id": member}
    state = await recv_until(ws, "room-state")
    assert (state["members"], state["rejoined"]) == (["A", member], True)
    await a.send(json.dumps({"type": "call", "to": member, "room": room, "sdp": "{}"}))
    assert (await recv_until(ws, "call"))["from"] == "A"


async def test_an_absent_member_s_id_stays_held_on_every_node_and_comes_back_with_its_secret(
    patient_nodes: list[Node], closing: list[ClientConnection]
) -> None:
    """Issue 16: B's connection drops; an attacker asks for B on both nodes to receive the room's messages."""
    n1, n2 = patient_nodes
    a, room, credential = await member_lost(n1, n2, "B", closing)
    for attempt in ({}, {"secret": "guess"}, {"room": room, "credential": "forged.x"}):
        _, reply = await phone(n1, "B", closing, rooms=True, **attempt)
        assert reply["code"] == "duplicate-id", reply
    await a.send(json.dumps({"type": "ice", "to": "B", "room": room, "candidate": "{}"}))
    assert (await recv_until(a, "unavailable"))["peer"] == "B"
    # The real B, with its secret, is back at once, on the room's node, and keeps its place.
    await back_in_room(a, n1, "B", room, credential, closing)


async def test_an_id_held_on_one_node_is_never_registered_on_the_other(
    patient_nodes: list[Node], closing: list[ClientConnection]
) -> None:
    """Issue 16: Q (node 2) drops; an attacker asks the room's node (node 1) for Q, then Q comes back on node 2."""
    n1, n2 = patient_nodes
    a, room, credential = await member_lost(n1, n2, "Q", closing)
    _, reply = await phone(n1, "Q", closing, rooms=True)  # an attacker, without the secret
    assert reply["code"] == "duplicate-id", reply
    await back_in_room(a, n2, "Q", room, credential, closing)


async def test_without_a_room_key_the_nodes_share_redis_s_so_a_room_outlives_its_node(
    patient_nodes: list[Node], closing: list[ClientConnection]
) -> None:
    n1, n2 = patient_nodes
    a, _ = await phone(n1, "A", closing, rooms=True, secret="a")
    b, _ = await phone(n2, "B", closing, rooms=True, secret="b")
    await asyncio.sleep(0.2)
    room, credential = await room_across(a, b, "B")
    assert credential  # signed by n1 with the key both nodes read from Redis (neither was given one)
    n1.kill()  # the room's node dies; B reconnects (on its own node) and re-creates the room there
    await b.close()
    b2, reply = await phone(n2, "B", closing, rooms=True, secret="b", room=room, credential=credential)
    assert reply == {"type": "registered", "id": "B"}
    state = await recv_until(b2, "room-state", timeout=10)
    assert (state["room"], state["members"], state["rejoined"]) == (room, ["B"], True)

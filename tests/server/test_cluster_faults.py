"""The cluster's background loops against a real redis-server that holds or carries what nbcall did not write:
each bad message or round is dropped and logged, and cross-node delivery and registration go on."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from support import TIMEOUT, RedisServer
from websockets.asyncio.client import ClientConnection, connect

import nbcall.server.cluster
from nbcall.server.server import SignalingServer, serve


@pytest.fixture
async def nodes(redis_server: RedisServer) -> AsyncIterator[list[SignalingServer]]:
    started = [
        await serve(redis=redis_server.url, node_id=name, heartbeat=1.0, registry_ttl=3.0)
        for name in ("n1", "n2")
    ]
    yield started
    for node in started:
        node.close()
        await node.wait_closed()


@pytest.fixture
async def raw_redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_server.url)  # bytes in, bytes out: it can write what nbcall cannot read
    yield client
    await client.aclose()


async def register(node: SignalingServer, peer_id: str) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await connect(node.url)
    await ws.send(json.dumps({"type": "register", "from": peer_id}))
    return ws, json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))


async def reaches(sender: ClientConnection, receiver: ClientConnection, to: str, attempts: int = 20) -> bool:
    """Whether a message from ``sender`` to ``to`` arrives at ``receiver``, trying up to ``attempts`` times (a
    message sent while a node subscribes again comes back unavailable)."""
    for n in range(attempts):
        await sender.send(json.dumps({"type": "hangup", "to": to, "n": n}))
        try:
            while True:
                reply = json.loads(await asyncio.wait_for(receiver.recv(), 0.25))
                if reply.get("type") == "hangup":
                    return True
        except asyncio.TimeoutError:
            pass
    return False


async def test_garbage_on_the_registrys_channels_is_dropped_and_logged_and_delivery_goes_on(
    nodes: list[SignalingServer], raw_redis: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="nbcall")
    a, registered = await register(nodes[0], "A")
    assert registered["type"] == "registered"
    b, registered = await register(nodes[1], "B")
    assert registered["type"] == "registered"
    try:
        assert await reaches(b, a, "A")
        await raw_redis.publish("nbcall:to:n1", b"n2\x1ea record without its fields")
        await raw_redis.publish("nbcall:presence", b"j")  # news without the ID
        assert await reaches(b, a, "A")
        await raw_redis.publish("nbcall:presence", b"\xff\xfe not UTF-8")  # fails inside redis-py's reader
        assert await reaches(b, a, "A")
    finally:
        await a.close()
        await b.close()
    logged = [r.getMessage() for r in caplog.records]
    assert any("n1: dropped a message on nbcall:to:n1 it cannot handle (ValueError" in m for m in logged)
    assert any("n1: dropped a message on nbcall:presence it cannot handle (TypeError" in m for m in logged)
    assert any("n1: reading the registry's news failed (UnicodeDecodeError" in m for m in logged)


async def test_a_round_of_registry_work_that_fails_refuses_its_registrations_and_the_next_rounds_work(
    nodes: list[SignalingServer], raw_redis: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # An owner that is not UTF-8: the claim's reply cannot be read, and the whole round fails.
    await raw_redis.hset("nbcall:owner", "X", b"\xff")
    x, refused = await register(nodes[0], "X")
    await x.close()
    assert refused["type"] == "error" and refused["code"] == "registry-unavailable", refused
    failed = [r for r in caplog.records if "a round of registry work failed" in r.getMessage()]
    assert len(failed) == 1 and "remove them" in failed[0].getMessage()
    y, registered = await register(nodes[0], "Y")  # the worker goes on
    await y.close()
    assert registered["type"] == "registered"
    x, registered = await register(nodes[1], "X")  # and the failed round's claim was freed
    await x.close()
    assert registered["type"] == "registered", registered


async def test_messages_to_other_nodes_wait_in_a_bounded_queue_while_redis_is_stuck(
    nodes: list[SignalingServer],
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(nbcall.server.cluster, "MAX_WAITING", 2)
    a, _ = await register(nodes[0], "A")
    b, _ = await register(nodes[1], "B")
    assert redis_server.process is not None
    redis_server.process.send_signal(signal.SIGSTOP)  # every round now waits for Redis
    try:
        for n in range(6):
            await b.send(json.dumps({"type": "hangup", "to": "A", "n": n}))
        reply = json.loads(await asyncio.wait_for(b.recv(), TIMEOUT))
        assert reply["type"] == "unavailable", reply
        assert "the registry is too slow (2 messages wait for it)" in reply["message"]
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
        await a.close()
        await b.close()
    warned = [r.getMessage() for r in caplog.records if "wait for the registry" in r.getMessage()]
    assert warned and "n2: refused a message to another node: 2 wait" in warned[0]
    assert "(1 refused so far)" in warned[0]

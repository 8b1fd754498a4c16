"""A phone's signaling connection (nbcall.call.client) against a real server, on an event loop of the test's own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from support import TIMEOUT, RawPeer, wait_until, wait_until_sync
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve

from nbcall.call import kernel
from nbcall.call.client import SignalingClient
from nbcall.exceptions import CallError
from nbcall.server.server import serve
from nbcall.widget.phone import Phone


def test_a_message_queued_on_a_closed_connection_does_not_freeze_the_loop() -> None:
    """The connection closes with a message queued before the reader task ever ran: the relay must return
    (keeping the message for later), not retry the send forever without letting the loop run."""
    outcome: dict[str, object] = {}

    async def scenario() -> None:
        async with await serve() as server:
            client = SignalingClient(server.url, "P", reconnect_delays=None)
            await client.register()
            assert client._ws is not None
            await client._ws.close()  # closed, and the relay has not started its reader yet
            client._enqueue('{"type": "hangup", "to": "Q"}')
            outcome["reason"] = await asyncio.wait_for(client._relay(lambda message, size: None), 5)
            outcome["kept"] = list(client._outbox)

    # On a thread of its own: with the bug, this loop spins forever and only the join's deadline ends the test.
    thread = threading.Thread(target=asyncio.run, args=(scenario(),), daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the relay loop spun without yielding on a closed connection"
    assert "the signaling connection closed" in str(outcome["reason"])
    assert outcome["kept"] == ['{"type": "hangup", "to": "Q"}']


def request_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The handshake request lines and Authorization headers the server logged (websockets' DEBUG lines)."""
    texts = [r.getMessage() for r in caplog.records if r.name == "websockets.server"]
    return [t for t in texts if t.startswith("< GET ") or t.lower().startswith("< authorization:")]


def test_python_clients_send_the_token_in_a_header_not_in_the_url(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secured = kernel.run(serve(token="tok-1618"), timeout=TIMEOUT)
    try:
        client = SignalingClient(secured.url, "C", reconnect_delays=None)
        assert kernel.run(client.register(), timeout=TIMEOUT)["type"] == "registered"
        kernel.run(client.aclose(), timeout=TIMEOUT)
        phone = Phone("P", server=secured.url, timeout=TIMEOUT)
        phone.close()
        lines = request_lines(caplog)
        assert lines.count("< GET /ws HTTP/1.1") == 2, lines  # no ?token= in the request line
        assert lines.count("< Authorization: ***") == 2, lines
        assert not [r for r in caplog.records if "tok-1618" in r.getMessage()]
    finally:

        async def stop() -> None:
            secured.close()
            await secured.wait_closed()

        kernel.run(stop(), timeout=TIMEOUT)


# -- the reconnect loop never gives up silently --------------------------------------------------------------


@contextlib.asynccontextmanager
async def garbage_server(port: int, answer: str) -> AsyncIterator[None]:
    """Something on ``port`` that is not a working signaling server: ``answer`` says what it does."""

    async def websocket(ws: ServerConnection) -> None:
        await ws.recv()  # the register
        if answer == "not json":
            await ws.send("<html>Bad gateway</html>")
        elif answer == "not an object":
            await ws.send("[1, 2, 3]")
        await ws.close()  # "closes": before any answer

    async def not_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()
        writer.close()

    if answer == "not http":
        tcp = await asyncio.start_server(not_http, "127.0.0.1", port)
        async with tcp:
            yield
    else:
        async with ws_serve(websocket, "127.0.0.1", port):
            yield


async def test_reconnecting_survives_servers_that_answer_garbage_and_says_why_until_back() -> None:
    """A registration that meets a closed connection, a reply that is not JSON or not an object, or a
    handshake with something that is not HTTP used to end the reconnect loop for good."""
    reports: list[tuple[bool, Any]] = []
    server = await serve()
    port, url = server.port, server.url
    client = SignalingClient(url, "P", reconnect_delays=(0.05,))
    await client.register()
    client.start(lambda message, size: None, lambda online, detail: reports.append((online, detail)))
    try:
        server.close()
        await server.wait_closed()
        await wait_until(lambda: reports and "reconnecting" in str(reports[-1][1]), "P to notice")
        for answer, said in [
            ("closes", "closed during register"),
            ("not json", "answered register with '<html>Bad gateway</html>', not a JSON object"),
            ("not an object", "answered register with '[1, 2, 3]', not a JSON object"),
            ("not http", "could not connect to the signaling server"),
        ]:
            async with garbage_server(port, answer):
                await wait_until(lambda said=said: said in str(reports[-1][1]), f"P to say {said!r}")
            assert not reports[-1][0] and "reconnecting, the last attempt failed" in str(reports[-1][1])
        async with await serve(port=port):
            await wait_until(lambda: reports[-1][0], "P to be back online", timeout=10)
            assert reports[-1][1]["type"] == "registered"
    finally:
        await client.aclose()


async def test_a_phone_whose_handlers_raise_stays_connected_and_logs_each_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with await serve() as server:
        client = SignalingClient(server.url, "P", reconnect_delays=(0.05,))
        await client.register()
        seen: list[str] = []

        def on_message(message: dict[str, Any], size: int) -> None:
            seen.append(message["type"])
            raise RuntimeError("a bug in the phone")

        def on_state(online: bool, detail: Any) -> None:
            raise RuntimeError("another bug in the phone")

        client.start(on_message, on_state)
        try:
            async with connect(server.url) as other:
                await other.send(json.dumps({"type": "register", "from": "Q"}))
                await other.recv()
                await wait_until(lambda: seen == ["joined"], "P to hear that Q joined")
            await wait_until(lambda: seen == ["joined", "left"], "P to hear that Q left")
        finally:
            await client.aclose()
    failures = [r for r in caplog.records if "a bug in the phone" in str(r.exc_info and r.exc_info[1])]
    assert len(failures) == 2 and "handling a 'joined' message failed" in failures[0].getMessage()


def test_the_offline_outbox_is_bounded_send_refuses_more_saying_why_and_what_is_queued_arrives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = kernel.run(serve(), timeout=TIMEOUT)
    port = first.port
    reports: list[tuple[bool, Any]] = []
    client = SignalingClient(first.url, "P", reconnect_delays=(0.2,), max_outbox=3)
    kernel.run(client.register(), timeout=TIMEOUT)
    kernel.call_soon(
        client.start, lambda message, size: None, lambda online, detail: reports.append((online, detail))
    )

    async def stop(server: Any) -> None:
        server.close()
        await server.wait_closed()

    try:
        kernel.run(stop(first), timeout=TIMEOUT)
        wait_until_sync(lambda: reports and not reports[-1][0], "P to notice it is offline")
        for n in range(3):
            client.send({"type": "hangup", "to": "Q", "n": n})
        with pytest.raises(CallError) as refused:
            client.send({"type": "hangup", "to": "Q", "n": 3})
        assert "3 signaling messages already wait for the server" in str(refused.value)
        assert "it is offline" in str(refused.value) and "wait until the phone is online again" in str(
            refused.value
        )
        second = kernel.run(serve(port=port), timeout=TIMEOUT)
        try:
            q = RawPeer(second.url, "Q")
            wait_until_sync(lambda: reports[-1][0], "P to be back online", timeout=10)
            assert [q.recv_type("hangup")["n"] for _ in range(3)] == [0, 1, 2]  # what was queued arrives
            client.send({"type": "hangup", "to": "Q", "n": 4})  # and there is room again
            assert q.recv_type("hangup")["n"] == 4
            q.close()
        finally:
            kernel.run(stop(second), timeout=TIMEOUT)
    finally:
        kernel.run(client.aclose(), timeout=TIMEOUT)

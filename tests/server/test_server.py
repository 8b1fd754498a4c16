"""The signaling server over real sockets: a server on port 0, real websockets clients."""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import functools
import gc
import json
import logging
import os
import random
import socket
import ssl
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from support import OFFER, TIMEOUT, mask_frame, wait_until
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus
from websockets.protocol import State

import nbcall.server.server
from nbcall.server import fastpath
from nbcall.server.server import SignalingServer, serve

ANSWER = OFFER.replace('"offer"', '"answer"').replace("actpass", "active")


def candidate(n: int) -> str:
    return json.dumps(
        {
            "candidate": f"candidate:{n} 1 udp 2122260223 192.168.1.{n} {50000 + n} typ host generation 0",
            "sdpMid": "0",
            "sdpMLineIndex": 0,
            "usernameFragment": "EsAw",
        }
    )


@pytest.fixture(params=[True, False], ids=["fast-path", "public-api"], autouse=True)
def fast_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Every test here runs twice: on nbcall's fast path and on websockets' public API.

    The tests call this module's ``serve``, which this fixture binds to the path under test.
    """
    fast: bool = request.param
    if fast and (why := fastpath.unavailable_reason()) is not None:
        pytest.skip(f"no fast path: {why}")
    monkeypatch.setattr(
        sys.modules[__name__], "serve", functools.partial(nbcall.server.serve, fast_path=fast)
    )
    return fast


@pytest.fixture
async def server(fast_path: bool) -> AsyncIterator[SignalingServer]:
    async with await serve() as signaling:
        assert signaling.fast_path is fast_path
        yield signaling


async def recv(ws: ClientConnection) -> dict[str, Any]:
    """The next message, decoded; fails the test if none arrives in time."""
    return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))


async def send(ws: ClientConnection, **fields: Any) -> None:
    await ws.send(json.dumps(fields))


async def expect_error(ws: ClientConnection, frame: str | bytes, code: str) -> dict[str, Any]:
    await ws.send(frame)
    msg = await recv(ws)
    assert (msg["type"], msg["code"]) == ("error", code), msg
    return msg


@asynccontextmanager
async def peer(
    server: SignalingServer, peer_id: str, *, presence: bool = True
) -> AsyncIterator[ClientConnection]:
    """A client registered as ``peer_id`` (like a phone: with presence), its ``registered`` reply consumed."""
    async with connect(server.url) as ws:
        await send(ws, type="register", presence=presence, **{"from": peer_id})
        msg = await recv(ws)
        assert msg["type"] == "registered" and msg["id"] == peer_id, msg
        yield ws


@asynccontextmanager
async def pair(
    server: SignalingServer, a: str = "A", b: str = "B", *, presence: bool = True
) -> AsyncIterator[tuple[ClientConnection, ...]]:
    """Two registered clients; with presence, the first one's ``joined`` notice consumed."""
    async with peer(server, a, presence=presence) as ws_a, peer(server, b, presence=presence) as ws_b:
        if presence:
            assert await recv(ws_a) == {"type": "joined", "id": b}
        yield ws_a, ws_b


async def assert_relay_works(
    sender: ClientConnection, receiver: ClientConnection, to: str, sender_id: str
) -> None:
    await send(sender, type="call", to=to, sdp=OFFER)
    assert await recv(receiver) == {"type": "call", "from": sender_id, "to": to, "sdp": OFFER}


# -- the seed's browser protocol ----------------------------------------------


async def test_seed_browser_protocol_is_relayed_unchanged(server: SignalingServer) -> None:
    async with pair(server) as (a, b):
        exchange = [
            (a, b, {"type": "call", "from": "A", "to": "B", "sdp": OFFER}),
            (b, a, {"type": "answer", "from": "B", "to": "A", "sdp": ANSWER}),
            (a, b, {"type": "ice", "from": "A", "to": "B", "candidate": candidate(1)}),
            (b, a, {"type": "ice", "from": "B", "to": "A", "candidate": candidate(2)}),
            (a, b, {"type": "ice", "from": "A", "to": "B", "candidate": candidate(3)}),
        ]
        for sender, receiver, msg in exchange:
            text = json.dumps(msg)  # the browser's JSON.stringify
            await sender.send(text)
            assert await asyncio.wait_for(receiver.recv(), TIMEOUT) == text


async def test_presence_is_opt_in_and_seed_clients_relay_without_news(server: SignalingServer) -> None:
    async with peer(server, "Phone") as phone:
        async with connect(server.url) as seed:
            await send(seed, type="register", **{"from": "Seed"})  # the seed's register: no flag
            assert await recv(seed) == {"type": "registered", "id": "Seed"}
            assert await recv(phone) == {"type": "joined", "id": "Seed"}
            async with peer(server, "Other"):
                assert await recv(phone) == {"type": "joined", "id": "Other"}
            assert await recv(phone) == {"type": "left", "id": "Other"}
            # The seed client heard none of it: the next thing it receives is the phone's call.
            await assert_relay_works(phone, seed, "Seed", "Phone")
            await assert_relay_works(seed, phone, "Phone", "Seed")
        assert await recv(phone) == {"type": "left", "id": "Seed"}


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_permessage_deflate_is_off_by_default_and_relays_when_enabled(
    compression: str | None,
) -> None:
    async with await serve(compression=compression) as server, pair(server) as (a, b):  # type: ignore[arg-type]
        assert [bool(ws.protocol.extensions) for ws in (a, b)] == [compression is not None] * 2
        for n in range(50):
            await send(a, type="ice", to="B", candidate=candidate(n))
        for n in range(50):
            assert (await recv(b))["candidate"] == candidate(n)
        await assert_relay_works(b, a, "A", "B")


async def test_relayed_message_gains_from_when_the_client_omits_it(server: SignalingServer) -> None:
    async with pair(server) as (a, b):
        await send(b, type="ice", to="A", candidate=candidate(7), extension={"trickle": True})
        assert await recv(a) == {
            "type": "ice",
            "from": "B",
            "to": "A",
            "candidate": candidate(7),
            "extension": {"trickle": True},
        }


@pytest.mark.parametrize("msg_type", ["hangup", "decline", "busy"])
async def test_hangup_decline_and_busy_are_relayed(server: SignalingServer, msg_type: str) -> None:
    async with pair(server) as (a, b):
        await send(b, type=msg_type, to="A", reason="on another call")
        assert await recv(a) == {"type": msg_type, "from": "B", "to": "A", "reason": "on another call"}
        await send(a, type=msg_type, to="B")
        assert await recv(b) == {"type": msg_type, "from": "A", "to": "B"}


# -- presence -----------------------------------------------------------------


async def test_presence_lists_peers_announces_joins_and_leaves(server: SignalingServer) -> None:
    async with pair(server, "Bob", "Alice") as (bob, alice):
        async with connect(server.url) as carol:
            await send(carol, type="register", presence=True, **{"from": "Carol"})
            assert await recv(carol) == {"type": "registered", "id": "Carol", "peers": ["Alice", "Bob"]}
            assert await recv(bob) == {"type": "joined", "id": "Carol"}
            assert await recv(alice) == {"type": "joined", "id": "Carol"}
        assert await recv(bob) == {"type": "left", "id": "Carol"}
        assert await recv(alice) == {"type": "left", "id": "Carol"}
        assert server.protocol.peers == ["Alice", "Bob"]


async def test_reregistering_the_same_id_announces_nothing_new(server: SignalingServer) -> None:
    async with pair(server) as (a, b):
        await send(b, type="register", presence=True, **{"from": "B"})
        assert await recv(b) == {"type": "registered", "id": "B", "peers": ["A"]}
        # B's handler would have sent any `joined` to A before relaying this call.
        await assert_relay_works(b, a, "A", "B")


async def test_abrupt_disconnect_frees_the_id_and_tells_the_others(server: SignalingServer) -> None:
    async with peer(server, "A") as a:
        b = await connect(server.url)
        await send(b, type="register", presence=True, **{"from": "B"})
        assert (await recv(b))["type"] == "registered"
        assert await recv(a) == {"type": "joined", "id": "B"}
        b.transport.abort()  # no closing handshake: the TCP connection just dies
        assert await recv(a) == {"type": "left", "id": "B"}
        async with peer(server, "B") as b_again:
            assert await recv(a) == {"type": "joined", "id": "B"}
            await assert_relay_works(a, b_again, "B", "A")


async def test_duplicate_id_is_refused_and_the_original_keeps_receiving(server: SignalingServer) -> None:
    async with pair(server) as (a, b), connect(server.url) as impostor:
        err = await expect_error(impostor, json.dumps({"type": "register", "from": "A"}), "duplicate-id")
        assert err["message"] == (
            "ID 'A' is already registered by another connection; pick another ID, "
            "close the other phone first, or reclaim it with the secret it registered with"
        )
        await assert_relay_works(b, a, "A", "B")
        # The refused connection stays open and may pick another ID.
        await send(impostor, type="register", presence=True, **{"from": "A2"})
        assert await recv(impostor) == {"type": "registered", "id": "A2", "peers": ["A", "B"]}


# -- refusals -----------------------------------------------------------------


async def test_call_to_unknown_peer_reports_unavailable(server: SignalingServer) -> None:
    async with pair(server) as (a, _b):
        await send(a, type="call", to="Zoe", sdp=OFFER)
        assert await recv(a) == {
            "type": "unavailable",
            "peer": "Zoe",
            "in_reply_to": "call",
            "message": "'Zoe' is not online on this server; online: B",
        }


async def test_from_naming_another_peer_is_refused(server: SignalingServer) -> None:
    async with pair(server) as (a, b):
        err = await expect_error(
            a, json.dumps({"type": "call", "from": "B", "to": "B", "sdp": OFFER}), "wrong-from"
        )
        assert err["in_reply_to"] == "call"
        assert err["message"].startswith("'from' is 'B' but this connection is registered as 'A'")
        await assert_relay_works(a, b, "B", "A")


async def test_garbage_client_gets_error_codes_and_the_others_keep_working(server: SignalingServer) -> None:
    async with pair(server, "Zo\u00e9", "B") as (zoe, b), connect(server.url) as junk:
        garbage: list[tuple[str | bytes, str]] = [
            ('{"type": "register", "from": "X"', "bad-json"),
            ('["register", "X"]', "bad-message"),
            ("42", "bad-message"),
            ('{"from": "X"}', "bad-message"),
            ('{"type": "chat", "to": "B", "text": "hi"}', "unknown-type"),
            ('{"type": "call", "to": "B", "sdp": "x"}', "not-registered"),
            (b'{"type": "register", "from": "X"}', "binary-frame"),
            (json.dumps({"type": "register", "from": "X", "pad": "x" * 100 * 1024}), "too-big"),
            ('{"type": "register", "from": "bell\\u0007"}', "bad-id"),
            ('{"type": "register", "from": "   "}', "bad-id"),
            (json.dumps({"type": "register", "from": "x" * 65}), "bad-id"),
            (json.dumps({"type": "register", "from": "Zoe\u0301"}), "duplicate-id"),  # NFD spelling of Zoé
        ]
        for frame, code in garbage:
            await expect_error(junk, frame, code)

        await send(junk, type="register", presence=True, **{"from": "Junk"})
        assert await recv(junk) == {"type": "registered", "id": "Junk", "peers": ["B", "Zo\u00e9"]}
        assert await recv(zoe) == {"type": "joined", "id": "Junk"}
        assert await recv(b) == {"type": "joined", "id": "Junk"}
        err = await expect_error(
            junk, json.dumps({"type": "call", "to": "B", "sdp": {"type": "offer"}}), "bad-message"
        )
        assert "'sdp'" in err["message"] and "got object" in err["message"]

        await assert_relay_works(zoe, b, "B", "Zo\u00e9")
        # An address spelled in NFD reaches the NFC-registered peer, with `to` normalized.
        await send(b, type="hangup", to="Zoe\u0301")
        assert await recv(zoe) == {"type": "hangup", "from": "B", "to": "Zo\u00e9"}
        await assert_relay_works(junk, b, "B", "Junk")


async def test_frames_split_anywhere_fragmented_or_between_pings_are_all_relayed(
    server: SignalingServer,
) -> None:
    async with peer(server, "B", presence=False) as b:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        key = base64.b64encode(os.urandom(16))
        writer.write(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        messages = [
            json.dumps({"type": "call", "to": "B", "sdp": OFFER}),  # 126..65535 bytes: 16-bit length
            *(json.dumps({"type": "ice", "to": "B", "candidate": candidate(n)}) for n in range(3)),
        ]
        stream = mask_frame(b'{"type":"register","from":"A"}')
        stream += mask_frame(messages[0].encode())
        stream += mask_frame(b"ping!", opcode=9)  # a control frame between messages
        stream += mask_frame(messages[1].encode())
        half = len(messages[2]) // 2  # a message in two fragments, a ping between them
        stream += mask_frame(messages[2][:half].encode(), fin=False)
        stream += mask_frame(b"", opcode=9)
        stream += mask_frame(messages[2][half:].encode(), opcode=0)
        stream += mask_frame(messages[3].encode())
        for i in range(len(stream)):  # one byte per write: every frame boundary falls mid-read
            writer.write(stream[i : i + 1])
            await writer.drain()
            if i % 64 == 0:
                await asyncio.sleep(0)
        for text in messages:
            assert await recv(b) == {**json.loads(text), "from": "A"}
        writer.close()


async def test_frame_above_the_websocket_limit_closes_with_1009_and_frees_the_id() -> None:
    async with (
        await serve(max_message_size=1000, max_frame_size=2000) as server,
        peer(server, "A") as a,
        peer(server, "B") as b,
    ):
        assert await recv(a) == {"type": "joined", "id": "B"}
        await expect_error(b, json.dumps({"type": "call", "to": "A", "sdp": "x" * 1500}), "too-big")
        await send(b, type="call", to="A", sdp="x" * 3000)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(b.recv(), TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        assert await recv(a) == {"type": "left", "id": "B"}


async def test_a_recipient_whose_socket_raises_on_write_is_dropped_and_the_others_keep_relaying(
    server: SignalingServer,
) -> None:
    # A socket that died under an open connection, on a transport that raises instead of
    # reporting it later: the write fails while websockets still sees the connection OPEN.
    async with pair(server) as (a, b), peer(server, "Ghost") as ghost:
        assert await recv(a) == {"type": "joined", "id": "Ghost"}
        assert await recv(b) == {"type": "joined", "id": "Ghost"}
        ghost_conn = server.protocol.registry.conns["Ghost"]
        assert ghost_conn.state is State.OPEN

        def write(data: bytes) -> None:
            raise ConnectionResetError("the socket is gone")

        ghost_conn.transport.write = write  # type: ignore[method-assign]
        await send(a, type="call", to="Ghost", sdp=OFFER)
        await send(b, type="call", to="Ghost", sdp=OFFER)  # in the same batch of writes, perhaps
        # Ghost's connection is cleaned up: the others hear that it left, its ID is free...
        assert await recv(a) == {"type": "left", "id": "Ghost"}
        assert await recv(b) == {"type": "left", "id": "Ghost"}
        await wait_until(lambda: ghost_conn not in server.open_connections, "Ghost's connection is gone")
        assert server.protocol.peers == ["A", "B"]
        # ...and the senders' connections keep relaying both ways.
        await assert_relay_works(a, b, "B", "A")
        await assert_relay_works(b, a, "A", "B")
        del ghost


# -- the server handle --------------------------------------------------------


async def test_unknown_path_gets_404_with_a_clear_body(server: SignalingServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(server.url.replace("/ws", "/signal")):
            pass
    response = refused.value.response
    assert response.status_code == 404
    body = bytes(response.body).decode()
    assert "'/signal'" in body and "'/ws'" in body and server.url in body


async def test_query_string_on_the_signaling_path_is_accepted(server: SignalingServer) -> None:
    async with connect(server.url + "?token=abc") as ws:
        await send(ws, type="register", presence=True, **{"from": "A"})
        assert (await recv(ws))["type"] == "registered"


async def test_custom_path_is_served_and_the_default_is_not() -> None:
    async with await serve(path="/phone/signal") as server:
        assert server.url == f"ws://127.0.0.1:{server.port}/phone/signal"
        async with peer(server, "A"):
            pass
        with pytest.raises(InvalidStatus):
            async with connect(f"ws://127.0.0.1:{server.port}/ws"):
                pass


async def test_server_binds_loopback_on_a_free_port_and_reports_its_url() -> None:
    async with await serve() as first, await serve() as second:
        assert first.host == "127.0.0.1"
        assert first.port > 0 and first.port != second.port
        assert first.url == f"ws://127.0.0.1:{first.port}/ws"


async def test_close_is_idempotent_and_says_going_away_to_clients() -> None:
    server = await serve()
    async with peer(server, "A") as a:
        server.close()
        server.close()
        await asyncio.wait_for(server.wait_closed(), TIMEOUT)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(a.recv(), TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert server.protocol.peers == []
    with pytest.raises(OSError):
        async with connect(server.url, open_timeout=TIMEOUT):
            pass


async def test_serve_forever_returns_once_closed() -> None:
    server = await serve()
    forever = asyncio.create_task(server.serve_forever())
    async with peer(server, "A"):
        server.close()
        await asyncio.wait_for(forever, TIMEOUT)


def test_frame_limit_below_message_limit_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="max_frame_size"):
        asyncio.run(serve(max_message_size=4096, max_frame_size=1024))


async def test_registrations_calls_and_departures_are_logged(
    server: SignalingServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="nbcall.server.server")
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(peer(server, "A"))
        async with peer(server, "B") as b:
            await recv(a)  # joined
            await assert_relay_works(b, a, "A", "B")
        assert await recv(a) == {"type": "left", "id": "B"}
    messages = [r.getMessage() for r in caplog.records if r.name == "nbcall.server.server"]
    assert messages[:4] == [
        "'A' registered (1 online)",
        "'B' registered (2 online)",
        "'B' -> 'A': call",
        "'B' left",
    ]


# -- a raw client that stops reading ---------------------------------------------


class RawClient:
    """A WebSocket client on a bare socket: it reads only when told, so it can play dead."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    async def connect(cls, server: SignalingServer, peer_id: str) -> RawClient:
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # small, so the server's side fills
        sock.setblocking(False)
        await asyncio.wait_for(loop.sock_connect(sock, (server.host, server.port)), TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        target = server.url.split(str(server.port), 1)[1]
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 1), TIMEOUT)  # not a byte past the headers
            assert chunk, response
            response += chunk
        assert response.startswith(b"HTTP/1.1 101"), response
        client = cls(sock)
        await client.send(json.dumps({"type": "register", "from": peer_id}))
        return client

    async def send(self, text: str) -> None:
        await asyncio.get_running_loop().sock_sendall(self.sock, mask_frame(text.encode()))

    async def send_close(self) -> None:
        """A close frame (1000), leaving the TCP connection open."""
        await asyncio.get_running_loop().sock_sendall(
            self.sock, mask_frame((1000).to_bytes(2, "big"), opcode=8)
        )

    def close(self) -> None:
        self.sock.close()


async def expect_close(ws: ClientConnection, code: int) -> str:
    """Read until the server closes ``ws``; check the code, return the reason."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert closed.value.rcvd is not None, closed.value
    assert closed.value.rcvd.code == code, closed.value.rcvd
    return closed.value.rcvd.reason


def refusal(exc: pytest.ExceptionInfo[InvalidStatus]) -> tuple[int, str]:
    return exc.value.response.status_code, bytes(exc.value.response.body).decode()


# -- authentication -------------------------------------------------------------


async def test_token_is_required_before_anyone_can_register() -> None:
    async with await serve(token="s3cret/+&=") as server:
        assert server.url == f"ws://127.0.0.1:{server.port}/ws?token=s3cret%2F%2B%26%3D"
        assert server.url_without_token == f"ws://127.0.0.1:{server.port}/ws"
        assert "s3cret" not in repr(server)
        # Each token rule is tested in test_admission.py; this shows the answer reaches a client.
        for url, what in [
            (server.url_without_token, "no token"),
            (server.url_without_token + "?token=s3cret", "a wrong token"),
        ]:
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url):
                    pass
            status, body = refusal(refused)
            assert status == 401
            assert f"requires a token and the request had {what}" in body
            assert f"{server.url_without_token}?token=TOKEN" in body
        assert server.protocol.connections == 0
        async with pair(server) as (a, b):
            await assert_relay_works(a, b, "B", "A")


async def test_token_check_comes_before_the_connection_limit_and_is_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with await serve(token="tok-123", max_connections=1) as server, peer(server, "A"):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(server.url_without_token + "?token=guess-456"):
                pass
        assert refusal(refused)[0] == 401
        with pytest.raises(InvalidStatus) as full:
            async with connect(server.url):
                pass
        assert refusal(full)[0] == 503
    server_side = "\n".join(
        r.getMessage() for r in caplog.records if r.name.startswith(("nbcall", "websockets.server"))
    )
    assert "GET /ws?token=*** HTTP/1.1" in server_side  # websockets' own DEBUG lines, redacted
    assert "tok-123" not in server_side and "guess-456" not in server_side
    assert "wrong token" in server_side


# -- IDs belong to their connection --------------------------------------------


async def test_takeover_without_the_secret_is_refused_and_the_owner_keeps_its_id(
    server: SignalingServer,
) -> None:
    async with connect(server.url) as owner, peer(server, "B") as b, connect(server.url) as stranger:
        await send(owner, type="register", presence=True, secret="owner-secret", **{"from": "A"})
        assert (await recv(owner))["type"] == "registered"
        assert await recv(b) == {"type": "joined", "id": "A"}
        for attempt in [{}, {"secret": "guess"}, {"secret": ""}]:
            await send(stranger, type="register", presence=True, **{"from": "A"}, **attempt)
            err = await recv(stranger)
            assert err["type"] == "error" and err["code"] in ("duplicate-id", "bad-message"), err
            assert "owner-secret" not in json.dumps(err)
        await assert_relay_works(b, owner, "A", "B")
        # Hang-ups and calls naming A as sender are refused too: nobody can speak for A.
        await send(stranger, type="register", presence=True, **{"from": "S"})
        assert (await recv(stranger))["type"] == "registered"
        await expect_error(stranger, json.dumps({"type": "hangup", "from": "A", "to": "B"}), "wrong-from")


async def test_reconnecting_phone_reclaims_its_id_with_its_secret(server: SignalingServer) -> None:
    async with connect(server.url) as old, peer(server, "B") as b:
        await send(old, type="register", presence=True, secret="per-phone-secret", **{"from": "A"})
        assert (await recv(old))["type"] == "registered"
        assert await recv(b) == {"type": "joined", "id": "A"}
        async with connect(server.url) as new:
            await send(new, type="register", presence=True, secret="per-phone-secret", **{"from": "A"})
            assert await recv(new) == {"type": "registered", "id": "A", "peers": ["B"]}
            assert await expect_close(old, 1008) == "replaced by a newer connection of the same phone"
            # B hears no left/joined: the next thing it receives is A's call on the new connection.
            await assert_relay_works(new, b, "B", "A")
            await assert_relay_works(b, new, "A", "B")
            await wait_until(lambda: server.protocol.connections == 2, "the old connection is gone")
            assert server.protocol.peers == ["A", "B"]


# -- origins ------------------------------------------------------------------------


async def test_origin_refusal_reaches_a_browser_as_403_and_python_clients_need_no_origin() -> None:
    # Each origin rule is tested in test_admission.py; this shows the answer reaches a client.
    async with await serve(origins=["https://hub.example.org"]) as server:
        async with connect(server.url, additional_headers={"Origin": "https://hub.example.org"}) as ws:
            await send(ws, type="register", presence=True, **{"from": "A"})
            assert (await recv(ws))["type"] == "registered"
            async with peer(server, "B"):  # no Origin header
                pass
        with pytest.raises(InvalidStatus) as refused:
            async with connect(server.url, additional_headers={"Origin": "http://localhost:8888"}):
                pass
        status, body = refusal(refused)
        assert status == 403 and "origin 'http://localhost:8888' may not connect" in body


# -- TLS ----------------------------------------------------------------------------


async def test_tls_server_speaks_wss_verified_against_its_certificate(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    async with await serve(ssl_context=server_context, token="t") as server:
        assert server.url == f"wss://127.0.0.1:{server.port}/ws?token=t"
        async with (
            connect(server.url, ssl=client_context) as a,
            connect(server.url, ssl=client_context) as b,
        ):
            await send(a, type="register", presence=True, **{"from": "A"})
            await send(b, type="register", presence=True, **{"from": "B"})
            assert (await recv(a))["type"] == (await recv(b))["type"] == "registered"
            assert await recv(a) == {"type": "joined", "id": "B"}
            await assert_relay_works(a, b, "B", "A")
        # A client that does not trust the certificate refuses it, and plain ws:// gets nowhere.
        with pytest.raises(ssl.SSLCertVerificationError):
            async with connect(server.url, ssl=ssl.create_default_context(), open_timeout=TIMEOUT):
                pass
        with pytest.raises((InvalidMessage, OSError, ConnectionClosed)):
            async with connect(server.url.replace("wss://", "ws://"), open_timeout=TIMEOUT):
                pass


# -- limits -------------------------------------------------------------------------


async def test_rate_limit_refuses_with_an_error_then_closes_a_persistent_abuser() -> None:
    async with await serve(max_rate=1, max_burst=5, max_refused=3) as server, pair(server) as (a, b):
        # Registration spent one of B's tokens; A has 4 left for a burst.
        for n in range(4):
            await send(a, type="ice", to="B", candidate=candidate(n))
            assert (await recv(b))["candidate"] == candidate(n)
        for _ in range(3):
            err = await expect_error(
                a, json.dumps({"type": "ice", "to": "B", "candidate": "c"}), "rate-limited"
            )
            assert err["in_reply_to"] is None
            assert "more than 1 messages per second (bursts of 5)" in err["message"]
            assert "slow down" in err["message"]
        await assert_relay_works(b, a, "A", "B")  # others are not affected
        await send(a, type="ice", to="B", candidate="c")
        assert "rate limit exceeded persistently" in await expect_close(a, 1008)
        assert await recv(b) == {"type": "left", "id": "A"}


async def test_a_client_that_stops_reading_is_dropped_and_its_senders_keep_going() -> None:
    limit = 64 * 1024
    async with await serve(max_pending_bytes=limit, max_rate=None) as server, pair(server) as (a, b):
        slow = await RawClient.connect(server, "Slow")
        try:
            assert await recv(a) == {"type": "joined", "id": "Slow"}
            assert await recv(b) == {"type": "joined", "id": "Slow"}
            await wait_until(lambda: "Slow" in server.protocol.peers, "Slow registered")
            slow_conn = server.protocol.registry.conns["Slow"]
            big = json.dumps({"type": "ice", "to": "Slow", "candidate": "x" * 16 * 1024})
            peak = 0
            sent = 0
            refused: dict[str, Any] | None = None
            while refused is None:
                assert sent < 2000, "the server kept buffering for a client that does not read"
                await asyncio.wait_for(a.send(big), TIMEOUT)  # a blocked sender fails here
                sent += 1
                peak = max(peak, slow_conn.transport.get_write_buffer_size())
                try:
                    refused = json.loads(await asyncio.wait_for(a.recv(), 0.001))
                except TimeoutError:
                    pass
            assert refused["type"] == "unavailable" and refused["peer"] == "Slow", refused
            assert "stopped reading" in refused["message"]
            assert peak <= limit + len(big) + 64  # bounded: the limit plus the one message that crossed it
            assert await recv(b) == {"type": "left", "id": "Slow"}
            assert server.protocol.peers == ["A", "B"]
            await assert_relay_works(a, b, "B", "A")
        finally:
            slow.close()


async def test_a_message_to_a_phone_that_sent_its_close_frame_comes_back_unavailable(
    server: SignalingServer,
) -> None:
    # Its departure counts from its close frame: a client that does not read holds its TCP connection open up to
    # close_timeout, and what the server relayed to it meanwhile was lost without a word.
    async with peer(server, "A") as a:
        b = await RawClient.connect(server, "B")
        try:
            assert await recv(a) == {"type": "joined", "id": "B"}
            b_conn = server.protocol.registry.conns["B"]
            await b.send_close()
            await wait_until(
                lambda: b_conn.protocol.close_rcvd is not None, "the server read B's close frame"
            )
            await send(a, type="ice", to="B", candidate=candidate(1))
            assert await recv(a) == {"type": "left", "id": "B"}
            reply = await recv(a)
            assert reply["type"] == "unavailable" and reply["peer"] == "B", reply
        finally:
            b.close()


async def test_connection_limit_refuses_with_503_and_frees_slots() -> None:
    async with await serve(max_connections=2) as server, peer(server, "A"):
        async with peer(server, "B"):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(server.url):
                    pass
            status, body = refusal(refused)
            assert status == 503 and "full (2 connections, the limit)" in body
        await wait_until(lambda: len(server.admitted) == 1, "B's slot is free")
        async with peer(server, "C"):
            pass


async def test_keepalive_drops_a_client_that_stops_answering_and_tells_its_peers() -> None:
    async with (
        await serve(ping_interval=0.1, ping_timeout=0.1, close_timeout=0.2) as server,
        peer(server, "A") as a,
    ):
        dead = await RawClient.connect(server, "Dead")  # never reads, so never answers a ping
        try:
            assert await recv(a) == {"type": "joined", "id": "Dead"}
            # A answers pings (its library does) and stays; Dead is dropped within the keepalive window.
            assert await recv(a) == {"type": "left", "id": "Dead"}
            assert server.protocol.peers == ["A"]
            await send(a, type="call", to="Dead", sdp=OFFER)
            assert (await recv(a))["type"] == "unavailable"
        finally:
            dead.close()


async def test_thousands_of_connect_register_disconnect_cycles_leave_no_state_behind() -> None:
    async with await serve(max_rate=None) as server:

        async def cycles(worker: int, count: int = 500) -> None:
            for n in range(count):
                async with peer(server, f"w{worker}-{n}") as ws:
                    if n % 2:
                        ws.transport.abort()  # half of them vanish without a closing handshake

        def traced_bytes() -> int:
            gc.collect()
            return tracemalloc.get_traced_memory()[0]

        async with peer(server, "Witness") as witness:
            # The witness reads its news (joined, left), as a phone does. One that never read stopped answering
            # pings once its receive queue was full, and on a loaded machine, where the cycles outlast the
            # keepalive, the server rightly dropped it: the test then waited in vain for its one connection.
            news: collections.Counter[str] = collections.Counter()

            async def read_news() -> None:
                async for text in witness:
                    news[json.loads(text)["type"]] += 1

            reading = asyncio.ensure_future(read_news())
            tracemalloc.start()
            try:
                # Deadlines only against a hang: a loaded CI machine ran the warm-up past a fixed 60 s once. The
                # cycles' own deadline is made from the warm-up's pace here: 20 times its cycles, 3 times over.
                started = time.monotonic()
                await asyncio.wait_for(cycles(9, 100), 600)  # warm caches and free lists first
                warm_up = time.monotonic() - started
                await wait_until(
                    lambda: server.protocol.connections == 1, "the warm-up's connections are gone", timeout=60
                )
                base = traced_bytes()
                await asyncio.wait_for(asyncio.gather(*(cycles(w) for w in range(4))), max(120, 60 * warm_up))
                await wait_until(
                    lambda: server.protocol.connections == 1, "every cycle's connection is gone", timeout=60
                )
                await wait_until(lambda: len(server.admitted) == 1, "every cycle's slot is free", timeout=60)
                # Memory back to base: 2,000 cycles that each kept even 100 bytes would leave 200 kB.
                grown = traced_bytes() - base
                assert grown < 100_000, f"{grown} bytes still held after 2,000 cycles"
            finally:
                tracemalloc.stop()
            await wait_until(
                lambda: server.protocol.connections == 1, "every cycle's connection is gone", timeout=60
            )
            await wait_until(lambda: len(server.admitted) == 1, "every cycle's slot is free", timeout=60)
            assert server.protocol.peers == ["Witness"]
            assert server.protocol.registry.conns.keys() == {"Witness"}
            assert len(server.server.connections) == 1 and not server.protocol.registry.secrets
            reading.cancel()  # cancelling a websockets recv loses no message
            with contextlib.suppress(asyncio.CancelledError):
                await reading
            assert news["joined"] and set(news) <= {"joined", "left"}, news
            await send(witness, type="call", to="w0-0", sdp=OFFER)
            while (msg := await recv(witness))["type"] != "unavailable":
                assert msg["type"] in ("joined", "left")
        await wait_until(
            lambda: not server.server.connections and not server.admitted and not server.open_connections,
            "the witness is gone",
        )
        await wait_until(lambda: server.protocol.connections == 0, "the witness's registration is gone")
        assert not server.closing_tasks


async def test_random_frames_never_crash_the_live_server_and_others_keep_relaying() -> None:
    rng = random.Random(4)
    pieces = ['{"type":', '"register"', '"call"', '"ice"', '"to":"A"', '"from":"B"', '"sdp":', "null",
              "[", "]", "{", "}", ",", ":", '"\\ud800"', '"\u00e9"', "1e999", "NaN", "\x00", "\U0001f600"]  # fmt: skip

    def random_frame() -> str | bytes:
        kind = rng.choices(range(6), weights=[20, 25, 20, 28, 5, 2])[0]
        if kind == 0:
            return rng.randbytes(rng.randrange(200))
        if kind == 1:
            return "".join(rng.choice(pieces) for _ in range(rng.randrange(12)))
        if kind == 2:
            return "".join(chr(rng.randrange(1, 0x3000)) for _ in range(rng.randrange(100)))
        if kind == 3:
            msg = {
                "type": rng.choice(["call", "ice", "answer", "register", "hangup"]),
                "to": rng.choice("AB"),
            }
            msg[rng.choice(["sdp", "candidate", "from", "secret"])] = rng.choice(["x", 1, None, [], {}])
            return json.dumps(msg)
        if kind == 4:
            return json.dumps({"type": "ice", "to": "B", "candidate": "y" * rng.randrange(70_000)})
        return "x" * rng.randrange(2**20, 2**20 + 100)  # above max_frame_size: closes with 1009

    # close_timeout: a connection failed mid-frame (1009) lingers that long at the TCP level after
    # its state is gone; keep the server's shutdown at the end of the test short.
    async with (
        await serve(max_rate=None, close_timeout=1) as server,
        pair(server, presence=False) as (a, b),  # no joined/left news between the relayed calls
    ):
        fuzz = await connect(server.url, max_size=None)
        drain = asyncio.create_task(asyncio.sleep(0))

        async def drain_replies(ws: ClientConnection) -> None:
            with contextlib.suppress(ConnectionClosed):
                async for _ in ws:
                    pass

        closes = 0
        try:
            start = asyncio.get_running_loop().time()
            for n in range(2000):
                assert asyncio.get_running_loop().time() - start < 60, f"fuzzing too slow at frame {n}"
                if fuzz.state is State.CLOSED or drain.done():
                    # The server closed it (1007/1009): drop our end, perhaps stuck behind an unsent frame.
                    if fuzz.state is not State.CLOSED:  # once CLOSED, the transport is gone already
                        fuzz.transport.abort()
                    fuzz = await connect(server.url, max_size=None)
                    closes += 1
                drain = asyncio.create_task(drain_replies(fuzz)) if drain.done() else drain
                frame = random_frame()
                with contextlib.suppress(ConnectionClosed):
                    if isinstance(frame, bytes) and rng.random() < 0.3:
                        await fuzz.send(frame, text=True)  # invalid UTF-8 in a text frame: closes with 1007
                    else:
                        await fuzz.send(frame)
                if n % 100 == 0:
                    await assert_relay_works(a, b, "B", "A")
                    await assert_relay_works(b, a, "A", "B")
        finally:
            await fuzz.close()
            drain.cancel()
        assert closes > 0  # the fuzzer did reach the connection-ending paths
        await assert_relay_works(a, b, "B", "A")
        assert sorted(server.protocol.peers)[:2] == ["A", "B"]


async def test_an_idle_connection_shares_the_logger_and_drains_once_asyncio_pauses_writing(
    server: SignalingServer, fast_path: bool
) -> None:
    if not fast_path:
        pytest.skip("memory savings of the fast path's connections only")
    # Memory per idle connection (bench/README.md): no LoggerAdapter, no empty deque of drain()
    # waiters per connection; websockets' drain() still works if asyncio ever pauses writing.
    async with peer(server, "A") as ws:
        (conn,) = server.open_connections
        assert conn.logger is conn.protocol.logger is server.ws_logger is server.server.logger
        assert conn.drain_waiters == ()
        conn.pause_writing()
        drain = asyncio.ensure_future(conn.drain())
        await asyncio.sleep(0.01)
        assert not drain.done() and len(conn.drain_waiters) == 1
        conn.resume_writing()
        await asyncio.wait_for(drain, TIMEOUT)
        assert not conn.drain_waiters
        async with peer(server, "B") as ws_b:  # the connection still relays both ways
            await send(ws, type="ice", to="B", candidate=candidate(1), **{"from": "A"})
            assert (await recv(ws_b))["type"] == "ice"
    await wait_until(
        lambda: not server.open_connections and not server.protocol.peers, "both connections are gone"
    )


async def test_a_cancelled_connection_handler_closes_its_connection_cleanly(server: SignalingServer) -> None:
    # The handler awaits the connection's own `ended` future (not wait_closed()'s shield), which
    # a cancelled handler cancels: connection_lost must then not try to complete it.
    errors: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        async with peer(server, "A") as ws:
            (task,) = server.server.handler_tasks
            task.cancel()
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert ws.close_code == 1011
        await wait_until(
            lambda: not server.open_connections and not server.admitted and not server.server.handler_tasks,
            "the connection and its handler are gone",
        )
        assert server.protocol.peers == []
        assert not errors, errors
    finally:
        loop.set_exception_handler(None)


async def test_a_token_in_an_authorization_header_admits_and_is_never_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with await serve(token="tok-314") as server:
        header = {"Authorization": "Bearer tok-314"}
        async with connect(server.url_without_token, additional_headers=header) as ws:
            await send(ws, type="register", **{"from": "A"})
            assert (await recv(ws))["type"] == "registered"
        async with connect(server.url) as ws:  # the seed's browser clients still put it in the query
            await send(ws, type="register", **{"from": "B"})
            assert (await recv(ws))["type"] == "registered"
        with pytest.raises(InvalidStatus) as refused:
            async with connect(server.url_without_token, additional_headers={"Authorization": "Bearer g-27"}):
                pass
        status, body = refusal(refused)
        assert status == 401 and "a wrong token" in body and "Authorization: Bearer TOKEN" in body
    logged = "\n".join(
        r.getMessage() for r in caplog.records if r.name.startswith(("nbcall", "websockets.server"))
    )
    assert "Authorization: ***" in logged  # websockets' own DEBUG lines of the headers, redacted
    assert "tok-314" not in logged and "g-27" not in logged

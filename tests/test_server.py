"""The signaling server over real sockets: a server on port 0, real websockets clients."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from nbcall.server import SignalingServer, serve

TIMEOUT = 5.0

OFFER = json.dumps(
    {
        "type": "offer",
        "sdp": "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
        "a=group:BUNDLE 0 1\r\na=msid-semantic: WMS\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\nc=IN IP4 0.0.0.0\r\n"
        "a=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:EsAw\r\na=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y\r\n"
        "a=ice-options:trickle\r\n"
        "a=fingerprint:sha-256 DA:39:A3:EE:5E:6B:4B:0D:32:55:BF:EF:95:60:18:90:AF:D8:07:09\r\n"
        "a=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n"
        "a=mid:1\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n",
    }
)
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


@pytest.fixture
async def server() -> AsyncIterator[SignalingServer]:
    async with await serve() as signaling:
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
async def peer(server: SignalingServer, peer_id: str) -> AsyncIterator[ClientConnection]:
    """A client registered as ``peer_id``, its ``registered`` reply consumed."""
    async with connect(server.url) as ws:
        await send(ws, type="register", **{"from": peer_id})
        msg = await recv(ws)
        assert msg["type"] == "registered" and msg["id"] == peer_id, msg
        yield ws


@asynccontextmanager
async def pair(
    server: SignalingServer, a: str = "A", b: str = "B"
) -> AsyncIterator[tuple[ClientConnection, ...]]:
    """Two registered clients; the first one's ``joined`` notice consumed."""
    async with peer(server, a) as ws_a, peer(server, b) as ws_b:
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
            await send(carol, type="register", **{"from": "Carol"})
            assert await recv(carol) == {"type": "registered", "id": "Carol", "peers": ["Alice", "Bob"]}
            assert await recv(bob) == {"type": "joined", "id": "Carol"}
            assert await recv(alice) == {"type": "joined", "id": "Carol"}
        assert await recv(bob) == {"type": "left", "id": "Carol"}
        assert await recv(alice) == {"type": "left", "id": "Carol"}
        assert server.protocol.peers == ["Alice", "Bob"]


async def test_reregistering_the_same_id_announces_nothing_new(server: SignalingServer) -> None:
    async with pair(server) as (a, b):
        await send(b, type="register", **{"from": "B"})
        assert await recv(b) == {"type": "registered", "id": "B", "peers": ["A"]}
        # B's handler would have sent any `joined` to A before relaying this call.
        await assert_relay_works(b, a, "A", "B")


async def test_abrupt_disconnect_frees_the_id_and_tells_the_others(server: SignalingServer) -> None:
    async with peer(server, "A") as a:
        b = await connect(server.url)
        await send(b, type="register", **{"from": "B"})
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
        await send(impostor, type="register", **{"from": "A2"})
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

        await send(junk, type="register", **{"from": "Junk"})
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


async def test_a_dead_recipient_does_not_break_the_senders_connection(server: SignalingServer) -> None:
    class DeadSocket:
        """Stands for a peer whose socket died before its handler noticed."""

        class transport:  # an asyncio transport with nothing buffered
            @staticmethod
            def get_write_buffer_size() -> int:
                return 0

        async def send(self, text: str) -> None:
            raise ConnectionClosed(None, None)

    ghost = DeadSocket()
    server.protocol.connect(ghost)  # type: ignore[arg-type]
    server.protocol.receive(ghost, '{"type":"register","from":"Ghost"}')  # type: ignore[arg-type]
    async with pair(server) as (a, b):
        await send(a, type="call", to="Ghost", sdp=OFFER)
        await assert_relay_works(a, b, "B", "A")


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
        await send(ws, type="register", **{"from": "A"})
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
    caplog.set_level(logging.INFO, logger="nbcall.server")
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(peer(server, "A"))
        async with peer(server, "B") as b:
            await recv(a)  # joined
            await assert_relay_works(b, a, "A", "B")
        assert await recv(a) == {"type": "left", "id": "B"}
    messages = [r.getMessage() for r in caplog.records if r.name == "nbcall.server"]
    assert messages[:4] == [
        "'A' registered (1 online)",
        "'B' registered (2 online)",
        "'B' -> 'A': call",
        "'B' left",
    ]

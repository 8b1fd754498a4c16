"""Fixtures of the server's tests: a sans-I/O protocol; a Janus and a server driving it (the SFU tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from sfu_support import janus_or_skip
from support import frame

from nbcall.server.protocol import SignalingProtocol
from nbcall.server.server import SignalingServer, serve
from nbcall.teach.janus import JanusServer


@pytest.fixture
def proto() -> SignalingProtocol[str]:
    """A protocol where connections "a" and "b" registered as A and B; "c" is connected only."""
    p: SignalingProtocol[str] = SignalingProtocol()
    for conn in "abc":
        p.connect(conn)
    p.receive("a", frame(type="register", presence=True, **{"from": "A"}))
    p.receive("b", frame(type="register", presence=True, **{"from": "B"}))
    return p


@pytest.fixture(scope="module")
def janus(request: pytest.FixtureRequest) -> Iterator[JanusServer]:
    """One Janus per test module; a module marked ``webrtc`` needs its ICE (the namespace's veth)."""
    media = any(marker.name == "webrtc" for marker in request.node.iter_markers())
    with janus_or_skip(media=media) as server:
        yield server


@pytest.fixture(params=["ws", "http"])
async def sfu_server(request: pytest.FixtureRequest, janus: JanusServer) -> AsyncIterator[SignalingServer]:
    """A server driving Janus through its WebSocket transport, then through its HTTP one."""
    url = janus.url if request.param == "ws" else janus.http_url
    async with await serve(sfu=url, sfu_secret=janus.api_secret) as server:
        yield server

"""Fixtures of the server's tests: a sans-I/O protocol, a real redis-server for the cluster's, and a Janus and a
server driving it for the SFU's."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sfu_support import janus_or_skip
from support import RedisServer, frame

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


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own (skips the test where none is installed)."""
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server (scripts/test.sh installs it)")
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()

"""Fixtures of the server's tests: a sans-I/O protocol, and a real redis-server for the cluster's."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import RedisServer, frame

from nbcall.server.protocol import SignalingProtocol


@pytest.fixture
def proto() -> SignalingProtocol[str]:
    """A protocol where connections "a" and "b" registered as A and B; "c" is connected only."""
    p: SignalingProtocol[str] = SignalingProtocol()
    for conn in "abc":
        p.connect(conn)
    p.receive("a", frame(type="register", presence=True, **{"from": "A"}))
    p.receive("b", frame(type="register", presence=True, **{"from": "B"}))
    return p


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own (skips the test where none is installed)."""
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server (scripts/test.sh installs it)")
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()

"""Fixtures of the server's sans-I/O tests."""

from __future__ import annotations

import pytest
from support import frame

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

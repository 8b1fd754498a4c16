"""Fixtures of the Python peer's tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from support import closed_after

from nbcall import Peer
from nbcall.server.server import SignalingServer


@pytest.fixture
def make_peer(server: SignalingServer) -> Iterator[Callable[..., Peer]]:
    yield from closed_after(lambda user_id, **options: Peer(user_id, **{"server": server.url, **options}))

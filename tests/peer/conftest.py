"""Fixtures of the Python peer's tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from nbcall import Peer
from nbcall.server.server import SignalingServer


@pytest.fixture
def make_peer(server: SignalingServer) -> Iterator[Callable[..., Peer]]:
    made: list[Peer] = []

    def make(user_id: str, **options: Any) -> Peer:
        peer = Peer(user_id, **{"server": server.url, **options})
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.close()

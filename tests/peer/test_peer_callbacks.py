"""Callbacks of a Peer run on nbcall's background loop when signaling changes its traits: from there a Peer may be
made and ``stats`` read, and a blocking call that cannot work raises at once saying what to do. No call is made,
so these need no network namespace."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support import TIMEOUT, RawPeer
from support import wait_until_sync as wait_until

from nbcall import Peer
from nbcall.call import kernel
from nbcall.server.server import SignalingServer


@pytest.fixture
def made(server: SignalingServer) -> Iterator[list[Any]]:
    """Peers and raw peers to close at the end."""
    things: list[Any] = []
    yield things
    for thing in reversed(things):
        thing.close()


def test_an_observer_on_the_background_loop_makes_a_peer_reads_stats_and_is_told_what_to_do_for_flush(
    server: SignalingServer, made: list[Any]
) -> None:
    a = Peer("A", server=server.url, timeout=TIMEOUT)
    made.append(a)
    inside: dict[str, Any] = {}

    def on_peers(change: dict[str, Any]) -> None:
        if "Q" not in change["new"] or inside:
            return
        inside["on loop"] = threading.current_thread() is kernel._thread
        started = time.monotonic()
        inside["peer"] = Peer("C", server=server.url, timeout=TIMEOUT)  # registers once this returns
        made.append(inside["peer"])
        inside["stats"] = a.stats
        try:
            a.flush()
        except RuntimeError as exc:
            inside["flush"] = str(exc)
        inside["took"] = time.monotonic() - started

    a.observe(on_peers, "peers")
    made.append(RawPeer(server.url, "Q"))
    wait_until(lambda: "took" in inside, "the observer to finish")
    assert inside["on loop"], "the observer did not run on the background loop: this test shows nothing"
    assert inside["took"] < 1, f"the observer blocked the loop for {inside['took']:.1f} s"
    assert inside["stats"] == {}  # no call yet
    assert "Peer.flush() waits for nbcall's background loop" in inside["flush"]
    assert "do it from a cell or another thread" in inside["flush"]
    c = inside["peer"]
    wait_until(lambda: c.online, "C to register")
    assert "A" in c.peers and c.error == ""

"""The waits Phone and Peer share (``wait_for``, and Peer's blocking ``wait``): one rule for an ended call.

A bare wire-protocol client stands in for the callee. The Phone needs no browser here; the Peer's calls start
aiortc, so its cases are marked ``webrtc`` (run in the loopback-only namespace).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from support import TIMEOUT, RawPeer, wait_until

from nbcall import CallError, Peer, Phone
from nbcall.server.server import SignalingServer

KINDS = [pytest.param(Phone, id="Phone"), pytest.param(Peer, id="Peer", marks=pytest.mark.webrtc)]


@pytest.fixture(params=KINDS)
def phone(request: pytest.FixtureRequest, server: SignalingServer) -> Iterator[Any]:
    """A Phone, then a Peer, registered as P."""
    made = request.param("P", server=server.url)
    yield made
    made.close()


@pytest.fixture
def callee(server: SignalingServer) -> Iterator[RawPeer]:
    peer = RawPeer(server.url, "A")
    yield peer
    peer.close()


async def declined(phone: Any, callee: RawPeer) -> None:
    """``phone`` called ``callee``, which declined: the call ended."""
    phone.call("A")
    callee.send(type="decline", to=phone.user_id, reason="not now")
    await wait_until(lambda: phone.state == "ended", "the call to end")


async def test_an_earlier_calls_end_does_not_end_a_wait_for_the_next_call(
    phone: Any, callee: RawPeer
) -> None:
    await declined(phone, callee)
    waiting = asyncio.create_task(phone.wait_for("calling", timeout=TIMEOUT))
    await asyncio.sleep(0.1)
    assert not waiting.done()  # the previous call's end is no reason to give up
    phone.call("A")
    assert await waiting == "calling"


async def test_an_ended_call_ends_a_wait_for_its_progress_with_the_reason(
    phone: Any, callee: RawPeer
) -> None:
    await declined(phone, callee)
    with pytest.raises(CallError, match="P's call ended: A declined the call: not now"):
        await phone.wait_for("connected", timeout=TIMEOUT)
    phone.call("A")
    waiting = asyncio.create_task(phone.wait_for("connected", timeout=TIMEOUT))
    callee.send(type="decline", to="P")
    with pytest.raises(CallError, match="P's call ended"):  # an end while it waits ends it too
        await waiting


@pytest.mark.webrtc
async def test_a_peers_blocking_wait_follows_the_same_rule(server: SignalingServer, callee: RawPeer) -> None:
    peer = Peer("P", server=server.url)
    try:
        await _blocking_wait_after_an_end(peer, callee)
    finally:
        peer.close()


async def _blocking_wait_after_an_end(peer: Peer, callee: RawPeer) -> None:
    await declined(peer, callee)
    got: list[Any] = []
    waiting = threading.Thread(target=lambda: got.append(peer.wait("calling", timeout=TIMEOUT)))
    waiting.start()
    await asyncio.sleep(0.1)
    assert waiting.is_alive()
    peer.call("A")
    await asyncio.to_thread(waiting.join, TIMEOUT)
    assert got == ["calling"]
    with pytest.raises(TimeoutError, match=r"P did not reach ended within 0.1 s \(state 'calling'\)"):
        await asyncio.to_thread(peer.wait, "ended", timeout=0.1)


async def test_wait_until_returns_the_condition_once_a_named_trait_makes_it_true(
    phone: Any, callee: RawPeer
) -> None:
    waiting = asyncio.create_task(phone.wait_until(lambda: phone.error, "error", timeout=TIMEOUT))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    phone.call("A")
    callee.send(type="decline", to=phone.user_id, reason="busy")
    assert "A declined the call: busy" in await waiting


async def test_wait_until_says_what_the_traits_were_and_passes_on_what_the_condition_raised(
    phone: Any,
) -> None:
    with pytest.raises(TimeoutError, match=r"condition still did not hold after 0.2 s \(state = 'idle'\)"):
        await phone.wait_until(lambda: phone.state == "connected", "state", timeout=0.2)
    with pytest.raises(ZeroDivisionError):
        await phone.wait_until(lambda: 1 / 0, "state")
    with pytest.raises(ValueError, match="name the traits"):
        await phone.wait_until(lambda: True)
    with pytest.raises(ValueError, match=r"not \['no_such_trait'\]"):
        await phone.wait_until(lambda: True, "no_such_trait")

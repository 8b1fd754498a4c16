"""Callbacks of a Peer run on nbcall's background loop when signaling changes its traits: from there a Peer may be
made and ``stats`` read, and a blocking call that cannot work raises at once saying what to do. No call is made,
so these need no network namespace."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from typing import Any, cast

import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack
from support import TIMEOUT, RawPeer, observe_busily, returns_on_a_thread
from support import wait_until_sync as wait_until

import nbcall.peer.from_engine
from nbcall import Message, Peer
from nbcall.call import kernel
from nbcall.peer.link import EngineHost, Link, SendLimits
from nbcall.peer.rtc import Engine
from nbcall.peer.tracks import MAX_PENDING_AUDIO, MediaOptions
from nbcall.server.server import SignalingServer
from nbcall.wire.payload import encode


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


def test_an_observer_of_a_change_made_in_a_cell_may_wait_for_the_loop_and_call_the_peer_from_a_thread(
    server: SignalingServer, made: list[Any]
) -> None:
    """Observers used to run with the peer's lock held: the loop, updating the peer meanwhile, and a thread
    calling one of its methods waited for the observer, which waited for them."""
    a = Peer("A", server=server.url, timeout=TIMEOUT)
    made.append(a)
    made.append(RawPeer(server.url, "Q"))
    wait_until(lambda: "Q" in a.peers, "A to see Q")
    done, _ = observe_busily(a, server.url, made, "calling")
    assert returns_on_a_thread(a.call, "Q", timeout=4 * TIMEOUT), "call() still has not returned: deadlocked"
    assert "failed" not in done, done.get("failed")
    assert isinstance(done["stats"], dict) and done["hung up"]
    wait_until(lambda: a.state == "ended", "A to hang up")


def test_messages_for_slow_on_message_callbacks_wait_in_a_bounded_queue_and_the_rest_are_counted(
    server: SignalingServer,
    made: list[Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(nbcall.peer.from_engine, "MAX_PENDING_CALLBACKS", 5)
    peer = Peer("A", server=server.url, timeout=TIMEOUT)
    made.append(peer)
    go_on = threading.Event()
    handed: list[Any] = []

    def slow(message: Message) -> None:
        go_on.wait(TIMEOUT)
        handed.append(message.data)

    peer.on_message(slow)

    async def arrive() -> None:  # as the engine hands over received messages: on the loop
        for n in range(12):
            peer.engine_message("B", *encode(n))

    kernel.run(arrive(), timeout=TIMEOUT)
    assert [m.data for m in peer.messages] == list(range(12))  # every message is kept
    assert "on_message callbacks fall behind: 1 messages were not handed to them" in peer.error
    go_on.set()
    wait_until(lambda: len(handed) == 5, "the queued messages to reach the callback")
    assert handed == [0, 1, 2, 3, 4]
    warned = [r.getMessage() for r in caplog.records if "fall behind" in r.getMessage()]
    assert len(warned) == 1  # a counted line now and then, not one per message


class EndlessAudio(MediaStreamTrack):
    """A received audio track that has frames at once, as fast as they are asked for."""

    kind = "audio"

    async def recv(self) -> av.AudioFrame:
        await asyncio.sleep(0)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 960), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate = 48000
        return frame


async def test_audio_for_slow_on_audio_callbacks_waits_in_a_bounded_queue_and_the_rest_is_dropped_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    go_on = threading.Event()
    media = MediaOptions(on_audio=[lambda samples, timestamp: go_on.wait(TIMEOUT)])
    pool = concurrent.futures.ThreadPoolExecutor(1)
    link = Link("B", [], cast(EngineHost, None), media, SendLimits(), pool)
    try:
        link.pc.emit("track", EndlessAudio())
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while link.counts["audio_dropped"] < 3 * MAX_PENDING_AUDIO:
            assert asyncio.get_running_loop().time() < deadline, link.counts
            await asyncio.sleep(0.01)
        handed = link.counts["audio_in"] - link.counts["audio_dropped"]
        assert handed <= MAX_PENDING_AUDIO + 1, link.counts  # the rest was dropped, not queued
        assert link.stats()["audio_dropped"] >= 3 * MAX_PENDING_AUDIO
        warned = [r.getMessage() for r in caplog.records if "frames dropped so far" in r.getMessage()]
        assert warned and "audio from B: 1 frames dropped so far" in warned[0]
    finally:
        go_on.set()
        await link.close()
        pool.shutdown(wait=True)


class Reports:
    """An engine's host that records the failures it is told of."""

    def __init__(self) -> None:
        self.failures: list[tuple[str, str]] = []

    def engine_failure(self, peer: str, text: str) -> None:
        self.failures.append((peer, text))


async def test_an_engine_command_that_fails_fails_that_peers_call_saying_why() -> None:
    host = Reports()
    engine = Engine(cast(EngineHost, host))
    try:
        engine.command({"type": "start_call", "peer": "B", "ice_servers": [{"url": "stun:typo"}]})
        assert len(host.failures) == 1 and host.failures[0][0] == "B"
        assert host.failures[0][1].startswith("start_call failed: TypeError")
    finally:
        await engine.close()

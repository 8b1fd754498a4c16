"""Two Python peers calling each other with real WebRTC (aiortc), no browser: a real signaling server on the
background loop, real ICE/DTLS/SCTP over 127.0.0.1.

Marked ``webrtc``: scripts/test.sh runs these inside the loopback-only network namespace, since aiortc gathers
candidates on every interface it finds.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import wait_until_sync

import nbcall
from nbcall import CallError, Peer
from nbcall.call import kernel
from nbcall.server.server import SignalingServer, serve

pytestmark = pytest.mark.webrtc
TIMEOUT = 10.0


async def _stop(server: SignalingServer) -> None:
    server.close()
    await server.wait_closed()


def connect(caller: Peer, callee: Peer) -> None:
    caller.call(callee.user_id)
    callee.wait("ringing")
    callee.answer()
    caller.wait("connected", timeout=TIMEOUT)
    callee.wait("connected", timeout=TIMEOUT)


def test_two_peers_call_answer_and_exchange_typed_data_both_ways(make_peer) -> None:
    a, b = make_peer("A"), make_peer("B")
    assert a.peers == ["B"] and a.online
    got: list[nbcall.Message] = []
    b.on_message(got.append)
    connect(a, b)
    assert (a.peer, b.peer) == ("B", "A")

    a.send("hi")
    a.send(b"\x00\x01\xff")
    a.send({"x": [1, 2]})
    a.send([1.5, None, "é"])
    b.send(bytearray(b"\x10\x20")).result(TIMEOUT)
    wait_until_sync(lambda: len(got) == 4 and a.messages, "the messages to arrive", TIMEOUT)
    assert [(type(m.data).__name__, m.data, m.sender) for m in b.messages] == [
        ("str", "hi", "A"),
        ("bytes", b"\x00\x01\xff", "A"),
        ("dict", {"x": [1, 2]}, "A"),
        ("list", [1.5, None, "é"], "A"),
    ]
    assert got == b.messages  # the callback saw each message once, in order
    assert a.messages[0].data == b"\x10\x20"
    assert a.stats["framed"] is True and a.stats["messages_out"] == 4
    types = [(e["dir"], e["type"]) for e in a.log]
    assert ("out", "call") in types and ("in", "answer") in types and ("event", "datachannel-open") in types


def test_malformed_frames_and_file_messages_from_a_peer_leave_the_call_up(make_peer) -> None:
    a, b = make_peer("A"), make_peer("B")
    connect(a, b)
    a.send({"nbcall_file": "start", "id": "f1", "name": "x.txt", "size": "lots"}).result(TIMEOUT)

    async def junk() -> None:  # a frame no nbcall end makes, sent on the loop that owns the channel
        a._engine.links["B"].channel.send(bytes([9]) + b"no such kind")

    kernel.run(junk(), timeout=TIMEOUT)
    a.send("still here").result(TIMEOUT)
    wait_until_sync(lambda: b.messages, "the message after the malformed ones", TIMEOUT)
    assert [m.data for m in b.messages] == ["still here"]
    assert a.state == b.state == "connected"
    assert b.stats["messages_malformed"] == 1


def test_eight_mebibytes_arrive_whole_both_ways_with_progress(make_peer) -> None:
    a, b = make_peer("A", auto_answer=True), make_peer("B")
    b.call("A")
    b.wait("connected", timeout=TIMEOUT)
    for peer, other in ((a, "B"), (b, "A")):  # both list sctp_ext "burst": 16 packets per SACK, each way
        sctp = peer._engine.links[other].pc.sctp
        assert (sctp._nbcall_sack_every, sctp._nbcall_burst) == (16, 16)
    seen: list[dict] = []
    b.on_progress(seen.append)
    big = os.urandom(8 * 2**20)
    text = "ü" * (2**20)
    b.send(big)
    b.send(text)
    a.send(big[::-1])
    wait_until_sync(lambda: len(a.messages) == 2 and len(b.messages) == 1, "8 MiB each way", 60)
    assert hashlib.sha256(a.messages[0].data).digest() == hashlib.sha256(big).digest()
    assert a.messages[1].data == text
    assert hashlib.sha256(b.messages[0].data).digest() == hashlib.sha256(big[::-1]).digest()
    sends = [p["done"] for p in seen if p.get("direction") == "out" and p["total"] == len(big)]
    assert len(sends) > 2 and sends == sorted(sends) and sends[-1] == len(big)
    arriving = [p for p in seen if p.get("direction") == "in"]  # the 8 MiB from A, as it came in
    # A announced its length (framing extension "length"), so B knew the total and the time left.
    assert arriving and all(p["total"] == len(big) for p in arriving)
    assert arriving[-1]["done"] == len(big) and arriving[-1]["eta"] == 0
    assert all(p["rate"] >= 0 for p in seen) and any(p["eta"] and p["eta"] > 0 for p in arriving + seen)
    assert b.progress == {}  # nothing under way any more


def test_decline_ends_the_callers_call_with_the_reason(make_peer) -> None:
    a, b = make_peer("A"), make_peer("B")
    a.call("B")
    b.wait("ringing")
    b.decline("busy with tests")
    with pytest.raises(CallError, match="B declined the call: busy with tests"):
        a.wait("connected")
    assert (a.state, b.state) == ("ended", "ended")


@pytest.mark.parametrize("who", ["caller", "callee"])
def test_hangup_from_either_side_ends_both(make_peer, who: str) -> None:
    a, b = make_peer("A"), make_peer("B")
    connect(a, b)
    first, other = (a, b) if who == "caller" else (b, a)
    first.send("last words")
    first.hangup()
    assert other.wait("ended") == "ended"
    assert other.error == f"{first.user_id} hung up"
    assert other.messages[-1].data == "last words"  # hangup waits until what was sent has arrived


def test_calling_an_unknown_peer_fails_with_a_clear_error(make_peer) -> None:
    a = make_peer("A")
    a.call("Nobody")
    with pytest.raises(CallError, match="'Nobody' is not online"):
        a.wait("connected")
    assert a.state == "failed"
    with pytest.raises(CallError, match="not in a connected call"):
        a.send("too early")


def test_the_call_goes_on_while_the_server_restarts_and_both_come_back_online() -> None:
    first = kernel.run(serve(), timeout=TIMEOUT)
    port = first.port
    with Peer("A", server=first.url, auto_answer=True) as a, Peer("B", server=first.url) as b:
        b.call("A")
        b.wait("connected", timeout=TIMEOUT)
        kernel.run(_stop(first), timeout=TIMEOUT)
        wait_until_sync(lambda: not a.online and not b.online, "both to notice the server is gone")
        b.send("through the restart")
        wait_until_sync(lambda: a.messages, "data over the peer-to-peer connection", TIMEOUT)
        assert (a.state, b.state) == ("connected", "connected")
        second = kernel.run(serve(port=port), timeout=TIMEOUT)
        try:
            wait_until_sync(lambda: a.online and b.online, "both back online", 15)
            a.send("after the restart")
            wait_until_sync(lambda: b.messages, "data after the restart", TIMEOUT)
            b.hangup()
            a.wait("ended")  # told through the new server
        finally:
            a.close()
            b.close()
            kernel.run(_stop(second), timeout=TIMEOUT)


def test_a_script_needs_no_server_and_the_with_block_closes_the_peer() -> None:
    with Peer("S1", auto_answer=True) as s1, Peer("S2") as s2:  # the default server starts on first use
        s2.call("S1")
        s2.wait("connected", timeout=TIMEOUT)
        s2.send({"n": 1})
        wait_until_sync(lambda: s1.messages, "the message")
    assert (s1.state, s2.state) == ("ended", "ended")
    assert not s1.online and not s2.online


async def test_async_code_awaits_wait_for_and_uses_async_with(server: SignalingServer) -> None:
    async with Peer("A", server=server.url, auto_answer=True) as a, Peer("B", server=server.url) as b:
        b.call("A")
        assert await b.wait_for("connected", timeout=TIMEOUT) == "connected"
        await asyncio.wrap_future(b.send("async hello"))
        for _ in range(500):
            if a.messages:
                break
            await asyncio.sleep(0.01)
        assert a.messages[-1].data == "async hello"
        with pytest.raises(RuntimeError, match="await peer.wait_for"):
            kernel.run(_wait_on_loop(a))


async def _wait_on_loop(peer: Peer) -> None:
    peer.wait("ended", timeout=0.1)  # blocking the loop that runs the peer would deadlock it


def test_upload_counts_what_a_peer_sent_on_the_connections_it_holds(make_peer) -> None:
    make_peer("A", auto_answer=True)
    b = make_peer("B")
    b.call("A")
    b.wait("connected", timeout=TIMEOUT)
    before = b.upload()
    b.send(b"x" * 100_000).result(TIMEOUT)
    after = b.upload()
    assert (before["connections"], after["connections"]) == (1, 1)
    assert after["data_bytes"] - before["data_bytes"] >= 100_000  # the message, plus its frames' headers
    assert after["media_bytes"] == 0  # a data-only call sends no RTP


def test_send_file_writes_it_under_its_name_and_the_receiver_checks_it(make_peer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    a = make_peer("A", auto_answer=True, receive_dir=out)
    b = make_peer("B")
    b.call("A")
    b.wait("connected", timeout=TIMEOUT)
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(3 * 2**20 + 5))
    verdict = b.send_file(source).result(30)
    assert verdict["ok"] is True
    assert (out / "data.bin").read_bytes() == source.read_bytes()
    message = a.messages[-1]
    assert (message.name, message.path, message.size) == ("data.bin", out / "data.bin", source.stat().st_size)
    again = b.send_file(source).result(30)  # the receiver has it: nothing travels
    assert (again["ok"], again["files"][0]["code"]) == (True, "same")
    source.write_bytes(b"another file of that name")
    verdict = b.send_file(source).result(30)  # the receiver keeps its file
    assert verdict["ok"] is False and "exists" in verdict["error"]
    assert (out / "data.bin").stat().st_size == 3 * 2**20 + 5
    assert sorted(p.name for p in out.iterdir()) == ["data.bin"]  # no partial file left behind


def test_a_peers_max_receive_size_bounds_the_files_it_keeps_in_memory(make_peer, tmp_path: Path) -> None:
    a = make_peer("A", auto_answer=True, max_receive_size=2**20)  # no receive_dir: files stay in memory
    b = make_peer("B")
    b.call("A")
    b.wait("connected", timeout=TIMEOUT)
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(2**20 + 1))
    verdict = b.send_file(source).result(30)
    assert verdict["ok"] is False and "max_receive_size" in verdict["error"]
    a.max_receive_size = 2 * 2**20  # raised on the live peer: the next send fits
    assert b.send_file(source).result(30)["ok"] is True
    assert a.messages[-1].data == source.read_bytes()


def test_a_file_cut_by_the_end_of_the_call_resumes_in_the_next_call(make_peer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    a = make_peer("A", auto_answer=True, receive_dir=out)
    b = make_peer("B")
    threads: set[str] = set()  # every thread that touches A's file receiver

    def spied(method: Callable[..., Any]) -> Callable[..., Any]:
        def spy(*args: Any) -> Any:
            threads.add(threading.current_thread().name)
            return method(*args)

        return spy

    receiver = a.file_receiver
    receiver.receive = spied(receiver.receive)  # type: ignore[method-assign]
    receiver.abort = spied(receiver.abort)  # type: ignore[method-assign]
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(12 * 2**20))
    partial = out / ".big.bin.nbcall-partial"
    b.call("A")
    b.wait("connected", timeout=TIMEOUT)
    cut = b.send_file(source)
    wait_until_sync(lambda: partial.exists() and partial.stat().st_size >= 2 * 2**20, "2 MiB to arrive", 120)
    a.hangup()  # from this thread, while A's loop writes the file
    b.wait("ended", timeout=TIMEOUT)
    assert cut.exception(180) is not None or cut.result()["ok"] is False  # the call ended under it
    wait_until_sync(lambda: a.interrupted_files == ["big.bin"], "A to drop the file", TIMEOUT)
    kept = partial.stat().st_size
    assert 0 < kept < source.stat().st_size and not (out / "big.bin").exists()
    assert threads == {"nbcall-signaling"}  # A's receiver was only ever touched on its loop

    b.call("A")
    b.wait("connected", timeout=TIMEOUT)
    result = b.send_file(source).result(300)  # generous: a loaded machine
    (verdict,) = result["files"]
    assert (result["ok"], verdict["offset"]) == (True, kept)
    assert verdict["note"].startswith("resumed at ")
    assert (out / "big.bin").read_bytes() == source.read_bytes()
    assert sorted(p.name for p in out.iterdir()) == ["big.bin"]  # no partial file left


def test_video_made_in_python_arrives_as_arrays_and_slow_callbacks_drop_frames(make_peer) -> None:
    count = iter(range(10**6))

    def pattern() -> np.ndarray:
        n = next(count)
        frame = np.zeros((120, 160, 3), dtype=np.uint8)
        frame[:, :, 0] = (n * 8) % 256  # red changes over time
        frame[:, :, 1] = 200
        return frame

    sender = make_peer("V", video=pattern, fps=30, auto_answer=True)
    viewer = make_peer("W")
    frames: list[tuple[tuple[int, ...], float, float]] = []
    lock = threading.Lock()

    @viewer.on_frame
    def slow(frame: np.ndarray, timestamp: float) -> None:
        with lock:
            frames.append((frame.shape, float(frame[..., 0].mean()), timestamp))
        time.sleep(0.2)  # slower than the video: frames in between are dropped

    viewer.call("V")
    viewer.wait("connected", timeout=TIMEOUT)
    wait_until_sync(lambda: len(frames) >= 4, "four frames in Python", 20)
    with lock:
        shapes = {f[0] for f in frames}
        reds = [f[1] for f in frames]
        times = [f[2] for f in frames]
    assert shapes == {(120, 160, 3)}
    assert len({round(r) for r in reds}) > 1  # the picture changes over time
    assert times == sorted(times)
    stats = viewer.stats
    assert stats["frames_dropped"] > 0 and stats["frames_in"] > len(frames)
    assert sender.stats["frames_out"] > 0


def test_three_peers_form_a_room_talk_pairwise_and_to_all_and_go_on_when_one_leaves(make_peer) -> None:
    a, b, c = make_peer("A"), make_peer("B"), make_peer("C")
    a.invite("B", "C")
    for joiner in (b, c):
        joiner.wait("ringing")
        assert joiner.invitation["from"] == "A" and joiner.invitation["room"].startswith("r-")
        joiner.answer()
    for member in (a, b, c):
        others = [p for p in "ABC" if p != member.user_id]
        assert sorted(member.wait_members(timeout=TIMEOUT)) == others
        assert member.connections == dict.fromkeys(others, "connected")
    assert a.room == b.room == c.room and sorted(a.members) == ["A", "B", "C"]
    # The joiners offered; every offer and answer of a Python peer says it never rolls back.
    offers = [
        e["detail"] for p in (a, b, c) for e in p.log if e["dir"] == "out" and e["type"] in ("call", "answer")
    ]
    assert len(offers) == 6 and all(o["polite"] is False and o["room"] == a.room for o in offers)

    peers = {"A": a, "B": b, "C": c}
    for sender, receiver in [(s, r) for s in "ABC" for r in "ABC" if s != r]:
        peers[sender].send(f"{sender}->{receiver}", to=receiver)
    a.send({"to": "all"})  # a broadcast: to every other member
    for name, peer in peers.items():
        wait_until_sync(
            lambda p=peer: len(p.messages) >= (3 if p is not a else 2), f"{name}'s messages", TIMEOUT
        )
    for name, peer in peers.items():
        pairs = {(m.sender, m.data) for m in peer.messages if isinstance(m.data, str)}
        assert pairs == {(s, f"{s}->{name}") for s in "ABC" if s != name}
    assert [(m.sender, m.data) for p in (b, c) for m in p.messages if m.kind == "json"] == [
        ("A", {"to": "all"}),
        ("A", {"to": "all"}),
    ]

    c.leave()
    assert c.state == "ended" and c.room == ""
    wait_until_sync(lambda: a.members == b.members == ["A", "B"], "C gone from A's and B's room", TIMEOUT)
    assert a.connections == {"B": "connected"} and a.state == b.state == "connected"
    with pytest.raises(CallError, match="'C' is not in A's room"):
        a.send("late", to="C")
    b.send("still here")
    wait_until_sync(lambda: a.messages[-1].data == "still here", "B's message after C left", TIMEOUT)
    assert a.messages[-1].sender == "B"


class _Host:
    """An engine's host that records what the engine reports."""

    def __init__(self) -> None:
        self.max_receive_size = 2**20
        self.signals: list[dict[str, Any]] = []
        self.open: list[str] = []
        self.failures: list[str] = []

    def engine_signal(self, peer: str, signal: dict[str, Any]) -> None:
        self.signals.append(signal)

    def engine_connection(self, peer: str, state: str) -> None:
        pass

    def engine_channel(self, peer: str, open_: bool, framed: bool) -> None:
        if open_:
            self.open.append(peer)

    def engine_message(self, peer: str, kind: str, payload: bytes) -> None:
        pass

    def engine_receiving(self, peer: str, size: int) -> None:
        pass

    def engine_failure(self, peer: str, text: str) -> None:
        self.failures.append(text)

    def engine_dropped(self, peer: str, problem: str) -> None:
        self.failures.append(problem)


async def test_the_engine_is_never_polite_in_glare_and_renegotiates_a_live_link() -> None:
    from support import wait_until

    from nbcall.peer.rtc import Engine

    async def glare_then_renegotiate() -> None:
        ha, hb = _Host(), _Host()
        a, b = Engine(ha), Engine(hb)
        try:
            a.command({"type": "start_call", "peer": "B", "ice_servers": []})
            b.command({"type": "start_call", "peer": "A", "ice_servers": []})
            await wait_until(lambda: ha.signals and hb.signals, "both offers", TIMEOUT)
            offer_a, offer_b = ha.signals[0], hb.signals[0]
            assert offer_a["type"] == "call" and offer_a["polite"] is False
            # A ignores B's offer (and the accept after it): aiortc cannot roll its own offer back.
            a.command({"type": "remote", "peer": "B", "signal": offer_b})
            a.command({"type": "accept", "peer": "B"})
            # B, standing in for a polite browser, drops its offer and answers A's.
            b.command({"type": "close", "peer": "A"})
            b.command({"type": "remote", "peer": "A", "signal": offer_a})
            b.command({"type": "accept", "peer": "A"})
            await wait_until(lambda: len(hb.signals) == 2, "B's answer", TIMEOUT)
            a.command({"type": "remote", "peer": "B", "signal": hb.signals[1]})
            await wait_until(lambda: ha.open and hb.open, "the data channel open on both sides", TIMEOUT)
            assert len(ha.signals) == 1  # A answered nothing
            # An offer on the live link renegotiates it: same connection, an answer, the channel stays open.
            link = b.links["A"]
            pc = a.links["B"].pc
            await pc.setLocalDescription(await pc.createOffer())
            sdp = json.dumps({"type": "offer", "sdp": pc.localDescription.sdp})
            b.command({"type": "remote", "peer": "A", "signal": {"type": "call", "sdp": sdp, "framing": "x"}})
            b.command({"type": "accept", "peer": "A"})
            await wait_until(lambda: len(hb.signals) == 3, "B's second answer", TIMEOUT)
            assert b.links["A"] is link and link.open and hb.signals[2]["type"] == "answer"
            assert ha.failures == hb.failures == []
        finally:
            await a.close()
            await b.close()

    await asyncio.wrap_future(kernel.submit(glare_then_renegotiate()))


async def _join_as_a_data_only_phone(url: str, user_id: str, frames: int) -> list[tuple[str, int, int]]:
    """A member as a data-only browser phone is: it accepts the room invitation and offers only a data channel
    (no media section: it sends none), then answers any later offer as a browser does, taking what it is
    offered. Returns the size of the first ``frames`` video frames it received, and from whom."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from websockets.asyncio.client import connect as connect_async

    from nbcall.peer.aiortc_patches import allow_loopback, start_media

    async def next_message(*types: str) -> dict[str, Any]:
        while (message := json.loads(await ws.recv()))["type"] not in types:
            pass
        return message

    def description(message: dict[str, Any]) -> RTCSessionDescription:
        value = json.loads(message["sdp"])
        return RTCSessionDescription(sdp=value["sdp"], type=value["type"])

    got: list[tuple[str, int, int]] = []
    enough = asyncio.Event()

    async def watch(track: Any) -> None:
        while len(got) < frames:
            image = await track.recv()
            got.append((inviter, image.width, image.height))
        enough.set()

    async def take_signals(room: str, inviter: str) -> None:
        while True:
            message = await next_message("answer", "call")
            await pc.setRemoteDescription(description(message))
            if message["type"] == "call":  # a new offer on the link: answered with what it offers
                await pc.setLocalDescription(await pc.createAnswer())
                local = {"type": "answer", "sdp": pc.localDescription.sdp}
                await ws.send(json.dumps({"type": "answer", "from": user_id, "to": inviter, "room": room,
                                          "sdp": json.dumps(local)}))  # fmt: skip

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    watching: list[asyncio.Future[Any]] = []
    pc.on("track", lambda track: watching.append(asyncio.ensure_future(watch(track))))

    @pc.on("connectionstatechange")
    def connected() -> None:
        # A receiver that the offer added while DTLS was still being set up: aiortc leaves it unstarted, where
        # a browser does not.
        if pc.connectionState == "connected":
            watching.append(asyncio.ensure_future(start_media(pc)))

    async with connect_async(url) as ws:
        try:
            await ws.send(json.dumps({"type": "register", "from": user_id, "rooms": True}))
            await next_message("registered")
            invitation = await next_message("room-invitation")
            room, inviter = invitation["room"], invitation["from"]
            await ws.send(json.dumps({"type": "room-accept", "from": user_id, "room": room}))
            await next_message("room-state")
            pc.createDataChannel("nbcall")
            allow_loopback(pc)
            await pc.setLocalDescription(await pc.createOffer())
            local = {"type": "offer", "sdp": pc.localDescription.sdp}
            await ws.send(json.dumps({"type": "call", "from": user_id, "to": inviter, "room": room,
                                      "sdp": json.dumps(local)}))  # fmt: skip
            watching.append(asyncio.ensure_future(take_signals(room, inviter)))
            await asyncio.wait_for(enough.wait(), TIMEOUT * 2)
            return got
        finally:
            for task in watching:
                task.cancel()
            await pc.close()


def test_a_camera_peer_sends_its_video_to_a_data_only_member_by_an_offer_after_its_answer(make_peer) -> None:
    # The member's offer has no media section (it sends none, as a data-only browser phone): the camera peer
    # answers it, then offers its video on the same link.
    camera = make_peer("A", video=lambda: np.full((48, 64, 3), 120, np.uint8), fps=10)
    joined = kernel.submit(_join_as_a_data_only_phone(camera.server_url, "X", frames=3))
    wait_until_sync(lambda: "X" in camera.peers, "X online", TIMEOUT)
    camera.invite("X")
    assert joined.result(TIMEOUT * 3) == [("A", 64, 48)] * 3


def test_audio_made_in_python_arrives_as_int16_mono_48khz_arrays(make_peer) -> None:
    count = iter(range(10**6))

    def tone() -> np.ndarray:
        """20 ms of a 440 Hz tone whose loudness rises and falls over a second."""
        n = next(count)
        t = (np.arange(960) + n * 960) / 48000
        return (np.sin(2 * np.pi * 440 * t) * (1000 + 500 * (n % 50))).astype(np.int16)

    make_peer("S", audio=tone, auto_answer=True)
    listener = make_peer("L")
    chunks: list[tuple[np.ndarray, float]] = []
    lock = threading.Lock()

    @listener.on_audio
    def keep(samples: np.ndarray, timestamp: float) -> None:
        with lock:
            chunks.append((samples.copy(), timestamp))

    listener.call("S")
    listener.wait("connected", timeout=TIMEOUT)
    wait_until_sync(lambda: len(chunks) >= 40, "40 audio frames in Python", 20)
    with lock:
        got = list(chunks)
    assert {(s.dtype, s.ndim) for s, _ in got} == {(np.dtype(np.int16), 1)}
    assert {len(s) for s, _ in got} == {960}  # 20 ms at 48 kHz, mono
    loudness = [float(np.sqrt(np.mean(s.astype(np.float64) ** 2))) for s, _ in got[10:]]
    assert max(loudness) > 1000 and max(loudness) > 1.5 * min(loudness)  # the tone, rising and falling
    times = [t for _, t in got]
    assert times == sorted(times) and times[-1] > times[0]
    assert listener.stats["audio_in"] >= len(got)


def test_the_status_card_shows_the_transfer_under_way(make_peer) -> None:
    a = make_peer("A")
    report = {"direction": "out", "peer": "B", "name": "a.bin", "done": 2**20, "total": 2**22}
    a._report_progress(report, force=True)
    card = a._repr_html_()
    assert "<progress max='1' value='0.250'>" in card and "↑ a.bin to B: 1.0 MiB of 4.0 MiB" in card
    a._report_progress({**report, "done": 2**22})
    assert a.progress == {} and "<progress" not in a._repr_html_()

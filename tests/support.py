"""Helpers shared by the test modules: free ports, waiting with deadlines, client frames, sample SDP, a bare
wire-protocol client standing in for another phone."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from websockets.sync.client import ClientConnection, connect

__all__ = [
    "OFFER",
    "SAMPLE_OFFER",
    "TIMEOUT",
    "Node",
    "RawPeer",
    "RawRtcPeer",
    "RedisServer",
    "error_of",
    "frame",
    "free_port",
    "mask_frame",
    "only",
    "register",
    "wait_for_port",
    "wait_until",
    "wait_until_sync",
]

#: Seconds a test waits for something that should happen at once.
TIMEOUT = 5.0

#: A browser's offer SDP (audio and a data channel), as ``RTCSessionDescription.sdp`` holds it.
SAMPLE_OFFER = (
    "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "a=group:BUNDLE 0 1\r\na=msid-semantic: WMS\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\nc=IN IP4 0.0.0.0\r\n"
    "a=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:EsAw\r\na=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y\r\n"
    "a=ice-options:trickle\r\n"
    "a=fingerprint:sha-256 DA:39:A3:EE:5E:6B:4B:0D:32:55:BF:EF:95:60:18:90:AF:D8:07:09\r\n"
    "a=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n"
    "a=mid:1\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n"
)

#: The offer as the seed's browser code puts it in a ``call`` message's ``sdp`` field: JSON-encoded.
OFFER = json.dumps({"type": "offer", "sdp": SAMPLE_OFFER})


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_until(condition: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
    """Poll ``condition`` on the running loop until it holds; fail naming ``what`` after ``timeout`` s."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {what}")
        await asyncio.sleep(0.01)


def wait_until_sync(condition: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
    """:func:`wait_until` for a thread with no event loop (blocks it while polling)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {what}")
        time.sleep(0.01)


def mask_frame(payload: bytes, opcode: int = 1, fin: bool = True) -> bytes:
    """One client frame as RFC 6455 puts it on the wire (clients mask every frame); text by default."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        length = bytes([0x80 | n])
    elif n < 65536:
        length = bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        length = bytes([0x80 | 127]) + n.to_bytes(8, "big")
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([(0x80 if fin else 0) | opcode]) + length + mask + masked


# -- a cluster: a real redis-server and real `nbcall serve` processes (tests/test_cluster.py, tests/e2e) ----------


def wait_for_port(
    port: int, what: str, timeout: float = 15.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until something accepts TCP connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if process is not None and process.poll() is not None:
                raise AssertionError(
                    f"{what} exited with status {process.returncode} before listening"
                ) from None
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what} on port {port}"
                ) from None
            time.sleep(0.05)


class RedisServer:
    """Debian's redis-server on a free port with a data directory of its own; :meth:`stop` and :meth:`start` again."""

    def __init__(self, folder: Path, *extra: str) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("needs redis-server: apt-get install redis-server (scripts/test.sh does)")
        self.folder = folder
        self.port = free_port()
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder), "--daemonize", "no", "--logfile", str(self.folder / "redis.log"),
             *self.extra],
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.port, "redis-server", process=self.process)
        return self

    def stop(self) -> None:
        """Kill it (SIGKILL: it goes away as a crashed or unreachable Redis would); its data is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None


class Node:
    """One ``nbcall serve --redis`` process on a free port; ``heartbeat``/``ttl`` shortened for tests."""

    def __init__(self, redis_url: str, name: str, folder: Path, *, heartbeat: float = 0.25, ttl: float = 1.0,
                 extra: tuple[str, ...] = ()) -> None:  # fmt: skip
        self.name = name
        self.port = free_port()
        self.log = folder / f"{name}.log"
        folder.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PYTHONPATH": str(Path(__file__).parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "nbcall", "serve", "--port", str(self.port), "--redis", redis_url,
                 "--node-id", name, "--heartbeat", str(heartbeat), "--registry-ttl", str(ttl), *extra],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        try:
            wait_for_port(self.port, f"node {name}", process=self.process)
        except AssertionError:
            self.stop()
            raise AssertionError(f"node {name} did not start; its log:\n{self.log.read_text()}") from None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def kill(self) -> None:
        """SIGKILL: no goodbye to Redis nor to its phones' sockets beyond what the kernel does."""
        self.process.kill()
        self.process.wait(10)

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


class RawPeer:
    """Another phone, as a bare websockets client speaking the wire protocol."""

    def __init__(self, url: str, user_id: str) -> None:
        self.id = user_id
        self._exit = contextlib.ExitStack()
        self.ws: ClientConnection = self._exit.enter_context(connect(url, open_timeout=TIMEOUT))
        self.send(type="register", presence=True)  # as phones do: joined/left news
        self.registered = self.recv()
        assert self.registered["type"] == "registered", self.registered

    def send(self, **fields: Any) -> None:
        self.ws.send(json.dumps({"from": self.id, **fields}))

    def recv(self) -> dict[str, Any]:
        return json.loads(self.ws.recv(timeout=TIMEOUT))

    def recv_type(self, msg_type: str) -> dict[str, Any]:
        """The next message of ``msg_type``, skipping presence news (joined/left)."""
        deadline = time.monotonic() + TIMEOUT
        seen = []
        while time.monotonic() < deadline:
            try:
                msg = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            except TimeoutError:
                break
            if msg["type"] == msg_type:
                return msg
            seen.append(msg)
        pytest.fail(f"{self.id} received no {msg_type!r} within {TIMEOUT} s; got {seen}")

    def call(self, to: str) -> None:
        self.send(type="call", to=to, sdp=OFFER)

    def close(self) -> None:
        self._exit.close()


class RawRtcPeer:
    """Another phone as a bare aiortc peer: it registers, calls with an offer that says it speaks nbcall's
    framing (with lengths), and then sends whatever frames it is told, well-formed or not. Its coroutines run
    on one loop (the kernel's, say); what the other end sends back is decoded into :attr:`received`."""

    def __init__(self, user_id: str) -> None:
        from nbcall.wire.framing import FrameDecoder

        self.id = user_id
        self.ws: Any = None
        self.pc: Any = None
        self.channel: Any = None
        self.decoder = FrameDecoder()
        self.received: list[tuple[str, bytes]] = []
        self.signals: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def register(self, url: str) -> None:
        from websockets.asyncio.client import connect as connect_async

        self.ws = await connect_async(url, open_timeout=TIMEOUT)
        await self.ws.send(json.dumps({"type": "register", "from": self.id}))
        registered = json.loads(await asyncio.wait_for(self.ws.recv(), TIMEOUT))
        assert registered["type"] == "registered", registered
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for text in self.ws:
            await self.signals.put(json.loads(text))

    async def call(self, to: str, timeout: float = 20) -> None:
        """Call ``to`` and return once the data channel is open (the other end must answer)."""
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        from nbcall.peer.aiortc_patches import allow_loopback

        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel = self.pc.createDataChannel("nbcall")
        opened = asyncio.Event()
        self.channel.on("open", opened.set)
        self.channel.on("message", self._on_message)
        allow_loopback(self.pc)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = {"type": "offer", "sdp": self.pc.localDescription.sdp}
        await self.ws.send(json.dumps({"type": "call", "from": self.id, "to": to, "sdp": json.dumps(offer),
                                       "framing": "nbcall/1", "framing_ext": ["length"], "polite": False}))  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            signal = await asyncio.wait_for(self.signals.get(), max(0.01, deadline - time.monotonic()))
            if signal.get("type") == "answer":
                break
            assert signal.get("type") not in ("hangup", "decline", "error", "unavailable"), signal
        answer = json.loads(signal["sdp"])
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        await asyncio.wait_for(opened.wait(), max(0.01, deadline - time.monotonic()))

    def _on_message(self, data: str | bytes) -> None:
        if isinstance(data, str):
            self.received.append(("str", data.encode()))
            return
        with contextlib.suppress(ValueError):  # what the other end sends is not under test here
            message = self.decoder.push(data)
            if message is not None:
                self.received.append(message)

    async def signal(self, **fields: Any) -> None:
        """Send a signaling message of the caller's making (relayed by the server as it is)."""
        await self.ws.send(json.dumps({"from": self.id, **fields}))

    async def send(self, *frames: bytes | str) -> None:
        """Send each frame as one data-channel message, as it is."""
        for data in frames:
            self.channel.send(data)

    async def hang_up(self, to: str) -> None:
        await self.ws.send(json.dumps({"type": "hangup", "from": self.id, "to": to}))
        if self.pc is not None:
            await self.pc.close()

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()


# -- the sans-I/O signaling protocol: frames in, (connection, text) pairs out ---------------


def frame(**fields: Any) -> str:
    """A client's message as JSON text."""
    return json.dumps(fields, ensure_ascii=False)


def only(out: list[tuple[Any, Any]], conn: str) -> dict[str, Any]:
    """The single message in ``out``, which must be addressed to ``conn``."""
    assert len(out) == 1, out
    assert out[0][0] == conn, out
    return json.loads(out[0][1])  # type: ignore[no-any-return]


def error_of(out: list[tuple[Any, Any]], conn: str) -> dict[str, Any]:
    """The single message in ``out``, an ``error`` to ``conn``."""
    msg = only(out, conn)
    assert msg["type"] == "error", msg
    return msg


def register(protocol: Any, conn: str, peer_id: str) -> list[tuple[str, str]]:
    """Connect ``conn`` to a ``SignalingProtocol`` and register it as ``peer_id``, with presence."""
    protocol.connect(conn)
    return protocol.receive(conn, frame(type="register", presence=True, **{"from": peer_id}))  # type: ignore[no-any-return]


def phone_answering(server_url: str, made: list[Any], **options: Any) -> tuple[Any, RawPeer]:
    """A Phone "P" (closed by ``made``) that a RawPeer "Caller" called and that answered; its browser half, which
    the test simulates, has yet to report the channel open (:func:`channel_open`)."""
    from nbcall import Phone

    phone = Phone("P", server=server_url, timeout=TIMEOUT, **options)
    made.append(phone)
    caller = RawPeer(server_url, "Caller")
    made.append(caller)
    caller.call("P")
    wait_until_sync(lambda: phone.state == "ringing", "P to ring")
    phone.answer()
    return phone, caller


def channel_open(peer: str) -> dict[str, Any]:
    """What a phone's browser half reports once its data channel to ``peer`` is open."""
    return {"type": "channel", "peer": peer, "state": "open", "label": "nbcall"}


T = TypeVar("T")


def closed_after(make: Callable[..., T]) -> Iterator[Callable[..., T]]:
    """A fixture's factory: ``make``, keeping what it makes to close at the end of the test, in the order made.
    A fixture yields from it."""
    made: list[Any] = []

    def make_and_keep(*args: Any, **options: Any) -> T:
        thing = make(*args, **options)
        made.append(thing)
        return thing

    yield make_and_keep
    for thing in made:
        thing.close()


def returns_on_a_thread(call: Callable[..., Any], *args: Any, timeout: float = TIMEOUT) -> bool:
    """Whether ``call(*args)``, run on a thread of its own (a daemon), returns within ``timeout`` seconds: False
    shows a deadlock without hanging the test."""
    thread = threading.Thread(target=call, args=args, daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive()


def observe_busily(
    adapter: Any, server_url: str, made: list[Any], when: str, more: Callable[[], dict[str, Any]] = dict
) -> tuple[dict[str, Any], list[str]]:
    """Observe ``adapter``'s state as a user's busy observer would: once it is ``when``, a RawPeer "Z" registers
    and the observer waits until the adapter hears of it (on the loop, which must take the adapter's lock), reads
    its ``stats``, runs ``more()`` (which returns what it did) and hangs up on a thread (which takes the lock). Returns what the observer
    did ("stats", "hung up" and, if anything raised, "failed") and the states it heard."""
    done: dict[str, Any] = {}
    seen: list[str] = []

    def on_state(change: dict[str, Any]) -> None:
        seen.append(change["new"])
        if change["new"] != when or done:
            return
        try:
            made.append(RawPeer(server_url, "Z"))
            wait_until_sync(lambda: "Z" in adapter.peers, f"{adapter.user_id} to hear that Z joined")
            done["stats"] = adapter.stats
            done.update(more())
            done["hung up"] = returns_on_a_thread(adapter.hangup)
        except Exception as exc:  # noqa: BLE001 (told to the test, not into the adapter that called us)
            done["failed"] = repr(exc)

    adapter.observe(on_state, "state")
    return done, seen


async def connected_pair() -> tuple[Any, Any, Any, Any]:
    """Two peer connections on loopback with a data channel open between them: (sender, receiver, the
    sender's channel, a future of the receiver's channel)."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    from nbcall.peer import aiortc_patches as patches

    a, b = (
        RTCPeerConnection(RTCConfiguration(iceServers=[])),
        RTCPeerConnection(RTCConfiguration(iceServers=[])),
    )
    channel = a.createDataChannel("nbcall")
    loop = asyncio.get_running_loop()
    opened, theirs = loop.create_future(), loop.create_future()
    channel.on("open", lambda: opened.set_result(None))
    b.on("datachannel", theirs.set_result)
    offer = await a.createOffer()
    patches.allow_loopback(a)
    await a.setLocalDescription(offer)
    await b.setRemoteDescription(a.localDescription)
    answer = await b.createAnswer()
    patches.allow_loopback(b)
    await b.setLocalDescription(answer)
    await a.setRemoteDescription(b.localDescription)
    await asyncio.wait_for(opened, 20)
    return a, b, channel, await asyncio.wait_for(theirs, 20)


async def moved(channel: Any, theirs: Any, payload: bytes) -> bytes:
    """Send ``payload`` on ``channel`` in 64 KiB messages; what ``theirs`` (the other end) received of it."""
    got: list[bytes] = []
    whole = asyncio.get_running_loop().create_future()

    @theirs.on("message")
    def on_message(data: bytes) -> None:
        got.append(data)
        if sum(map(len, got)) >= len(payload) and not whole.done():
            whole.set_result(None)

    for offset in range(0, len(payload), 65536):
        channel.send(payload[offset : offset + 65536])
    await asyncio.wait_for(whole, 60)
    return b"".join(got)

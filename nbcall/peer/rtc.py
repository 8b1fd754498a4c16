"""The aiortc engine of a Python peer: it carries out the call machine's engine commands with real WebRTC.

The commands are those a phone's browser half takes (docs/widget-protocol.md): ``start_call``, ``remote``,
``accept`` and ``close``, each naming a ``peer``. The engine holds one :class:`Link` (an RTCPeerConnection,
its data channel and its media) per peer, and reports back to its :class:`EngineHost` the signals to relay,
connection and channel states, whole received messages and failures. Everything runs on one asyncio loop.

aiortc facts that shape it: it cannot roll back a local offer, so a Python peer is never the polite side of
perfect negotiation (docs/rooms.md): its offers and answers say ``"polite": false``, and an offer that meets its
own pending offer is ignored (the other side rolls back and answers ours); an offer on a live link renegotiates
that link. It sends no trickled candidates (its offer and answer carry them, gathered first);
without ``iceServers`` it would use a public STUN server, so the configured list is always passed; and aioice
leaves loopback addresses out of its host candidates, so a loopback-only machine would gather nothing:
:func:`allow_loopback` fixes that per connection (see :class:`LoopbackConnection`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fractions
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import aioice
import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.sdp import candidate_from_sdp

from ..wire.framing import EXTENSIONS, LENGTH, PROTOCOL, FrameDecoder, FramingError, encode_frames
from ..wire.payload import Kind
from .sctp import tune_sctp

__all__ = [
    "ArrayAudioTrack",
    "ArrayVideoTrack",
    "Engine",
    "EngineHost",
    "Link",
    "LoopbackConnection",
    "MediaOptions",
    "SendLimits",
    "allow_loopback",
]

logger = logging.getLogger("nbcall.peer.rtc")

FrameCallback = Callable[[np.ndarray, float], Any]


class EngineHost(Protocol):
    """What the engine reports to (the adapter that owns the call machine); called on the engine's loop."""

    def engine_signal(self, peer: str, signal: dict[str, Any]) -> None: ...
    def engine_connection(self, peer: str, state: str) -> None: ...
    def engine_channel(self, peer: str, open_: bool, framed: bool) -> None: ...
    def engine_message(self, peer: str, kind: Kind, payload: bytes) -> None: ...
    def engine_receiving(self, peer: str, size: int, total: int | None) -> None: ...
    def engine_failure(self, peer: str, text: str) -> None: ...


@dataclass(frozen=True)
class SendLimits:
    """How the engine sends framed messages: frame size and the bytes it lets queue in aiortc."""

    #: aiortc splits each frame into ~1.2 KB SCTP chunks anyway; larger frames mean fewer Python-level sends.
    #: Browsers accept 256 KiB messages (their SDP's max-message-size); the remote's own limit always applies.
    frame_size: int = 256 * 1024
    #: Frames queued ahead of SCTP; sending waits (``bufferedamountlow``) above it.
    high_water: int = 1024 * 1024


@dataclass
class MediaOptions:
    """Which media a peer sends and receives, and what it does with received media."""

    video: Any = None  # an iterator of arrays or a callable returning one (None: send no video)
    audio: Any = None
    fps: float = 15
    sample_rate: int = 48000
    channels: int = 1
    on_frame: list[FrameCallback] = field(default_factory=list)
    on_audio: list[FrameCallback] = field(default_factory=list)


# ------------------------------------------------------------------------------------- loopback candidates


class LoopbackConnection(aioice.Connection):
    """An aioice connection that falls back to 127.0.0.1 when it found no other host address.

    aioice never offers loopback as a host candidate; on a machine whose only interface is loopback (a
    network namespace, a sandbox) the peer would then gather nothing and never connect. Only connections
    given this class (by :func:`allow_loopback`) do it: other aioice users in the process are unaffected.
    """

    async def gather_candidates(self) -> None:
        first = not self._local_candidates_start
        await super().gather_candidates()
        if first and not any(c.type == "host" for c in self._local_candidates):
            policy = getattr(self, "_transport_policy", aioice.TransportPolicy.ALL)
            if policy == aioice.TransportPolicy.ALL:
                for component in self._components:
                    self._local_candidates += await self.get_component_candidates(
                        component=component, addresses=["127.0.0.1"]
                    )


def allow_loopback(pc: RTCPeerConnection) -> None:
    """Let the ICE gatherers of ``pc`` use 127.0.0.1 when nothing else is there (call before gathering)."""
    for gatherer in _gatherers(pc):
        connection = getattr(gatherer, "_connection", None)
        if type(connection) is aioice.Connection:
            connection.__class__ = LoopbackConnection


def _gatherers(pc: RTCPeerConnection) -> Iterator[Any]:
    for transceiver in pc.getTransceivers():
        yield transceiver.receiver.transport.transport.iceGatherer
    if pc.sctp is not None:
        yield pc.sctp.transport.transport.iceGatherer


# ------------------------------------------------------------------------------------------- media tracks


class ArrayVideoTrack(MediaStreamTrack):
    """Video made in Python: ``source`` is an iterator of HxWx3 uint8 RGB arrays, or a callable returning one."""

    kind = "video"

    def __init__(self, source: Any, fps: float, pool: concurrent.futures.Executor) -> None:
        super().__init__()
        self._next = _puller(source)
        self._fps = fps
        self._pool = pool
        self._start: float | None = None
        self._count = 0
        #: Frames handed to the encoder.
        self.frames_sent = 0

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        due = self._start + self._count / self._fps
        if due > loop.time():
            await asyncio.sleep(due - loop.time())
        array = await loop.run_in_executor(self._pool, self._next)
        if array is None:
            self.stop()
            raise MediaStreamError
        frame = av.VideoFrame.from_ndarray(_rgb(array), format="rgb24")
        frame.pts = round(self._count * 90000 / self._fps)
        frame.time_base = fractions.Fraction(1, 90000)
        self._count += 1
        self.frames_sent += 1
        return frame


class ArrayAudioTrack(MediaStreamTrack):
    """Audio made in Python: int16 arrays (samples, or samples x channels), sent in 20 ms frames."""

    kind = "audio"

    def __init__(
        self, source: Any, sample_rate: int, channels: int, pool: concurrent.futures.Executor
    ) -> None:
        super().__init__()
        self._next = _puller(source)
        self._rate = sample_rate
        self._channels = channels
        self._pool = pool
        self._buffer = np.zeros((0, channels), dtype=np.int16)
        self._start: float | None = None
        self._samples = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        per_frame = self._rate // 50
        while len(self._buffer) < per_frame:
            array = await loop.run_in_executor(self._pool, self._next)
            if array is None:
                self.stop()
                raise MediaStreamError
            chunk = np.asarray(array, dtype=np.int16).reshape(-1, self._channels)
            self._buffer = np.concatenate([self._buffer, chunk])
        samples, self._buffer = self._buffer[:per_frame], self._buffer[per_frame:]
        if self._start is None:
            self._start = loop.time()
        due = self._start + self._samples / self._rate
        if due > loop.time():
            await asyncio.sleep(due - loop.time())
        layout = "mono" if self._channels == 1 else "stereo"
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout=layout)
        frame.sample_rate = self._rate
        frame.pts = self._samples
        frame.time_base = fractions.Fraction(1, self._rate)
        self._samples += per_frame
        return frame


def _puller(source: Any) -> Callable[[], Any]:
    """A function returning the source's next array, or None when an iterator is exhausted."""
    if callable(source):
        return source
    iterator = iter(source)
    return lambda: next(iterator, None)


def _rgb(array: Any) -> np.ndarray:
    frame = np.asarray(array)
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise ValueError(f"a video frame is an HxWx3 RGB array, not one of shape {frame.shape}")
    if frame.dtype != np.uint8:
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    frame = np.ascontiguousarray(frame[:, :, :3])
    height, width = frame.shape[:2]
    if height % 2 or width % 2:  # the encoders' YUV 4:2:0 needs even sizes
        frame = np.ascontiguousarray(frame[: height - height % 2, : width - width % 2])
    return frame


# ------------------------------------------------------------------------------------------ one peer link


class Link:
    """The connection to one peer: its RTCPeerConnection, data channel, media and the sends in flight."""

    def __init__(
        self,
        peer: str,
        ice_servers: list[dict[str, Any]],
        host: EngineHost,
        media: MediaOptions,
        limits: SendLimits,
        pool: concurrent.futures.Executor,
    ) -> None:
        self.peer = peer
        self.host = host
        self.media = media
        self.limits = limits
        self.pool = pool
        config = RTCConfiguration(
            iceServers=[RTCIceServer(**server) for server in ice_servers],  # [] means none, never a default
            bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
        )
        self.pc = RTCPeerConnection(config)
        self.channel: RTCDataChannel | None = None
        self.framed = False
        self.announce_length = False
        self.closed = False
        self.decoder = FrameDecoder()
        self.pending: list[dict[str, Any]] = []
        #: An offer that met our own (glare) was ignored: the accept that follows it has nothing to answer.
        self.ignored_offer = False
        self.steps = asyncio.Lock()
        self.sending = asyncio.Lock()
        self.tracks: list[MediaStreamTrack] = []
        self.tasks: set[asyncio.Task[None]] = set()
        #: Counters for :attr:`stats`.
        self.counts = {
            "frames_in": 0,
            "frames_dropped": 0,
            "audio_in": 0,
            "messages_in": 0,
            "messages_out": 0,
        }
        self.bytes_in = 0
        self.bytes_out = 0
        self._low = asyncio.Event()
        self.pc.on("connectionstatechange", self._on_connection_state)
        self.pc.on("datachannel", self._attach)
        self.pc.on("track", self._on_track)

    # ----------------------------------------------------------------------------- signaling steps

    async def offer(self) -> None:
        """We call: add our media (or receive-only sections) and the data channel, and send the offer."""
        for kind in ("audio", "video"):
            track = self._local_track(kind)
            if track is not None:
                self.pc.addTransceiver(track, direction="sendrecv")
            elif self._wants(kind):
                self.pc.addTransceiver(kind, direction="recvonly")
        self._attach(self.pc.createDataChannel("nbcall"))
        await self._set_local(await self.pc.createOffer())
        self._signal("call")

    async def take_offer(self, signal: dict[str, Any]) -> None:
        """They call, or renegotiate: take their offer (:meth:`answer` answers it once accepted)."""
        if self.pc.signalingState == "have-local-offer":
            # Glare, and we are never polite: the other side rolls its offer back and answers ours.
            logger.info("ignored an offer from %s that met ours (a Python peer is never polite)", self.peer)
            self.ignored_offer = True
            return
        self._take_framing(signal)
        await self.pc.setRemoteDescription(_description(signal))
        await self._add_pending()

    def _take_framing(self, signal: dict[str, Any]) -> None:
        """Frame only for a peer that said it understands (and announce lengths if it takes them)."""
        self.framed = signal.get("framing") == PROTOCOL
        extensions = signal.get("framing_ext")
        self.announce_length = self.framed and isinstance(extensions, list) and "length" in extensions

    async def answer(self) -> None:
        """Answer the offer: our tracks on the caller's sections, receive what we have a callback for."""
        if self.ignored_offer:
            self.ignored_offer = False
            return
        if self.pc.signalingState != "have-remote-offer":
            raise RuntimeError(
                f"no offer from {self.peer} to answer (signaling state {self.pc.signalingState})"
            )
        for transceiver in self.pc.getTransceivers():
            kind = transceiver.kind
            if transceiver.sender.track is not None:  # a renegotiation: our track is there already
                continue
            track = self._local_track(kind)
            if track is not None:
                transceiver.sender.replaceTrack(track)
                transceiver.direction = "sendrecv"
            elif self._wants(kind):
                transceiver.direction = "recvonly"
            else:
                # Neither sent nor wanted: say so, or the caller sends media nobody reads.
                transceiver.direction = "inactive"
        await self._set_local(await self.pc.createAnswer())
        self._signal("answer")

    async def take_answer(self, signal: dict[str, Any]) -> None:
        self._take_framing(signal)
        await self.pc.setRemoteDescription(_description(signal))
        await self._add_pending()

    async def take_candidate(self, signal: dict[str, Any]) -> None:
        raw = signal.get("candidate")
        init = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(init, dict) or not init.get("candidate"):
            return  # the end of the peer's candidates: aiortc learns it from the connection itself
        self.pending.append(init)
        if self.pc.remoteDescription is not None:
            await self._add_pending()

    async def _add_pending(self) -> None:
        pending, self.pending = self.pending, []
        for init in pending:
            candidate = candidate_from_sdp(str(init["candidate"]).split(":", 1)[1])
            candidate.sdpMid = init.get("sdpMid")
            candidate.sdpMLineIndex = init.get("sdpMLineIndex")
            await self.pc.addIceCandidate(candidate)

    async def _set_local(self, description: RTCSessionDescription) -> None:
        allow_loopback(self.pc)
        await self.pc.setLocalDescription(description)
        if self.pc.sctp is not None:
            tune_sctp(self.pc.sctp)

    def _signal(self, kind: str) -> None:
        local = self.pc.localDescription
        sdp = json.dumps({"type": local.type, "sdp": local.sdp})
        if not self.closed:
            signal = {
                "type": kind, "sdp": sdp, "framing": PROTOCOL, "framing_ext": list(EXTENSIONS), "polite": False,
            }  # fmt: skip
            self.host.engine_signal(self.peer, signal)

    @property
    def open(self) -> bool:
        """Whether the data channel is open for sending."""
        return not self.closed and self.channel is not None and self.channel.readyState == "open"

    # ------------------------------------------------------------------------------------ the channel

    def _attach(self, channel: RTCDataChannel) -> None:
        # The first channel carries what we send; every channel's messages are received (any label).
        if self.channel is None:
            self.channel = channel
        channel.bufferedAmountLowThreshold = self.limits.high_water // 2
        channel.on("bufferedamountlow", self._low.set)

        @channel.on("open")
        def on_open() -> None:
            if not self.closed:
                self.host.engine_channel(self.peer, True, self.framed)

        @channel.on("close")
        def on_close() -> None:
            if not self.closed and channel is self.channel:
                self.host.engine_channel(self.peer, False, self.framed)

        @channel.on("message")
        def on_message(data: str | bytes) -> None:
            self._receive(data)

        if channel.readyState == "open":  # a channel the peer opened arrives open
            on_open()

    def _receive(self, data: str | bytes) -> None:
        if self.closed:
            return
        self.bytes_in += len(data)
        if isinstance(data, str):
            self._deliver("str", data.encode("utf-8"))
            return
        if not self.framed:
            self._deliver("bytes", data)
            return
        try:
            message = self.decoder.push(data)
        except FramingError as exc:
            self.host.engine_failure(self.peer, f"a malformed frame from {self.peer}: {exc}")
            return
        if message is None:
            self.host.engine_receiving(self.peer, self.decoder.pending, self.decoder.expected)
        else:
            self._deliver(*message)

    def _deliver(self, kind: Kind, payload: bytes) -> None:
        self.counts["messages_in"] += 1
        self.host.engine_message(self.peer, kind, payload)

    async def send(self, kind: Kind, payload: bytes, progress: Callable[[int], None] | None = None) -> None:
        """Send one message, after the ones before it; framed for an nbcall peer, with backpressure."""
        async with self.sending:
            channel = self.channel
            if channel is None or channel.readyState != "open" or self.closed:
                state = channel.readyState if channel is not None else "no call"
                raise ConnectionError(f"the data channel to {self.peer} is not open ({state})")
            if not self.framed:
                channel.send(payload if kind == "bytes" else payload.decode("utf-8"))
                self.bytes_out += len(payload)
            else:
                limit = self._remote_max_message_size()
                frame_size = min(self.limits.frame_size, limit) if limit else self.limits.frame_size
                sent = 0
                for frame in encode_frames(kind, payload, frame_size, self.announce_length):
                    while channel.bufferedAmount > self.limits.high_water:
                        self._low.clear()
                        await self._wait_low(channel)
                    channel.send(frame)
                    sent += len(frame) - 1 if frame[0] != LENGTH else 0
                    self.bytes_out += len(frame)
                    if progress is not None:
                        progress(sent)
            self.counts["messages_out"] += 1

    async def _wait_low(self, channel: RTCDataChannel) -> None:
        while channel.bufferedAmount > channel.bufferedAmountLowThreshold:
            if channel.readyState != "open" or self.closed:
                raise ConnectionError(f"the data channel to {self.peer} closed while sending")
            try:
                await asyncio.wait_for(self._low.wait(), 0.5)
            except asyncio.TimeoutError:
                pass
            self._low.clear()

    def _remote_max_message_size(self) -> int | None:
        sctp = self.pc.sctp
        size = getattr(sctp, "_remote_max_message_size", None) if sctp is not None else None
        return size if isinstance(size, int) and size > 0 else None

    async def flush(self, timeout: float) -> bool:
        """Wait until everything sent was handed over and acknowledged by the peer; False on timeout."""
        deadline = time.monotonic() + timeout
        async with self.sending:
            pass
        while time.monotonic() < deadline and not self.closed:
            sctp = self.pc.sctp
            channel = self.channel
            queued = channel.bufferedAmount if channel is not None and channel.readyState == "open" else 0
            unacked = len(getattr(sctp, "_outbound_queue", ())) + len(getattr(sctp, "_sent_queue", ()))
            if not queued and not unacked:
                return True
            await asyncio.sleep(0.01)
        return self.closed

    # -------------------------------------------------------------------------------------- media

    def _wants(self, kind: str) -> bool:
        return bool(self.media.on_frame if kind == "video" else self.media.on_audio)

    def _local_track(self, kind: str) -> MediaStreamTrack | None:
        source = self.media.video if kind == "video" else self.media.audio
        if source is None:
            return None
        track: MediaStreamTrack
        if kind == "video":
            track = ArrayVideoTrack(source, self.media.fps, self.pool)
        else:
            track = ArrayAudioTrack(source, self.media.sample_rate, self.media.channels, self.pool)
        self.tracks.append(track)
        return track

    def _on_track(self, track: MediaStreamTrack) -> None:
        consume = self._consume_video if track.kind == "video" else self._consume_audio
        task = asyncio.ensure_future(consume(track))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _consume_video(self, track: MediaStreamTrack) -> None:
        """Hand the newest frame to the callbacks; frames that come while they run are dropped, not queued."""
        loop = asyncio.get_running_loop()
        busy: asyncio.Future[None] | None = None
        while not self.closed:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.counts["frames_in"] += 1
            if busy is not None and not busy.done():
                self.counts["frames_dropped"] += 1
                continue
            busy = loop.run_in_executor(self.pool, _call_frame, self.media.on_frame, frame)  # type: ignore[arg-type]

    async def _consume_audio(self, track: MediaStreamTrack) -> None:
        loop = asyncio.get_running_loop()
        resampler = av.AudioResampler(
            format="s16", layout="mono" if self.media.channels == 1 else "stereo", rate=self.media.sample_rate
        )
        while not self.closed:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.counts["audio_in"] += 1
            if self.media.on_audio:
                for out in resampler.resample(frame):  # type: ignore[arg-type]
                    samples = out.to_ndarray().reshape(-1, self.media.channels)
                    if self.media.channels == 1:
                        samples = samples[:, 0]
                    loop.run_in_executor(
                        self.pool, _call_all, self.media.on_audio, samples, float(out.time or 0)
                    )

    # --------------------------------------------------------------------------------------- state

    def _on_connection_state(self) -> None:
        if not self.closed:
            self.host.engine_connection(self.peer, self.pc.connectionState)

    def stats(self) -> dict[str, Any]:
        """What this link has carried so far, and the selected candidate pair's addresses."""
        summary: dict[str, Any] = {
            "connection": self.pc.connectionState,
            "framed": self.framed,
            "bytes_sent": self.bytes_out,
            "bytes_received": self.bytes_in,
            **self.counts,
        }
        video_out = [t for t in self.tracks if isinstance(t, ArrayVideoTrack)]
        if video_out:
            summary["frames_out"] = sum(t.frames_sent for t in video_out)
        return summary

    async def close(self, force: bool = False) -> None:
        """Close the peer connection and stop every track. Idempotent."""
        if self.closed and not force or self.pc.connectionState == "closed":
            return
        self.closed = True
        self._low.set()
        for track in self.tracks:
            track.stop()
        for task in list(self.tasks):
            task.cancel()
        try:
            await self.pc.close()
        except Exception:  # closing a half-made connection may fail inside aiortc: it is closed all the same
            logger.debug("closing the connection to %s failed", self.peer, exc_info=True)


def _description(signal: dict[str, Any]) -> RTCSessionDescription:
    raw = signal.get("sdp")
    description = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(description, dict) or "sdp" not in description:
        raise ValueError(f"a {signal.get('type')} without a session description: {str(raw)[:80]!r}")
    return RTCSessionDescription(sdp=description["sdp"], type=description["type"])


def _call_frame(callbacks: list[FrameCallback], frame: av.VideoFrame) -> None:
    """Convert on a worker thread (not the loop) and call each frame callback."""
    array = frame.to_ndarray(format="rgb24")
    _call_all(callbacks, array, float(frame.time or 0))


def _call_all(callbacks: list[FrameCallback], array: np.ndarray, timestamp: float) -> None:
    for callback in list(callbacks):
        try:
            callback(array, timestamp)
        except Exception:
            logger.exception("media callback %r failed", callback)


# ----------------------------------------------------------------------------------------------- engine


class Engine:
    """The peer connections of one Python peer, one :class:`Link` per peer; runs on one asyncio loop."""

    def __init__(
        self, host: EngineHost, media: MediaOptions | None = None, limits: SendLimits | None = None
    ) -> None:
        self.host = host
        self.media = media or MediaOptions()
        self.limits = limits or SendLimits()
        self.links: dict[str, Link] = {}
        self.retiring: set[asyncio.Future[None]] = set()
        #: Seconds between ending a call and closing its connection (see :meth:`_retire`).
        self.close_grace = 0.3
        # Media sources and frame callbacks run here, never on the loop.
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="nbcall-media")

    def command(self, message: dict[str, Any]) -> None:
        """Carry out one engine command of the call machine (on the loop)."""
        kind, peer = message["type"], message["peer"]
        if kind == "start_call":
            link = self._new_link(peer, message.get("ice_servers") or [])
            self._step(link, link.offer())
        elif kind == "remote":
            signal = message["signal"]
            what = signal.get("type")
            if what == "call":
                # An offer on a live link renegotiates it (rooms); otherwise it starts a new connection.
                live = self.links.get(peer)
                if live is None or live.pc.connectionState in ("failed", "closed"):
                    live = self._new_link(peer, message.get("ice_servers") or [])
                self._step(live, live.take_offer(signal))
            elif peer in self.links:
                link = self.links[peer]
                step = link.take_answer(signal) if what == "answer" else link.take_candidate(signal)
                self._step(link, step)
        elif kind == "accept":
            if peer in self.links:
                link = self.links[peer]
                self._step(link, link.answer())
        elif kind == "close":
            closing = self.links.pop(peer, None)
            if closing is not None:
                self._retire(closing, grace=self.close_grace)
        else:
            logger.warning("the engine ignored an unknown command %r", kind)

    def _new_link(self, peer: str, ice_servers: list[dict[str, Any]]) -> Link:
        old = self.links.pop(peer, None)
        if old is not None:
            self._retire(old, grace=0)
        link = Link(peer, ice_servers, self.host, self.media, self.limits, self.pool)
        self.links[peer] = link
        return link

    def _retire(self, link: Link, grace: float) -> None:
        """Stop reporting on ``link`` now; close its connection after ``grace`` seconds, so that the hangup
        the machine just sent through the server reaches the peer before its data channel closes."""
        link.closed = True

        async def close() -> None:
            await asyncio.sleep(grace)
            await link.close(force=True)

        task = asyncio.ensure_future(close())
        self.retiring.add(task)
        task.add_done_callback(self.retiring.discard)

    def _step(self, link: Link, step: Any) -> None:
        """Run a signaling step after the link's earlier ones; a failure is reported unless it was closed."""

        async def run() -> None:
            async with link.steps:
                try:
                    await step
                except Exception as exc:
                    if not link.closed:
                        logger.debug("a WebRTC step with %s failed", link.peer, exc_info=True)
                        self.host.engine_failure(link.peer, f"{type(exc).__name__}: {exc}")

        asyncio.ensure_future(run())

    async def send(
        self, kind: Kind, payload: bytes, to: str | None = None, progress: Callable[[int], None] | None = None
    ) -> None:
        """Send a message to ``to``, or to every link whose data channel is open now."""
        if to is not None:
            targets = [self.links[to]] if to in self.links else []
        else:
            targets = [link for link in self.links.values() if link.open]
        if not targets:
            raise ConnectionError(f"no open data channel to {to or 'any peer'}")
        await asyncio.gather(*(link.send(kind, payload, progress) for link in targets))

    async def flush(self, timeout: float) -> bool:
        """Wait until every link's sends were acknowledged (or ``timeout`` passed)."""
        results = await asyncio.gather(*(link.flush(timeout) for link in list(self.links.values())))
        return all(results)

    def open_peers(self) -> list[str]:
        """The peers whose data channel is open now."""
        return [peer for peer, link in self.links.items() if link.open]

    def stats(self) -> dict[str, dict[str, Any]]:
        return {peer: link.stats() for peer, link in self.links.items()}

    async def close(self) -> None:
        links, self.links = list(self.links.values()), {}
        await asyncio.gather(*(link.close() for link in links), *self.retiring, return_exceptions=True)
        self.pool.shutdown(wait=False, cancel_futures=True)

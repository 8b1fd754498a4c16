"""One peer link: an RTCPeerConnection to one peer, its data channel (framed, with backpressure) and its media.

:class:`Link` carries out the signaling steps the engine hands it (offer, take an offer, answer, take an
answer or a candidate) and reports to its :class:`EngineHost` what happens on the connection.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.sdp import candidate_from_sdp

from ..wire.framing import EXTENSIONS, LENGTH, PROTOCOL, FrameDecoder, FramingError, encode_frames
from ..wire.payload import Kind, oversize
from .aiortc_patches import allow_loopback, start_media, tune_sctp, unacknowledged
from .aiortc_sctp import BURST, BURST_PEER, SACK_EVERY, SACK_EVERY_PEER
from .tracks import ArrayVideoTrack, Consumer, MediaOptions, local_track

__all__ = [
    "SCTP_EXTENSIONS",
    "EngineHost",
    "Link",
    "SendLimits",
    "description_of",
    "max_message_size",
    "sctp_pace",
]

logger = logging.getLogger("nbcall.peer.rtc")

#: What a Peer's SCTP does beyond a browser's, announced in its signal's ``sctp_ext`` and used only with a peer
#: that lists it too: ``burst``, up to :data:`~nbcall.peer.aiortc_patches.BURST_PEER` DATA packets per SACK
#: sent, and one SACK per as many received (see nbcall/peer/aiortc_sctp.py).
SCTP_EXTENSIONS = ("burst",)


class EngineHost(Protocol):
    """What the engine reports to (the adapter that owns the call machine); called on the engine's loop."""

    #: The largest message kept in memory: a larger one is dropped (``engine_dropped``).
    max_receive_size: int

    def engine_signal(self, peer: str, signal: dict[str, Any]) -> None: ...
    def engine_connection(self, peer: str, state: str) -> None: ...
    def engine_channel(self, peer: str, open_: bool, framed: bool) -> None: ...
    def engine_message(self, peer: str, kind: Kind, payload: bytes) -> None: ...
    def engine_receiving(self, peer: str, size: int, total: int | None) -> None: ...
    def engine_failure(self, peer: str, text: str) -> None: ...
    def engine_dropped(self, peer: str, problem: str) -> None: ...


@dataclass(frozen=True)
class SendLimits:
    """How the engine sends framed messages: frame size and the bytes it lets queue in aiortc."""

    #: aiortc splits each frame into ~1.2 KB SCTP chunks anyway; larger frames mean fewer Python-level sends.
    #: Browsers accept 256 KiB messages (their SDP's max-message-size); the remote's own limit always applies.
    frame_size: int = 256 * 1024
    #: Frames queued ahead of SCTP; sending waits (``bufferedamountlow``) above it.
    high_water: int = 1024 * 1024


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
        #: The largest message the peer takes (None: no limit), from its description.
        self.remote_max_message_size: int | None = None
        #: DATA packets per SACK we send, and new ones per burst (see aiortc_sctp.TunedSctpTransport), once we
        #: know who the peer is.
        self.sack_every, self.burst = SACK_EVERY, BURST
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
            "audio_dropped": 0,
            "messages_in": 0,
            "messages_out": 0,
            "messages_malformed": 0,
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
        await self._take_remote(signal)

    async def _take_remote(self, signal: dict[str, Any]) -> None:
        """Take the peer's offer or answer, and with it how to frame for it and its largest message."""
        description = description_of(signal)
        # Frame only for a peer that said it understands (and announce lengths if it takes them).
        self.framed = signal.get("framing") == PROTOCOL
        extensions = signal.get("framing_ext")
        self.announce_length = self.framed and isinstance(extensions, list) and "length" in extensions
        await self.pc.setRemoteDescription(description)
        self.remote_max_message_size = max_message_size(description.sdp)
        self.sack_every, self.burst = sctp_pace(signal)
        if self.pc.sctp is not None:
            tune_sctp(self.pc.sctp, self.sack_every, self.burst)
        await self._add_pending()

    async def answer(self) -> None:
        """Answer the offer: our tracks on the caller's sections, receive what we have a callback for."""
        if self.ignored_offer:
            self.ignored_offer = False
            return
        if self.pc.signalingState != "have-remote-offer":
            raise RuntimeError(
                f"no offer from {self.peer} to answer (signaling state {self.pc.signalingState})"
            )
        renegotiation = self.pc.localDescription is not None
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
        if self.media.room and not renegotiation:
            await self._offer_missing_media()

    async def _offer_missing_media(self) -> None:
        """In a room a member offers only what it wants itself (a data-only member: no media section), so our
        tracks of the kinds it did not offer go in an offer of our own, right after our answer, as a browser
        phone does (js/peer.js): the data-only members get our video and sound all the same."""
        offered = {transceiver.kind for transceiver in self.pc.getTransceivers()}
        added = []
        for kind in ("audio", "video"):
            track = None if kind in offered else self._local_track(kind)
            if track is not None:
                self.pc.addTransceiver(track, direction="sendrecv")
                added.append(kind)
        if added:
            logger.info("offering %s to %s, which did not offer them", " and ".join(added), self.peer)
            await self._set_local(await self.pc.createOffer())
            self._signal("call")

    async def take_answer(self, signal: dict[str, Any]) -> None:
        await self._take_remote(signal)

    async def take_candidate(self, signal: dict[str, Any]) -> None:
        raw = signal.get("candidate")
        try:
            init = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            init = {"candidate": raw}  # refused with one log line by _add_pending
        if not isinstance(init, dict) or not init.get("candidate"):
            return  # the end of the peer's candidates: aiortc learns it from the connection itself
        self.pending.append(init)
        if self.pc.remoteDescription is not None:
            await self._add_pending()

    async def _add_pending(self) -> None:
        pending, self.pending = self.pending, []
        for init in pending:
            try:
                candidate = candidate_from_sdp(str(init["candidate"]).split(":", 1)[1])
                candidate.sdpMid = init.get("sdpMid")
                candidate.sdpMLineIndex = init.get("sdpMLineIndex")
                await self.pc.addIceCandidate(candidate)
            except (AssertionError, LookupError, TypeError, ValueError) as exc:
                # The peer's bug or malice (aiortc's parser asserts): one candidate less, the call goes on.
                shown = str(init.get("candidate"))[:80]
                logger.warning(
                    "ignored a malformed ICE candidate from %s (%s): %r", self.peer, type(exc).__name__, shown
                )

    async def _set_local(self, description: RTCSessionDescription) -> None:
        allow_loopback(self.pc)
        await self.pc.setLocalDescription(description)
        if self.pc.sctp is not None:
            tune_sctp(self.pc.sctp, self.sack_every, self.burst)

    def _signal(self, kind: str) -> None:
        local = self.pc.localDescription
        sdp = json.dumps({"type": local.type, "sdp": local.sdp})
        if not self.closed:
            signal = {
                "type": kind, "sdp": sdp, "framing": PROTOCOL, "framing_ext": list(EXTENSIONS), "polite": False,
                "sctp_ext": list(SCTP_EXTENSIONS),
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
        limit = self.host.max_receive_size
        if not self.framed or isinstance(data, str):
            problem = oversize(len(data), limit)
            if problem is not None:
                self._drop(problem)
            elif isinstance(data, str):
                self._deliver("str", data.encode("utf-8"))
            else:
                self._deliver("bytes", data)
            return
        self.decoder.max_size = limit
        try:
            message = self.decoder.push(data)
        except FramingError as exc:
            # The peer's bug or malice: drop the broken message and keep the call (the decoder starts afresh).
            self._drop(str(exc))
            return
        if message is None:
            if self.decoder.pending:
                self.host.engine_receiving(self.peer, self.decoder.pending, self.decoder.expected)
        else:
            self._deliver(*message)

    def _drop(self, problem: str) -> None:
        """A message from the peer was malformed or too large: one log line, and the host tells the user."""
        self.counts["messages_malformed"] += 1
        logger.warning("dropped a message from %s: %s", self.peer, problem)
        try:
            self.host.engine_dropped(self.peer, problem)
        except Exception:  # never raise in aiortc's callback: it would close the channel
            logger.debug("reporting a dropped message from %s failed", self.peer, exc_info=True)

    def _deliver(self, kind: Kind, payload: bytes) -> None:
        self.counts["messages_in"] += 1
        try:
            self.host.engine_message(self.peer, kind, payload)
        except Exception as exc:  # never raise in aiortc's callback: it would close the channel
            logger.warning("a %s message from %s could not be handled: %s: %s", kind, self.peer,
                           type(exc).__name__, exc)  # fmt: skip
            logger.debug("handling a message from %s failed", self.peer, exc_info=True)

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
                limit = self.remote_max_message_size
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
        # The state is checked after every wait: a channel that closes meanwhile empties its queue too, and
        # aiortc's send would then raise a bare InvalidStateError.
        while True:
            if channel.readyState != "open" or self.closed:
                raise ConnectionError(f"the data channel to {self.peer} closed while sending")
            if channel.bufferedAmount <= channel.bufferedAmountLowThreshold:
                return
            try:
                await asyncio.wait_for(self._low.wait(), 0.5)
            except asyncio.TimeoutError:
                pass
            self._low.clear()

    async def flush(self, timeout: float) -> bool:
        """Wait until everything sent was handed over and acknowledged by the peer; False on timeout."""
        deadline = time.monotonic() + timeout
        try:  # the send under way first, within the same deadline: it may wait on a peer that is gone
            await asyncio.wait_for(self._sends_done(), timeout)
        except asyncio.TimeoutError:
            return self.closed
        while time.monotonic() < deadline and not self.closed:
            channel = self.channel
            queued = channel.bufferedAmount if channel is not None and channel.readyState == "open" else 0
            if not queued and not unacknowledged(self.pc.sctp):
                return True
            await asyncio.sleep(0.01)
        return self.closed

    async def _sends_done(self) -> None:
        async with self.sending:
            pass

    # -------------------------------------------------------------------------------------- media

    def _wants(self, kind: str) -> bool:
        return self.media.wants_video() if kind == "video" else bool(self.media.on_audio)

    def _local_track(self, kind: str) -> MediaStreamTrack | None:
        track = local_track(kind, self.media, self.pool)
        if track is not None:
            self.tracks.append(track)
        return track

    def _on_track(self, track: MediaStreamTrack) -> None:
        consumer = Consumer(self.media, self.peer, self.pool, self.counts, lambda: self.closed)
        self._spawn(consumer.consume(track)).add_done_callback(self._consumer_ended)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` as a task of this link's, kept until it ends."""
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def _consumer_ended(self, task: asyncio.Future[None]) -> None:
        """A received track's consumer that failed: the call goes on without that medium, and the log says why."""
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        logger.error(
            "received media from %s stopped reaching the callbacks (%s: %s); the call goes on without it: "
            "call again to get it back",
            self.peer,
            type(exc).__name__,
            exc,
            exc_info=exc,
        )

    # --------------------------------------------------------------------------------------- state

    def _on_connection_state(self) -> None:
        if not self.closed:
            self.host.engine_connection(self.peer, self.pc.connectionState)
        if self.pc.connectionState == "connected":
            # Media that our offer right after the answer added started while DTLS was still being set up:
            # aiortc leaves it unstarted.
            self._spawn(self._start_media())

    async def _start_media(self) -> None:
        started = await start_media(self.pc)
        if started:
            logger.info("started %d media section(s) of %s added while connecting", started, self.peer)

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


def description_of(signal: dict[str, Any]) -> RTCSessionDescription:
    """The session description a signal carries (its ``sdp``: the description as JSON, or as an object)."""
    raw = signal.get("sdp")
    description = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(description, dict) or "sdp" not in description:
        raise ValueError(f"a {signal.get('type')} without a session description: {str(raw)[:80]!r}")
    return RTCSessionDescription(sdp=description["sdp"], type=description["type"])


def sctp_pace(signal: dict[str, Any]) -> tuple[int, int]:
    """DATA packets per SACK and per burst towards the end that sent ``signal`` (its call or answer).

    A Peer that lists ``burst`` in ``sctp_ext`` sends and takes :data:`~nbcall.peer.aiortc_patches.BURST_PEER`;
    an older Peer (``"polite": false`` alone) sends aiortc's bursts of 4, and does as well with a SACK per 4;
    a browser gets SACKs as often as its own SCTP stack sends them, and aiortc's bursts.
    """
    listed = signal.get("sctp_ext")
    if isinstance(listed, list) and "burst" in listed:
        return BURST_PEER, BURST_PEER
    if signal.get("polite") is False:
        return SACK_EVERY_PEER, BURST
    return SACK_EVERY, BURST


def max_message_size(sdp: str) -> int | None:
    """The largest data-channel message a description's sender takes: its ``a=max-message-size``, 65536
    when it has none, and None for 0, which means no limit (RFC 8841 section 6, as aiortc reads it)."""
    for line in sdp.splitlines():
        if line.startswith("a=max-message-size:"):
            size = int(line.split(":", 1)[1])
            return size if size > 0 else None
    return 65536

"""A Python peer's connections to the SFU in an SFU room (docs/rooms.md, "SFU rooms"), on aiortc.

One publisher connection carries this peer's data channel (and its tracks) to Janus; one subscriber connection
brings every other member's feed, each member's data on a channel Janus labels with its feed ID (mapped to the
member by the server's ``feeds``). Data follows the SFU rules of :mod:`nbcall.wire.framing`: frames of at most
:data:`~nbcall.wire.framing.SFU_FRAME` bytes, each message's first frame marked, senders paced by their
receivers' ACKs (:class:`~nbcall.wire.framing.AckWindow`).

A member counts as connected (``engine_channel(member, True)``) once our publisher channel is open, something
arrived on its feed and it said it receives ours (an ACK naming us). To get there each side announces itself:
a publisher repeats a hello (ACK 0 naming nobody) until every known feed has acknowledged it; a subscriber
answers the first frame of each feed, and each hello, with ACK 0 naming that member, and answers a member's
first ACK naming it with one of its own (which that member may have missed, having subscribed to us later).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from aiortc import RTCConfiguration, RTCDataChannel, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from ..wire.framing import (
    ACK,
    SFU_FRAME,
    SYNC,
    AckWindow,
    FrameDecoder,
    FramingError,
    ack_frame,
    control,
    encode_frames,
)
from ..wire.payload import Kind
from .aiortc_patches import allow_loopback, start_media, tune_sctp
from .link import EngineHost, description_of
from .tracks import ArrayVideoTrack, Consumer, MediaOptions, local_track

__all__ = ["SfuHost", "SfuSession"]

logger = logging.getLogger("nbcall.peer.sfu")

#: Seconds between a publisher's hellos while a known feed has not acknowledged it.
HELLO_EVERY = 0.25


class SfuHost(EngineHost, Protocol):
    """What the SFU session reports to (the Peer): an engine host's reports, with ``peer`` a member (its feed),
    and its own two connections' signals and states; called on the engine's loop."""

    def engine_sfu_signal(self, role: str, signal: dict[str, Any]) -> None: ...
    def engine_sfu_connection(self, role: str, state: str) -> None: ...


class SfuSession:
    """This peer's two connections to the SFU of its room, and the members' feeds on them."""

    def __init__(
        self,
        user_id: str,
        host: SfuHost,
        media: MediaOptions,
        ice_servers: list[dict[str, Any]],
        pool: concurrent.futures.Executor,
        high_water: int,
    ) -> None:
        self.user_id = user_id
        self.host = host
        self.media = media
        self.pool = pool
        self.high_water = high_water
        self.config = RTCConfiguration(iceServers=[RTCIceServer(**server) for server in ice_servers])
        self.publisher = self._connection("publisher")
        self.subscriber: RTCPeerConnection | None = None
        self.channel: RTCDataChannel | None = None
        self.closed = False
        self.window = AckWindow()
        #: Feed ID -> member, from the server's latest subscriber offer.
        self.feeds: dict[str, str] = {}
        self.decoders: dict[str, FrameDecoder] = {}
        #: Which member each media section of the subscriber connection carries, by mid.
        self.mids: dict[str, str] = {}
        #: What came from each member on its feed and tracks: the only numbers of a room that are per member.
        self.from_members: dict[str, dict[str, int]] = {}
        #: Members whose feed brought something, and members that said they receive us.
        self.heard: set[str] = set()
        self.hears_me: set[str] = set()
        self.connected: set[str] = set()
        self.steps = asyncio.Lock()
        self.sending = asyncio.Lock()
        self._acked = asyncio.Event()
        self._low = asyncio.Event()
        self.tracks: list[Any] = []
        self.tasks: set[asyncio.Task[None]] = set()
        #: Our publisher's data (every frame, pacing included), and all our subscriber connection's data.
        self.bytes_out = 0
        self.messages_out = 0
        self.bytes_in = 0
        self.messages_in = 0

    def _connection(self, role: str) -> RTCPeerConnection:
        pc = RTCPeerConnection(self.config)

        @pc.on("connectionstatechange")
        def report() -> None:
            if not self.closed:
                self.host.engine_sfu_connection(role, pc.connectionState)
            if role == "subscriber" and pc.connectionState == "connected":
                self._spawn(self._start_receivers(pc))

        return pc

    # ------------------------------------------------------------------------------- signaling steps

    def step(self, work: Callable[[], Any]) -> None:
        """Run a signaling step after the earlier ones; a failure is reported unless the session closed."""

        async def run() -> None:
            async with self.steps:
                try:
                    await work()
                except Exception as exc:
                    if not self.closed:
                        logger.debug("an SFU step failed", exc_info=True)
                        self.host.engine_failure("", f"SFU: {type(exc).__name__}: {exc}")

        self._spawn(run())

    async def publish(self) -> None:
        """Offer the SFU our data channel (and tracks); aiortc gathers every candidate before the offer."""
        for kind in ("audio", "video"):
            track = local_track(kind, self.media, self.pool)
            if track is not None:
                self.tracks.append(track)
                self.publisher.addTransceiver(track, direction="sendonly")
        channel = self.publisher.createDataChannel("nbcall")
        channel.bufferedAmountLowThreshold = self.high_water // 2
        channel.on("bufferedamountlow", self._low.set)
        channel.on("open", self._published)
        self.channel = channel
        await self._set_local(self.publisher, await self.publisher.createOffer())
        self.host.engine_sfu_signal("publisher", _signal(self.publisher))

    async def take(
        self,
        role: str,
        signal: dict[str, Any],
        feeds: dict[str, str] | None,
        streams: list[dict[str, Any]] | None = None,
    ) -> None:
        """The SFU's answer to our publisher, its (updated) subscriber offer, or a candidate."""
        kind = signal.get("type")
        if self.closed or self.publisher.signalingState == "closed":
            return  # an offer that crossed our leaving: nothing is left to answer it with
        if feeds is not None and role == "subscriber":
            self._update_feeds(feeds)
        if kind in ("ice", "feeds"):
            return  # aiortc learns Janus's candidates from its description (Janus gathers before answering)
        description = description_of(signal)
        if role == "publisher" and kind == "answer":
            await self.publisher.setRemoteDescription(description)
            return
        if role != "subscriber" or kind != "offer":
            raise ValueError(f"no {kind!r} is expected on the {role} connection")
        pc = self.subscriber
        if pc is None:
            pc = self.subscriber = self._connection("subscriber")
            pc.on("datachannel", self._attach_feed)
            pc.on("track", self._on_track)
            # Without a data channel of our own on this connection, Janus relays nothing (and says nothing).
            pc.createDataChannel("nbcall")
        for stream in streams or []:
            if stream.get("member"):
                self.mids[str(stream.get("mid"))] = str(stream["member"])
        await pc.setRemoteDescription(description)
        for transceiver in pc.getTransceivers():
            # Receive only what goes somewhere: video with a frame callback, audio with an audio callback.
            wanted = self.media.wants_video() if transceiver.kind == "video" else bool(self.media.on_audio)
            transceiver.direction = "recvonly" if wanted else "inactive"
        await self._set_local(pc, await pc.createAnswer())
        self.host.engine_sfu_signal("subscriber", _signal(pc))

    async def _start_receivers(self, pc: RTCPeerConnection) -> None:
        """Start the receivers of media an updated offer added while the connection was still being made: aiortc
        starts a receiver only if DTLS is up when it applies the description, and never comes back to it."""
        started = await start_media(pc)
        if started:
            logger.info(
                "started %d receiver(s) added while the subscriber connection was being made", started
            )

    async def _set_local(self, pc: RTCPeerConnection, description: RTCSessionDescription) -> None:
        allow_loopback(pc)
        await pc.setLocalDescription(description)
        if pc.sctp is not None:
            tune_sctp(pc.sctp)

    def _update_feeds(self, feeds: dict[str, str]) -> None:
        gone = set(self.feeds.values()) - set(feeds.values())
        self.feeds = dict(feeds)
        for member in gone:
            self.forget(member)

    def forget(self, member: str) -> None:
        """``member`` left the room: it holds no send back, and its state starts afresh should it return."""
        self.window.forget(member)
        self._acked.set()
        self.heard.discard(member)
        self.hears_me.discard(member)
        self.from_members.pop(member, None)
        if member in self.connected:
            self.connected.discard(member)
            self.host.engine_channel(member, False, True)

    # ------------------------------------------------------------------------------------ the feeds

    def _published(self) -> None:
        """Our publisher channel opened: announce ourselves until every known feed acknowledged us."""

        async def hello() -> None:
            while not self.closed and self.channel is not None and self.channel.readyState == "open":
                if set(self.feeds.values()) - self.hears_me or not self.feeds:
                    self._send_control(ack_frame(0, ""))
                await asyncio.sleep(HELLO_EVERY)

        self._spawn(hello())
        self._update_connected()

    def _attach_feed(self, channel: RTCDataChannel) -> None:
        label = channel.label

        @channel.on("message")
        def on_message(data: str | bytes) -> None:
            if not self.closed:
                self._receive(label, data)

    def _receive(self, feed: str, data: str | bytes) -> None:
        member = self.feeds.get(feed)
        if member is None or isinstance(data, str):
            return  # a feed the server did not name (yet), or not an nbcall frame
        self.bytes_in += len(data)
        tally = self._tally(member)
        tally["bytes_received"] += len(data)
        pacing = control(data)
        hello = pacing is not None and pacing[0] == ACK and pacing[2] == ""
        if member not in self.heard or hello:
            # "I receive you", to its first frame and to each hello: Janus drops data on a link that is not
            # ready without a word, so an answer may be lost, and the member says hello until it has one.
            self.heard.add(member)
            self._send_control(ack_frame(0, member))
        if pacing is not None:
            kind, sequence, sender = pacing
            if kind == SYNC:
                self._send_control(ack_frame(sequence, member))
            elif kind == ACK and sender == self.user_id:
                if member not in self.hears_me:
                    self.hears_me.add(member)
                    self._send_control(ack_frame(0, member))  # in case it subscribed to us after our first
                self.window.acked(member, sequence)
                self._acked.set()
            self._update_connected()
            return
        self._update_connected()
        decoder = self.decoders.setdefault(feed, FrameDecoder(start=True))
        try:
            message = decoder.push(data)
        except FramingError as exc:
            tally["messages_malformed"] += 1
            logger.warning("dropped a malformed message from %s: %s", member, exc)
            return
        if message is None:
            if decoder.pending:
                self.host.engine_receiving(member, decoder.pending, decoder.expected)
            return
        tally["messages_in"] += 1
        self.messages_in += 1
        try:
            self.host.engine_message(member, *message)
        except Exception as exc:  # noqa: BLE001 (never raise in aiortc's callback: it would close the channel)
            logger.warning("a message from %s could not be handled: %s: %s", member, type(exc).__name__, exc)

    def _tally(self, member: str) -> dict[str, int]:
        tally = self.from_members.get(member)
        if tally is None:
            tally = self.from_members[member] = dict.fromkeys(
                ("bytes_received", "messages_in", "messages_malformed"), 0
            )
        return tally

    def _update_connected(self) -> None:
        open_ = self.channel is not None and self.channel.readyState == "open" and not self.closed
        now = self.heard & self.hears_me if open_ else set()
        for member in now - self.connected:
            self.host.engine_channel(member, True, True)
        for member in self.connected - now:
            self.host.engine_channel(member, False, True)
        self.connected = now

    def _on_track(self, track: Any) -> None:
        """A member's video goes to the frame callbacks (named by the ``streams`` of the offer); its audio to
        ``on_audio``."""
        pc = self.subscriber
        mid = next((t.mid for t in pc.getTransceivers() if t.receiver.track is track), None) if pc else None
        member = self.mids.get(str(mid), "")
        tally = self._tally(member)  # frames_in, audio_in: counted per member
        self._spawn(Consumer(self.media, member, self.pool, tally, lambda: self.closed).consume(track))

    # ------------------------------------------------------------------------------------- sending

    def _send_control(self, frame: bytes) -> None:
        channel = self.channel
        if channel is not None and channel.readyState == "open" and not self.closed:
            channel.send(frame)  # never queued behind a large send: acks must pass our own paced data
            self.bytes_out += len(frame)

    async def send(self, kind: Kind, payload: bytes, progress: Callable[[int], None] | None = None) -> None:
        """Send one message to every member, after the ones before it, paced by the members' ACKs."""
        async with self.sending:
            channel = self.channel
            if channel is None or channel.readyState != "open" or self.closed:
                raise ConnectionError("the data channel to the SFU is not open")
            sent = 0
            for frame in encode_frames(kind, payload, SFU_FRAME, announce_length=True, mark_start=True):
                # Held back by the receivers' ACKs (Janus's queues), then by our own SCTP queue.
                while self.window.blocked(time.monotonic()):
                    await self._wait(self._acked, channel)
                while channel.bufferedAmount > self.high_water:
                    await self._wait(self._low, channel)
                channel.send(frame)
                self.bytes_out += len(frame)
                sync = self.window.sent(len(frame), self.connected, time.monotonic())
                if sync is not None:
                    channel.send(sync)
                    self.bytes_out += len(sync)
                sent += len(frame) - 1
                if progress is not None:
                    progress(min(sent, len(payload)))
            self.messages_out += 1

    async def _wait(self, event: asyncio.Event, channel: RTCDataChannel) -> None:
        """Wait for ``event`` (at most half a second, then the caller checks again); raise if the channel closed."""
        event.clear()
        try:
            await asyncio.wait_for(event.wait(), 0.5)
        except asyncio.TimeoutError:
            pass
        if self.closed or channel.readyState != "open":
            raise ConnectionError("the data channel to the SFU closed while sending")

    async def flush(self, timeout: float) -> bool:
        """Wait until every member connected has acknowledged all we sent (or ``timeout`` passed)."""
        deadline = time.monotonic() + timeout

        async def sync_after_sends() -> None:  # a SYNC after the send under way, which may wait on the ACKs
            async with self.sending:
                sync = self.window.sent(0, self.connected, time.monotonic(), force=True)
                if sync is not None:
                    self._send_control(sync)

        try:
            await asyncio.wait_for(sync_after_sends(), timeout)
        except asyncio.TimeoutError:
            return self.closed
        while not self.window.settled and time.monotonic() < deadline and not self.closed:
            self.window.blocked(time.monotonic())  # gives up on a receiver silent past its patience
            self._acked.clear()
            try:
                await asyncio.wait_for(self._acked.wait(), 0.2)
            except asyncio.TimeoutError:
                pass
        return self.window.settled or self.closed

    @property
    def open(self) -> bool:
        return self.channel is not None and self.channel.readyState == "open" and not self.closed

    def stats(self) -> dict[str, Any]:
        """Our own two connections to the SFU, once: what we published, and what the subscriber connection
        brought from every member in all (data-channel bytes, pacing frames included)."""
        video_out = [t for t in self.tracks if isinstance(t, ArrayVideoTrack)]
        subscriber = self.subscriber
        return {
            "publisher": {
                "connection": self.publisher.connectionState,
                "bytes_sent": self.bytes_out,
                "messages_out": self.messages_out,
                **({"frames_out": sum(t.frames_sent for t in video_out)} if video_out else {}),
            },
            "subscriber": {
                "connection": subscriber.connectionState if subscriber is not None else "new",
                "bytes_received": self.bytes_in,
                "messages_in": self.messages_in,
                "feeds": dict(self.feeds),
            },
        }

    def member_stats(self) -> dict[str, dict[str, Any]]:
        """What came from each member through our subscriber connection: its feed's data and its frames."""
        return {
            member: {"feed": "open" if member in self.connected else "connecting", **tally}
            for member, tally in self.from_members.items()
        }

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self, grace: float = 0) -> None:
        """Close both connections and stop our tracks, ``grace`` seconds after reports stop (so that a
        ``room-leave`` reaches the server before Janus sees us go). Idempotent."""
        if self.closed:
            return
        self.closed = True
        await asyncio.sleep(grace)
        self._acked.set()
        self._low.set()
        for track in self.tracks:
            track.stop()
        for task in list(self.tasks):
            task.cancel()
        for pc in (self.publisher, self.subscriber):
            if pc is not None:
                try:
                    await pc.close()
                except Exception:
                    logger.debug("closing an SFU connection failed", exc_info=True)


def _signal(pc: RTCPeerConnection) -> dict[str, Any]:
    """Our offer or answer as the signaling server relays it: the description as JSON, as in ``call``."""
    local = pc.localDescription
    return {"type": local.type, "sdp": json.dumps({"type": local.type, "sdp": local.sdp})}

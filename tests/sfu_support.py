"""Helpers for the SFU tests: a Janus on free ports, and members of SFU rooms as bare clients.

:func:`janus_or_skip` starts Debian's Janus with :func:`nbcall.teach.janus.start_janus`, on the test network
namespace's veth (``jns0``, carrying 127.0.0.2: Janus skips loopback interfaces for ICE) when it exists.
:class:`SfuMember` is a phone as a bare websockets client; with ``rtc=True`` it also plays a member's WebRTC part
on aiortc: it publishes a data channel and answers the SFU's subscriber offers, keeping what it receives.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import socket
import time
from typing import Any

import pytest
from aiortc.rtcsctptransport import InitChunk
from support import TIMEOUT
from websockets.asyncio.client import ClientConnection, connect

from nbcall.peer.aiortc_patches import tune_sctp
from nbcall.teach.janus import JanusServer, start_janus

__all__ = ["VETH", "SfuMember", "has_veth", "janus_or_skip", "record_of"]

#: The veth scripts/test.sh adds in the test namespace, carrying 127.0.0.2.
VETH = "jns0"


def has_veth() -> bool:
    return any(name == VETH for _, name in socket.if_nameindex())


def janus_or_skip(
    *, media: bool, session_timeout: int = 60, reclaim_session_timeout: int = 60
) -> JanusServer:
    """A Janus for one test module; ``media``: its ICE must work (the namespace's veth), else skip."""
    if shutil.which("janus") is None:
        pytest.skip("needs Debian's janus (scripts/test.sh installs it)")
    if media and not has_veth():
        pytest.skip(
            f"needs the veth {VETH} with 127.0.0.2 (Janus skips loopback for ICE): run the webrtc tests as "
            "scripts/test.sh does"
        )
    return start_janus(
        interface=VETH if has_veth() else None,
        session_timeout=session_timeout,
        reclaim_session_timeout=reclaim_session_timeout,
    )


class SfuMember:
    """A member as a bare client; with ``rtc``, its publisher and subscriber links on aiortc."""

    def __init__(self, member_id: str) -> None:
        self.id = member_id
        self.ws: ClientConnection | None = None
        self.registered: dict[str, Any] = {}
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self.room = ""
        #: feed ID -> member, as the SFU said in its last subscriber offer or sfu-feeds.
        self.feeds: dict[str, str] = {}
        #: (member, text) for each data-channel message received through the SFU.
        self.received: list[tuple[str, str]] = []
        self.publisher: Any = None  # RTCPeerConnection
        self.subscriber: Any = None
        self.channel: Any = None  # the publisher's data channel
        self.offers = 0  # subscriber offers answered
        self.errors: list[str] = []  # what answering an offer raised
        #: The last subscriber offer's streams: mid -> the member whose feed it carries (media only).
        self.mids: dict[str, str] = {}
        #: The kind of each of those streams: mid -> "audio" or "video".
        self.kinds: dict[str, str] = {}
        #: The tracks received on the subscriber link, by mid.
        self.tracks: dict[str, Any] = {}
        #: The room credential of its last room-state, and the record of its last sfu-record (for a restart).
        self.credential = ""
        self.record = ""
        self.secret = f"secret of {member_id}"
        #: SCTP INIT chunks the subscriber link's SCTP transport received from Janus.
        self.inits = 0

    async def open(self, url: str, **fields: Any) -> dict[str, Any]:
        self.ws = await connect(url, open_timeout=TIMEOUT)
        await self.send(type="register", rooms=True, **fields)
        self.registered = json.loads(await asyncio.wait_for(self.ws.recv(), TIMEOUT))
        self._reader = asyncio.create_task(self._read())
        return self.registered

    async def rejoin(self, url: str) -> dict[str, Any]:
        """Register again at ``url`` (a restarted server, another node) as a member of its room, with its secret,
        its credential and its record, as a phone does after losing its server; its links stay as they are."""
        if self._reader is not None:
            self._reader.cancel()
        return await self.open(url, secret=self.secret, room=self.room, credential=self.credential,
                               sfu=self.record or None)  # fmt: skip

    async def send(self, **fields: Any) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps({"from": self.id, **fields}))

    async def next(self, msg_type: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next message of ``msg_type`` (others before it are dropped)."""
        deadline = time.monotonic() + timeout
        seen = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = await asyncio.wait_for(self._inbox.get(), left)
            except asyncio.TimeoutError:
                break
            if msg["type"] == msg_type:
                return msg
            seen.append(msg)
        pytest.fail(f"{self.id} received no {msg_type!r} within {timeout} s; got {seen}")

    def pending(self) -> list[dict[str, Any]]:
        """What arrived and was not taken yet."""
        out = []
        while not self._inbox.empty():
            out.append(self._inbox.get_nowait())
        return out

    async def _read(self) -> None:
        assert self.ws is not None
        async for text in self.ws:
            msg = json.loads(text)
            if msg["type"] == "sfu-offer" and self.subscriber is not None:
                self.feeds = msg["feeds"]
                media = [stream for stream in msg["streams"] if "member" in stream]
                self.mids = {stream["mid"]: stream["member"] for stream in media}
                self.kinds = {stream["mid"]: stream["type"] for stream in media}
                await self._answer(msg)
            elif msg["type"] == "sfu-feeds":
                self.feeds = msg["feeds"]
            elif msg["type"] == "sfu-record":
                self.record = msg["record"]
            elif msg["type"] not in ("joined", "left"):
                if msg["type"] == "room-state" or (msg["type"] == "room-left" and "credential" in msg):
                    self.credential = msg["credential"]
                await self._inbox.put(msg)

    # -- WebRTC on aiortc -----------------------------------------------------------------

    async def publish(self, room: str, *, video: bool = False, audio: bool = False) -> dict[str, Any]:
        """Publish a data channel (and a test video track, a silent audio track) into ``room``; subscribe to the
        others as the SFU offers them."""
        from aiortc import AudioStreamTrack, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack

        self.room = room
        self.subscriber = RTCPeerConnection()
        self.subscriber.createDataChannel("local")  # Janus relays nothing to a subscriber without one

        @self.subscriber.on("datachannel")
        def _channel(channel: Any) -> None:
            @channel.on("message")
            def _message(message: str) -> None:
                self.received.append((self.feeds.get(channel.label, channel.label), message))

        @self.subscriber.on("track")
        def _track(track: Any) -> None:
            mid = next(t.mid for t in self.subscriber.getTransceivers() if t.receiver.track is track)
            self.tracks[mid] = track

        self.publisher = RTCPeerConnection()
        self.channel = self.publisher.createDataChannel("nbcall")
        if video:
            self.publisher.addTrack(_small_video(VideoStreamTrack))
        if audio:
            self.publisher.addTrack(AudioStreamTrack())
        await self.publisher.setLocalDescription(await self.publisher.createOffer())
        _tuned(self.publisher)
        await _gathered(self.publisher)
        local = self.publisher.localDescription
        await self.send(
            type="sfu-offer",
            room=room,
            role="publisher",
            sdp=json.dumps({"type": local.type, "sdp": local.sdp}),
        )
        answer = await self.next("sfu-answer", 10)
        description = json.loads(answer["sdp"])
        await self.publisher.setRemoteDescription(
            RTCSessionDescription(description["sdp"], description["type"])
        )
        return answer

    async def _answer(self, msg: dict[str, Any]) -> None:
        from aiortc import RTCSessionDescription

        offer = json.loads(msg["sdp"])
        await self.subscriber.setRemoteDescription(RTCSessionDescription(offer["sdp"], offer["type"]))
        await self.subscriber.setLocalDescription(await self.subscriber.createAnswer())
        if _tuned(self.subscriber) and self.offers == 0:
            self._count_inits(self.subscriber.sctp)
        await _gathered(self.subscriber)
        local = self.subscriber.localDescription
        await self.send(type="sfu-answer", room=msg["room"], role="subscriber",
                        sdp=json.dumps({"type": local.type, "sdp": local.sdp}))  # fmt: skip
        self.offers += 1

    def _count_inits(self, transport: Any) -> None:
        receive = transport._receive_chunk

        async def counted(chunk: Any) -> None:
            self.inits += isinstance(chunk, InitChunk)
            await receive(chunk)

        transport._receive_chunk = counted

    async def reaches(self, other: SfuMember, text: str, timeout: float = 10) -> int:
        """Send ``text`` on the data channel until ``other`` receives it through the SFU; how many sends it took."""
        return await self.reaches_all([other], text, timeout)

    async def reaches_all(self, others: list[SfuMember], text: str, timeout: float = 10) -> int:
        """Send ``text`` on the data channel until every one of ``others`` received it through the SFU; how many
        sends it took.

        Janus relays nothing to a subscriber link until it counts its data channels writable, and says nothing:
        its VideoRoom drops a message for a subscriber whose ``data_ready`` has not come, which its core reports
        when usrsctp's first send there (the DCEP ACK to our own channel) has been acknowledged: tens of
        milliseconds after the link is connected (80 ms here), more on a busy machine. A message sent before is
        lost (so is one sent while a renegotiated link settles), so a test sends again (a bounded number of
        times) until it went through.
        """
        for attempt in range(1, int(timeout / 0.25) + 1):
            self.channel.send(text)
            for _ in range(5):
                await asyncio.sleep(0.05)
                if all((self.id, text) in other.received for other in others):
                    return attempt
        late = [other.id for other in others if (self.id, text) not in other.received]
        pytest.fail(f"{late} never received {text!r} from {self.id} within {timeout} s")

    async def close(self) -> None:
        for pc in (self.publisher, self.subscriber):
            if pc is not None:
                await pc.close()
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()


def record_of(member: SfuMember) -> dict[str, Any]:
    """What ``member``'s last record of its links to the SFU says (the body the server signed)."""
    body = member.record.split(".")[0]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


def _small_video(base: Any) -> Any:
    """A 160x120 test pattern (aiortc's default track is 640x480: costly to encode on a busy machine)."""
    import numpy
    from av import VideoFrame

    class Small(base):  # type: ignore[misc, valid-type]
        async def recv(self) -> VideoFrame:
            pts, time_base = await self.next_timestamp()
            frame = VideoFrame.from_ndarray(numpy.full((120, 160, 3), pts % 255, numpy.uint8), format="bgr24")
            frame.pts, frame.time_base = pts, time_base
            return frame

    return Small()


async def _gathered(pc: Any) -> None:
    deadline = time.monotonic() + TIMEOUT
    while pc.iceGatheringState != "complete" and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


def _tuned(pc: Any) -> bool:
    """Give ``pc`` nbcall's SCTP transport, as a Peer's links to Janus have: aiortc's own takes the INIT Janus
    sometimes resends on a live association for a new one, and then loses what Janus sends (aiortc_sctp)."""
    return pc.sctp is not None and tune_sctp(pc.sctp)

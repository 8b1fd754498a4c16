"""Media made and consumed in Python: numpy arrays in, aiortc tracks out, and received frames to callbacks.

:class:`ArrayVideoTrack` and :class:`ArrayAudioTrack` turn a source (an iterator of arrays, or a callable
returning one) into frames at the right pace; :class:`Consumer` hands a received track's frames to the user's
callbacks on a worker thread (through :func:`call_frame` and :func:`call_all`). :class:`MediaOptions` says which media a peer sends and receives.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fractions
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

__all__ = [
    "MAX_PENDING_AUDIO",
    "ArrayAudioTrack",
    "ArrayVideoTrack",
    "Consumer",
    "FrameCallback",
    "MediaOptions",
    "RoomFrameCallback",
    "call_all",
    "call_frame",
    "local_track",
]

logger = logging.getLogger("nbcall.peer.rtc")

#: Received audio frames (20 ms each) that may wait for the ``on_audio`` callbacks; more are dropped.
MAX_PENDING_AUDIO = 50

FrameCallback = Callable[[np.ndarray, float], Any]
RoomFrameCallback = Callable[[str, np.ndarray, float], Any]


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
    #: ``callback(member, frame, timestamp)`` for each member's video while the peer is in a room.
    on_room_frame: list[RoomFrameCallback] = field(default_factory=list)
    #: Whether the peer is in a room now (its adapter says so as the room comes and goes).
    room: bool = False

    def wants_video(self) -> bool:
        """Whether received video goes anywhere: a peer without a frame callback receives none."""
        return bool(self.on_frame or self.on_room_frame)


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


def call_frame(media: MediaOptions, member: str, frame: av.VideoFrame) -> None:
    """Convert on a worker thread (not the loop) and call each frame callback: ``on_frame``'s, and in a room
    ``on_room_frame``'s with the ``member`` whose video it is."""
    array = frame.to_ndarray(format="rgb24")
    timestamp = float(frame.time or 0)
    call_all(media.on_frame, array, timestamp)
    if media.room:
        for callback in list(media.on_room_frame):
            try:
                callback(member, array, timestamp)
            except Exception:
                logger.exception("room frame callback %r failed", callback)


async def _received(track: MediaStreamTrack, closed: Callable[[], bool]) -> AsyncIterator[Any]:
    """The track's frames until it ends or its connection closes."""
    while not closed():
        try:
            yield await track.recv()
        except MediaStreamError:
            return


def call_all(callbacks: list[FrameCallback], array: np.ndarray, timestamp: float) -> None:
    for callback in list(callbacks):
        try:
            callback(array, timestamp)
        except Exception:
            logger.exception("media callback %r failed", callback)


@dataclass
class Consumer:
    """Where ``member``'s received media goes: to the callbacks of ``media``, run on ``pool``; ``counts`` tallies
    the frames taken and dropped."""

    media: MediaOptions
    member: str
    pool: concurrent.futures.Executor
    counts: dict[str, int]
    #: Whether the connection the tracks come on has closed.
    closed: Callable[[], bool]

    async def consume(self, track: MediaStreamTrack) -> None:
        """Hand ``track``'s frames to the callbacks of its kind until it ends or the connection closes."""
        frames = _received(track, self.closed)
        await (self._video(frames) if track.kind == "video" else self._audio(frames))

    async def _video(self, frames: AsyncIterator[Any]) -> None:
        """Hand the newest frame to the callbacks; frames that come while they run are dropped, not queued."""
        media, member, pool, counts = self.media, self.member, self.pool, self.counts
        loop = asyncio.get_running_loop()
        busy: asyncio.Future[None] | None = None
        async for frame in frames:
            counts["frames_in"] = counts.get("frames_in", 0) + 1
            if busy is not None and not busy.done():
                counts["frames_dropped"] = counts.get("frames_dropped", 0) + 1
                continue
            busy = loop.run_in_executor(pool, call_frame, media, member, frame)  # type: ignore[arg-type]

    async def _audio(self, frames: AsyncIterator[Any]) -> None:
        """Resample the audio to the peer's rate and channels and hand each frame to ``on_audio``, in order; past
        :data:`MAX_PENDING_AUDIO` frames waiting for the callbacks, new frames are dropped (and counted), so that
        slow callbacks cost a gap, never unbounded memory."""
        media, member, pool, counts = self.media, self.member, self.pool, self.counts
        loop = asyncio.get_running_loop()
        layout = "mono" if media.channels == 1 else "stereo"
        resampler = av.AudioResampler(format="s16", layout=layout, rate=media.sample_rate)
        pending: set[asyncio.Future[None]] = set()
        async for frame in frames:
            counts["audio_in"] = counts.get("audio_in", 0) + 1
            if not media.on_audio:
                continue
            if len(pending) >= MAX_PENDING_AUDIO:
                dropped = counts["audio_dropped"] = counts.get("audio_dropped", 0) + 1
                if dropped == 1 or dropped % 500 == 0:
                    logger.warning(
                        "audio from %s: %d frames dropped so far, the on_audio callbacks fall behind (%d frames "
                        "wait); make them quicker",
                        member,
                        dropped,
                        len(pending),
                    )
                continue
            for out in resampler.resample(frame):  # type: ignore[arg-type]
                samples = out.to_ndarray().reshape(-1, media.channels)
                if media.channels == 1:
                    samples = samples[:, 0]
                job = loop.run_in_executor(pool, call_all, media.on_audio, samples, float(out.time or 0))
                pending.add(job)
                job.add_done_callback(pending.discard)


def local_track(kind: str, media: MediaOptions, pool: concurrent.futures.Executor) -> MediaStreamTrack | None:
    """The track a peer sends of ``kind`` ("audio" or "video") from its media's source, or None without one."""
    source = media.video if kind == "video" else media.audio
    if source is None:
        return None
    if kind == "video":
        return ArrayVideoTrack(source, media.fps, pool)
    return ArrayAudioTrack(source, media.sample_rate, media.channels, pool)

"""Framing of nbcall messages on a data channel, byte for byte as the browser phone does it (js/framing.js).

Between two nbcall ends (each says ``"framing": "nbcall/1"`` in its call or answer) every frame is binary:
byte 0 is the message kind (1 = str, 2 = bytes, 3 = json), with :data:`MORE` (0x80) set when more frames
follow; the rest is a chunk of the payload (UTF-8 for str and json). A reliable, ordered channel keeps the
chunks in order, so no length or sequence number is needed. Extension ``length`` (sent only to an end that
lists it in its signal's ``framing_ext``): a message that takes more than one frame is preceded by a LENGTH
frame, byte 0 = 4 and bytes 1..8 its payload's length (unsigned, big-endian), so that the receiver can tell how
much is left. With any other peer messages travel unframed.
"""

from __future__ import annotations

from collections.abc import Iterator

from .payload import Kind

__all__ = [
    "EXTENSIONS",
    "KINDS",
    "LENGTH",
    "MORE",
    "PROTOCOL",
    "FrameDecoder",
    "FramingError",
    "encode_frames",
]

#: What an nbcall end announces in its call or answer when it frames messages.
PROTOCOL = "nbcall/1"
#: The extensions of nbcall/1 this end understands (announced in ``framing_ext``).
EXTENSIONS = ("length",)
KINDS: tuple[Kind, ...] = ("str", "bytes", "json")
#: Set in a frame's kind byte when more frames of the same message follow.
MORE = 0x80
#: Byte 0 of a frame announcing the next message's length (extension ``length``).
LENGTH = 4


class FramingError(ValueError):
    """A frame that cannot belong to a well-formed message (the broken message is dropped)."""


def encode_frames(
    kind: Kind, payload: bytes | memoryview, max_frame: int, announce_length: bool = False
) -> Iterator[bytes]:
    """Split ``payload`` into frames of at most ``max_frame`` bytes, header included; an empty one is a frame.

    With ``announce_length`` a payload that needs more than one frame is preceded by a LENGTH frame.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown message kind {kind!r}: one of {KINDS}")
    if max_frame < 2:
        raise ValueError(
            f"frame size {max_frame} is too small: a frame holds a kind byte and 1+ payload bytes"
        )
    code = KINDS.index(kind) + 1
    view = memoryview(payload).cast("B")
    step = max_frame - 1
    total = len(view)
    if announce_length and total > step:
        yield bytes((LENGTH,)) + total.to_bytes(8, "big")
    offset = 0
    while True:
        chunk = view[offset : offset + step]
        offset += len(chunk)
        header = code | MORE if offset < total else code
        yield bytes((header,)) + chunk
        if offset >= total:
            return


class FrameDecoder:
    """Reassembles frames into whole messages; use one per data channel."""

    def __init__(self) -> None:
        self._chunks: list[memoryview] = []
        self._code = 0
        #: Bytes of the message being reassembled so far (for progress reports).
        self.pending = 0
        #: That message's announced length (extension ``length``), or None when not announced.
        self.expected: int | None = None

    def push(self, frame: bytes) -> tuple[Kind, bytes] | None:
        """Feed one binary frame; returns ``(kind, payload)`` once a message is whole, else None."""
        if not frame:
            raise FramingError("empty frame: an nbcall frame has at least its kind byte")
        if frame[0] == LENGTH:
            if self._chunks:
                self._reset()  # drop the broken message, so that the next one decodes
                raise FramingError("length frame inside a message")
            if len(frame) != 9:
                raise FramingError(f"length frame of {len(frame)} bytes: it has 9")
            self.expected = int.from_bytes(frame[1:9], "big")
            return None
        code = frame[0] & ~MORE
        if not 1 <= code <= len(KINDS):
            raise FramingError(f"unknown message kind byte {frame[0]}")
        if self._chunks and code != self._code:
            self._reset()  # drop the broken message, so that the next one decodes
            raise FramingError(f"frame of kind {code} inside a message of kind {self._code}")
        self._code = code
        # A view of the frame: the message is copied once, when it is joined.
        self._chunks.append(memoryview(frame)[1:])
        self.pending += len(frame) - 1
        if frame[0] & MORE:
            return None
        payload = b"".join(self._chunks)
        self._reset()
        return KINDS[code - 1], payload

    def _reset(self) -> None:
        self._chunks, self.pending, self.expected = [], 0, None

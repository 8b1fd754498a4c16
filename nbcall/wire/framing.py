"""Framing of nbcall messages on a data channel, byte for byte as the browser phone does it (js/framing.js).

Between two nbcall ends (each says ``"framing": "nbcall/1"`` in its call or answer) every frame is binary:
byte 0 is the message kind (1 = str, 2 = bytes, 3 = json), with :data:`MORE` (0x80) set when more frames
follow; the rest is a chunk of the payload (UTF-8 for str and json). A reliable, ordered channel keeps the
chunks in order, so no length or sequence number is needed. Extension ``length`` (sent only to an end that
lists it in its signal's ``framing_ext``): a message that takes more than one frame is preceded by a LENGTH
frame, byte 0 = 4 and bytes 1..8 its payload's length (unsigned, big-endian), so that the receiver can tell how
much is left. Extension ``start``: the first frame of every message has :data:`FIRST` (0x40) set in byte 0
(the LENGTH frame when there is one), so that a receiver that comes in while a message is under way (a member
joining an SFU room) drops the frames up to the next message's first one instead of handing over a tail.
With any other peer messages travel unframed.

A receiver keeps at most ``max_size`` bytes of one message (:data:`~nbcall.wire.payload.MAX_RECEIVE_SIZE` by
default): a larger one, announced or counted as its frames arrive, is refused once and its remaining frames are
dropped, so that the message after it decodes.

In an SFU room every member is an nbcall end that speaks ``start``, and the room adds two control frames for
pacing (:class:`AckWindow`): SYNC (byte 0 = 5, bytes 1..8 a sequence number) from a sender after every
window's worth of bytes, and ACK (byte 0 = 6, bytes 1..8 the sequence number, bytes 9.. the UTF-8 ID of the
member whose SYNC it answers) from each receiver, broadcast on its own channel. ACK 0 is sent unasked: "I
receive you" (see :class:`AckWindow`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .payload import MAX_RECEIVE_SIZE, Kind, oversize

__all__ = [
    "ACK",
    "EXTENSIONS",
    "FIRST",
    "KINDS",
    "LENGTH",
    "MORE",
    "PROTOCOL",
    "SFU_FRAME",
    "SYNC",
    "AckWindow",
    "FrameDecoder",
    "FramingError",
    "MessageTooLarge",
    "ack_frame",
    "control",
    "encode_frames",
    "sync_frame",
]

#: What an nbcall end announces in its call or answer when it frames messages.
PROTOCOL = "nbcall/1"
#: The extensions of nbcall/1 this end understands (announced in ``framing_ext``); ``resume`` is the file
#: protocol's (``nbcall.call.transfer``): this end answers a file's start with what it holds of the file.
EXTENSIONS = ("length", "resume", "start")
KINDS: tuple[Kind, ...] = ("str", "bytes", "json")
#: Set in a frame's kind byte when more frames of the same message follow.
MORE = 0x80
#: Set in byte 0 of a message's first frame (extension ``start``).
FIRST = 0x40
#: Byte 0 of a frame announcing the next message's length (extension ``length``).
LENGTH = 4
#: Byte 0 of the SFU room's pacing frames.
SYNC = 5
ACK = 6
#: The largest data-channel message Janus relays (a 16-bit length in its plugin API: 65,536 is dropped).
SFU_FRAME = 65535


class FramingError(ValueError):
    """A frame that cannot belong to a well-formed message (the broken message is dropped)."""


class MessageTooLarge(FramingError):
    """A message larger than the receiver keeps (its ``max_size``): it is dropped, the next one decodes."""


def encode_frames(
    kind: Kind,
    payload: bytes | memoryview,
    max_frame: int,
    announce_length: bool = False,
    mark_start: bool = False,
) -> Iterator[bytes]:
    """Split ``payload`` into frames of at most ``max_frame`` bytes, header included; an empty one is a frame.

    With ``announce_length`` a payload that needs more than one frame is preceded by a LENGTH frame; with
    ``mark_start`` the message's first frame carries :data:`FIRST`.
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
    first = FIRST if mark_start else 0
    if announce_length and total > step:
        yield bytes((LENGTH | first,)) + total.to_bytes(8, "big")
        first = 0
    offset = 0
    while True:
        chunk = view[offset : offset + step]
        offset += len(chunk)
        header = (code | MORE if offset < total else code) | first
        first = 0
        yield bytes((header,)) + chunk
        if offset >= total:
            return


class FrameDecoder:
    """Reassembles frames into whole messages of at most ``max_size`` bytes; use one per data channel.

    It takes first frames marked with :data:`FIRST` always; with ``start`` it also drops frames until a message's
    first frame, and counts them in :attr:`skipped`.
    """

    def __init__(self, max_size: int = MAX_RECEIVE_SIZE, start: bool = False) -> None:
        #: The largest message kept; the owner may change it between frames.
        self.max_size = max_size
        self._chunks: list[memoryview] = []
        self._code = 0
        # The frames left of a message refused as too large are dropped, up to its last one.
        self._dropping = False
        self._start = start
        #: Whether the decoder is at a message boundary it knows (always, without ``start``).
        self.synced = not start
        #: Frames dropped while waiting for a message's first frame.
        self.skipped = 0
        #: Bytes of the message being reassembled so far (for progress reports).
        self.pending = 0
        #: That message's announced length (extension ``length``), or None when not announced.
        self.expected: int | None = None

    def push(self, frame: bytes) -> tuple[Kind, bytes] | None:
        """Feed one binary frame; returns ``(kind, payload)`` once a message is whole, else None.

        Raises :class:`FramingError` (:class:`MessageTooLarge`) for a frame that breaks the message under way,
        which is dropped: the next message decodes.
        """
        if not frame:
            raise FramingError("empty frame: an nbcall frame has at least its kind byte")
        if frame[0] & FIRST:
            if self._chunks or self.expected is not None or self._dropping:
                self._reset()  # a message cut off (we came in during it, or its sender restarted)
            self.synced = True
            frame = bytes((frame[0] & ~FIRST,)) + frame[1:]
        elif not self.synced:
            self.skipped += 1
            return None
        if frame[0] == LENGTH:
            if self._chunks or self._dropping:
                self._drop()
                raise FramingError("length frame inside a message")
            if len(frame) != 9:
                raise FramingError(f"length frame of {len(frame)} bytes: it has 9")
            announced = int.from_bytes(frame[1:9], "big")
            problem = oversize(announced, self.max_size, "an announced message")
            if problem is not None:
                self._dropping = True  # the message it announces
                raise MessageTooLarge(problem)
            self.expected = announced
            return None
        code = frame[0] & ~MORE
        more = bool(frame[0] & MORE)
        if not 1 <= code <= len(KINDS):
            raise FramingError(f"unknown message kind byte {frame[0]}")
        if self._dropping:
            self._dropping = more
            return None
        if self._chunks and code != self._code:
            self._drop()
            raise FramingError(f"frame of kind {code} inside a message of kind {self._code}")
        problem = oversize(self.pending + len(frame) - 1, self.max_size)
        if problem is not None:
            self._reset()
            self._dropping = more
            raise MessageTooLarge(problem)
        self._code = code
        # A view of the frame: the message is copied once, when it is joined.
        self._chunks.append(memoryview(frame)[1:])
        self.pending += len(frame) - 1
        if more:
            return None
        payload = b"".join(self._chunks)
        self._reset()
        return KINDS[code - 1], payload

    def _reset(self) -> None:
        self._chunks, self.pending, self.expected, self._dropping = [], 0, None, False

    def _drop(self) -> None:
        """Drop the broken message, so that the next one decodes (with ``start``: from its first frame)."""
        self._reset()
        self.synced = not self._start


def sync_frame(sequence: int) -> bytes:
    """A SYNC frame: "tell me when you have everything I sent up to here"."""
    return bytes((SYNC,)) + sequence.to_bytes(8, "big")


def ack_frame(sequence: int, sender: str) -> bytes:
    """An ACK frame answering ``sender``'s SYNC ``sequence`` (0: "I receive you")."""
    return bytes((ACK,)) + sequence.to_bytes(8, "big") + sender.encode("utf-8")


def control(frame: bytes) -> tuple[int, int, str] | None:
    """``(SYNC, sequence, "")`` or ``(ACK, sequence, sender)`` for a pacing frame, None for any other frame."""
    if len(frame) < 9 or frame[0] not in (SYNC, ACK):
        return None
    sequence = int.from_bytes(frame[1:9], "big")
    if frame[0] == SYNC:
        return (SYNC, sequence, "") if len(frame) == 9 else None
    try:
        return ACK, sequence, frame[9:].decode("utf-8")
    except UnicodeDecodeError:
        return None


class AckWindow:
    """Paces one member's sends in an SFU room by its receivers' acknowledgements (sans-I/O).

    Janus applies no back-pressure: what a sender hands it waits, unbounded, in each slow subscriber's queue.
    So after every ``every`` bytes the sender sends a SYNC, each receiver answers it with an ACK, and the sender
    holds back while ``outstanding`` SYNCs wait for an answer: at most about ``every * outstanding`` bytes are
    in flight to any receiver. A receiver that leaves a SYNC unanswered for ``patience`` seconds stops holding
    the sender back (it is "deaf") until it answers one again; so does a member forgotten when it leaves.
    """

    def __init__(self, every: int = 256 * 1024, outstanding: int = 4, patience: float = 10.0) -> None:
        if every < 1 or outstanding < 1:
            raise ValueError(f"need every >= 1 and outstanding >= 1, not {every} and {outstanding}")
        self.every = every
        self.outstanding = outstanding
        self.patience = patience
        self.sequence = 0
        self._count = 0
        self._waiting: dict[int, set[str]] = {}
        self._sent_at: dict[int, float] = {}
        #: Receivers that left a SYNC unanswered for ``patience`` seconds.
        self.deaf: set[str] = set()

    def sent(self, size: int, receivers: Iterable[str], now: float, force: bool = False) -> bytes | None:
        """``size`` bytes went to ``receivers``; returns a SYNC frame to send next when one is due (``force``:
        now, to learn when everything sent so far has arrived)."""
        self._count += size
        if self._count < self.every and not (force and self._count):
            return None
        self._count = 0
        self.sequence += 1
        self._waiting[self.sequence] = set(receivers) - self.deaf
        self._sent_at[self.sequence] = now
        self._settle()
        return sync_frame(self.sequence)

    def acked(self, receiver: str, sequence: int) -> None:
        """``receiver`` has everything up to SYNC ``sequence``."""
        self.deaf.discard(receiver)
        for number in [n for n in self._waiting if n <= sequence]:
            self._waiting[number].discard(receiver)
        self._settle()

    def forget(self, receiver: str) -> None:
        """``receiver`` left: it holds nothing back any more."""
        for waiting in self._waiting.values():
            waiting.discard(receiver)
        self.deaf.discard(receiver)
        self._settle()

    @property
    def settled(self) -> bool:
        """Whether every SYNC sent was answered (or given up on)."""
        return not self._waiting

    def blocked(self, now: float) -> bool:
        """Whether the sender must wait for acknowledgements before sending more."""
        while len(self._waiting) >= self.outstanding:
            oldest = min(self._waiting)
            if now - self._sent_at[oldest] < self.patience:
                return True
            self.deaf |= self._waiting.pop(oldest)
            del self._sent_at[oldest]
        return False

    def _settle(self) -> None:
        for number in [n for n, waiting in self._waiting.items() if not waiting]:
            del self._waiting[number]
            del self._sent_at[number]

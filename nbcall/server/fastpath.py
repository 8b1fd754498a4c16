"""The signaling server's fast path: whole data frames parsed and written here, on websockets' internals.

websockets' own message path (parser, message queue, a handler task awaiting ``recv()`` and
``send()``) costs about three times the server's CPU per relayed message (bench/README.md).
:class:`FastConnection` cuts whole, masked data frames out of the stream in ``data_received``,
hands them to the server in the same step, and writes each recipient's frames once per
event-loop turn; websockets still does the handshake, control frames, fragments and closing.

It relies on private parts of websockets (``data_received``/``process_event`` overrides, the
parser's buffer, the message queue, ``drain_waiters``), so it runs only on the websockets
version it was written for (:data:`WRITTEN_FOR`, checked by :func:`unavailable_reason`);
elsewhere the server uses :class:`nbcall.server.connection.Connection`, websockets' public path.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import struct
from typing import TYPE_CHECKING, Any

import websockets
from websockets.datastructures import Headers
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import Event, State

try:
    from websockets.speedups import apply_mask  # websockets' C extension
except ImportError:  # pragma: no cover - a build of websockets without it
    from websockets.utils import apply_mask

from .connection import Connection, remote
from .messages import Close

if TYPE_CHECKING:
    from .server import SignalingServer

__all__ = ["WEBSOCKETS_VERSION", "WRITTEN_FOR", "FastConnection", "keepalive", "unavailable_reason"]

logger = logging.getLogger("nbcall.server.server")

#: The websockets release (major, minor) whose internals this module was written against and tested with.
WRITTEN_FOR = (17, 4)
#: The installed websockets version.
WEBSOCKETS_VERSION: str = websockets.version.version


def unavailable_reason(version: str | None = None) -> str | None:
    """Why the fast path cannot run with websockets ``version`` (default: the installed one), or ``None``."""
    version = WEBSOCKETS_VERSION if version is None else version
    try:
        major_minor = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        major_minor = ()
    if major_minor != WRITTEN_FOR:
        written_for = ".".join(map(str, WRITTEN_FOR))
        return (
            f"it was written for websockets {written_for}.x and websockets {version} is installed; "
            f"install websockets~={written_for}.0 for the fast path"
        )
    return None


class FastConnection(Connection):
    """A connection whose whole data frames are handled as soon as they are received.

    A frame goes from ``data_received`` through the protocol to the recipients' pending
    frames in one synchronous step; each recipient's frames are written with one ``write()``
    per event-loop turn (see ``MessagePump._write``).
    """

    # Slots: more in the __dict__ would cost 1.6 kB per connection.
    __slots__ = (
        "deflate",
        "ended",
        "fast",
        "fragments",
        "fragments_opcode",
        "last_ping",
        "ping_sent",
        "unparsed",
    )

    def __init__(self, *args: Any, signaling: SignalingServer, **kwargs: Any) -> None:
        super().__init__(*args, signaling=signaling, **kwargs)
        # websockets wraps the logger in a LoggerAdapter per connection, only to add a
        # `websocket` attribute to its log records (nothing here reads it): share the
        # server's redacting logger instead (about 0.4 kB per connection).
        self.protocol.logger = self.logger = signaling.ws_logger
        # websockets' deque of drain() waiters costs 0.76 kB even empty, and is only used
        # once asyncio pauses writing (see pause_writing): an empty tuple stands for it.
        self.drain_waiters = _NO_DRAIN_WAITERS  # type: ignore[assignment]
        # Completed in connection_lost; serve_messages awaits it.
        self.ended: asyncio.Future[None] = self.loop.create_future()
        self.deflate = False  # permessage-deflate negotiated: frames go through websockets
        self.fragments: list[bytes] | None = None  # a fragmented message being received
        self.fragments_opcode = Opcode.TEXT
        self.ping_sent: float | None = None  # loop time of the keepalive ping awaiting its pong
        self.last_ping = self.loop.time()
        self.fast = False  # framing done here rather than by websockets (see data_received)
        self.unparsed = b""  # the start of a frame not yet received whole

    # -- asyncio and websockets callbacks ----------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # Messages never queue in websockets' Assembler here (see process_event): drop it and
        # its buffers, 760 bytes per connection.
        self.recv_messages = _NO_QUEUE  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.ended.done():  # cancelled if the handler task was (loop shutdown)
            self.ended.set_result(None)

    def pause_writing(self) -> None:
        # Only with write buffers near write_limit (2 GiB, reachable only with
        # max_pending_bytes=None): websockets' drain() needs its real deque from here on.
        if type(self.drain_waiters) is not collections.deque:
            self.drain_waiters = collections.deque()
        super().pause_writing()

    def data_received(self, data: bytes) -> None:
        """Cut whole, masked, unfragmented data frames out of the stream and handle them here.

        websockets' parser costs about a quarter of the server's time per message, so once
        the connection is open (no extension negotiated, websockets' parser waiting at a
        frame boundary) the common frame is parsed here. Every other frame (control frames,
        fragments, anything invalid) goes to websockets whole, which keeps its parser at a
        frame boundary; a frame websockets must refuse from its header alone (unmasked,
        oversize) hands it the rest of the stream for good.
        """
        protocol = self.protocol
        if not self.fast:
            if protocol.state is not State.OPEN or protocol.extensions or protocol.reader.buffer:
                super().data_received(data)
                return
            self.fast = True
        buf = self.unparsed + data if self.unparsed else data
        signaling = self.signaling
        now = signaling.loop.time()
        limit = signaling.limits.max_frame_size
        pos, end = 0, len(buf)
        while end - pos >= 6:  # the shortest client frame: 2 header bytes + 4 mask bytes
            first, second = buf[pos], buf[pos + 1]
            length, mask_at = second & 0x7F, pos + 2
            if length == 126:
                if end - mask_at < 2:
                    self.unparsed = buf[pos:]
                    return
                length, mask_at = int.from_bytes(buf[mask_at : mask_at + 2], "big"), mask_at + 2
            elif length == 127:
                if end - mask_at < 8:
                    self.unparsed = buf[pos:]
                    return
                length, mask_at = int.from_bytes(buf[mask_at : mask_at + 8], "big"), mask_at + 8
            frame_end = mask_at + 4 + length
            if first in _WHOLE_DATA_FRAME and second & 0x80 and self.fragments is None:
                if (limit is not None and length > limit) or protocol.state is not State.OPEN:
                    break  # websockets' to refuse (1009) or to discard (closing)
                if frame_end > end:
                    self.unparsed = buf[pos:]
                    return
                payload = apply_mask(buf[mask_at + 4 : frame_end], buf[mask_at : mask_at + 4])
                pos = frame_end
                self._receive_message(payload, first == 0x81, now)
                continue
            if not second & 0x80 or length > (125 if first & 0x08 else limit or length):
                break  # unmasked, an oversize control frame or an oversize fragment
            if frame_end > end:
                self.unparsed = buf[pos:]
                return
            super().data_received(buf[pos:frame_end])  # a control frame or a fragment, whole
            pos = frame_end
        else:
            self.unparsed = buf[pos:] if pos < end else b""
            return
        # websockets refuses or discards the rest; its parser takes over the stream from here.
        self.fast = False
        self.unparsed = b""
        super().data_received(buf[pos:])

    def process_event(self, event: Event) -> None:
        if self.request is None or type(event) is not Frame or event.opcode not in _DATA_OPCODES:
            if type(event) is Frame and event.opcode is Opcode.PONG:
                self.ping_sent = None  # alive (see keepalive)
            super().process_event(event)  # the handshake request, pings, pongs, close
            return
        self._receive_frame(event)

    # -- receiving ------------------------------------------------------------------

    def _receive_frame(self, frame: Frame) -> None:
        """A data frame parsed by websockets: a fragment, or a whole message before the fast path."""
        if not frame.fin or self.fragments is not None:  # rare: browsers send whole messages
            if self.fragments is None:
                self.fragments = []
                self.fragments_opcode = frame.opcode
            self.fragments.append(bytes(frame.data))
            if not frame.fin:
                return
            data = b"".join(self.fragments)
            is_text = self.fragments_opcode is Opcode.TEXT
            self.fragments = None
        else:
            data = bytes(frame.data)
            is_text = frame.opcode is Opcode.TEXT
        self._receive_message(data, is_text, self.loop.time())

    def _receive_message(self, data: bytes, is_text: bool, now: float) -> None:
        if not is_text:
            self.signaling.receive(self, data, None, now)
            return
        try:
            text = data.decode()
        except UnicodeDecodeError as exc:  # as websockets does for invalid text: 1007
            self.protocol.fail(CloseCode.INVALID_DATA, f"invalid UTF-8 in a text frame: {exc.reason}")
            self.send_data()
            return
        self.signaling.receive(self, text, data, now)  # a forwarded text reuses these bytes

    async def serve_messages(self) -> None:
        # Messages are handled in data_received; the handler only waits for the end. Not
        # `await self.wait_closed()`: its asyncio.shield() costs a second future, two
        # callbacks and a coroutine frame per idle connection (0.6 kB).
        await self.ended

    # -- sending ------------------------------------------------------------------------

    def opened(self) -> None:
        self.deflate = bool(self.protocol.extensions)
        # The handshake's headers are not needed any more (2.6 kB per connection).
        if self.request is not None:
            self.request.headers = _NO_HEADERS
        if self.response is not None:
            self.response.headers = _NO_HEADERS

    def is_open(self) -> bool:
        return self.protocol.state is State.OPEN

    def backlog(self) -> int:
        return self.transport.get_write_buffer_size() + self.pending_size

    def queue(self, data: bytes) -> None:
        if self.deflate:
            self.protocol.send_text(data)
            data = b"".join(self.protocol.data_to_send())
        else:  # a server's frames are not masked: header + payload
            data = _text_header(len(data)) + data
        self.pending.append(data)
        self.pending_size += len(data)

    def flush(self) -> None:
        pending = self.pending
        if not pending:
            return
        self.pending = []
        self.pending_size = 0
        # After a close frame (sent by websockets, e.g. answering the client's), data is forbidden.
        if self.protocol.state is State.OPEN:
            self.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    async def finish(self, code: int, reason: str, *, write_pending: bool = True) -> None:
        await self.close(
            code, reason
        )  # the server flushed what was queued (see MessagePump.close_connection)

    def discard_pending(self) -> None:
        self.pending.clear()
        self.pending_size = 0


async def keepalive(server: SignalingServer, interval: float, timeout: float | None) -> None:
    """Ping every open connection each ``interval``; close those whose pong is ``timeout`` late.

    One task for the whole server rather than websockets' task per connection (about
    2 kB each); a check runs every ``interval / 4``, so pings go out within a quarter
    interval of their due time and dead peers are closed within a quarter timeout of it.
    """
    loop = server.loop
    tick = min(interval, timeout or interval) / 4
    while server.server.is_serving():
        await asyncio.sleep(tick)
        now = loop.time()
        for connection in list(server.open_connections):
            if connection.closing or not isinstance(connection, FastConnection) or not connection.is_open():
                continue
            try:
                _ping(server, connection, now, interval, timeout)
            except Exception:  # one connection's failure must not stop the keepalive of all the others
                logger.exception("closing %s: its keepalive failed", remote(connection))
                server.close_connection(connection, Close(1011, "internal error"))


def _ping(
    server: SignalingServer, connection: FastConnection, now: float, interval: float, timeout: float | None
) -> None:
    """Ping ``connection`` when due; close it when its pong is ``timeout`` late."""
    sent = connection.ping_sent
    if sent is None:
        if now - connection.last_ping >= interval:
            connection.ping_sent = connection.last_ping = now
            connection.protocol.send_ping(b"")
            connection.send_data()
    elif timeout is not None and now - sent > timeout:
        logger.info(
            "closing %s (%r): no pong to a keepalive ping within %g s",
            remote(connection),
            server.protocol.id_of(connection),
            timeout,
        )
        server.close_connection(connection, Close(1011, "keepalive ping timeout"))


class _NoQueue:
    """Stands for websockets' message queue, which a FastConnection never uses; closing it is a no-op."""

    def close(self) -> None:
        pass


_DATA_OPCODES = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)
_NO_HEADERS = Headers()
_NO_QUEUE = _NoQueue()
_NO_DRAIN_WAITERS: tuple[asyncio.Future[None], ...] = ()  # see FastConnection.__init__
_WHOLE_DATA_FRAME = (0x81, 0x82)  # first header byte: FIN, no RSV bit, text or binary
_SHORT_HEADERS = [bytes((0x81, n)) for n in range(126)]  # FIN + text opcode, unmasked length
_MEDIUM_HEADER = struct.Struct("!BBH")
_LONG_HEADER = struct.Struct("!BBQ")


def _text_header(length: int) -> bytes:
    """RFC 6455 header of an unfragmented, unmasked text frame (what a server sends)."""
    if length < 126:
        return _SHORT_HEADERS[length]
    if length < 65536:
        return _MEDIUM_HEADER.pack(0x81, 126, length)
    return _LONG_HEADER.pack(0x81, 127, length)

"""The signaling server: a websockets server that pumps frames through :mod:`nbcall.protocol`.

Who may talk to whom lives in :class:`~nbcall.protocol.SignalingProtocol`; this
module moves frames between sockets and it, and enforces what only the transport
can see: the token and origin at the HTTP handshake, the number of connections,
each connection's message rate, and how much unread data may pile up for a
reader that does not keep up. One peer's dead or abusive socket never disturbs
anyone else.

Refusals at the handshake are HTTP responses with a plain-text body saying what
to do: 401 (missing or wrong token), 403 (origin not allowed), 404 (wrong path),
503 (``max_connections`` reached). Close codes: 1008 (persistent rate-limit
abuse, too slow a reader, ID reclaimed by a newer connection), 1009 (frame above
``max_frame_size``), 1011 (keepalive ping unanswered).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hmac
import json
import logging
import re
import ssl
import struct
from collections.abc import Sequence
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, quote, urlsplit

from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.datastructures import Headers
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Event, State

try:
    from websockets.speedups import apply_mask  # websockets' C extension
except ImportError:  # pragma: no cover - a build of websockets without it
    from websockets.utils import apply_mask

from .exceptions import RateLimited
from .limits import TokenBucket
from .protocol import RELAYED_TYPES, Close, Outgoing, SignalingProtocol, encode_message

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["DEFAULT_ORIGINS", "RATE_ABUSE_WINDOW", "SignalingServer", "serve"]

logger = logging.getLogger("nbcall.server")

#: Browser origins allowed by default: pages served from this machine, any port, http or https.
#: Requests without an ``Origin`` header (non-browser clients) are always allowed.
DEFAULT_ORIGINS: tuple[re.Pattern[str], ...] = (
    re.compile(r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?", re.IGNORECASE),
)

#: Seconds over which ``max_refused`` rate-limited messages close a connection.
RATE_ABUSE_WINDOW = 10.0

OriginPattern = str | re.Pattern[str]


_SECRETS = re.compile(r'(token=)[^&\s]*|("(?:secret|sdp)"\s*:\s*")(?:[^"\\]|\\.)*')


class _RedactingLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """websockets' logger, minus tokens in request lines and secrets or SDP in logged frames."""

    def log(self, level: int, msg: object, *args: object, **kwargs: object) -> None:
        if not self.isEnabledFor(level):
            return
        text = str(msg) % args if args else str(msg)
        self.logger.log(level, _SECRETS.sub(r"\1\2***", text), **kwargs)  # type: ignore[arg-type]


class _Connection(ServerConnection):
    """A websockets connection whose messages are handled as soon as they are parsed.

    websockets' own path queues each message for a handler task and makes senders await
    ``send()``; here a frame goes from ``data_received`` through the protocol to the
    recipients' write buffers in one synchronous step, and each recipient's buffer is
    written once per event-loop turn. websockets still does the handshake, control
    frames, fragments and the closing handshake.
    """

    # Slots: websockets' connection already has about 30 attributes, and more in its
    # __dict__ would cost 1.6 kB per connection.
    __slots__ = (
        "closing",
        "deflate",
        "ended",
        "fast",
        "fragments",
        "fragments_opcode",
        "last_ping",
        "messages",
        "pending",
        "pending_size",
        "ping_sent",
        "refusals",
        "signaling",
        "started",
        "unparsed",
    )

    def __init__(self, *args: Any, signaling: SignalingServer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # websockets wraps the logger in a LoggerAdapter per connection, only to add a
        # `websocket` attribute to its log records (nothing here reads it): share the
        # server's redacting logger instead (about 0.4 kB per connection).
        self.protocol.logger = self.logger = signaling._ws_logger
        # websockets' deque of drain() waiters costs 0.76 kB even empty, and is only used
        # once asyncio pauses writing (see pause_writing): an empty tuple stands for it.
        self.drain_waiters = _NO_DRAIN_WAITERS  # type: ignore[assignment]
        # Completed in connection_lost; the handler awaits it (see SignalingServer._handle).
        self.ended: asyncio.Future[None] = self.loop.create_future()
        self.signaling = signaling
        self.messages: TokenBucket | None = None  # rate limit, set by SignalingServer._start
        self.refusals: TokenBucket | None = None  # refusals for rate, to spot persistent abuse
        self.started = False  # see SignalingServer._start
        self.closing = False  # the server decided to close it: ignore what it still sends
        self.deflate = False  # permessage-deflate negotiated: frames go through websockets
        self.pending: list[bytes] = []  # serialized frames not yet written (see SignalingServer._flush)
        self.pending_size = 0
        self.fragments: list[bytes] | None = None  # a fragmented message being received
        self.fragments_opcode = Opcode.TEXT
        self.ping_sent: float | None = None  # loop time of the keepalive ping awaiting its pong
        self.last_ping = self.loop.time()
        self.fast = False  # framing done here rather than by websockets (see data_received)
        self.unparsed = b""  # the start of a frame not yet received whole

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # Messages never queue in websockets' Assembler here (see process_event): drop it and
        # its buffers, 760 bytes per connection.
        self.recv_messages = _NO_QUEUE  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.signaling._admitted.discard(self)
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
        now = signaling._loop.time()
        limit = signaling.max_frame_size
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
                try:
                    signaling._receive_message(self, payload, first == 0x81, now)
                except Exception:  # a bug must cost only this connection, never the server's loop
                    logger.exception("closing %s: error while handling a message", _remote(self))
                    signaling._close(self, Close(1011, "internal error"))
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
                self.ping_sent = None  # alive (see SignalingServer._keepalive)
            super().process_event(event)  # the handshake request, pings, pongs, close
            return
        try:
            self.signaling._receive_frame(self, event)
        except Exception:  # a bug must cost only this connection, never the server's loop
            logger.exception("closing %s: error while handling a message", _remote(self))
            self.signaling._close(self, Close(1011, "internal error"))


class SignalingServer:
    """A running signaling server, shaped like :class:`websockets.asyncio.server.Server`.

    Create it with :func:`serve`, which documents the options.
    """

    def __init__(
        self,
        path: str,
        protocol: SignalingProtocol[_Connection],
        *,
        token: str | None = None,
        origins: Sequence[re.Pattern[str]] | None = None,
        tls: bool = False,
        max_connections: int | None = None,
        max_rate: float | None = None,
        max_burst: int = 1,
        max_refused: int | None = None,
        max_pending_bytes: int | None = None,
        max_frame_size: int | None = None,
        ping_interval: float | None = None,
        ping_timeout: float | None = None,
    ) -> None:
        self.path = path
        self.max_frame_size = max_frame_size
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.protocol = protocol
        self.max_connections = max_connections
        self.max_rate = max_rate
        self.max_burst = max_burst
        self.max_refused = max_refused
        self.max_pending_bytes = max_pending_bytes
        self._token = None if token is None else token.encode("utf-8")
        self._token_query = "" if token is None else "?token=" + quote(token, safe="")
        self._origins = None if origins is None else tuple(origins)
        self._scheme = "wss" if tls else "ws"
        self._server: Server | None = None  # set by serve() once listening
        self._address: tuple[str, int] = ("", 0)  # kept after close, for logs and reprs
        self._admitted: set[ServerConnection] = set()  # past our handshake checks, until the TCP ends
        self._loop = asyncio.get_running_loop()
        self._dirty: list[_Connection] = []  # connections with frames queued for this loop turn
        self._open: set[_Connection] = set()  # connections past the handshake, until they end
        self._keepalive_task: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()  # closes the server started, referenced until done
        # websockets' logger, shared by every connection (see _Connection.__init__).
        self._ws_logger = _RedactingLogger(logging.getLogger("websockets.server"))

    @property
    def server(self) -> Server:
        """The underlying websockets server."""
        if self._server is None:
            raise RuntimeError(
                "the server is not listening yet; create it with `await nbcall.server.serve()`"
            )
        return self._server

    @property
    def host(self) -> str:
        """The address the server is bound to, e.g. ``127.0.0.1``."""
        return self._address[0]

    @property
    def port(self) -> int:
        """The TCP port, the real one when ``serve`` was asked for port 0."""
        return self._address[1]

    @property
    def url(self) -> str:
        """Where phones connect, with the token if there is one: ``ws://127.0.0.1:54321/ws?token=...``.

        It is a credential when the server has a token: hand it only to those who may call.
        """
        return self.url_without_token + self._token_query

    @property
    def url_without_token(self) -> str:
        """The server's address without credentials, safe to log: ``ws://127.0.0.1:54321/ws``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self._scheme}://{host}:{self.port}{self.path}"

    @property
    def requires_token(self) -> bool:
        """Whether clients must present a token."""
        return self._token is not None

    def close(self) -> None:
        """Stop accepting connections and close open ones with 1001 (going away). Idempotent."""
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
        self.server.close()

    async def wait_closed(self) -> None:
        """Wait until the server is closed and every connection handler has returned."""
        await self.server.wait_closed()
        if self._keepalive_task is not None:
            await asyncio.gather(self._keepalive_task, return_exceptions=True)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def serve_forever(self) -> None:
        """Serve until closed (or until the awaiting task is cancelled, which closes the server)."""
        await self.server.serve_forever()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        await self.wait_closed()

    def __repr__(self) -> str:
        where = self.url_without_token if self._server is not None else "not listening"
        return f"<SignalingServer {where} peers={len(self.protocol.peers)}>"

    # -- the HTTP handshake ---------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path != self.path:
            return connection.respond(
                HTTPStatus.NOT_FOUND,
                f"nbcall signaling server: nothing at {url.path!r}; "
                f"open a WebSocket to {self.path!r} instead, e.g. {self.url_without_token}\n",
            )
        if self._token is not None:
            given = parse_qs(url.query).get("token", [])
            # Compare even when absent, so that timing tells nothing about the token.
            presented = given[0].encode("utf-8", "surrogatepass") if len(given) == 1 else b""
            if not hmac.compare_digest(presented, self._token) or len(given) != 1:
                what = "no token" if not given else "a wrong token" if len(given) == 1 else "several tokens"
                logger.info("refused a connection from %s: %s", _remote(connection), what)
                return connection.respond(
                    HTTPStatus.UNAUTHORIZED,
                    f"nbcall signaling server: this server requires a token and the request had {what}; "
                    f"connect to {self.url_without_token}?token=TOKEN with the token the server was "
                    "started with (the URL its owner shares, or the server's .url in Python)\n",
                )
        if self._origins is not None:
            origins = request.headers.get_all("Origin")
            if len(origins) > 1:
                return connection.respond(
                    HTTPStatus.BAD_REQUEST, "nbcall signaling server: more than one Origin header\n"
                )
            if origins and not any(pattern.fullmatch(origins[0]) for pattern in self._origins):
                logger.info("refused a connection from %s: origin %r", _remote(connection), origins[0])
                return connection.respond(
                    HTTPStatus.FORBIDDEN,
                    f"nbcall signaling server: pages from origin {origins[0]!r} may not connect; "
                    f"start the server with --allow-origin {origins[0]} "
                    f"(origins=[...] in Python) to allow them\n",
                )
        if self.max_connections is not None and len(self._admitted) >= self.max_connections:
            logger.warning(
                "refused a connection from %s: %d connections open, the limit is max_connections=%d",
                _remote(connection),
                len(self._admitted),
                self.max_connections,
            )
            return connection.respond(
                HTTPStatus.SERVICE_UNAVAILABLE,
                f"nbcall signaling server: full ({self.max_connections} connections, the limit); "
                "try again later, or ask its owner to raise --max-connections\n",
            )
        # Freed when the TCP connection ends (_Connection.connection_lost), handshake done or not.
        self._admitted.add(connection)
        return None

    # -- open connections -----------------------------------------------------

    def _start(self, connection: _Connection) -> None:
        """Set up ``connection`` once open; called by whichever comes first, its handler or a frame."""
        if connection.started:
            return
        connection.started = True
        now = self._loop.time()
        if self.max_rate is not None:
            connection.messages = TokenBucket(self.max_rate, self.max_burst, now)
        if self.max_refused is not None:
            connection.refusals = TokenBucket(self.max_refused / RATE_ABUSE_WINDOW, self.max_refused, now)
        connection.deflate = bool(connection.protocol.extensions)
        # The handshake's headers are not needed any more (2.6 kB per connection).
        if connection.request is not None:
            connection.request.headers = _NO_HEADERS
        if connection.response is not None:
            connection.response.headers = _NO_HEADERS
        self._open.add(connection)
        self.protocol.connect(connection)

    async def _handle(self, connection: ServerConnection) -> None:
        # Messages are handled in _Connection.process_event; this task only waits for the end.
        assert isinstance(connection, _Connection)
        self._start(connection)
        try:
            # Not `await connection.wait_closed()`: its asyncio.shield() costs a second
            # future, two callbacks and a coroutine frame per idle connection (0.6 kB).
            await connection.ended
        finally:
            connection.closing = True
            connection.pending.clear()
            self._admitted.discard(connection)
            self._open.discard(connection)
            self._send(None, self.protocol.disconnect(connection))

    def _receive_frame(self, connection: _Connection, frame: Frame) -> None:
        """Handle a data frame parsed by websockets: a fragment, or a whole message before the fast path."""
        if not frame.fin or connection.fragments is not None:  # rare: browsers send whole messages
            if connection.fragments is None:
                connection.fragments = []
                connection.fragments_opcode = frame.opcode
            connection.fragments.append(bytes(frame.data))
            if not frame.fin:
                return
            data = b"".join(connection.fragments)
            is_text = connection.fragments_opcode is Opcode.TEXT
            connection.fragments = None
        else:
            data = bytes(frame.data)
            is_text = frame.opcode is Opcode.TEXT
        self._receive_message(connection, data, is_text, self._loop.time())

    def _receive_message(self, connection: _Connection, data: bytes, is_text: bool, now: float) -> None:
        """Handle one whole message from ``connection``, received at loop time ``now``."""
        if connection.closing:
            return
        self._start(connection)
        bucket = connection.messages
        if bucket is not None and not bucket.take(now):
            self._refuse_for_rate(connection)
            return
        if not is_text:
            self._send(connection, self.protocol.receive(connection, data))
            return
        try:
            text = data.decode()
        except UnicodeDecodeError as exc:  # as websockets does for invalid text: 1007
            connection.protocol.fail(CloseCode.INVALID_DATA, f"invalid UTF-8 in a text frame: {exc.reason}")
            connection.send_data()
            return
        for recipient, item in self.protocol.receive(connection, text):
            if type(item) is str:
                # A forwarded frame is the very text object received: reuse its bytes.
                self._write(recipient, data if item is text else item.encode(), connection)
            else:
                assert isinstance(item, Close)
                self._close(recipient, item)

    async def _keepalive(self, interval: float, timeout: float | None) -> None:
        """Ping every open connection each ``interval``; close those whose pong is ``timeout`` late.

        One task for the whole server rather than websockets' task per connection (about
        2 kB each); a check runs every ``interval / 4``, so pings go out within a quarter
        interval of their due time and dead peers are closed within a quarter timeout of it.
        """
        loop = self._loop
        tick = min(interval, timeout or interval) / 4
        while self.server.is_serving():
            await asyncio.sleep(tick)
            now = loop.time()
            for connection in list(self._open):
                if connection.closing or connection.protocol.state is not State.OPEN:
                    continue
                sent = connection.ping_sent
                if sent is None:
                    if now - connection.last_ping >= interval:
                        connection.ping_sent = connection.last_ping = now
                        connection.protocol.send_ping(b"")
                        connection.send_data()
                elif timeout is not None and now - sent > timeout:
                    logger.info(
                        "closing %s (%r): no pong to a keepalive ping within %g s",
                        _remote(connection),
                        self.protocol.id_of(connection),
                        timeout,
                    )
                    self._close(connection, Close(1011, "keepalive ping timeout"))

    def _refuse_for_rate(self, connection: _Connection) -> None:
        peer_id = self.protocol.id_of(connection)
        if connection.refusals is not None and not connection.refusals.take(self._loop.time()):
            logger.warning(
                "closing %s (%r): more than %d messages refused for rate within %g s",
                _remote(connection),
                peer_id,
                self.max_refused,
                RATE_ABUSE_WINDOW,
            )
            self._close(
                connection,
                Close(1008, f"rate limit exceeded persistently (more than {self.max_refused} refused)"),
            )
            return
        logger.debug("rate-limited a message from %r", peer_id)
        exc = RateLimited(
            f"more than {self.max_rate:g} messages per second (bursts of {self.max_burst}) from this "
            "connection; this message was dropped: slow down"
            + (
                ""
                if self.max_refused is None
                else f" (more than {self.max_refused} dropped within {RATE_ABUSE_WINDOW:g} s "
                "close the connection)"
            )
        )
        reply = encode_message("error", code=exc.code, message=exc.message, in_reply_to=None)
        self._write(connection, reply.encode(), connection)

    def _send(self, origin: _Connection | None, outgoing: Outgoing[_Connection]) -> None:
        """Send what the protocol returned for a frame from ``origin`` (``None``: a departure)."""
        for connection, item in outgoing:
            if type(item) is str:
                self._write(connection, item.encode(), origin)
            else:
                assert isinstance(item, Close)
                self._close(connection, item)

    def _write(self, connection: _Connection, data: bytes, origin: _Connection | None) -> None:
        """Queue one text message for ``connection``; never blocks, never awaits.

        Messages for a connection are written together once per event-loop turn (one
        system call instead of one each). A reader with more than ``max_pending_bytes``
        waiting is dropped rather than allowed to block its senders or bloat the server.
        """
        if connection.closing or connection.protocol.state is not State.OPEN:
            return  # on its way out: what it would have received is lost anyway
        limit = self.max_pending_bytes
        if (
            limit is not None
            and connection.transport.get_write_buffer_size() + connection.pending_size > limit
        ):
            self._drop_slow_reader(connection, origin, data)
            return
        if connection.deflate:
            connection.protocol.send_text(data)
            data = b"".join(connection.protocol.data_to_send())
        else:  # a server's frames are not masked: header + payload
            data = _text_header(len(data)) + data
        pending = connection.pending
        pending.append(data)
        connection.pending_size += len(data)
        if len(pending) == 1:
            dirty = self._dirty
            dirty.append(connection)
            if len(dirty) == 1:
                self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Write every connection's queued frames, one ``write()`` each."""
        dirty, self._dirty = self._dirty, []
        for connection in dirty:
            self._flush_one(connection)

    @staticmethod
    def _flush_one(connection: _Connection) -> None:
        pending = connection.pending
        if not pending:
            return
        connection.pending = []
        connection.pending_size = 0
        # After a close frame (sent by websockets, e.g. answering the client's), data is forbidden.
        if connection.protocol.state is State.OPEN:
            connection.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def _drop_slow_reader(self, connection: _Connection, origin: _Connection | None, data: bytes) -> None:
        peer_id = self.protocol.id_of(connection)
        logger.warning(
            "closing %s (%r): too slow, more than max_pending_bytes=%d bytes waiting to be sent to it",
            _remote(connection),
            peer_id,
            self.max_pending_bytes,
        )
        self._close(connection, Close(1008, "too slow: stopped reading its messages"))
        if origin is not None and origin is not connection and peer_id is not None:
            # Rare path: parsing costs nothing here, and tells the sender which message was lost.
            msg_type = json.loads(data).get("type")
            if msg_type in RELAYED_TYPES:
                notice = encode_message(
                    "unavailable",
                    peer=peer_id,
                    in_reply_to=msg_type,
                    message=f"{peer_id!r} was disconnected because it stopped reading its "
                    f"messages; this {msg_type!r} was not delivered",
                )
                self._write(origin, notice.encode(), origin)
        self._send(None, self.protocol.disconnect(connection))

    def _close(self, connection: _Connection, close: Close) -> None:
        """Close ``connection`` in the background: never make the sender wait for a slow peer."""
        if connection.closing:
            return
        self._flush_one(connection)  # what was queued goes before the close frame
        connection.closing = True
        task = asyncio.create_task(connection.close(close.code, close.reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


_DATA_OPCODES = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)
_NO_HEADERS = Headers()


class _NoQueue:
    """Stands for websockets' message queue, which a _Connection never uses; closing it is a no-op."""

    def close(self) -> None:
        pass


_NO_QUEUE = _NoQueue()
_NO_DRAIN_WAITERS: tuple[asyncio.Future[None], ...] = ()  # see _Connection.__init__
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


def _remote(connection: ServerConnection) -> str:
    try:
        host, port = connection.remote_address[:2]
    except (TypeError, ValueError, OSError):
        return "a client"
    return f"{host}:{port}"


def _origin_patterns(origins: Sequence[OriginPattern]) -> tuple[re.Pattern[str], ...] | None:
    """Compile origin globs (``*`` matches anything) and regexes; ``None`` when ``*`` allows all."""
    patterns: list[re.Pattern[str]] = []
    for origin in origins:
        if isinstance(origin, re.Pattern):
            patterns.append(origin)
        elif not isinstance(origin, str) or not origin:
            raise ValueError(
                f"origins must hold strings such as 'https://hub.example.org' or 'http://localhost:*', "
                f"or compiled regexes; got {origin!r}"
            )
        elif origin == "*":
            return None
        else:
            glob = re.escape(origin.rstrip("/")).replace(r"\*", ".*")
            patterns.append(re.compile(glob, re.IGNORECASE))
    return tuple(patterns)


def _check_positive(**limits: float | None) -> None:
    for name, value in limits.items():
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be positive or None (no limit), got {value!r}")


async def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    path: str = "/ws",
    # Who may connect.
    token: str | None = None,
    origins: Sequence[OriginPattern] | None = DEFAULT_ORIGINS,
    ssl_context: ssl.SSLContext | None = None,
    max_connections: int | None = 10_000,
    open_timeout: float | None = 10,
    # What each connection may send.
    max_message_size: int | None = 64 * 1024,
    max_frame_size: int | None = 2**20,
    max_rate: float | None = 50,
    max_burst: int = 200,
    max_refused: int | None = 100,
    # What each connection must keep up with.
    max_pending_bytes: int | None = 2**20,
    ping_interval: float | None = 20,
    ping_timeout: float | None = 20,
    close_timeout: float | None = 10,
    # What goes over the wire.
    compression: Literal["deflate"] | None = None,
) -> SignalingServer:
    """Start a signaling server and return it once it listens.

    Defaults bind 127.0.0.1 on a free port; read the real one from ``.port`` or ``.url``.
    Every limit is on by default; ``None`` disables one.

    Who may connect:

    * ``token`` (none): clients must add ``?token=TOKEN`` to the URL (browsers cannot set
      headers); others get HTTP 401 before they can register. ``.url`` includes it.
    * ``origins`` (:data:`DEFAULT_ORIGINS`: localhost, 127.0.0.1 and [::1], any port): the
      browser origins allowed, as strings where ``*`` matches anything (``"*"`` alone: any
      origin) or compiled regexes; others get HTTP 403. Clients sending no ``Origin`` (not
      browsers) are always allowed. Add your JupyterHub's origin when phones run there.
    * ``ssl_context`` (none): serve TLS; the URL becomes ``wss://``.
    * ``max_connections`` (10,000): further handshakes get HTTP 503.
    * ``open_timeout`` (10 s): time allowed for the TLS and WebSocket handshakes.

    What each connection may send:

    * ``max_message_size`` (64 KiB): larger messages get a ``too-big`` error reply.
    * ``max_frame_size`` (1 MiB): larger frames close the connection with 1009. Keep
      it above ``max_message_size`` so that oversize messages get a polite reply.
    * ``max_rate`` (50 messages/s) with bursts of ``max_burst`` (200): a token bucket per
      connection; messages beyond it get a ``rate-limited`` error and are dropped. After
      ``max_refused`` (100) such refusals within :data:`RATE_ABUSE_WINDOW` seconds the
      connection is closed with 1008.

    What each connection must keep up with:

    * ``max_pending_bytes`` (1 MiB): when more than this is waiting to be written to a
      connection that does not read, it is closed with 1008 ("too slow"), the others see it
      ``left``, and a peer whose message could not be delivered gets ``unavailable``.
      Senders never wait for a slow reader. ``None``: no bound at all, so a client that
      never reads can grow the server's memory; only for trusted clients.
    * ``ping_interval``, ``ping_timeout`` (20 s each): keepalive; a peer that does not
      answer is closed with 1011 and reported ``left`` to the others, at most
      ``ping_interval + ping_timeout + close_timeout`` (plus half the smaller of the first
      two: one task checks every connection four times per period) after it went silent.
    * ``close_timeout`` (10 s): how long a closing handshake may take before the TCP
      connection is dropped.

    What goes over the wire:

    * ``compression`` (``None``): ``"deflate"`` accepts permessage-deflate when a browser
      offers it (browsers always do). Off by default: signaling messages are small and
      mostly random (SDP fingerprints, ICE credentials), so it saves little, while each
      compressed connection keeps zlib state (see bench/README.md for the figures on
      memory per connection and latency).
    """
    if not path.startswith("/"):
        raise ValueError(f"path must start with '/', got {path!r}")
    if max_frame_size is not None and max_message_size is not None and max_message_size > max_frame_size:
        raise ValueError(
            f"max_frame_size ({max_frame_size}) must be at least max_message_size ({max_message_size}) "
            "so that oversize messages get an error reply instead of a closed connection"
        )
    if token is not None and (not isinstance(token, str) or not token):
        raise ValueError(f"token must be a non-empty string or None, got {token!r}")
    _check_positive(
        max_connections=max_connections,
        max_rate=max_rate,
        max_refused=max_refused,
        max_pending_bytes=max_pending_bytes,
        open_timeout=open_timeout,
    )
    if compression not in (None, "deflate"):
        raise ValueError(f"compression must be 'deflate' or None, got {compression!r}")
    if max_burst < 1:
        raise ValueError(f"max_burst must be at least 1, got {max_burst!r}")
    signaling = SignalingServer(
        path,
        SignalingProtocol(max_message_size=max_message_size, logger=logger),
        token=token,
        origins=None if origins is None else _origin_patterns(origins),
        tls=ssl_context is not None,
        max_connections=max_connections,
        max_rate=max_rate,
        max_burst=max_burst,
        max_refused=max_refused,
        max_pending_bytes=max_pending_bytes,
        max_frame_size=max_frame_size,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
    )
    server = await ws_serve(
        signaling._handle,
        host,
        port,
        process_request=signaling._process_request,
        create_connection=functools.partial(_Connection, signaling=signaling),  # type: ignore[arg-type]
        compression=compression,
        ssl=ssl_context,
        open_timeout=open_timeout,
        max_size=max_frame_size,
        ping_interval=None,  # one keepalive task for all connections: SignalingServer._keepalive
        ping_timeout=None,
        close_timeout=close_timeout,
        # The server bounds each write buffer itself (max_pending_bytes, see _write) and never
        # awaits a write, so asyncio's flow control must never pause the transport.
        write_limit=2**31 - 1,  # "never": uvloop takes a C int
        logger=signaling._ws_logger,
    )
    host, port = server.sockets[0].getsockname()[:2]
    signaling._server, signaling._address = server, (str(host), int(port))
    if ping_interval is not None:
        signaling._keepalive_task = asyncio.create_task(signaling._keepalive(ping_interval, ping_timeout))
    return signaling

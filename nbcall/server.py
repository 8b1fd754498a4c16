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
import hmac
import json
import logging
import re
import ssl
from collections.abc import Sequence
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote, urlsplit

from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

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


class _Peer:
    """What the server tracks per open connection, beyond the protocol's registry."""

    __slots__ = ("closing", "messages", "refusals")

    def __init__(self, messages: TokenBucket | None, refusals: TokenBucket | None) -> None:
        self.messages = messages
        self.refusals = refusals
        self.closing = False  # the server decided to close it: ignore what it still sends


class SignalingServer:
    """A running signaling server, shaped like :class:`websockets.asyncio.server.Server`.

    Create it with :func:`serve`, which documents the options.
    """

    def __init__(
        self,
        path: str,
        protocol: SignalingProtocol[ServerConnection],
        *,
        token: str | None = None,
        origins: Sequence[re.Pattern[str]] | None = None,
        tls: bool = False,
        max_connections: int | None = None,
        max_rate: float | None = None,
        max_burst: int = 1,
        max_refused: int | None = None,
        max_pending_bytes: int | None = None,
    ) -> None:
        self.path = path
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
        self._peers: dict[ServerConnection, _Peer] = {}  # open connections with a running handler
        self._closing: set[asyncio.Task[None]] = set()  # closes the server started, referenced until done

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
        self.server.close()

    async def wait_closed(self) -> None:
        """Wait until the server is closed and every connection handler has returned."""
        await self.server.wait_closed()
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
        self._admitted.add(connection)
        # Freed when the TCP connection ends, whether or not the WebSocket handshake completes.
        connection.connection_lost_waiter.add_done_callback(lambda _: self._admitted.discard(connection))
        return None

    # -- open connections -----------------------------------------------------

    async def _handle(self, connection: ServerConnection) -> None:
        protocol = self.protocol
        now = asyncio.get_running_loop().time
        peer = _Peer(
            None if self.max_rate is None else TokenBucket(self.max_rate, self.max_burst, now()),
            None
            if self.max_refused is None
            else TokenBucket(self.max_refused / RATE_ABUSE_WINDOW, self.max_refused, now()),
        )
        self._peers[connection] = peer
        protocol.connect(connection)
        try:
            async for frame in connection:
                if peer.closing:
                    break
                if peer.messages is not None and not peer.messages.take(now()):
                    await self._refuse_for_rate(connection, peer, now())
                    continue
                await self._send(connection, protocol.receive(connection, frame))
        except ConnectionClosed:
            pass  # the peer went away abruptly; its registration is released below
        finally:
            del self._peers[connection]
            self._admitted.discard(connection)
            await self._send(None, protocol.disconnect(connection))

    async def _refuse_for_rate(self, connection: ServerConnection, peer: _Peer, now: float) -> None:
        peer_id = self.protocol.id_of(connection)
        if peer.refusals is not None and not peer.refusals.take(now):
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
        await self._send(
            connection,
            [(connection, encode_message("error", code=exc.code, message=exc.message, in_reply_to=None))],
        )

    async def _send(self, origin: ServerConnection | None, outgoing: Outgoing[ServerConnection]) -> None:
        """Send what the protocol returned for a frame from ``origin`` (``None``: a departure).

        Each send is isolated: a closed recipient must not break the sender's handler, and
        a recipient that does not read is dropped rather than allowed to block or bloat.
        """
        limit = self.max_pending_bytes
        for connection, item in outgoing:
            if type(item) is not str:
                assert isinstance(item, Close)
                self._close(connection, item)
                continue
            if limit is not None and connection.transport.get_write_buffer_size() > limit:
                await self._drop_slow_reader(connection, origin, item)
                continue
            try:
                await connection.send(item)
            except ConnectionClosed:
                logger.debug("dropped a message for %r: connection closed", self.protocol.id_of(connection))

    async def _drop_slow_reader(
        self, connection: ServerConnection, origin: ServerConnection | None, text: str
    ) -> None:
        peer = self._peers.get(connection)
        if peer is None or peer.closing:
            return  # already on its way out
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
            msg_type = json.loads(text).get("type")
            if msg_type in RELAYED_TYPES:
                await self._send(
                    origin,
                    [
                        (
                            origin,
                            encode_message(
                                "unavailable",
                                peer=peer_id,
                                in_reply_to=msg_type,
                                message=f"{peer_id!r} was disconnected because it stopped reading its "
                                f"messages; this {msg_type!r} was not delivered",
                            ),
                        )
                    ],
                )
        await self._send(None, self.protocol.disconnect(connection))

    def _close(self, connection: ServerConnection, close: Close) -> None:
        """Close ``connection`` in the background: never make the sender wait for a slow peer."""
        peer = self._peers.get(connection)
        if peer is not None:
            peer.closing = True
        task = asyncio.create_task(connection.close(close.code, close.reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


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
      Senders never wait for a slow reader. ``None`` restores websockets' backpressure,
      where a slow reader makes its senders wait.
    * ``ping_interval``, ``ping_timeout`` (20 s each): keepalive; a peer that does not
      answer is closed with 1011 and reported ``left`` to the others, at most
      ``ping_interval + ping_timeout + close_timeout`` after it went silent.
    * ``close_timeout`` (10 s): how long a closing handshake may take before the TCP
      connection is dropped.
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
    )
    server = await ws_serve(
        signaling._handle,
        host,
        port,
        process_request=signaling._process_request,
        ssl=ssl_context,
        open_timeout=open_timeout,
        max_size=max_frame_size,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        close_timeout=close_timeout,
        # With max_pending_bytes, the server bounds each write buffer itself (see _send) and
        # asyncio's flow control must never pause a sender; without it, websockets' default applies.
        write_limit=2**15 if max_pending_bytes is None else 2**62,
        logger=_RedactingLogger(logging.getLogger("websockets.server")),
    )
    host, port = server.sockets[0].getsockname()[:2]
    signaling._server, signaling._address = server, (str(host), int(port))
    return signaling

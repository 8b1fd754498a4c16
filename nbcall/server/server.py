"""The signaling server: a websockets server that pumps messages through :mod:`nbcall.server.protocol`.

Who may talk to whom lives in :class:`~nbcall.server.protocol.SignalingProtocol`, and who may connect
in :func:`nbcall.server.admission.check_handshake`; this module moves messages between sockets and
them, and enforces what only the transport can see: the number of connections, each
connection's message rate, and how much unread data may pile up for a reader that does not
keep up. One peer's dead or abusive socket never disturbs anyone else.

Messages go through :mod:`nbcall.server.fastpath` (frames parsed and written here, on websockets'
internals) when the installed websockets is the version it was written for, else through
websockets' public API (:class:`nbcall.server.connection.Connection`); ``serve(fast_path=False)``
forces the latter.

Refusals at the handshake are HTTP responses with a plain-text body saying what
to do: 401 (missing or wrong token), 403 (origin not allowed), 404 (wrong path),
503 (``max_connections`` reached). Close codes: 1008 (persistent rate-limit
abuse, too slow a reader, ID reclaimed by a newer connection), 1009 (frame above
``max_frame_size``), 1011 (keepalive ping unanswered).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import re
import ssl
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.http11 import Request, Response

from ..wire.faults import Faults, FaultyOutbox
from . import fastpath
from .admission import DEFAULT_ORIGINS, AdmissionRules, OriginPattern, check_handshake, origin_patterns
from .connection import Connection, remote
from .limits import DEFAULT_LIMITS, RATE_ABUSE_WINDOW, Limits, TokenBucket
from .protocol import TOO_SLOW, Claim, Close, Forward, Outgoing, Release, RoomNode, SignalingProtocol

if TYPE_CHECKING:
    from typing_extensions import Self

    from .cluster import RedisRegistry

__all__ = ["DEFAULT_ORIGINS", "RATE_ABUSE_WINDOW", "SignalingServer", "serve"]

logger = logging.getLogger("nbcall.server.server")

_SECRETS = re.compile(r'(token=)[^&\s]*|("(?:secret|sdp)"\s*:\s*")(?:[^"\\]|\\.)*')


class _RedactingLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """websockets' logger, minus tokens in request lines and secrets or SDP in logged frames."""

    def log(self, level: int, msg: object, *args: object, **kwargs: object) -> None:
        if not self.isEnabledFor(level):
            return
        text = str(msg) % args if args else str(msg)
        self.logger.log(level, _SECRETS.sub(r"\1\2***", text), **kwargs)  # type: ignore[arg-type]


class SignalingServer:
    """A running signaling server, shaped like :class:`websockets.asyncio.server.Server`.

    Create it with :func:`serve`, which documents the options.
    """

    def __init__(
        self,
        protocol: SignalingProtocol[Connection],
        rules: AdmissionRules,
        *,
        limits: Limits = DEFAULT_LIMITS,
        tls: bool = False,
        fast_path: bool = True,
        faults: Faults | None = None,
    ) -> None:
        self.protocol = protocol
        self.limits = limits
        #: Whether messages go through :mod:`nbcall.server.fastpath` rather than websockets' public API.
        self.fast_path = fast_path
        self._rules = rules
        self._scheme = "wss" if tls else "ws"
        self._server: Server | None = None  # set by serve() once listening
        self._address: tuple[str, int] = ("", 0)  # kept after close, for logs and reprs
        self._admitted: set[ServerConnection] = set()  # past our handshake checks, until the TCP ends
        self._loop = asyncio.get_running_loop()
        self._dirty: list[Connection] = []  # connections with messages queued for this loop turn
        self._open: set[Connection] = set()  # connections past the handshake, until they end
        self._keepalive_task: asyncio.Task[None] | None = None
        self._tick_task: asyncio.Task[None] | None = None  # gives the protocol the time (rooms' timers)
        self._closing: set[asyncio.Task[None]] = set()  # closes the server started, referenced until done
        # websockets' logger, shared by every connection (see FastConnection.__init__).
        self._ws_logger = _RedactingLogger(logging.getLogger("websockets.server"))
        #: The shared registry when this server is a node of a cluster (``serve(redis=...)``), else ``None``.
        self.registry: RedisRegistry | None = None
        #: Faults put on relayed messages on purpose (``serve(faults=...)``), one outbox per recipient.
        self.faults = faults
        self._faulty: dict[Connection, FaultyOutbox] = {}

    @property
    def server(self) -> Server:
        """The underlying websockets server."""
        if self._server is None:
            raise RuntimeError(
                "the server is not listening yet; create it with `await nbcall.server.serve()`"
            )
        return self._server

    @property
    def path(self) -> str:
        """The path clients connect to, e.g. ``/ws``."""
        return self._rules.path

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
        return self.url_without_token + self._rules.token_query

    @property
    def url_without_token(self) -> str:
        """The server's address without credentials, safe to log: ``ws://127.0.0.1:54321/ws``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self._scheme}://{host}:{self.port}{self.path}"

    @property
    def requires_token(self) -> bool:
        """Whether clients must present a token."""
        return self._rules.token is not None

    def close(self) -> None:
        """Stop accepting connections and close open ones with 1001 (going away). Idempotent."""
        for task in (self._keepalive_task, self._tick_task):
            if task is not None:
                task.cancel()
        self.server.close()

    async def wait_closed(self) -> None:
        """Wait until the server is closed and every connection handler has returned.

        A cluster node then frees its IDs in the registry, so the other nodes see its phones leave at once.
        """
        await self.server.wait_closed()
        tasks = [task for task in (self._keepalive_task, self._tick_task) if task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        if self.registry is not None:
            await self.registry.wait_closed()

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

    def _listening(self, server: Server) -> None:
        host, port = server.sockets[0].getsockname()[:2]
        self._server, self._address = server, (str(host), int(port))
        self._rules = dataclasses.replace(self._rules, url_without_token=self.url_without_token)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        refusal = check_handshake(self._rules, request.path, request.headers, len(self._admitted))
        if refusal is not None:
            logger.log(refusal.log_level, "refused a connection from %s: %s", remote(connection), refusal.log)
            return connection.respond(refusal.status, refusal.body)
        # Freed when the TCP connection ends (Connection.connection_lost), handshake done or not.
        self._admitted.add(connection)
        return None

    # -- time ---------------------------------------------------------------------

    async def _tick(self, interval: float) -> None:
        """Give the protocol the time every ``interval`` seconds: it expires invitations and absent members.

        One task for both message paths; while there is no room each tick is one attribute test.
        """
        protocol, loop = self.protocol, self._loop
        while self.server.is_serving():
            await asyncio.sleep(interval)
            try:
                self._send(None, protocol.tick(loop.time()))
            except Exception:  # a bug must not stop the clock for every room
                logger.exception("error while expiring room invitations and absent members")

    # -- open connections -----------------------------------------------------

    def _start(self, connection: Connection) -> None:
        """Set up ``connection`` once open; called by whichever comes first, its handler or a message."""
        if connection.started:
            return
        connection.started = True
        if self.limits.max_rate is not None:
            connection.messages = TokenBucket(self.limits.max_rate, self.limits.max_burst, self._loop.time())
        connection.opened()
        self._open.add(connection)
        self.protocol.connect(connection)

    async def _handle(self, connection: ServerConnection) -> None:
        assert isinstance(connection, Connection)
        self._start(connection)
        try:
            await connection.serve_messages()
        finally:
            connection.closing = True
            connection.discard_pending()
            self._admitted.discard(connection)
            self._open.discard(connection)
            self._faulty.pop(connection, None)
            self._send(None, self.protocol.disconnect(connection))

    def _receive(self, connection: Connection, message: str | bytes, raw: bytes | None, now: float) -> None:
        """Handle one whole message from ``connection``, received at loop time ``now``.

        ``raw``: the UTF-8 bytes of a text ``message`` when at hand, written as they are if the
        protocol forwards the message untouched.
        """
        if connection.closing:
            return
        try:
            if not connection.started:
                self._start(connection)
            bucket = connection.messages
            if bucket is not None and not bucket.take(now):
                self._send(connection, self.protocol.refuse_for_rate(connection, now))
                return
            if connection.held is not None:  # its ID is being claimed in the registry: keep the order
                connection.held.append((message, raw))
                return
            self._handle_message(connection, message, raw)
        except Exception:  # a bug must cost only this connection, never the server's loop
            logger.exception("closing %s: error while handling a message", remote(connection))
            self._close(connection, Close(1011, "internal error"))

    def _handle_message(self, connection: Connection, message: str | bytes, raw: bytes | None) -> None:
        for recipient, item in self.protocol.receive(connection, message):
            if self.faults is not None and type(item) is str and recipient is not connection:
                self._relay_with_faults(connection, recipient, item)
            elif type(item) is str:
                # A forwarded frame is the very text object received: reuse its bytes.
                self._write(
                    recipient, raw if item is message and raw is not None else item.encode(), connection
                )
            else:
                self._instruct(recipient, item)

    def _relay_with_faults(self, origin: Connection, recipient: Connection, text: str) -> None:
        """A relayed message, dropped, delayed or reordered as ``faults`` say (for teaching, never by default)."""
        assert self.faults is not None
        box = self._faulty.get(recipient)
        if box is None:
            box = self._faulty[recipient] = FaultyOutbox(
                self.faults, lambda message: None, self._later, self._fault_dropped
            )
        try:
            message = json.loads(text)
        except ValueError:
            message = {}
        box(message, lambda: self._write(recipient, text.encode(), origin))

    def _later(self, delay: float, fn: Callable[[], None]) -> None:
        self._loop.call_later(delay, fn)

    def _fault_dropped(self, message: dict[str, object], why: str) -> None:
        logger.info("not relayed: a %s message to %r (%s)", message.get("type"), message.get("to"), why)

    def _send(self, origin: Connection | None, outgoing: Outgoing[Connection]) -> None:
        """Send what the protocol returned for a message from ``origin`` (``None``: no sender)."""
        for connection, item in outgoing:
            if type(item) is str:
                self._write(connection, item.encode(), origin)
            else:
                self._instruct(connection, item)

    def _instruct(
        self, connection: Connection, item: Close | Forward | Claim | Release | RoomNode | str
    ) -> None:
        """Carry out what the protocol returned besides text: a close, or (cluster) work for the registry."""
        if isinstance(item, Close):
            self._close(connection, item)
            return
        registry = self.registry
        assert registry is not None, f"{item!r} without a registry"
        if isinstance(item, Forward):
            registry.forward(item)
        elif isinstance(item, Release):
            registry.release(item.peer_id)
        elif isinstance(item, RoomNode):
            registry.hold_room(item.room, item.made)
        elif isinstance(item, Claim):
            connection.held = []
            registry.claim(item.peer_id, item.secret, item.room).add_done_callback(
                functools.partial(self._claimed, connection, item.peer_id)
            )

    def _claimed(
        self, connection: Connection, peer_id: str, future: asyncio.Future[tuple[str, str, str]]
    ) -> None:
        """The registry answered ``connection``'s claim: finish its registration, then what it sent meanwhile."""
        outcome, owner, room_node = future.result()
        held, connection.held = connection.held or [], None
        out = self.protocol.claimed(connection, outcome, owner, room_node)
        if out is None:  # it went away meanwhile
            if outcome in ("ok", "moved") and self.registry is not None:
                self.registry.release(peer_id)
            return
        self._send(connection, out)
        for n, (message, raw) in enumerate(held):
            if connection.closing:
                return
            if connection.held is not None:  # another register being claimed: it waits too
                connection.held.extend(held[n:])
                return
            try:
                self._handle_message(connection, message, raw)
            except Exception:
                logger.exception("closing %s: error while handling a message", remote(connection))
                self._close(connection, Close(1011, "internal error"))
                return

    def _write(self, connection: Connection, data: bytes, origin: Connection | None) -> None:
        """Queue one text message for ``connection``; never blocks, never awaits.

        Messages for a connection are written together once per event-loop turn (one
        system call instead of one each). A reader with more than ``max_pending_bytes``
        waiting is dropped rather than allowed to block its senders or bloat the server.
        """
        if connection.closing or not connection.is_open():
            return  # on its way out: what it would have received is lost anyway
        limit = self.limits.max_pending_bytes
        if limit is not None and connection.backlog() > limit:
            logger.warning(
                "closing %s (%r): too slow, more than max_pending_bytes=%d bytes waiting to be sent to it",
                remote(connection),
                self.protocol.id_of(connection),
                limit,
            )
            self._send(None, self.protocol.drop_slow_reader(connection, data, origin))
            return
        connection.queue(data)
        if len(connection.pending) == 1:
            dirty = self._dirty
            dirty.append(connection)
            if len(dirty) == 1:
                self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Write every connection's queued messages, one ``write()`` each on the fast path."""
        dirty, self._dirty = self._dirty, []
        for connection in dirty:
            self._flush_one(connection)

    def _flush_one(self, connection: Connection) -> None:
        try:
            connection.flush()
        except (OSError, RuntimeError) as exc:  # a socket that raises on write costs only its connection
            logger.info(
                "dropping %s (%r): cannot write to it: %r",
                remote(connection),
                self.protocol.id_of(connection),
                exc,
            )
            connection.closing = True
            connection.discard_pending()
            connection.transport.abort()  # its handler then cleans up, as for any lost connection

    def _close(self, connection: Connection, close: Close) -> None:
        """Close ``connection`` in the background: never make the sender wait for a slow peer."""
        if connection.closing:
            return
        self._flush_one(connection)  # what was queued goes before the close frame
        if connection.closing:
            return  # the flush failed: the connection is being dropped already
        connection.closing = True
        # A reader dropped for not reading would hold its close up behind what it does not read.
        task = asyncio.create_task(
            connection.finish(close.code, close.reason, write_pending=close is not TOO_SLOW)
        )
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


async def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    path: str = "/ws",
    # Who may connect.
    token: str | None = None,
    origins: Sequence[OriginPattern] | None = DEFAULT_ORIGINS,
    ssl_context: ssl.SSLContext | None = None,
    max_connections: int | None = DEFAULT_LIMITS.max_connections,
    open_timeout: float | None = DEFAULT_LIMITS.open_timeout,
    # What each connection may send.
    max_message_size: int | None = DEFAULT_LIMITS.max_message_size,
    max_frame_size: int | None = DEFAULT_LIMITS.max_frame_size,
    max_rate: float | None = DEFAULT_LIMITS.max_rate,
    max_burst: int = DEFAULT_LIMITS.max_burst,
    max_refused: int | None = DEFAULT_LIMITS.max_refused,
    # What each connection must keep up with.
    max_pending_bytes: int | None = DEFAULT_LIMITS.max_pending_bytes,
    ping_interval: float | None = DEFAULT_LIMITS.ping_interval,
    ping_timeout: float | None = DEFAULT_LIMITS.ping_timeout,
    close_timeout: float | None = DEFAULT_LIMITS.close_timeout,
    # Rooms.
    max_room_size: int | None = DEFAULT_LIMITS.max_room_size,
    invitation_ttl: float | None = DEFAULT_LIMITS.invitation_ttl,
    room_grace: float | None = DEFAULT_LIMITS.room_grace,
    # Several nodes as one deployment.
    redis: str | None = None,
    node_id: str | None = None,
    heartbeat: float = 5.0,
    registry_ttl: float = 15.0,
    # What goes over the wire.
    compression: Literal["deflate"] | None = None,
    fast_path: bool = True,
    # For teaching: faults put on relayed messages on purpose.
    faults: Faults | dict[str, object] | None = None,
) -> SignalingServer:
    """Start a signaling server and return it once it listens.

    Defaults bind 127.0.0.1 on a free port; read the real one from ``.port`` or ``.url``.
    Every limit is on by default (:data:`nbcall.server.limits.DEFAULT_LIMITS`); ``None`` disables one.

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

    Rooms (docs/rooms.md; phones that register with ``"rooms": true``):

    * ``max_room_size`` (6 members): invitations and acceptances beyond it get ``room-full``;
      beyond six, each browser of a full mesh sends too many video streams.
    * ``invitation_ttl`` (60 s): an invitation unanswered this long is withdrawn (``room-declined``
      to the inviter, ``room-cancelled`` to the invitee).
    * ``room_grace`` (30 s): a member whose connection is gone stays a member this long, so a
      phone that reconnects (reclaiming its ID with its secret) keeps its place; after it the
      others get ``room-left``. ``None``: members stay until they leave or are reported lost.

    Timers are checked about once a second (more often for limits under 4 s), so they end up
    to that much late.

    For teaching, ``faults`` (a :class:`nbcall.wire.faults.Faults` or a dict of its fields, none by default) drops,
    delays or reorders the messages the server relays, or keeps only ICE candidates of some types: see what
    each breaks. Dropped messages are logged.

    Several nodes as one deployment (README, "Deployment"; needs ``pip install nbcall[redis]``):

    * ``redis`` (none): a ``redis://[:PASSWORD@]HOST:PORT/DB`` or ``rediss://`` (TLS) URL. Servers
      given the same Redis share one registry: an ID is unique across them, presence lists merge,
      and phones on different nodes call each other. Without it nothing about Redis is imported.
    * ``node_id`` (random): this node's name in the registry and in logs; unique per process.
    * ``heartbeat`` (5 s), ``registry_ttl`` (15 s): a node renews its claim every ``heartbeat``;
      one silent for ``registry_ttl`` (killed, cut off) is taken for gone and its IDs are freed.

    What goes over the wire:

    * ``compression`` (``None``): ``"deflate"`` accepts permessage-deflate when a browser
      offers it (browsers always do). Off by default: signaling messages are small and
      mostly random (SDP fingerprints, ICE credentials), so it saves little, while each
      compressed connection keeps zlib state (see bench/README.md for the figures on
      memory per connection and latency).
    * ``fast_path`` (true): parse and write frames in :mod:`nbcall.server.fastpath`, about three
      times less CPU per message than websockets' public API, when the installed websockets
      is the version it was written for (else the server logs why and uses the public API);
      false: always use websockets' public API.
    """
    if not path.startswith("/"):
        raise ValueError(f"path must start with '/', got {path!r}")
    if token is not None and (not isinstance(token, str) or not token):
        raise ValueError(f"token must be a non-empty string or None, got {token!r}")
    if compression not in (None, "deflate"):
        raise ValueError(f"compression must be 'deflate' or None, got {compression!r}")
    limits = Limits(
        max_connections=max_connections,
        open_timeout=open_timeout,
        max_message_size=max_message_size,
        max_frame_size=max_frame_size,
        max_rate=max_rate,
        max_burst=max_burst,
        max_refused=max_refused,
        max_pending_bytes=max_pending_bytes,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        close_timeout=close_timeout,
        max_room_size=max_room_size,
        invitation_ttl=invitation_ttl,
        room_grace=room_grace,
    )
    if fast_path and (why := fastpath.unavailable_reason()) is not None:
        logger.info("using websockets' public API, not nbcall's fast path: %s", why)
        fast_path = False
    protocol: SignalingProtocol[Connection] = SignalingProtocol(
        max_message_size=max_message_size,
        max_rate=max_rate,
        max_burst=max_burst,
        max_refused=max_refused,
        max_room_size=max_room_size,
        invitation_ttl=invitation_ttl,
        room_grace=room_grace,
        logger=logger,
    )
    signaling = SignalingServer(
        protocol,
        AdmissionRules(
            path=path,
            token=token,
            origins=None if origins is None else origin_patterns(origins),
            max_connections=max_connections,
        ),
        limits=limits,
        tls=ssl_context is not None,
        fast_path=fast_path,
        faults=Faults.of(faults),
    )
    if redis is not None:
        try:  # only here: without redis, nothing of it is imported
            from .cluster import RedisRegistry, new_node_id
        except ImportError as exc:
            raise ImportError(
                f"serve(redis=...) needs redis-py ({exc}); install it with: pip install 'nbcall[redis]'"
            ) from None

        node = node_id or new_node_id()
        protocol.join_cluster(node)
        signaling.registry = RedisRegistry(signaling, redis, node=node, heartbeat=heartbeat, ttl=registry_ttl)
        await signaling.registry.start()
    connection_type = fastpath.FastConnection if fast_path else Connection
    options: dict[str, float | None]
    if fast_path:
        # One keepalive task for all connections (fastpath.keepalive), and since the server
        # bounds each write buffer itself (max_pending_bytes, see _write) and never awaits a
        # write, asyncio's flow control must never pause the transport.
        options = {"ping_interval": None, "ping_timeout": None, "write_limit": _NEVER}
    else:
        # websockets' keepalive; its flow control bounds the socket's buffer, and
        # max_pending_bytes what waits behind it (see Connection).
        write_limit = _NEVER if max_pending_bytes is None else max_pending_bytes
        options = {"ping_interval": ping_interval, "ping_timeout": ping_timeout, "write_limit": write_limit}
    try:
        server = await ws_serve(
            signaling._handle,
            host,
            port,
            process_request=signaling._process_request,
            create_connection=functools.partial(connection_type, signaling=signaling),  # type: ignore[arg-type]
            compression=compression,
            ssl=ssl_context,
            open_timeout=open_timeout,
            max_size=max_frame_size,
            close_timeout=close_timeout,
            logger=signaling._ws_logger,
            **options,  # type: ignore[arg-type]
        )
    except BaseException:
        if signaling.registry is not None:
            await signaling.registry.wait_closed()
        raise
    signaling._listening(server)
    if fast_path and ping_interval is not None:
        signaling._keepalive_task = asyncio.create_task(
            fastpath.keepalive(signaling, ping_interval, ping_timeout)
        )
    signaling._tick_task = asyncio.create_task(signaling._tick(_tick_interval(limits)))
    return signaling


def _tick_interval(limits: Limits) -> float:
    """Seconds between ticks: one, or a quarter of a room timer shorter than four seconds."""
    timers = [t for t in (limits.invitation_ttl, limits.room_grace) if t is not None]
    return min([1.0, *(t / 4 for t in timers)])


_NEVER = 2**31 - 1  # a write limit never reached: uvloop takes a C int

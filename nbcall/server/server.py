"""The signaling server: a websockets server that pumps messages through :mod:`nbcall.server.protocol`.

Who may talk to whom lives in :class:`~nbcall.server.protocol.SignalingProtocol`, and who may connect
in :func:`nbcall.server.admission.check_handshake`. This module starts the server (:func:`serve`),
listens, admits connections and gives the protocol the time; its base, :class:`~nbcall.server.pump.MessagePump`,
moves messages between the sockets and the protocol and enforces what only the transport can see:
each connection's message rate and how much unread data may pile up for a reader that does not
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
import logging
import os
import re
import ssl
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.http11 import Request, Response

from ..wire.faults import Faults
from . import fastpath
from .admission import DEFAULT_ORIGINS, AdmissionRules, OriginPattern, check_handshake, origin_patterns
from .connection import Connection, remote
from .limits import DEFAULT_LIMITS, RATE_ABUSE_WINDOW, Limits, limit_keywords
from .protocol import SignalingProtocol
from .pump import MessagePump

if TYPE_CHECKING:
    from typing_extensions import Self


__all__ = ["DEFAULT_ORIGINS", "RATE_ABUSE_WINDOW", "RedactingLogger", "SignalingServer", "serve"]

logger = logging.getLogger("nbcall.server.server")

_SECRETS = re.compile(
    r'(token=)[^&\s]*|("(?:secret|sdp)"\s*:\s*")(?:[^"\\]|\\.)*|((?i:authorization):\s*)[^\r\n]*'
)


class RedactingLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """websockets' logger, minus tokens in request lines and headers, and secrets or SDP in logged frames."""

    def log(self, level: int, msg: object, *args: object, **kwargs: object) -> None:
        if not self.isEnabledFor(level):
            return
        text = str(msg) % args if args else str(msg)
        self.logger.log(level, _SECRETS.sub(r"\1\2\3***", text), **kwargs)  # type: ignore[arg-type]


class SignalingServer(MessagePump):
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
        super().__init__(protocol, limits, faults)
        #: Whether messages go through :mod:`nbcall.server.fastpath` rather than websockets' public API.
        self.fast_path = fast_path
        self._rules = rules
        self._scheme = "wss" if tls else "ws"
        self._server: Server | None = None  # set by serve() once listening
        self._address: tuple[str, int] = ("", 0)  # kept after close, for logs and reprs
        #: Connections past the handshake checks, until their TCP connection ends.
        self.admitted: set[ServerConnection] = set()
        self._keepalive_task: asyncio.Task[None] | None = None
        self._tick_task: asyncio.Task[None] | None = None  # gives the protocol the time (rooms' timers)
        #: websockets' logger minus secrets, shared by every connection (see FastConnection.__init__).
        self.ws_logger = RedactingLogger(logging.getLogger("websockets.server"))

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
        if self.closing_tasks:
            await asyncio.gather(*self.closing_tasks, return_exceptions=True)
        if self.sfu is not None:
            await self.sfu.aclose()
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

    def use_sfu(self, url: str, secret: str | None) -> None:
        """Drive the SFU (Janus) at ``url`` for SFU rooms, starting to connect now (:func:`serve` calls it)."""
        from .sfu import SfuBridge  # only with an SFU

        if not url.startswith(("ws://", "wss://", "http://", "https://")):
            raise ValueError(
                f"sfu must be the URL of Janus's API, ws://HOST:PORT (its WebSocket transport) or "
                f"http://HOST:PORT/janus, got {url!r}"
            )
        protocol = self.protocol
        self.sfu = SfuBridge(
            url,
            secret,
            room_size=self.limits.max_sfu_room_size,
            send=lambda notices: self.send(None, protocol.dispatch.deliver(notices, sync=False)),
            end_room=lambda room, reason: self.send(None, protocol.dispatch.end_room(room, reason)),
            key=lambda: protocol.rooms.key,
            keep=lambda: not protocol.rooms.key_is_random,
        )
        self.sfu.start()

    # -- the HTTP handshake ---------------------------------------------------

    async def listen(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        compression: Literal["deflate"] | None = None,
    ) -> None:
        """Start listening on ``host``:``port`` (0: any free port), then the timers (:func:`serve` calls it)."""
        limits = self.limits
        options: dict[str, float | None]
        if self.fast_path:
            # One keepalive task for all connections (fastpath.keepalive), and since the server
            # bounds each write buffer itself (max_pending_bytes, see MessagePump._write) and never
            # awaits a write, asyncio's flow control must never pause the transport.
            options = {"ping_interval": None, "ping_timeout": None, "write_limit": _NEVER}
        else:
            # websockets' keepalive; its flow control bounds the socket's buffer, and
            # max_pending_bytes what waits behind it (see Connection).
            write_limit = _NEVER if limits.max_pending_bytes is None else limits.max_pending_bytes
            options = {
                "ping_interval": limits.ping_interval,
                "ping_timeout": limits.ping_timeout,
                "write_limit": write_limit,
            }
        connection_type = fastpath.FastConnection if self.fast_path else Connection
        server = await ws_serve(
            self._handle,
            host,
            port,
            process_request=self._process_request,
            create_connection=functools.partial(connection_type, signaling=self),  # type: ignore[arg-type]
            compression=compression,
            ssl=ssl_context,
            open_timeout=limits.open_timeout,
            max_size=limits.max_frame_size,
            close_timeout=limits.close_timeout,
            logger=self.ws_logger,
            **options,  # type: ignore[arg-type]
        )
        host, port = server.sockets[0].getsockname()[:2]
        self._server, self._address = server, (str(host), int(port))
        self._rules = dataclasses.replace(self._rules, url_without_token=self.url_without_token)
        if self.fast_path and limits.ping_interval is not None:
            self._keepalive_task = asyncio.create_task(
                fastpath.keepalive(self, limits.ping_interval, limits.ping_timeout)
            )
        self._tick_task = asyncio.create_task(self._tick(_tick_interval(limits)))

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        refusal = check_handshake(self._rules, request.path, request.headers, len(self.admitted))
        if refusal is not None:
            logger.log(refusal.log_level, "refused a connection from %s: %s", remote(connection), refusal.log)
            return connection.respond(refusal.status, refusal.body)
        # Freed when the TCP connection ends (Connection.connection_lost), handshake done or not.
        self.admitted.add(connection)
        return None

    # -- time ---------------------------------------------------------------------

    async def _tick(self, interval: float) -> None:
        """Give the protocol the time every ``interval`` seconds: it expires invitations and absent members.

        One task for both message paths; while there is no room each tick is one attribute test.
        """
        protocol, loop = self.protocol, self.loop
        while self.server.is_serving():
            await asyncio.sleep(interval)
            try:
                self.send(None, protocol.tick(loop.time()))
            except Exception:  # a bug must not stop the clock for every room
                logger.exception("error while expiring room invitations and absent members")

    async def _handle(self, connection: ServerConnection) -> None:
        assert isinstance(connection, Connection)
        self.connection_started(connection)
        try:
            await connection.serve_messages()
        finally:
            self.admitted.discard(connection)
            self.connection_ended(connection)


@limit_keywords
async def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    path: str = "/ws",
    # Who may connect.
    token: str | None = None,
    origins: Sequence[OriginPattern] | None = DEFAULT_ORIGINS,
    ssl_context: ssl.SSLContext | None = None,
    # Rooms that outlive a restart.
    room_key: str | bytes | None = None,
    # Rooms on an SFU.
    sfu: str | None = None,
    sfu_secret: str | None = None,
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
    # The fields of Limits, each a keyword with its default (see limit_keywords).
    **limits: float | None,
) -> SignalingServer:
    """Start a signaling server and return it once it listens.

    Defaults bind 127.0.0.1 on a free port; read the real one from ``.port`` or ``.url``.
    Every limit is on by default; ``None`` disables one. The limits are keyword arguments too,
    one per field of :class:`nbcall.server.limits.Limits`, listed at the end with their defaults.

    Who may connect:

    * ``token`` (none): clients must present it, in an ``Authorization: Bearer TOKEN`` header
      (nbcall's Python clients do) or as ``?token=TOKEN`` in the URL (browsers cannot set
      headers); others get HTTP 401 before they can register. ``.url`` includes it.
    * ``origins`` (:data:`DEFAULT_ORIGINS`: localhost, 127.0.0.1 and [::1], any port): the
      browser origins allowed, as strings where ``*`` matches anything (``"*"`` alone: any
      origin) or compiled regexes; others get HTTP 403. Clients sending no ``Origin`` (not
      browsers) are always allowed. Add your JupyterHub's origin when phones run there.
    * ``ssl_context`` (none): serve TLS; the URL becomes ``wss://``.

    Rooms' timers are checked about once a second (more often for limits under 4 s), so they
    end up to that much late.

    * ``room_key`` (none): the key that signs each room member's credential, with which the members
      re-create their room after a restart (docs/rooms.md); give the same one to the restarted server.
      Without it a random key is made (in a cluster, the one kept in Redis), and a server that restarts
      tells the members that their room ended with the restart.

    Rooms on an SFU (docs/rooms.md, "Rooms on an SFU"):

    * ``sfu`` (none): the URL of a Janus API (``ws://HOST:8188`` for its WebSocket transport, or
      ``http://HOST:8088/janus``): rooms made with ``"sfu": true`` run on its VideoRoom plugin, up to
      ``max_sfu_room_size`` members each. Phones never see Janus's API; the server relays their offers and
      answers. A Janus that does not answer yet is logged, and each SFU room made meanwhile ends with an error.
    * ``sfu_secret`` (``$NBCALL_SFU_SECRET``): Janus's ``api_secret``, never logged nor sent to a phone.

    For teaching, ``faults`` (a :class:`nbcall.wire.faults.Faults` or a dict of its fields, none by default) drops,
    delays or reorders the messages the server relays, or keeps only ICE candidates of some types: see what
    each breaks. Dropped messages are logged.

    Several nodes as one deployment (docs/guides/deployment.md; needs ``pip install nbcall[redis]``):

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
    unknown = sorted(limits.keys() - {field.name for field in dataclasses.fields(Limits)})
    if unknown:
        raise TypeError(
            f"serve() got an unexpected keyword argument {unknown[0]!r}; its limits are the fields of "
            "nbcall.server.limits.Limits (help(nbcall.server.serve) lists them)"
        )
    options = Limits(**limits)  # type: ignore[arg-type]
    if isinstance(room_key, str):
        room_key = room_key.encode()
    if room_key is not None and len(room_key) < 16:
        raise ValueError("room_key must be at least 16 bytes long (a long random string)")
    if fast_path and (why := fastpath.unavailable_reason()) is not None:
        logger.info("using websockets' public API, not nbcall's fast path: %s", why)
        fast_path = False
    protocol: SignalingProtocol[Connection] = SignalingProtocol(
        max_message_size=options.max_message_size,
        max_rate=options.max_rate,
        max_burst=options.max_burst,
        max_refused=options.max_refused,
        max_room_size=options.max_room_size,
        invitation_ttl=options.invitation_ttl,
        room_grace=options.room_grace,
        max_room_claims=options.max_room_claims,
        max_sfu_room_size=options.max_sfu_room_size,
        sfu=sfu is not None,
        id_grace=options.id_grace,
        room_key=room_key,
        logger=logger,
    )
    if room_key is None and redis is None:
        logger.info(
            "no room key (room_key=, --room-key or NBCALL_ROOM_KEY): rooms cannot be re-established after this "
            "server restarts"
        )
    signaling = SignalingServer(
        protocol,
        AdmissionRules(
            path=path,
            token=token,
            origins=None if origins is None else origin_patterns(origins),
            max_connections=options.max_connections,
        ),
        limits=options,
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
    if sfu is not None:
        signaling.use_sfu(sfu, sfu_secret if sfu_secret is not None else os.environ.get("NBCALL_SFU_SECRET"))
    try:
        if signaling.registry is not None:
            await signaling.registry.start()
        await signaling.listen(host, port, ssl_context=ssl_context, compression=compression)
    except BaseException:
        if signaling.registry is not None:
            await signaling.registry.wait_closed()
        raise
    return signaling


def _tick_interval(limits: Limits) -> float:
    """Seconds between ticks: one, or a quarter of a room timer shorter than four seconds."""
    timers = [t for t in (limits.invitation_ttl, limits.room_grace, limits.id_grace) if t]
    return min([1.0, *(t / 4 for t in timers)])


_NEVER = 2**31 - 1  # a write limit never reached: uvloop takes a C int

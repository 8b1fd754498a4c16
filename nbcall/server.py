"""The signaling server: a websockets server that pumps frames through :mod:`nbcall.protocol`.

All rules live in :class:`~nbcall.protocol.SignalingProtocol`; this module only
moves frames between sockets and it, and keeps one peer's dead socket from
disturbing anyone else.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Origin

from .protocol import SignalingProtocol

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["SignalingServer", "serve"]

logger = logging.getLogger("nbcall.server")


class SignalingServer:
    """A running signaling server, shaped like :class:`websockets.asyncio.server.Server`."""

    def __init__(self, path: str, protocol: SignalingProtocol[ServerConnection]) -> None:
        self.path = path
        self.protocol = protocol
        self._server: Server | None = None  # set by serve() once listening
        self._address: tuple[str, int] = ("", 0)  # kept after close, for logs and reprs

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
        """Where clients connect, e.g. ``ws://127.0.0.1:54321/ws``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}{self.path}"

    def close(self) -> None:
        """Stop accepting connections and close open ones with 1001 (going away). Idempotent."""
        self.server.close()

    async def wait_closed(self) -> None:
        """Wait until the server is closed and every connection handler has returned."""
        await self.server.wait_closed()

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
        where = self.url if self._server is not None else "not listening"
        return f"<SignalingServer {where} peers={len(self.protocol.peers)}>"

    # -- websockets callbacks -------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        requested = urlsplit(request.path).path
        if requested == self.path:
            return None
        return connection.respond(
            HTTPStatus.NOT_FOUND,
            f"nbcall signaling server: nothing at {requested!r}; "
            f"open a WebSocket to {self.path!r} instead, e.g. {self.url}\n",
        )

    async def _handle(self, connection: ServerConnection) -> None:
        protocol = self.protocol
        protocol.connect(connection)
        try:
            async for frame in connection:
                await self._send(protocol.receive(connection, frame))
        except ConnectionClosed:
            pass  # the peer went away abruptly; its registration is released below
        finally:
            await self._send(protocol.disconnect(connection))

    async def _send(self, outgoing: list[tuple[ServerConnection, str]]) -> None:
        # Each send is isolated: a closed recipient must not break the sender's handler.
        for connection, text in outgoing:
            try:
                await connection.send(text)
            except ConnectionClosed:
                logger.debug("dropped a message for %r: connection closed", self.protocol.id_of(connection))


async def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    path: str = "/ws",
    max_message_size: int | None = 64 * 1024,
    max_frame_size: int | None = 2**20,
    ping_interval: float | None = 20,
    ping_timeout: float | None = 20,
    origins: Sequence[str | None] | None = None,
) -> SignalingServer:
    """Start a signaling server and return it once it listens.

    Defaults bind 127.0.0.1 on a free port; read the real one from ``.port`` or ``.url``.

    Limits (``None`` disables one):

    * ``max_message_size`` (64 KiB): larger messages get a ``too-big`` error reply.
    * ``max_frame_size`` (1 MiB): larger frames close the connection with 1009. Keep
      it above ``max_message_size`` so that oversize messages get a polite reply.
    * ``ping_interval``, ``ping_timeout`` (20 s): keepalive; a peer silent this long is dropped
      and reported as ``left``.

    ``origins`` restricts the ``Origin`` header of connecting browsers (default: any).
    """
    if not path.startswith("/"):
        raise ValueError(f"path must start with '/', got {path!r}")
    if max_frame_size is not None and max_message_size is not None and max_message_size > max_frame_size:
        raise ValueError(
            f"max_frame_size ({max_frame_size}) must be at least max_message_size ({max_message_size}) "
            "so that oversize messages get an error reply instead of a closed connection"
        )
    signaling = SignalingServer(path, SignalingProtocol(max_message_size=max_message_size, logger=logger))
    server = await ws_serve(
        signaling._handle,
        host,
        port,
        process_request=signaling._process_request,
        max_size=max_frame_size,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        origins=None if origins is None else [None if o is None else Origin(o) for o in origins],
    )
    host, port = server.sockets[0].getsockname()[:2]
    signaling._server, signaling._address = server, (str(host), int(port))
    return signaling

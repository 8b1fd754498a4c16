"""One client connection as the signaling server sees it, through websockets' public API only.

:class:`Connection` is websockets' ``ServerConnection`` plus the server's state for it: its
message-rate bucket, the messages queued for it, whether the server is closing it. Messages
come in through ``async for message in connection`` and go out through ``send()``. This path
works with any websockets version nbcall supports; :mod:`nbcall.server.fastpath` subclasses it to
parse and write frames itself where the version is the one it was written for.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import Event, State

from .limits import TokenBucket

if TYPE_CHECKING:
    from .server import SignalingServer

__all__ = ["Connection", "remote", "remote_host"]


class Connection(ServerConnection):
    """A client connection with the server's per-connection state, on websockets' public API.

    Senders never wait for a recipient: :meth:`queue` appends to :attr:`pending` and
    :meth:`flush` (once per event-loop turn, see ``MessagePump._write``) hands the batch
    to one writer task, which ``await``\\ s ``send()`` for each message. websockets pauses that
    task when the socket's buffer passes ``write_limit`` (``max_pending_bytes``), so what
    waits for a reader that does not read piles up in :attr:`pending`, where the server sees it.
    """

    # Slots: websockets' connection already has about 30 attributes in its __dict__.
    __slots__ = (
        "closing",
        "departed",
        "held",
        "messages",
        "pending",
        "pending_size",
        "signaling",
        "started",
        "writer",
    )

    def __init__(self, *args: Any, signaling: SignalingServer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.signaling = signaling
        self.messages: TokenBucket | None = None  # rate limit, set by MessagePump.connection_started
        self.started = False  # see MessagePump.connection_started
        self.closing = False  # the server decided to close it: ignore what it still sends
        self.departed = False  # the server has dealt with its departure (see MessagePump.connection_ended)
        #: Messages received while its ID is being claimed in a cluster's registry, handled after.
        self.held: list[tuple[str | bytes, bytes | None]] | None = None
        self.pending: list[bytes] = []  # messages (or, on the fast path, frames) not yet written
        self.pending_size = 0
        self.writer: asyncio.Task[None] | None = None  # sends what flush() handed it

    def connection_lost(self, exc: Exception | None) -> None:
        # Frees its slot under max_connections whether or not the handshake completed.
        self.signaling.admitted.discard(self)
        super().connection_lost(exc)
        # Its departure now, not when its handler task next runs: a message routed to it meanwhile would be
        # written to a closed socket and lost, where its sender should hear `unavailable`.
        if self.started:
            self.signaling.connection_ended(self)

    def process_event(self, event: Event) -> None:
        super().process_event(event)
        # A close frame: the client has left, even if closing the TCP connection takes a while longer (a
        # client that does not read can hold it up to close_timeout). Messages to it are `unavailable` from now.
        if self.started and self.protocol.close_rcvd is not None:
            self.signaling.connection_ended(self)

    # -- what the server calls --------------------------------------------------

    def opened(self) -> None:
        """Called once the WebSocket is open, before the first message is handled."""

    def is_open(self) -> bool:
        """Whether messages may still be written (open, not closing)."""
        return self.state is State.OPEN

    def backlog(self) -> int:
        """Bytes waiting to be written to this client (the socket's buffer is bounded by ``write_limit``)."""
        return self.pending_size

    def queue(self, data: bytes) -> None:
        """Queue one UTF-8 text message; :meth:`flush` writes the queue."""
        self.pending.append(data)
        self.pending_size += len(data)

    def flush(self) -> None:
        """Write what is queued, in order, without making the caller wait."""
        if self.pending and (self.writer is None or self.writer.done()):
            self.writer = asyncio.create_task(self._write_pending())

    async def serve_messages(self) -> None:
        """Hand every message received to the server until the connection closes."""
        receive, loop = self.signaling.receive, self.loop
        with contextlib.suppress(ConnectionClosed):
            async for message in self:
                receive(self, message, None, loop.time())

    async def finish(self, code: int, reason: str, *, write_pending: bool = True) -> None:
        """Close with ``code`` and ``reason``, after what is queued unless ``write_pending`` is false."""
        writer = self.writer
        if writer is not None and not writer.done():
            if write_pending:
                await asyncio.wait([writer], timeout=self.close_timeout)
            writer.cancel()
        self.pending.clear()
        self.pending_size = 0
        await self.close(code, reason)

    def discard_pending(self) -> None:
        """Forget what is queued: the connection is gone."""
        self.pending.clear()
        self.pending_size = 0
        if self.writer is not None:
            self.writer.cancel()

    async def _write_pending(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while self.pending:
                batch, self.pending = self.pending, []  # messages queued meanwhile wait for the next round
                for data in batch:
                    self.pending_size -= len(data)
                    await self.send(data, text=True)


def remote_host(connection: ServerConnection) -> str:
    """The client's address (host), which limits per client count by; empty when unknown."""
    try:
        return str(connection.remote_address[0])
    except (TypeError, ValueError, OSError, IndexError):
        return ""


def remote(connection: ServerConnection) -> str:
    """``host:port`` of the client, for logs."""
    try:
        host, port = connection.remote_address[:2]
    except (TypeError, ValueError, OSError):
        return "a client"
    return f"{host}:{port}"

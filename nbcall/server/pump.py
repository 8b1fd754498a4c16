"""The signaling server's message pump: each message from a socket through the protocol to the recipients' sockets.

:class:`MessagePump` is the part of :class:`~nbcall.server.server.SignalingServer` that moves
messages: it counts each connection's rate, feeds :class:`~nbcall.server.protocol.SignalingProtocol`,
queues what it returns for each recipient (dropping a reader that does not keep up) and writes each
recipient's queue once per event-loop turn; it carries out the protocol's other instructions (closes
and, in a cluster, work for :class:`~nbcall.server.cluster.RedisRegistry`). Its public methods are
what the connections (:mod:`~nbcall.server.connection`, :mod:`~nbcall.server.fastpath`) and the
cluster call: :meth:`~MessagePump.receive`, :meth:`~MessagePump.send` and
:meth:`~MessagePump.close_connection`. It never awaits: a sender never waits for a recipient.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..wire.faults import Faults, FaultyOutbox
from .connection import Connection, remote, remote_host
from .limits import Limits, TokenBucket
from .messages import TOO_SLOW, Claim, Close, Forward, Outgoing, Release, RoomNode, SfuSignal, SfuSync
from .protocol import SignalingProtocol

if TYPE_CHECKING:
    from .cluster import RedisRegistry
    from .sfu import SfuBridge

__all__ = ["MessagePump"]

logger = logging.getLogger("nbcall.server.server")


class MessagePump:
    """Moves messages between the connections and ``protocol``, within ``limits``; ``faults`` on purpose."""

    def __init__(
        self, protocol: SignalingProtocol[Connection], limits: Limits, faults: Faults | None
    ) -> None:
        self.protocol = protocol
        self.limits = limits
        #: Faults put on relayed messages on purpose (``serve(faults=...)``), one outbox per recipient.
        self.faults = faults
        self._faulty: dict[Connection, FaultyOutbox] = {}
        #: The shared registry when this server is a node of a cluster (``serve(redis=...)``), else ``None``.
        self.registry: RedisRegistry | None = None
        #: The SFU bridge when this server drives an SFU (``serve(sfu=...)``), else ``None``.
        self.sfu: SfuBridge | None = None
        #: The event loop the server runs on; its time is the time of every limit.
        self.loop = asyncio.get_running_loop()
        #: Connections past the handshake, until they end.
        self.open_connections: set[Connection] = set()
        self._dirty: list[Connection] = []  # connections with messages queued for this loop turn
        #: Closes started here (:meth:`close_connection`), referenced until done.
        self.closing_tasks: set[asyncio.Task[None]] = set()

    def connection_started(self, connection: Connection) -> None:
        """Set up ``connection`` once open; called by whichever comes first, its handler or a message."""
        if connection.started:
            return
        connection.started = True
        if self.limits.max_rate is not None:
            connection.messages = TokenBucket(self.limits.max_rate, self.limits.max_burst, self.loop.time())
        connection.opened()
        self.open_connections.add(connection)
        self.protocol.connect(connection, remote_host(connection))

    def connection_ended(self, connection: Connection) -> None:
        """``connection`` is gone: drop what was queued for it and tell the protocol (its departure), once.

        Called at its close frame, when its socket is lost, and when its handler returns, whichever is first.
        """
        if connection.departed:
            return
        connection.departed = True
        connection.closing = True
        connection.discard_pending()
        self.open_connections.discard(connection)
        self._faulty.pop(connection, None)
        # A close frame from the client frees its ID at once; a connection lost without one keeps it for a while.
        self.send(
            None, self.protocol.disconnect(connection, clean=connection.protocol.close_rcvd is not None)
        )

    def receive(self, connection: Connection, message: str | bytes, raw: bytes | None, now: float) -> None:
        """Handle one whole message from ``connection``, received at loop time ``now``.

        ``raw``: the UTF-8 bytes of a text ``message`` when at hand, written as they are if the
        protocol forwards the message untouched.
        """
        if connection.closing:
            return
        try:
            if not connection.started:
                self.connection_started(connection)
            bucket = connection.messages
            if bucket is not None and not bucket.take(now):
                self.send(connection, self.protocol.refuse_for_rate(connection, now))
                return
            if connection.held is not None:  # its ID is being claimed in the registry: keep the order
                connection.held.append((message, raw))
                return
            self._handle_message(connection, message, raw)
        except Exception:  # a bug must cost only this connection, never the server's loop
            logger.exception("closing %s: error while handling a message", remote(connection))
            self.close_connection(connection, Close(1011, "internal error"))

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
        self.loop.call_later(delay, fn)

    def _fault_dropped(self, message: dict[str, object], why: str) -> None:
        logger.info("not relayed: a %s message to %r (%s)", message.get("type"), message.get("to"), why)

    def send(self, origin: Connection | None, outgoing: Outgoing[Connection]) -> None:
        """Send what the protocol returned for a message from ``origin`` (``None``: no sender)."""
        for connection, item in outgoing:
            if type(item) is str:
                self._write(connection, item.encode(), origin)
            else:
                self._instruct(connection, item)

    def _instruct(
        self,
        connection: Connection,
        item: Close | Forward | Claim | Release | RoomNode | SfuSignal | SfuSync | str,
    ) -> None:
        """Carry out what the protocol returned besides text: a close, work for the SFU or (cluster) the registry."""
        if isinstance(item, Close):
            self.close_connection(connection, item)
            return
        if isinstance(item, (SfuSignal, SfuSync)):
            if self.sfu is not None:
                if isinstance(item, SfuSignal):
                    self.sfu.signal(item)
                else:
                    self.sfu.sync(self.protocol.rooms)
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
        self.send(connection, out)
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
                self.close_connection(connection, Close(1011, "internal error"))
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
            self.send(None, self.protocol.drop_slow_reader(connection, data, origin))
            return
        connection.queue(data)
        if len(connection.pending) == 1:
            dirty = self._dirty
            dirty.append(connection)
            if len(dirty) == 1:
                self.loop.call_soon(self._flush)

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

    def close_connection(self, connection: Connection, close: Close) -> None:
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
        self.closing_tasks.add(task)
        task.add_done_callback(self.closing_tasks.discard)

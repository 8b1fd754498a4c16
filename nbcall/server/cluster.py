"""Several signaling servers as one deployment: a registry of IDs in Redis, relays between nodes over pub/sub.

Imported only by ``serve(redis=...)`` (``nbcall serve --redis URL``). What the protocol decides
(:class:`~nbcall.server.protocol.Claim` a new ID, :class:`~nbcall.server.protocol.Forward` a message to a phone on
another node, :class:`~nbcall.server.protocol.Release` an ID) this module carries out; what arrives from
Redis it hands back to the protocol's routing (``deliver``, ``remote_joined``...). It never decides who may
talk to whom.

In Redis, under the prefix ``nbcall:`` (every change is one Lua script, so atomic):

* ``owner`` (hash ID -> node) and ``secret`` (hash ID -> SHA-256 of the phone's secret): who holds
  each ID. A claim succeeds when the ID is free, held by a node that is gone, or held by a live node
  with the same secret (the phone failed over: ``moved``, and the old node closes its connection).
* ``node:N`` (set of IDs node N holds), ``nodes`` (set of nodes), ``alive:N`` (a key with a TTL
  that node N renews every ``heartbeat`` seconds). Every heartbeat also forgets the IDs of nodes
  whose ``alive`` key expired, so a killed node's IDs last at most ``registry_ttl`` seconds.
* ``room`` (hash room ID -> the node holding it) and ``rooms:N`` (set of the rooms node N holds): where
  a room's messages go (docs/rooms.md, "Across the nodes"). A claim that names a room (a phone that
  failed over, registering with ``room``) learns its node, and takes the room over if that node is gone.
* ``room-key``: the key that signs room members' credentials when the nodes were given none
  (``--room-key``), made by the first node, so that a room outlives a restart of its node.
* Channels ``to:N`` (messages for node N's phones, batched: one publish per node per round; a record
  with no recipient is a room message for node N, which holds the room) and ``presence``
  (``joined``/``left``/``moved``/``taken`` news, published by the scripts themselves).

Each node keeps a copy of ``owner`` in memory (read after subscribing, then kept up to date by the
news), so routing a message costs no round trip. Messages from one node to another go through one
connection, one batch at a time, and one subscriber reads them: a pair of phones' messages stay in
order. Nothing is ever retried (redis-py's own retries are off), so nothing is duplicated; a
message that cannot be published, or that no node received, comes back to its sender as
``unavailable``.

When Redis cannot be reached, the node keeps relaying between its own phones, answers cross-node
messages with ``unavailable`` and new registrations with ``registry-unavailable``; once Redis is
back it claims its IDs again (closing the phones whose ID another node took meanwhile), subscribes
again and reads the registry anew.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import urllib.parse
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from .cluster_scripts import CLAIM, HEARTBEAT, HOLD_ROOM, RELEASE, RETIRE
from .messages import Forward

if TYPE_CHECKING:
    from .server import SignalingServer

__all__ = [
    "DEFAULT_HEARTBEAT",
    "DEFAULT_REGISTRY_TTL",
    "MAX_WAITING",
    "PREFIX",
    "RedisRegistry",
    "new_node_id",
    "safe_url",
]

logger = logging.getLogger("nbcall.server.cluster")

#: Seconds between a node's heartbeats.
DEFAULT_HEARTBEAT = 5.0
#: Seconds after its last heartbeat when a node is taken for gone and its IDs are freed.
DEFAULT_REGISTRY_TTL = 15.0
#: Prefix of every key and channel.
PREFIX = "nbcall"
#: Messages to other nodes, and claims, that may wait for the round under way (Redis slow or stuck): more are
#: answered at once, ``unavailable`` and ``registry-unavailable``, as when Redis is down.
MAX_WAITING = 10_000

# A published batch: the sending node, then records; a record: to, sender ("" for a server notice), text.
# Neither separator can occur in an ID (printable) or in a JSON text frame (control characters are escaped).
_RS = "\x1e"
_US = "\x00"


def new_node_id() -> str:
    """A node ID: ``n-`` and 48 random bits (nodes need not be named; a name only shows in logs)."""
    return "n-" + secrets.token_hex(6)


def safe_url(url: str) -> str:
    """A Redis URL without its password, for logs and errors."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url.split("?", 1)[0]
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=""))


def _digest(secret: bytes | None) -> str:
    return "" if secret is None else hashlib.sha256(secret).hexdigest()


_Job = tuple[str, tuple[Any, ...], "asyncio.Future[Any] | None"]


class RedisRegistry:
    """This node's side of the shared registry: claims, releases, heartbeats, and relays to other nodes.

    Create it with :meth:`start`; :meth:`close` frees this node's IDs. ``heartbeat`` and ``ttl`` are
    ``serve()``'s ``heartbeat`` and ``registry_ttl``.
    """

    #: Seconds :meth:`start` waits for the subscription to the node's channels.
    subscribe_timeout = 10.0

    def __init__(
        self,
        server: SignalingServer,
        url: str,
        *,
        node: str,
        heartbeat: float,
        ttl: float,
        prefix: str = PREFIX,
    ) -> None:
        if not heartbeat > 0 or not ttl > heartbeat:
            raise ValueError(
                f"heartbeat must be positive and registry_ttl longer than it, got heartbeat={heartbeat!r} "
                f"and registry_ttl={ttl!r}; registry_ttl of about three heartbeats survives a lost one"
            )
        self.server = server
        self.protocol = server.protocol
        self.url = url
        self.node = node
        self.heartbeat = heartbeat
        self.ttl = ttl
        self.prefix = prefix
        self._presence = f"{prefix}:presence"
        self._room_key = f"{prefix}:room-key"
        self._keep_room_key = False  # the room key came from Redis: put it back after Redis lost it
        # No retries anywhere: a PUBLISH retried after its reply was lost would deliver twice.
        common: dict[str, Any] = {
            "decode_responses": True,
            "socket_connect_timeout": min(2.0, heartbeat),
            "retry": Retry(NoBackoff(), 0),
            "health_check_interval": 0,
        }
        self._cmd = aioredis.from_url(url, socket_timeout=max(2.0, heartbeat), **common)
        # The subscriber waits for messages as long as it takes: no socket timeout (redis-py #4098); its
        # loss is noticed by the heartbeat, which then makes it subscribe again.
        self._sub = aioredis.from_url(url, socket_timeout=None, socket_keepalive=True, **common)
        self._jobs: list[_Job] = []
        self._outbox: list[Forward] = []
        self._wake = asyncio.Event()
        self.down: str | None = "not started"  # why the registry cannot be used, or None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        #: Messages and registrations refused because :data:`MAX_WAITING` waited already.
        self.refused = 0
        self._closed = False

    # -- life -----------------------------------------------------------------------

    async def start(self) -> None:
        """Join the registry: heartbeat, subscribe, read the registry. Raises ``OSError`` if Redis is unreachable."""
        try:
            await self._cmd.eval(HEARTBEAT, 0, self.prefix, self.node, int(self.ttl * 1000))
        except (RedisError, OSError) as exc:
            await self._close_clients()
            raise OSError(f"cannot reach the registry at {safe_url(self.url)}: {exc}") from None
        rooms = self.protocol.rooms
        if rooms.key_is_random:  # no --room-key: the deployment's own, kept in Redis
            try:
                await self._cmd.set(self._room_key, rooms.key.hex(), nx=True)
                rooms.use_key(bytes.fromhex(str(await self._cmd.get(self._room_key))))
                self._keep_room_key = True
            except (RedisError, OSError, ValueError) as exc:
                await self._close_clients()
                raise OSError(
                    f"cannot read the room key in the registry at {safe_url(self.url)}: {exc}"
                ) from None
        self.down = None
        subscribed = asyncio.get_running_loop().create_future()
        self._spawn("worker", self._work())
        self._spawn("subscriber", self._subscribe(subscribed))
        self._spawn("heartbeat", self._beat())
        try:
            await asyncio.wait_for(subscribed, self.subscribe_timeout)
        except asyncio.TimeoutError:
            await self.wait_closed()
            raise OSError(
                f"could not subscribe to the registry at {safe_url(self.url)} within {self.subscribe_timeout} s "
                "(the log says why)"
            ) from None
        logger.info("node %s joined the registry at %s", self.node, safe_url(self.url))

    def _spawn(self, name: str, loop: Coroutine[Any, Any, None]) -> None:
        """Run one of the registry's loops; each catches its own failures, and this says if one still ends."""
        task = asyncio.create_task(loop, name=f"nbcall registry {name}")
        self._tasks[name] = task
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._closed:
            return
        exc = task.exception()
        logger.error(
            "node %s: the registry's task %r stopped (%s): messages to other nodes are no longer delivered; "
            "this is a bug in nbcall: restart this node, and report it",
            self.node,
            task.get_name(),
            f"{type(exc).__name__}: {exc}" if exc is not None else "it returned",
            exc_info=exc,
        )

    def close(self) -> None:
        """Stop the tasks (idempotent); :meth:`wait_closed` frees this node's IDs in Redis."""
        self._closed = True
        for task in self._tasks.values():
            task.cancel()

    async def wait_closed(self) -> None:
        """Wait for the tasks, free this node's IDs (others see them ``left`` at once), close the clients."""
        self.close()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        if self.down == "not started":  # it never joined: nothing of it is in Redis
            await self._close_clients()
            return
        try:
            await asyncio.wait_for(self._cmd.eval(RETIRE, 0, self.prefix, self.node), 5)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            logger.info(
                "could not free node %s's IDs in the registry (they expire with it): %s", self.node, exc
            )
        await self._close_clients()

    async def _close_clients(self) -> None:
        for client in (self._cmd, self._sub):
            try:
                await client.aclose()
            except (RedisError, OSError):
                pass

    # -- what the server asks ------------------------------------------------------------

    def forward(self, forward: Forward) -> None:
        """Publish ``forward`` to its node in the next batch; a sender learns if it cannot be delivered."""
        if self.down is not None:
            self._bounce([forward], f"this server cannot reach the registry ({self.down})")
            return
        if len(self._outbox) >= MAX_WAITING:
            self._full("message to another node")
            self._bounce([forward], f"the registry is too slow ({MAX_WAITING} messages wait for it)")
            return
        self._outbox.append(forward)
        self._wake.set()

    def claim(
        self, peer_id: str, secret: bytes | None, room: str | None = None
    ) -> asyncio.Future[tuple[str, str, str]]:
        """Claim ``peer_id`` for this node: a future of ``(outcome, owner, room's node)`` (``SignalingProtocol.claimed``)."""
        future: asyncio.Future[tuple[str, str, str]] = asyncio.get_running_loop().create_future()
        if self.down is not None:
            future.set_result(("down", "", ""))
        elif len(self._jobs) >= MAX_WAITING:
            self._full("registration")
            future.set_result(("down", "", ""))
        else:
            self._jobs.append(("claim", (peer_id, _digest(secret), "claim", room or ""), future))
            self._wake.set()
        return future

    def hold_room(self, room: str, made: bool) -> None:
        """Record that this node holds ``room`` (``made``), or no longer does, so other nodes route to it."""
        if self.down is None:  # else the rooms are recorded again when the registry is back (_reassert)
            self._jobs.append(("room", (room, "1" if made else ""), None))
            self._wake.set()

    def release(self, peer_id: str) -> None:
        """Free ``peer_id`` if this node still holds it in the registry (after the claims queued before)."""
        self._jobs.append(("release", (peer_id,), None))
        self._wake.set()

    # -- the command connection: one round at a time, in order ---------------------------------

    async def _work(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            jobs, self._jobs = self._jobs, []
            outbox, self._outbox = self._outbox, []
            try:
                await self._round(jobs, outbox)
            except Exception as exc:  # a bug, or data in Redis it cannot read: fail this round, not the node
                logger.exception(
                    "node %s: a round of registry work failed; its registrations were refused and its messages "
                    "answered unavailable (if Redis holds keys under %s: that nbcall did not write, remove them)",
                    self.node,
                    self.prefix,
                )
                self._fail(jobs, outbox, f"{type(exc).__name__}: {exc}")
                for kind, args, _ in jobs:
                    if kind == "claim":  # it may have been recorded before the failure: free it
                        self._jobs.append(("release", (args[0],), None))

    async def _round(self, jobs: list[_Job], outbox: list[Forward]) -> None:
        """Carry out one batch of jobs and messages in one pipeline (one round trip)."""
        if jobs and jobs[0][0] == "reassert":
            await self._reassert()
            jobs[:] = jobs[1:]
        if not jobs and not outbox:
            return
        if self.down is not None:
            self._fail(jobs, outbox)
            return
        pipe = self._cmd.pipeline(transaction=False)
        for kind, args, _ in jobs:
            if kind == "claim":
                pipe.eval(CLAIM, 0, self.prefix, args[0], self.node, args[1], args[2], args[3])
            elif kind == "room":
                pipe.eval(HOLD_ROOM, 0, self.prefix, args[0], self.node, args[1])
            else:
                pipe.eval(RELEASE, 0, self.prefix, args[0], self.node)
        batches: dict[str, list[Forward]] = {}
        for forward in outbox:
            batches.setdefault(forward.node, []).append(forward)
        for node, batch in batches.items():
            records = _RS.join(f"{f.to}{_US}{f.sender}{_US}{f.text}" for f in batch)
            pipe.publish(f"{self.prefix}:to:{node}", f"{self.node}{_RS}{records}")
        try:
            results = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            self._went_down(exc)
            self._fail(jobs, outbox)
            return
        for (kind, args, future), result in zip(jobs, results):
            if future is not None and not future.done():
                ok = isinstance(result, list) and len(result) == 3
                future.set_result(
                    (str(result[0]), str(result[1]), str(result[2])) if ok else ("down", "", "")
                )
            if isinstance(result, Exception):
                logger.warning("registry %s of %r failed: %s", kind, args[0], result)
        for (node, batch), count in zip(batches.items(), results[len(jobs) :]):
            if isinstance(count, Exception) or count == 0:
                self._bounce(batch, f"its node ({node}) is not connected to the registry")

    def _full(self, what: str) -> None:
        self.refused += 1
        if self.refused == 1 or self.refused % 1000 == 0:  # a counted line now and then, not one per message
            logger.warning(
                "node %s: refused a %s: %d wait for the registry at %s already (%d refused so far); is Redis "
                "overloaded?",
                self.node,
                what,
                MAX_WAITING,
                safe_url(self.url),
                self.refused,
            )

    def _fail(self, jobs: list[_Job], outbox: list[Forward], why: str | None = None) -> None:
        for _, _, future in jobs:
            if future is not None and not future.done():
                future.set_result(("down", "", ""))
        self._bounce(outbox, f"this server cannot reach the registry ({why or self.down})")

    def _bounce(self, forwards: list[Forward], reason: str) -> None:
        protocol, send = self.protocol, self.server.send
        for forward in forwards:
            send(None, protocol.routing.undeliverable(forward, reason))

    async def _reassert(self) -> None:
        """Claim every ID this node holds again (Redis restarted, or this node was taken for gone)."""
        held = self.protocol.routing.held()
        try:
            pipe = self._cmd.pipeline(transaction=False)
            for peer_id, secret in held:
                pipe.eval(CLAIM, 0, self.prefix, peer_id, self.node, _digest(secret), "assert", "")
            rooms = self.protocol.rooms.rooms
            for room in rooms:
                pipe.eval(HOLD_ROOM, 0, self.prefix, room, self.node, "1")
            pipe.smembers(f"{self.prefix}:node:{self.node}")
            if self._keep_room_key:  # a Redis that restarted empty gets the nodes' key back, not a new one
                pipe.set(self._room_key, self.protocol.rooms.key.hex(), nx=True)
            results = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            self._went_down(exc)
            return
        lost = 0
        for (peer_id, _), result in zip(held, results):
            if isinstance(result, list) and result[0] == "taken":
                lost += 1
                self.server.send(None, self.protocol.routing.lost_claim(peer_id, str(result[1])))
        mine = results[len(held) + len(rooms)]
        mine = mine if isinstance(mine, set) else set()
        for extra in mine - {peer_id for peer_id, _ in held}:
            self.release(extra)  # released while the registry was away
        logger.info(
            "node %s claimed its %d IDs again%s",
            self.node,
            len(held) - lost,
            f"; {lost} taken meanwhile" * bool(lost),
        )

    # -- liveness ---------------------------------------------------------------------------

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat if self.down is None else min(self.heartbeat, 0.5))
            try:
                existed, forgotten = await self._cmd.eval(
                    HEARTBEAT, 0, self.prefix, self.node, int(self.ttl * 1000)
                )
            except (RedisError, OSError) as exc:
                self._went_down(exc)
                continue
            except Exception as exc:  # noqa: BLE001 (what Redis answered cannot be read: a missed beat)
                logger.warning(
                    "node %s: a heartbeat failed, trying again: %s: %s", self.node, type(exc).__name__, exc
                )
                continue
            if forgotten:
                logger.info("freed %d IDs of nodes gone longer than %g s", forgotten, self.ttl)
            if self.down is not None or not existed:
                if not existed:
                    logger.warning(
                        "node %s was taken for gone by the registry: claiming its IDs again", self.node
                    )
                self._came_back()

    def _went_down(self, exc: BaseException) -> None:
        if self.down is None and not self._closed:
            logger.warning(
                "lost the registry at %s (%s): relaying between this node's phones goes on; messages to "
                "other nodes and new registrations are refused until it is back",
                safe_url(self.url),
                exc or type(exc).__name__,
            )
        self.down = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

    def _came_back(self) -> None:
        if self.down is not None:
            logger.warning("the registry at %s is back: rebuilding", safe_url(self.url))
        self.down = None
        self._jobs.insert(0, ("reassert", (), None))
        self._wake.set()
        # The old subscription may have missed news (or be dead without knowing it): subscribe anew.
        old = self._tasks.get("subscriber")
        if old is not None:
            old.cancel()
        self._spawn("subscriber", self._subscribe(None))

    # -- the subscriber -----------------------------------------------------------------------

    async def _subscribe(self, subscribed: asyncio.Future[None] | None) -> None:
        delay = 0.1
        while True:
            pubsub = self._sub.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(f"{self.prefix}:to:{self.node}", self._presence)
                # Read after subscribing: news published meanwhile arrives after the snapshot, not lost.
                owners: dict[str, str] = await self._cmd.hgetall(f"{self.prefix}:owner")  # type: ignore[assignment]
                self.server.send(None, self.protocol.routing.registry_snapshot(owners))
                if subscribed is not None and not subscribed.done():
                    subscribed.set_result(None)
                delay = 0.1
                async for message in pubsub.listen():  # blocks: never get_message(timeout=0), a busy loop
                    if message["type"] == "message":
                        self._handle(message["channel"], message["data"])
            except (RedisError, OSError) as exc:
                self._went_down(exc)
            except Exception as exc:  # (a bug, or what Redis sent cannot be read: subscribe anew)
                logger.warning(
                    "node %s: reading the registry's news failed (%s: %s); subscribing again in %g s",
                    self.node,
                    type(exc).__name__,
                    exc,
                    delay,
                    exc_info=logger.isEnabledFor(logging.DEBUG),
                )
            finally:
                try:
                    await asyncio.shield(pubsub.aclose())
                except (RedisError, OSError, asyncio.CancelledError):
                    pass
            await asyncio.sleep(delay)
            delay = min(2 * delay, 1.0)

    def _handle(self, channel: str, data: str) -> None:
        """One message from Redis: a batch for this node's phones, or news. A bad one is dropped and logged."""
        try:
            if channel == self._presence:
                self._handle_news(data)
            else:
                self._handle_batch(data)
        except Exception as exc:  # noqa: BLE001 (something else publishes on nbcall's channels, or a bug)
            logger.warning(
                "node %s: dropped a message on %s it cannot handle (%s: %s): %.100r",
                self.node,
                channel,
                type(exc).__name__,
                exc,
                data,
            )

    def _handle_batch(self, data: str) -> None:
        sender_node, _, body = data.partition(_RS)
        deliver, send = self.protocol.routing.deliver, self.server.send
        for record in body.split(_RS):
            to, sender, text = record.split(_US, 2)
            send(None, deliver(to, sender, sender_node, text))

    def _handle_news(self, data: str) -> None:
        kind, *fields = data.split(_US)
        protocol = self.protocol
        handlers: dict[str, Callable[..., Any]] = {
            "j": protocol.routing.remote_joined,
            "l": protocol.routing.remote_left,
            "m": protocol.routing.remote_moved,
            "t": protocol.routing.remote_taken,
        }
        handler = handlers.get(kind)
        if handler is None:
            logger.warning("ignoring unknown registry news %r", data[:100])
            return
        self.server.send(None, handler(*fields))

    def __repr__(self) -> str:
        state = "up" if self.down is None else f"down ({self.down})"
        return f"<RedisRegistry node={self.node} {safe_url(self.url)} {state}>"

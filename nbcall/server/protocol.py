"""Sans-I/O signaling: the registry of peers and the routing of their messages.

Feed frames in with :meth:`SignalingProtocol.receive`; it returns the
``(connection, text)`` pairs to send, in order. No sockets, no asyncio: the
server (``nbcall.server.server``) only pumps frames through it, and tests need no
network.

The wire format is the seed's: JSON text frames ``register``, ``call``,
``answer``, ``ice`` with ``from``, ``to``, ``sdp`` and ``candidate`` (the last
two JSON-encoded strings, forwarded untouched). Everything else is an
extension an old client may ignore.

Presence is opt-in: a ``register`` with ``"presence": true`` (nbcall's phones send
it) gets the IDs already online in ``registered`` (``"peers": [...]``) and then
``joined``/``left`` news; a ``register`` without it (the seed's clients, load
generators) gets ``registered`` with its ``id`` and no ``peers`` key, and no news.
Relaying works the same either way. This keeps a registration O(subscribers), not
O(peers): N seed-style clients register in O(N), not O(N²).

An ID belongs to the connection that registered it. A phone that reconnects
(its old connection not yet noticed dead) reclaims its ID by registering with
the same ``"secret"`` as before: the new connection takes the ID over without
any ``left``/``joined`` for the others, and the old one is told to close
(a :class:`Close` item in the output, 1008). Secrets are compared in constant
time and never echoed or logged. An ID registered with a secret whose connection
is lost without a close frame is held for ``id_grace`` seconds for the phone with
that secret (a close frame frees it at once).

The transport's events that produce messages are decided here too: a message the
server refused for rate (:meth:`SignalingProtocol.refuse_for_rate`: an error reply,
or a close once the refusals persist) and a reader dropped for not reading
(:meth:`SignalingProtocol.drop_slow_reader`: its close, an ``unavailable`` notice to
the sender whose message was lost, and its departure).

Rooms (docs/rooms.md) are opt-in too: a ``register`` with ``"rooms": true`` may send and
receive the ``room-*`` messages, whose rules live in :mod:`nbcall.server.rooms`; nothing about rooms
ever reaches a connection that did not ask. Time enters through :meth:`SignalingProtocol.tick`,
which the server calls about once a second: it expires invitations and members whose
connection has been gone longer than their grace (:meth:`SignalingProtocol.disconnect` starts
it; reclaiming the ID with its secret ends it).

Here: registration and relay. Parts sharing the :class:`~nbcall.server.registry.Registry` do the rest:
:mod:`~nbcall.server.rate`, :mod:`~nbcall.server.room_dispatch`, :mod:`~nbcall.server.routing`
(cluster nodes); :mod:`~nbcall.server.messages` holds the message types and field checks.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Generic, cast

from ..exceptions import (
    AlreadyRegistered,
    BadMessage,
    BinaryFrame,
    DuplicateID,
    MessageTooBig,
    NotRegistered,
    SignalingError,
    UnknownType,
)
from .limits import DEFAULT_LIMITS
from .messages import (
    KNOWN_LIST,
    MAX_ID_LENGTH,
    REGISTER_HINT,
    RELAYED_TYPES,
    REPLACED,
    ROOM_TYPES,
    TOO_SLOW,
    ConnT,
    Forward,
    Outgoing,
    Release,
    check_from,
    encode_message,
    error_reply,
    flag_field,
    forwarded_text,
    json_type,
    parse_frame,
    presence_field,
    room_claim,
    secret_field,
    shorten,
    validate_id,
)
from .rate import RatePolicy, slow_reader_notice
from .registry import Registry
from .room_dispatch import RoomDispatch
from .room_model import Notices
from .rooms import RoomRegistry
from .routing import ClusterRouting
from .sfu_messages import sfu_record_field

__all__ = ["SignalingProtocol"]


class SignalingProtocol(Generic[ConnT]):
    """Registry of peers by ID and router of their signaling messages.

    ``conn`` is any hashable object standing for one connection (the server uses the websocket
    itself). The limits are keyword-only, named, defaulting and ``None``-disabled as the fields of
    :class:`nbcall.server.limits.Limits`: ``max_message_size`` (longer frames get a ``too-big``
    error), ``max_rate``, ``max_burst`` and ``max_refused`` (named in ``rate-limited`` replies; the
    server counts the messages), ``id_grace`` (an ID lost without a close frame is held for its secret),
    and the rooms' ``max_room_size``, ``max_sfu_room_size``, ``invitation_ttl``, ``room_grace`` and
    ``max_room_claims``. ``sfu``: the server drives an SFU, announced in ``registered`` (``"sfu": true``).
    ``room_key`` signs the members' room credentials (random when ``None``: rooms end with the server).

    ``logger`` receives INFO lines for registrations, calls and departures.
    """

    def __init__(
        self,
        *,
        max_message_size: int | None = DEFAULT_LIMITS.max_message_size,
        max_rate: float | None = DEFAULT_LIMITS.max_rate,
        max_burst: int = DEFAULT_LIMITS.max_burst,
        max_refused: int | None = DEFAULT_LIMITS.max_refused,
        max_room_size: int | None = DEFAULT_LIMITS.max_room_size,
        invitation_ttl: float | None = DEFAULT_LIMITS.invitation_ttl,
        room_grace: float | None = DEFAULT_LIMITS.room_grace,
        max_room_claims: int | None = DEFAULT_LIMITS.max_room_claims,
        max_sfu_room_size: int | None = DEFAULT_LIMITS.max_sfu_room_size,
        sfu: bool = False,
        id_grace: float | None = DEFAULT_LIMITS.id_grace,
        room_key: bytes | None = None,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
    ) -> None:
        if max_message_size is not None and max_message_size < 1:
            raise ValueError(f"max_message_size must be positive or None, got {max_message_size!r}")
        self.max_message_size = max_message_size
        #: Seconds an ID whose connection was lost is held for its secret's holder (``None`` or 0: not held).
        self.id_grace = id_grace or None
        self._now = 0.0  # the time of the last tick
        self.logger = logger if logger is not None else logging.getLogger("nbcall.server.protocol")
        #: Who is online: the state every part below shares.
        self.registry: Registry[ConnT] = Registry()
        # The relay's two dictionaries, bound once for its hot path (the registry never rebinds them).
        self._ids, self._conns = self.registry.ids, self.registry.conns
        #: The rooms and their rules, by peer ID.
        self.rooms = RoomRegistry(
            max_room_size=max_room_size,
            invitation_ttl=invitation_ttl,
            room_grace=room_grace,
            max_room_claims=max_room_claims,
            max_sfu_room_size=max_sfu_room_size,
            key=room_key,
        )
        #: What a message refused for rate, or a reader too slow, produces.
        self.rate: RatePolicy[ConnT] = RatePolicy(
            max_rate=max_rate, max_burst=max_burst, max_refused=max_refused, logger=self.logger
        )
        #: Room messages: their rules, and their notices addressed.
        self.dispatch = RoomDispatch(self.registry, self.rooms, self.logger)
        self.dispatch.sfu = sfu
        #: Claims, and what other nodes and the shared registry say (cluster mode only).
        self.routing = ClusterRouting(self.registry, self.dispatch, self.logger)

    # -- limits and the registry ------------------------------------------------

    @property
    def max_rate(self) -> float | None:
        """The rate the server enforces, named in ``rate-limited`` replies."""
        return self.rate.max_rate

    @property
    def max_burst(self) -> int:
        """The bursts the server allows above ``max_rate``."""
        return self.rate.max_burst

    @property
    def max_refused(self) -> int | None:
        """Refusals for rate within :data:`~nbcall.server.limits.RATE_ABUSE_WINDOW` that close a connection."""
        return self.rate.max_refused

    @property
    def node(self) -> str | None:
        """In a cluster (:meth:`join_cluster`), this server's node ID; ``None``: every peer is local."""
        return self.registry.node

    @property
    def peers(self) -> list[str]:
        """Registered IDs, sorted: this server's and, in a cluster, the other nodes'."""
        registry = self.registry
        if registry.remote:
            return sorted({*registry.conns, *registry.remote})
        return sorted(registry.conns)

    @property
    def local_peers(self) -> list[str]:
        """IDs registered on this server, sorted."""
        return sorted(self.registry.conns)

    def id_of(self, conn: ConnT) -> str | None:
        """The ID ``conn`` registered, or ``None``."""
        return self.registry.ids.get(conn)

    @property
    def connections(self) -> int:
        """How many connections are tracked, registered or not."""
        return len(self.registry.ids)

    def wants_presence(self, conn: ConnT) -> bool:
        """Whether ``conn`` registered with ``"presence": true``."""
        return conn in self.registry.watchers

    def wants_rooms(self, conn: ConnT) -> bool:
        """Whether ``conn`` registered with ``"rooms": true``."""
        return conn in self.registry.room_clients

    def connect(self, conn: ConnT, address: str = "") -> None:
        """Start tracking a new connection (idempotent); ``address``: its client's host, if known."""
        self.registry.ids.setdefault(conn, None)
        if address:
            self.registry.addresses[conn] = address

    def disconnect(self, conn: ConnT, clean: bool = False) -> Outgoing[ConnT]:
        """Forget ``conn`` and tell the others it left. Always safe, idempotent.

        ``clean``: the client sent a close frame, which frees its ID at once. Otherwise an ID registered
        with a secret is held for ``id_grace`` seconds (counted from the next :meth:`tick`) for whoever
        presents that secret. A room member's membership outlives its connection for ``room_grace``
        seconds. Invitations to it are declined ("it went offline before answering").
        """
        self.rate.forget(conn)
        routing, registry = self.routing, self.registry
        if routing.claims:
            routing.end_claim(conn)
        if registry.addresses:
            registry.addresses.pop(conn, None)
        peer_id = registry.ids.pop(conn, None)
        if peer_id is None:
            return []
        del registry.conns[peer_id]
        registry.watchers.pop(conn, None)
        if registry.room_clients:
            registry.room_clients.pop(conn, None)
        self.logger.info("%r left", peer_id)
        text = encode_message("left", id=peer_id)
        out: Outgoing[ConnT] = [(other, text) for other in registry.watchers]
        rooms = self.rooms
        if rooms.active:
            out.extend(self.dispatch.deliver(rooms.went_away(peer_id)))
        if not clean and self.id_grace is not None and peer_id in registry.secrets:
            registry.held[peer_id] = None  # the hold starts at the next tick
            member = registry.member_elsewhere.get(peer_id) if registry.member_elsewhere else None
            if member is not None:
                # The ID stays in the shared registry, so the room's node hears of the departure from here.
                went = encode_message("went-away", **{"from": peer_id})
                out.append((cast(ConnT, None), Forward(member[1], "", peer_id, went)))
            return out
        return out + self._free(peer_id, conn)

    def _free(self, peer_id: str, conn: ConnT | None) -> Outgoing[ConnT]:
        """``peer_id`` is nobody's any more: its secret is forgotten, and (cluster) released in the registry."""
        registry = self.registry
        registry.secrets.pop(peer_id, None)
        if registry.node is None:
            return []
        # Rooms held by other nodes hear it from the registry: the release is news of its departure.
        registry.forget_elsewhere(peer_id)
        return [(cast(ConnT, conn), Release(peer_id))]

    def tick(self, now: float) -> Outgoing[ConnT]:
        """Expire what is due at ``now`` (seconds, any monotonic clock); call it about once a second.

        Returns ``room-declined``/``room-cancelled`` for invitations older than ``invitation_ttl``,
        ``room-ended`` for a new room nobody joined, and ``room-left`` for members whose connection
        has been gone longer than ``room_grace``. Costs one attribute test while there is no room.
        """
        self._now = now
        out: Outgoing[ConnT] = []
        held = self.registry.held
        if held:
            for peer_id, deadline in list(held.items()):
                if deadline is None:
                    held[peer_id] = now + (self.id_grace or 0)
                elif deadline <= now:
                    del held[peer_id]
                    self.logger.info("%r is free again: its phone did not come back within id_grace", peer_id)
                    out.extend(self._free(peer_id, None))
        rooms = self.rooms
        if rooms.active:
            out.extend(self.dispatch.deliver(rooms.tick(now)[0]))
        return out

    # -- messages -----------------------------------------------------------

    def receive(self, conn: ConnT, frame: str | bytes) -> Outgoing[ConnT]:
        """Handle one frame from ``conn``; return what to send to whom, in order.

        Refused messages produce an ``error`` reply to ``conn`` only; the
        connection and its registration stay as they were. The only non-text
        item is a :class:`Close` for a connection whose ID was reclaimed.
        """
        ids = self._ids
        if conn not in ids:
            raise ValueError(f"unknown connection {conn!r}: call connect() first")
        try:
            return self._receive(conn, frame)
        except SignalingError as exc:
            self.logger.debug("refused a message from %r: %s", ids[conn], exc)
            return [(conn, error_reply(exc))]

    def refuse_for_rate(self, conn: ConnT, now: float) -> Outgoing[ConnT]:
        """``conn`` sent a message above ``max_rate`` at time ``now`` (seconds, any monotonic clock).

        Returns a ``rate-limited`` error for it, or a :class:`Close` (1008) once more than
        ``max_refused`` of its messages were refused within
        :data:`~nbcall.server.limits.RATE_ABUSE_WINDOW` seconds.
        """
        ids = self.registry.ids
        if conn not in ids:
            raise ValueError(f"unknown connection {conn!r}: call connect() first")
        return self.rate.refuse(conn, ids[conn], now)

    def drop_slow_reader(self, conn: ConnT, lost: str | bytes, sender: ConnT | None) -> Outgoing[ConnT]:
        """``conn`` stopped reading, so the server could not queue ``lost`` (a frame from ``sender``) for it.

        Returns, in order: the :data:`TOO_SLOW` close for ``conn``; for a relayed message, an
        ``unavailable`` notice telling ``sender`` which message was not delivered; then ``conn``'s
        departure (as :meth:`disconnect`). ``sender`` is ``None`` when nobody sent ``lost``
        (server news such as ``left``).
        """
        ids = self.registry.ids
        peer_id = ids.get(conn)
        out: Outgoing[ConnT] = [(conn, TOO_SLOW)]
        if sender is not None and sender != conn and peer_id is not None and sender in ids:
            notice = slow_reader_notice(peer_id, lost)
            if notice is not None:
                out.append((sender, notice))
        out.extend(self.disconnect(conn))
        return out

    def _receive(self, conn: ConnT, frame: str | bytes) -> Outgoing[ConnT]:
        if not isinstance(frame, str):
            raise BinaryFrame(
                f"got a binary frame of {len(frame)} bytes; send JSON text frames, "
                'e.g. {"type":"register","from":"A"}'
            )
        limit = self.max_message_size
        # Characters never outnumber UTF-8 bytes, so encode only when the count is ambiguous.
        if limit is not None and len(frame) * 4 > limit:
            size = len(frame) if frame.isascii() else len(frame.encode("utf-8", "surrogatepass"))
            if size > limit:
                raise MessageTooBig(f"message is {size} bytes, the limit is {limit} bytes")
        msg = parse_frame(frame)
        msg_type = msg.get("type")
        if not isinstance(msg_type, str):
            if "type" not in msg:
                raise BadMessage(f"missing field 'type'; expected a string, one of: {KNOWN_LIST}")
            raise BadMessage(
                f"field 'type' must be a string, got {json_type(msg_type)} {shorten(msg_type)}; "
                f"one of: {KNOWN_LIST}"
            )
        if msg_type == "register":
            return self._register(conn, msg)
        fields = RELAYED_TYPES.get(msg_type)
        if fields is None:
            if msg_type in ROOM_TYPES:
                return self.dispatch.message(conn, msg, msg_type)
            raise UnknownType(
                f"unknown message type {shorten(msg_type)}; known types: {KNOWN_LIST}",
                in_reply_to=msg_type[:MAX_ID_LENGTH],
            )
        return self._relay(conn, frame, msg, msg_type, fields)

    def _register(
        self,
        conn: ConnT,
        msg: dict[str, Any],
        claimed: bool = False,
        room_node: str = "",
        proven: bool = False,
    ) -> Outgoing[ConnT]:
        """``conn`` registers; ``claimed``: the shared registry gave it the ID (``proven``: its secret matched)."""
        if "from" not in msg:
            raise BadMessage("missing field 'from' (your peer ID, a string)", in_reply_to="register")
        try:
            peer_id = validate_id(msg["from"])
        except SignalingError as exc:
            exc.in_reply_to = "register"
            raise
        secret = secret_field(msg)
        presence = presence_field(msg)
        room, credential = room_claim(msg)
        record = sfu_record_field(msg) if room is not None else None
        wants_rooms = room is not None or flag_field(
            msg, "rooms", "register", "send true if this phone understands rooms"
        )
        registry = self.registry
        current = registry.ids[conn]
        if current is not None and current != peer_id:
            raise AlreadyRegistered(
                f"this connection is already registered as {current!r}, cannot also be {peer_id!r}; "
                "open another connection for another ID",
                in_reply_to="register",
            )
        holder = registry.conns.get(peer_id)
        replaced = holder is not None and holder != conn
        if replaced and not registry.proves(peer_id, secret):
            raise DuplicateID(
                f"ID {peer_id!r} is already registered by another connection; pick another ID, "
                "close the other phone first, or reclaim it with the secret it registered with",
                in_reply_to="register",
            )
        proven = proven or replaced
        held = registry.held
        if holder is None and held and peer_id in held:
            # Its connection was lost: the ID is kept for the phone with its secret (id_grace).
            if not registry.proves(peer_id, secret):
                raise DuplicateID(
                    f"ID {peer_id!r} is held for the phone whose connection was lost, for {self._held_for(peer_id)} "
                    "more; reclaim it with the secret it registered with, or pick another ID",
                    in_reply_to="register",
                )
            del held[peer_id]
            proven = True
        if registry.node is not None and holder is None and not claimed and not proven:
            # Cluster: an ID new to this node must be claimed in the shared registry first. A room named
            # without a credential proving membership is not claimed there: it is refused here.
            proves = room is not None and self.rooms.proves(room, peer_id, credential) is not None
            proved_room = room if proves else None
            return self.routing.claim(conn, peer_id, msg, secret, proved_room)
        room_notices: Notices = []
        rooms = self.rooms
        if holder is None and rooms.active and rooms.is_away(peer_id):
            # A room member whose connection was lost comes back with its secret or its room credential.
            if proven:
                rooms.came_back(peer_id)
            elif (
                room is None
                or room != rooms.room_of(peer_id)
                or rooms.proves(room, peer_id, credential) is None
            ):
                room_notices = rooms.remove(
                    peer_id,
                    "its ID was registered again by a phone that did not prove it is the same (with its secret "
                    "or its room credential)",
                )
        features = {"sfu": True} if self.dispatch.sfu else {}  # announced beyond the seed's fields
        if presence:
            remote = registry.remote
            online = {*registry.conns, *remote} if remote else registry.conns
            others = sorted(other for other in online if other != peer_id)
            reply = encode_message("registered", id=peer_id, peers=others, **features)
        else:
            reply = encode_message("registered", id=peer_id, **features)
        out: Outgoing[ConnT] = [(conn, reply)]
        if presence:
            registry.watchers[conn] = None
        else:
            registry.watchers.pop(conn, None)
        if secret is not None:
            registry.secrets[peer_id] = secret
        if replaced:
            assert holder is not None
            # The ID never goes offline, so the others see no left/joined churn.
            registry.detach(holder)
            registry.ids[conn] = peer_id
            registry.conns[peer_id] = conn
            self.logger.info("%r reconnected; its older connection is closed", peer_id)
            out.append((holder, REPLACED))
        elif current is None:
            registry.ids[conn] = peer_id
            registry.conns[peer_id] = conn
            self.logger.info("%r registered (%d online)", peer_id, len(registry.conns))
            # An ID that moved here from another node (its phone failed over) was online all along.
            if not (registry.remote and registry.remote.pop(peer_id, None) is not None):
                joined = encode_message("joined", id=peer_id)
                out.extend((other, joined) for other in registry.watchers if other != conn)
        if wants_rooms:
            registry.room_clients[conn] = None
        elif registry.room_clients:
            registry.room_clients.pop(conn, None)
        if room_notices:
            out.extend(self.dispatch.deliver(room_notices))
        if room is not None:
            out.extend(self.dispatch.rejoin(conn, peer_id, room, credential, proven, room_node, record))
        return out

    def _held_for(self, peer_id: str) -> str:
        """How long ``peer_id`` stays held, for people: ``12 s``."""
        deadline = self.registry.held.get(peer_id)
        left = self.id_grace or 0 if deadline is None else max(0.0, deadline - self._now)
        return f"{math.ceil(left)} s"

    def _relay(
        self,
        conn: ConnT,
        frame: str,
        msg: dict[str, Any],
        msg_type: str,
        fields: dict[str, tuple[bool, str]],
    ) -> Outgoing[ConnT]:
        sender = self._ids[conn]
        if sender is None:
            raise NotRegistered(f"this connection has no ID yet; {REGISTER_HINT}", in_reply_to=msg_type)

        raw_to: object = msg.get("to")
        target: ConnT | None
        if isinstance(raw_to, str) and (target := self._conns.get(raw_to)) is not None:
            to = raw_to  # a registered ID is valid and normalized already
        elif "to" not in msg:
            raise BadMessage(
                f"missing field 'to' (the peer ID to send {msg_type!r} to)", in_reply_to=msg_type
            )
        else:
            try:
                to = validate_id(raw_to, field="to")
            except SignalingError as exc:
                exc.in_reply_to = msg_type
                raise
            target = self._conns.get(to)

        raw_from = msg.get("from", sender)
        if raw_from != sender:
            check_from(raw_from, sender, msg_type)

        for name, (required, meaning) in fields.items():
            value = msg.get(name)
            if isinstance(value, str) or (value is None and not required):
                continue  # optional fields may be absent or null
            if name not in msg:
                raise BadMessage(
                    f"missing field {name!r} in a {msg_type!r} message; expected a string, {meaning}",
                    in_reply_to=msg_type,
                )
            raise BadMessage(
                f"field {name!r} of a {msg_type!r} message must be a string ({meaning}), "
                f"got {json_type(value)} {shorten(value)}",
                in_reply_to=msg_type,
            )

        if to == sender:
            raise BadMessage(
                f"'to' is your own ID {sender!r}; send {msg_type!r} to another peer", in_reply_to=msg_type
            )
        if "room" in msg:  # a relay between room members: both must be in it
            elsewhere = self.registry.member_elsewhere
            member = elsewhere.get(sender) if elsewhere else None
            if member is not None and member[0] == msg["room"]:
                # The room's node checks who is in it and relays on.
                return [
                    (conn, Forward(member[1], "", sender, forwarded_text(frame, msg, msg_type, sender, to)))
                ]
            self.dispatch.check_relay(sender, to, msg["room"], msg_type)
        if target is None:
            registry = self.registry
            node = registry.remote.get(to)
            if node is None:
                return [(conn, registry.unavailable(sender, to, msg_type, conn in registry.watchers))]
            # Cluster: `to` is online on another node; the server publishes it there.
            if msg_type != "ice":
                self.logger.info("%r -> %r (on node %s): %s", sender, to, node, msg_type)
            return [(conn, Forward(node, to, sender, forwarded_text(frame, msg, msg_type, sender, to)))]

        if msg_type != "ice":
            self.logger.info("%r -> %r: %s", sender, to, msg_type)
        if "from" in msg and raw_from == sender and raw_to == to:
            return [(target, frame)]  # already what the peer must see: forward the original text
        return [(target, forwarded_text(frame, msg, msg_type, sender, to))]

    # -- cluster (nbcall.server.cluster does the I/O, nbcall.server.routing decides) -------------

    def join_cluster(self, node: str) -> None:
        """Become node ``node`` of a cluster: new IDs are claimed (:class:`Claim`), departures released."""
        if self.registry.ids:
            raise RuntimeError("join_cluster() must come before the first connection")
        self.routing.join(node)

    def claimed(
        self, conn: ConnT, outcome: str, owner: str = "", room_node: str = ""
    ) -> Outgoing[ConnT] | None:
        """The registry's answer to ``conn``'s :class:`Claim`: one of :data:`CLAIM_OUTCOMES`.

        ``ok``: the ID was free (or held by a node that is gone); ``moved``: the phone's own older
        connection on node ``owner`` held it and the secret matched; ``taken``: another phone on node
        ``owner`` holds it; ``down``: the registry could not be reached. ``room_node``: for a claim with a
        room, the node holding that room (this one if none did). Returns what to send, or
        ``None`` when ``conn`` went away meanwhile (the server then releases an ID it claimed).
        """
        claim = self.routing.end_claim(conn)
        if claim is None:
            return None
        peer_id, msg = claim
        if outcome not in ("ok", "moved"):
            return [(conn, error_reply(self.routing.refusal(peer_id, outcome, owner)))]
        if outcome == "moved":
            self.logger.info("%r moved here from node %s", peer_id, owner)
        try:
            return self._register(conn, msg, claimed=True, room_node=room_node, proven=outcome == "moved")
        except SignalingError as exc:  # rooms' rules refused what the registry allowed
            return [(conn, error_reply(exc, "register")), (conn, Release(peer_id))]

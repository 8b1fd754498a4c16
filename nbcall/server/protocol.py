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
time and never echoed or logged.

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
"""

from __future__ import annotations

import hmac
import json
import logging
import reprlib
import unicodedata
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import orjson

from ..exceptions import (
    AlreadyRegistered,
    BadID,
    BadJSON,
    BadMessage,
    BinaryFrame,
    DuplicateID,
    InAnotherRoom,
    InviteSelf,
    MessageTooBig,
    NoRooms,
    NotAMember,
    NotRegistered,
    RateLimited,
    RegistryUnavailable,
    SignalingError,
    Unavailable,
    UnknownType,
    WrongFrom,
)
from .limits import DEFAULT_LIMITS, RATE_ABUSE_WINDOW, TokenBucket
from .rooms import Notices, RoomRegistry

__all__ = [
    "CLAIM_OUTCOMES",
    "KNOWN_TYPES",
    "MAX_ID_LENGTH",
    "MAX_REPORTED_MEMBERS",
    "MAX_SECRET_LENGTH",
    "RELAYED_TYPES",
    "REPLACED",
    "ROOM_TYPES",
    "TOO_SLOW",
    "Claim",
    "Close",
    "Forward",
    "Release",
    "RoomNode",
    "SignalingProtocol",
    "encode_message",
    "validate_id",
]

MAX_ID_LENGTH = 64
MAX_SECRET_LENGTH = 256
#: Most IDs a ``register`` with ``room`` may name in ``members``.
MAX_REPORTED_MEMBERS = 64

#: Relayed message types -> their own fields: name -> (required, what it holds).
#: Every relayed message also needs ``to``; ``from`` is optional and checked.
RELAYED_TYPES: dict[str, dict[str, tuple[bool, str]]] = {
    "call": {"sdp": (True, "the JSON-encoded offer")},
    "answer": {"sdp": (True, "the JSON-encoded answer")},
    "ice": {"candidate": (True, "the JSON-encoded ICE candidate")},
    "hangup": {"reason": (False, "why the call ended")},
    "decline": {"reason": (False, "why the call was declined")},
    "busy": {"reason": (False, "why the peer is busy")},
}

#: Room messages a client may send (docs/rooms.md), for phones that registered with ``"rooms": true``.
ROOM_TYPES: tuple[str, ...] = ("room-invite", "room-accept", "room-decline", "room-leave", "room-link")

#: Every type a client may send.
KNOWN_TYPES: tuple[str, ...] = ("register", *RELAYED_TYPES, *ROOM_TYPES)

_KNOWN_LIST = ", ".join(sorted(KNOWN_TYPES))
_MAX_LISTED_PEERS = 10
_REGISTER_HINT = 'send {"type":"register","from":YOUR_ID} first'

ConnT = TypeVar("ConnT", bound=Hashable)


@dataclass(frozen=True)
class Close:
    """An instruction in the output: close this connection with ``code`` and ``reason``."""

    code: int
    reason: str


@dataclass(frozen=True)
class Forward:
    """An instruction in the output (cluster mode): relay ``text`` from ``sender`` to ``to``, a phone on ``node``.

    The connection in its pair is the sender's (``None`` for a notice no phone sent); the server
    publishes it to that node's channel (:mod:`nbcall.server.cluster`) or, when it cannot, gives it back
    to :meth:`SignalingProtocol.undeliverable`.
    """

    node: str
    to: str
    sender: str
    text: str


@dataclass(frozen=True)
class Claim:
    """An instruction in the output (cluster mode): claim ``peer_id`` in the shared registry for this connection.

    The server answers with :meth:`SignalingProtocol.claimed`; meanwhile it holds the connection's
    next messages, so they are handled in order after its registration.
    """

    peer_id: str
    secret: bytes | None
    #: The room the phone says it is a member of (``register`` with ``room``): the registry also answers
    #: which live node holds that room, making this node its holder when none does.
    room: str | None = None


@dataclass(frozen=True)
class RoomNode:
    """An instruction in the output (cluster mode): this node holds ``room`` (``made``) or no longer does."""

    room: str
    made: bool


@dataclass(frozen=True)
class Release:
    """An instruction in the output (cluster mode): ``peer_id`` is no longer held here; free it in the registry."""

    peer_id: str


#: What :meth:`SignalingProtocol.receive` returns: text frames to send, and rarely a :class:`Close`
#: (or, in cluster mode, a :class:`Forward`, :class:`Claim`, :class:`Release` or :class:`RoomNode`).
Outgoing = list[tuple[ConnT, str | Close | Forward | Claim | Release | RoomNode]]

#: How a claim in the shared registry ended (see :meth:`SignalingProtocol.claimed`).
CLAIM_OUTCOMES = ("ok", "moved", "taken", "down")

REPLACED = Close(1008, "replaced by a newer connection of the same phone")
TOO_SLOW = Close(1008, "too slow: stopped reading its messages")
#: Cluster: the phone's newer connection registered its ID on another node.
REPLACED_ELSEWHERE = Close(1008, "replaced by a newer connection of the same phone on another server node")
#: Cluster: another node holds the ID after this one was cut off from the registry longer than its TTL.
TAKEN_ELSEWHERE = Close(
    1008, "this ID was registered on another server node while this one was cut off from the registry"
)


def encode_message(msg_type: str, /, **fields: Any) -> str:
    """Serialize one signaling message as compact JSON text, ``type`` first."""
    # ASCII output: a lone surrogate echoed from a client can't make the frame unsendable.
    return json.dumps({"type": msg_type, **fields}, separators=(",", ":"), allow_nan=False)


def validate_id(value: object, *, field: str = "from") -> str:
    """Return the NFC-normalized peer ID, or raise :class:`BadID` / :class:`BadMessage`.

    Rules: a string of 1..64 printable characters without leading or trailing
    whitespace, compared after NFC normalization (so "é" typed either way is one ID).
    """
    if not isinstance(value, str):
        raise BadMessage(
            f"field {field!r} must be a string (a peer ID), got {_json_type(value)} {_shorten(value)}"
        )
    peer_id = unicodedata.normalize("NFC", value)
    if not peer_id:
        raise BadID(f"{field!r} is empty; a peer ID needs 1 to {MAX_ID_LENGTH} characters")
    if len(peer_id) > MAX_ID_LENGTH:
        raise BadID(
            f"{field!r} is {len(peer_id)} characters long, the limit is {MAX_ID_LENGTH}: {_shorten(peer_id)}"
        )
    if not peer_id.isprintable():
        bad = next(c for c in peer_id if not c.isprintable())
        raise BadID(
            f"{field!r} contains the non-printable character U+{ord(bad):04X}: {_shorten(peer_id)}; "
            "use letters, digits, punctuation or inner spaces"
        )
    if peer_id != peer_id.strip():
        raise BadID(f"{field!r} starts or ends with whitespace: {_shorten(peer_id)}; strip it")
    return peer_id


class SignalingProtocol(Generic[ConnT]):
    """Registry of peers by ID and router of their signaling messages.

    ``conn`` is any hashable object standing for one connection (the server
    uses the websocket itself). Limits are keyword-only; ``None`` disables one:

    * ``max_message_size`` (default 64 KiB): frames longer than this many
      UTF-8 bytes are answered with a ``too-big`` error instead of being read.
    * ``max_rate``, ``max_burst`` (50/s, 200): the rate the server enforces,
      named in the ``rate-limited`` reply (the server counts the messages).
    * ``max_refused`` (100): refusals for rate within :data:`RATE_ABUSE_WINDOW`
      seconds after which the connection is closed (1008).
    * ``max_room_size`` (6), ``invitation_ttl`` (60 s), ``room_grace`` (30 s): the
      rooms' limits (see :class:`nbcall.server.rooms.RoomRegistry`).

    Defaults are :data:`nbcall.server.limits.DEFAULT_LIMITS`'s.

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
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
    ) -> None:
        if max_message_size is not None and max_message_size < 1:
            raise ValueError(f"max_message_size must be positive or None, got {max_message_size!r}")
        if max_refused is not None and max_refused < 1:
            raise ValueError(f"max_refused must be positive or None, got {max_refused!r}")
        self.max_message_size = max_message_size
        self.max_rate = max_rate
        self.max_burst = max_burst
        self.max_refused = max_refused
        self.logger = logger if logger is not None else logging.getLogger("nbcall.server.protocol")
        self._id_of: dict[ConnT, str | None] = {}  # every connected conn -> its ID once registered
        self._conn_of: dict[str, ConnT] = {}  # registered ID -> conn
        self._secret_of: dict[str, bytes] = {}  # registered ID -> the secret it registered with, if any
        # Registered connections that asked for presence news (a dict keeps their order).
        self._watchers: dict[ConnT, None] = {}
        # Refusals for rate, per connection refused at least once (rare: no bucket for the others).
        self._refusals: dict[ConnT, TokenBucket] = {}
        #: The rooms and their rules, by peer ID.
        self.rooms = RoomRegistry(
            max_room_size=max_room_size, invitation_ttl=invitation_ttl, room_grace=room_grace
        )
        # Registered connections that said they understand rooms: the only ones room messages reach.
        self._room_clients: dict[ConnT, None] = {}
        #: In a cluster (:meth:`join_cluster`), this server's node ID; ``None``: every peer is local.
        self.node: str | None = None
        self._remote: dict[str, str] = {}  # cluster: ID online on another node -> that node
        self._claims: dict[ConnT, tuple[str, dict[str, Any]]] = {}  # cluster: registers awaiting their claim
        self._claimed: dict[str, ConnT] = {}  # cluster: ID being claimed -> the connection claiming it
        # Cluster: this node's phones in rooms held by other nodes (docs/rooms.md, "Across the nodes"),
        # learned from the notices those nodes send them: phone -> (room, node), phone -> {room: node}.
        self._member_elsewhere: dict[str, tuple[str, str]] = {}
        self._invited_elsewhere: dict[str, dict[str, str]] = {}

    # -- registry -----------------------------------------------------------

    @property
    def peers(self) -> list[str]:
        """Registered IDs, sorted: this server's and, in a cluster, the other nodes'."""
        if self._remote:
            return sorted({*self._conn_of, *self._remote})
        return sorted(self._conn_of)

    @property
    def local_peers(self) -> list[str]:
        """IDs registered on this server, sorted."""
        return sorted(self._conn_of)

    def id_of(self, conn: ConnT) -> str | None:
        """The ID ``conn`` registered, or ``None``."""
        return self._id_of.get(conn)

    @property
    def connections(self) -> int:
        """How many connections are tracked, registered or not."""
        return len(self._id_of)

    def wants_presence(self, conn: ConnT) -> bool:
        """Whether ``conn`` registered with ``"presence": true``."""
        return conn in self._watchers

    def wants_rooms(self, conn: ConnT) -> bool:
        """Whether ``conn`` registered with ``"rooms": true``."""
        return conn in self._room_clients

    def connect(self, conn: ConnT) -> None:
        """Start tracking a new connection (idempotent)."""
        self._id_of.setdefault(conn, None)

    def disconnect(self, conn: ConnT) -> Outgoing[ConnT]:
        """Forget ``conn``, free its ID and tell the others it left. Always safe, idempotent.

        A room member's membership outlives its connection for ``room_grace`` seconds (counted
        from the next :meth:`tick`): its ID stays reserved for whoever presents its secret.
        Invitations to it are declined ("it went offline before answering").
        """
        if self._refusals:
            self._refusals.pop(conn, None)
        if self._claims and (claim := self._claims.pop(conn, None)) is not None:
            self._claimed.pop(claim[0], None)
        peer_id = self._id_of.pop(conn, None)
        if peer_id is None:
            return []
        del self._conn_of[peer_id]
        self._watchers.pop(conn, None)
        self.logger.info("%r left", peer_id)
        text = encode_message("left", id=peer_id)
        out: Outgoing[ConnT] = [(other, text) for other in self._watchers]
        rooms = self.rooms
        if rooms.active:
            self._room_clients.pop(conn, None)
            out.extend(self._deliver(rooms.went_away(peer_id)))
            if rooms.is_away(peer_id):
                return out  # its secret stays: reclaiming the ID keeps the membership
        elif self._room_clients:
            self._room_clients.pop(conn, None)
        self._secret_of.pop(peer_id, None)
        if self.node is not None:
            # Rooms held by other nodes hear it from the registry: the release is news of its departure.
            self._forget_elsewhere(peer_id)
            out.append((conn, Release(peer_id)))
        return out

    def tick(self, now: float) -> Outgoing[ConnT]:
        """Expire what is due at ``now`` (seconds, any monotonic clock); call it about once a second.

        Returns ``room-declined``/``room-cancelled`` for invitations older than ``invitation_ttl``,
        ``room-ended`` for a new room nobody joined, and ``room-left`` for members whose connection
        has been gone longer than ``room_grace``. Costs one attribute test while there is no room.
        """
        rooms = self.rooms
        if not rooms.active:
            return []
        notices, removed = rooms.tick(now)
        out = self._deliver(notices)
        for peer_id in removed:
            if peer_id not in self._conn_of:
                self._secret_of.pop(peer_id, None)
                if self.node is not None:  # its ID was kept in the registry during its grace
                    out.append((cast(ConnT, None), Release(peer_id)))
        return out

    # -- messages -----------------------------------------------------------

    def receive(self, conn: ConnT, frame: str | bytes) -> Outgoing[ConnT]:
        """Handle one frame from ``conn``; return what to send to whom, in order.

        Refused messages produce an ``error`` reply to ``conn`` only; the
        connection and its registration stay as they were. The only non-text
        item is a :class:`Close` for a connection whose ID was reclaimed.
        """
        if conn not in self._id_of:
            raise ValueError(f"unknown connection {conn!r}: call connect() first")
        try:
            return self._receive(conn, frame)
        except SignalingError as exc:
            self.logger.debug("refused a message from %r: %s", self._id_of[conn], exc)
            reply = encode_message("error", code=exc.code, message=exc.message, in_reply_to=exc.in_reply_to)
            return [(conn, reply)]

    def refuse_for_rate(self, conn: ConnT, now: float) -> Outgoing[ConnT]:
        """``conn`` sent a message above ``max_rate`` at time ``now`` (seconds, any monotonic clock).

        Returns a ``rate-limited`` error for it, or a :class:`Close` (1008) once more than
        ``max_refused`` of its messages were refused within :data:`RATE_ABUSE_WINDOW` seconds.
        """
        if conn not in self._id_of:
            raise ValueError(f"unknown connection {conn!r}: call connect() first")
        peer_id = self._id_of[conn]
        if self.max_refused is not None:
            refusals = self._refusals.get(conn)
            if refusals is None:
                refusals = self._refusals[conn] = TokenBucket(
                    self.max_refused / RATE_ABUSE_WINDOW, self.max_refused, now
                )
            if not refusals.take(now):
                self.logger.warning(
                    "closing the connection of %r: more than %d messages refused for rate within %g s",
                    peer_id,
                    self.max_refused,
                    RATE_ABUSE_WINDOW,
                )
                return [
                    (
                        conn,
                        Close(
                            1008, f"rate limit exceeded persistently (more than {self.max_refused} refused)"
                        ),
                    )
                ]
        self.logger.debug("rate-limited a message from %r", peer_id)
        rate = "?" if self.max_rate is None else f"{self.max_rate:g}"
        exc = RateLimited(
            f"more than {rate} messages per second (bursts of {self.max_burst}) from this "
            "connection; this message was dropped: slow down"
            + (
                ""
                if self.max_refused is None
                else f" (more than {self.max_refused} dropped within {RATE_ABUSE_WINDOW:g} s "
                "close the connection)"
            )
        )
        return [(conn, encode_message("error", code=exc.code, message=exc.message, in_reply_to=None))]

    def drop_slow_reader(self, conn: ConnT, lost: str | bytes, sender: ConnT | None) -> Outgoing[ConnT]:
        """``conn`` stopped reading, so the server could not queue ``lost`` (a frame from ``sender``) for it.

        Returns, in order: the :data:`TOO_SLOW` close for ``conn``; for a relayed message, an
        ``unavailable`` notice telling ``sender`` which message was not delivered; then ``conn``'s
        departure (as :meth:`disconnect`). ``sender`` is ``None`` when nobody sent ``lost``
        (server news such as ``left``).
        """
        peer_id = self._id_of.get(conn)
        out: Outgoing[ConnT] = [(conn, TOO_SLOW)]
        if sender is not None and sender != conn and peer_id is not None and sender in self._id_of:
            # Rare path: parsing costs nothing here, and tells the sender which message was lost.
            try:
                msg_type = _parse(lost if isinstance(lost, str) else lost.decode()).get("type")
            except (SignalingError, UnicodeDecodeError):  # never: the server only queues valid JSON
                msg_type = None
            if msg_type in RELAYED_TYPES:
                notice = encode_message(
                    "unavailable",
                    peer=peer_id,
                    in_reply_to=msg_type,
                    message=f"{peer_id!r} was disconnected because it stopped reading its "
                    f"messages; this {msg_type!r} was not delivered",
                )
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
        msg = _parse(frame)
        msg_type = msg.get("type")
        if not isinstance(msg_type, str):
            if "type" not in msg:
                raise BadMessage(f"missing field 'type'; expected a string, one of: {_KNOWN_LIST}")
            raise BadMessage(
                f"field 'type' must be a string, got {_json_type(msg_type)} {_shorten(msg_type)}; "
                f"one of: {_KNOWN_LIST}"
            )
        if msg_type == "register":
            return self._register(conn, msg)
        fields = RELAYED_TYPES.get(msg_type)
        if fields is None:
            if msg_type in ROOM_TYPES:
                return self._room_message(conn, msg, msg_type)
            raise UnknownType(
                f"unknown message type {_shorten(msg_type)}; known types: {_KNOWN_LIST}",
                in_reply_to=msg_type[:MAX_ID_LENGTH],
            )
        return self._relay(conn, frame, msg, msg_type, fields)

    def _register(
        self, conn: ConnT, msg: dict[str, Any], claimed: bool = False, room_node: str = ""
    ) -> Outgoing[ConnT]:
        if "from" not in msg:
            raise BadMessage("missing field 'from' (your peer ID, a string)", in_reply_to="register")
        try:
            peer_id = validate_id(msg["from"])
        except SignalingError as exc:
            exc.in_reply_to = "register"
            raise
        secret = _secret(msg)
        presence = _presence(msg)
        room, members = _room_claim(msg)
        wants_rooms = room is not None or _flag(
            msg, "rooms", "register", "send true if this phone understands rooms"
        )
        current = self._id_of[conn]
        if current is not None and current != peer_id:
            raise AlreadyRegistered(
                f"this connection is already registered as {current!r}, cannot also be {peer_id!r}; "
                "open another connection for another ID",
                in_reply_to="register",
            )
        holder = self._conn_of.get(peer_id)
        replaced = holder is not None and holder != conn
        if replaced:
            known = self._secret_of.get(peer_id)
            # Always compare, even without a known secret, so timing tells nothing about it.
            matches = hmac.compare_digest(known or b"\0", secret or b"")
            if not (known is not None and secret is not None and matches):
                raise DuplicateID(
                    f"ID {peer_id!r} is already registered by another connection; pick another ID, "
                    "close the other phone first, or reclaim it with the secret it registered with",
                    in_reply_to="register",
                )
        if self.node is not None and holder is None and not claimed:
            # Cluster: an ID new to this node must be claimed in the shared registry first.
            if peer_id in self._claimed:
                raise DuplicateID(
                    f"ID {peer_id!r} is being registered by another connection right now; pick another ID",
                    in_reply_to="register",
                )
            if not (self.rooms.active and self.rooms.is_away(peer_id)):  # else it is still claimed here
                self._claims[conn] = (peer_id, msg)
                self._claimed[peer_id] = conn
                return [(conn, Claim(peer_id, secret, room))]
        room_notices: Notices = []
        if holder is None and self.rooms.active and self.rooms.is_away(peer_id):
            # A room member whose connection was lost: its ID is kept for it during its grace.
            known = self._secret_of.get(peer_id)
            matches = hmac.compare_digest(known or b"\0", secret or b"")
            if known is None:
                room_notices = self.rooms.remove(
                    peer_id, "it registered again without a secret, so nothing shows it is the same phone"
                )
            elif secret is None or not matches:
                grace = self.rooms.room_grace
                raise DuplicateID(
                    f"ID {peer_id!r} is kept for a room member whose connection was lost"
                    + ("" if grace is None else f" (for up to {grace:g} s)")
                    + "; reclaim it with the secret it registered with, or pick another ID",
                    in_reply_to="register",
                )
            else:
                self.rooms.came_back(peer_id)
        if presence:
            online = {*self._conn_of, *self._remote} if self._remote else self._conn_of
            others = sorted(other for other in online if other != peer_id)
            reply = encode_message("registered", id=peer_id, peers=others)
        else:
            reply = encode_message("registered", id=peer_id)
        out: Outgoing[ConnT] = [(conn, reply)]
        if presence:
            self._watchers[conn] = None
        else:
            self._watchers.pop(conn, None)
        if secret is not None:
            self._secret_of[peer_id] = secret
        if replaced:
            assert holder is not None
            # The ID never goes offline, so the others see no left/joined churn.
            self._id_of[holder] = None
            self._watchers.pop(holder, None)
            self._room_clients.pop(holder, None)
            self._id_of[conn] = peer_id
            self._conn_of[peer_id] = conn
            self.logger.info("%r reconnected; its older connection is closed", peer_id)
            out.append((holder, REPLACED))
        elif current is None:
            self._id_of[conn] = peer_id
            self._conn_of[peer_id] = conn
            self.logger.info("%r registered (%d online)", peer_id, len(self._conn_of))
            # An ID that moved here from another node (its phone failed over) was online all along.
            if not (self._remote and self._remote.pop(peer_id, None) is not None):
                joined = encode_message("joined", id=peer_id)
                out.extend((other, joined) for other in self._watchers if other != conn)
        if wants_rooms:
            self._room_clients[conn] = None
        elif self._room_clients:
            self._room_clients.pop(conn, None)
        if room_notices:
            out.extend(self._deliver(room_notices))
        if room is not None and (node := self._room_held_by(peer_id, room, room_node)) is not None:
            # Its room is held by another node: that node decides (and answers through this one).
            rejoin = encode_message("register", room=room, members=members, **{"from": peer_id})
            out.append((conn, Forward(node, "", peer_id, rejoin)))
        elif room is not None:
            # The registration stands either way; a refused claim is an error after `registered`.
            try:
                out.extend(self._deliver(self.rooms.rejoin(peer_id, room, members)))
            except SignalingError as exc:
                self.logger.debug("refused %r's claim to a room: %s", peer_id, exc)
                out.append(
                    (
                        conn,
                        encode_message("error", code=exc.code, message=exc.message, in_reply_to="register"),
                    )
                )
            else:
                self.logger.info(
                    "%r is back in room %r (%d members)", peer_id, room, len(self.rooms.members(room))
                )
        return out

    def _relay(
        self,
        conn: ConnT,
        frame: str,
        msg: dict[str, Any],
        msg_type: str,
        fields: dict[str, tuple[bool, str]],
    ) -> Outgoing[ConnT]:
        sender = self._id_of[conn]
        if sender is None:
            raise NotRegistered(f"this connection has no ID yet; {_REGISTER_HINT}", in_reply_to=msg_type)

        raw_to: object = msg.get("to")
        target: ConnT | None
        if isinstance(raw_to, str) and (target := self._conn_of.get(raw_to)) is not None:
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
            target = self._conn_of.get(to)

        raw_from = msg.get("from", sender)
        if raw_from != sender:
            _check_from(raw_from, sender, msg_type)

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
                f"got {_json_type(value)} {_shorten(value)}",
                in_reply_to=msg_type,
            )

        if to == sender:
            raise BadMessage(
                f"'to' is your own ID {sender!r}; send {msg_type!r} to another peer", in_reply_to=msg_type
            )
        if "room" in msg:  # a relay between room members: both must be in it
            member = self._member_elsewhere.get(sender) if self._member_elsewhere else None
            if member is not None and member[0] == msg["room"]:
                # The room's node checks who is in it and relays on.
                return [(conn, Forward(member[1], "", sender, _forwarded(frame, msg, msg_type, sender, to)))]
            self._check_room_relay(sender, to, msg["room"], msg_type)
        if target is None:
            node = self._remote.get(to)
            if node is None:
                return [(conn, self._unavailable(sender, to, msg_type))]
            # Cluster: `to` is online on another node; the server publishes it there.
            if msg_type != "ice":
                self.logger.info("%r -> %r (on node %s): %s", sender, to, node, msg_type)
            return [(conn, Forward(node, to, sender, _forwarded(frame, msg, msg_type, sender, to)))]

        if msg_type != "ice":
            self.logger.info("%r -> %r: %s", sender, to, msg_type)
        if "from" in msg and raw_from == sender and raw_to == to:
            return [(target, frame)]  # already what the peer must see: forward the original text
        return [(target, _forwarded(frame, msg, msg_type, sender, to))]

    # -- cluster (nbcall.server.cluster does the I/O) ------------------------------------

    def join_cluster(self, node: str) -> None:
        """Become node ``node`` of a cluster: new IDs are claimed (:class:`Claim`), departures released."""
        if self._id_of:
            raise RuntimeError("join_cluster() must come before the first connection")
        self.node = node
        self.rooms.changes = []  # the rooms this node holds go into the registry (RoomNode)

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
        claim = self._claims.pop(conn, None)
        if claim is None:
            return None
        peer_id, msg = claim
        self._claimed.pop(peer_id, None)
        if outcome in ("ok", "moved"):
            if outcome == "moved":
                self.logger.info("%r moved here from node %s", peer_id, owner)
            try:
                return self._register(conn, msg, claimed=True, room_node=room_node)
            except SignalingError as exc:  # rooms' rules refused what the registry allowed
                return [
                    (
                        conn,
                        encode_message("error", code=exc.code, message=exc.message, in_reply_to="register"),
                    ),
                    (conn, Release(peer_id)),
                ]
        error: SignalingError
        if outcome == "taken":
            error = DuplicateID(
                f"ID {peer_id!r} is already registered on another server node ({owner}); pick another ID, "
                "close the other phone first, or reclaim it with the secret it registered with",
                in_reply_to="register",
            )
        else:
            error = RegistryUnavailable(
                f"this server cannot reach the registry it shares with the other nodes, so it cannot make sure "
                f"that no other node has ID {peer_id!r}; new registrations are refused until it is back: "
                "try again in a few seconds (phones retry by themselves)",
                in_reply_to="register",
            )
        return [
            (conn, encode_message("error", code=error.code, message=error.message, in_reply_to="register"))
        ]

    def deliver(self, to: str, sender: str, sender_node: str, text: str) -> Outgoing[ConnT]:
        """A message for ``to`` published by node ``sender_node``: what to send here, and to other nodes.

        ``sender`` is empty for a server notice (never bounced). A phone no longer here gets its
        sender the same ``unavailable`` a local relay would, returned as a :class:`Forward`. An empty
        ``to`` is a room message of ``sender`` for a room this node holds (docs/rooms.md, "Across the
        nodes"); a room notice for a phone here updates what this node knows of its rooms elsewhere.
        """
        conn = self._conn_of.get(to)
        if conn is not None:
            if not sender and text.startswith('{"type":"room-'):  # every notice is encode_message's
                return self._room_notice(conn, to, sender_node, text)
            return [(conn, text)]
        if not sender:
            return []
        if not to:
            return self._from_node(sender, sender_node, text)
        notice = self._unavailable(sender, to, _type_of(text) or "message")
        return [(cast(ConnT, None), Forward(sender_node, sender, "", notice))]

    def _room_notice(self, conn: ConnT, peer_id: str, node: str, text: str) -> Outgoing[ConnT]:
        """A room notice from ``node``, which holds the room, for ``peer_id`` (on ``conn``): track it, pass it on."""
        msg = orjson.loads(text)
        msg_type, room = msg.get("type"), msg.get("room")
        if msg_type == "room-invitation":
            busy = self.rooms.room_of(peer_id) is not None or peer_id in self._member_elsewhere
            if busy or conn not in self._room_clients:
                # What its phone would answer, said by its node, which alone knows (see docs/rooms.md).
                reason = (
                    "it is a member of another room"
                    if busy
                    else "it does not understand rooms (it did not register with rooms: true)"
                )
                decline = encode_message("room-decline", room=room, reason=reason, **{"from": peer_id})
                return [(cast(ConnT, None), Forward(node, "", peer_id, decline))]
            self._invited_elsewhere.setdefault(peer_id, {})[room] = node
        elif msg_type == "room-state":
            self._member_elsewhere[peer_id] = (room, node)
            self._uninvite(peer_id, room)
        elif msg_type == "room-cancelled":
            self._uninvite(peer_id, room)
        elif (msg_type == "room-ended" or (msg_type == "room-left" and msg.get("id") == peer_id)) and (
            self._member_elsewhere.get(peer_id, ("",))[0] == room
        ):
            del self._member_elsewhere[peer_id]
        return [(conn, text)] if conn in self._room_clients else []

    def _uninvite(self, peer_id: str, room: str) -> None:
        invited = self._invited_elsewhere.get(peer_id)
        if invited is not None and invited.pop(room, None) is not None and not invited:
            del self._invited_elsewhere[peer_id]

    def _forget_elsewhere(self, peer_id: str) -> None:
        if self._member_elsewhere:
            self._member_elsewhere.pop(peer_id, None)
        if self._invited_elsewhere:
            self._invited_elsewhere.pop(peer_id, None)

    def _from_node(self, sender: str, node: str, text: str) -> Outgoing[ConnT]:
        """A room message of ``sender``, a phone on ``node``, for a room this node holds: apply the rules here."""
        msg = orjson.loads(text)
        msg_type = msg.get("type")
        try:
            if msg_type == "register":
                notices = self.rooms.rejoin(sender, msg["room"], msg["members"])
                self.logger.info("%r (on node %s) is back in room %r", sender, node, msg["room"])
            elif msg_type in ROOM_TYPES:
                notices = self._room_rules(sender, msg, msg_type)
            elif msg_type in RELAYED_TYPES:
                to = msg["to"]
                self._check_room_relay(sender, to, msg.get("room"), msg_type)
                target = self._conn_of.get(to)
                if target is not None:
                    return [(target, text)]
                if (to_node := self._remote.get(to)) is not None:
                    return [(cast(ConnT, None), Forward(to_node, to, sender, text))]
                notice = self._unavailable(sender, to, msg_type)
                return [(cast(ConnT, None), Forward(node, sender, "", notice))]
            else:
                self.logger.warning("ignoring a %r message from node %s", msg_type, node)
                return []
        except SignalingError as exc:
            self.logger.debug("refused a message from %r (on node %s): %s", sender, node, exc)
            reply = encode_message("error", code=exc.code, message=exc.message, in_reply_to=exc.in_reply_to)
            return [(cast(ConnT, None), Forward(node, sender, "", reply))]
        return self._deliver(notices)

    def _room_held_by(self, peer_id: str, room: str, room_node: str = "") -> str | None:
        """The other node that holds ``room``, for ``peer_id``'s messages about it; ``None``: this node decides."""
        if self.node is None or self.rooms.has(room):
            return None
        member = self._member_elsewhere.get(peer_id)
        if member is not None and member[0] == room:
            return member[1]
        node = self._invited_elsewhere.get(peer_id, {}).get(room) or room_node
        return node if node and node != self.node else None

    def undeliverable(self, forward: Forward, reason: str) -> Outgoing[ConnT]:
        """``forward`` could not be published (``reason`` says why): tell its sender, if it is still here.

        A rejoin for a room whose node is gone re-creates the room here instead (docs/rooms.md).
        """
        conn = self._conn_of.get(forward.sender) if forward.sender else None
        if conn is None:
            return []
        msg_type = _type_of(forward.text)
        if not forward.to and msg_type == "register":
            # A member back after a failover whose room's node is gone too: the room is made again here.
            msg = orjson.loads(forward.text)
            self._forget_elsewhere(forward.sender)
            try:
                return self._deliver(self.rooms.rejoin(forward.sender, msg["room"], msg["members"]))
            except SignalingError as exc:
                error = encode_message("error", code=exc.code, message=exc.message, in_reply_to="register")
                return [(conn, error)]
        if forward.to:
            peer, where = forward.to, f"{forward.to!r} is on another server node"
        else:  # a room message for the node holding the room
            peer, where = forward.node, f"the room is held by another server node ({forward.node})"
        notice = encode_message(
            "unavailable",
            peer=peer,
            in_reply_to=msg_type,
            message=f"{where} and {reason}; this {msg_type!r} was not delivered",
        )
        return [(conn, notice)]

    def remote_joined(self, peer_id: str, node: str) -> Outgoing[ConnT]:
        """``peer_id`` registered on node ``node``: news for this node's watchers."""
        if node == self.node or peer_id in self._conn_of:
            return []
        known = peer_id in self._remote
        self._remote[peer_id] = node
        return [] if known else self._news("joined", peer_id)

    def remote_left(self, peer_id: str, node: str) -> Outgoing[ConnT]:
        """``peer_id`` left node ``node`` (or that node is gone): news for this node's watchers."""
        if self._remote.get(peer_id) != node:
            return []  # it moved on since, or it was never known here
        del self._remote[peer_id]
        if peer_id in self._conn_of:
            return []
        return self._news("left", peer_id) + self._gone_elsewhere(peer_id)

    def _gone_elsewhere(self, peer_id: str) -> Outgoing[ConnT]:
        """A phone of another node went offline: for this node's rooms, as if its connection here was lost."""
        rooms = self.rooms
        if not (rooms.active and rooms.involves(peer_id)):
            return []
        return self._deliver(rooms.went_away(peer_id))

    def remote_moved(
        self, peer_id: str, old: str, new: str, close: Close = REPLACED_ELSEWHERE
    ) -> Outgoing[ConnT]:
        """``peer_id`` moved from node ``old`` to node ``new`` (its phone failed over, same secret)."""
        if new == self.node:
            return []  # claimed() took care of it
        if old == self.node:
            return self.lost_claim(peer_id, new, close)
        known = peer_id in self._remote
        self._remote[peer_id] = new
        return [] if known or peer_id in self._conn_of else self._news("joined", peer_id)

    def remote_taken(self, peer_id: str, old: str, new: str) -> Outgoing[ConnT]:
        """Node ``new`` took ``peer_id`` from node ``old``, which the registry took for gone (as a move)."""
        return self.remote_moved(peer_id, old, new, TAKEN_ELSEWHERE)

    def lost_claim(self, peer_id: str, owner: str, close: Close | None = None) -> Outgoing[ConnT]:
        """The registry gives ``peer_id`` to node ``owner``: drop this node's connection for it, without news."""
        self._remote[peer_id] = owner
        conn = self._conn_of.pop(peer_id, None)
        self._secret_of.pop(peer_id, None)
        if conn is None:
            return []
        self._id_of[conn] = None
        self._watchers.pop(conn, None)
        self._room_clients.pop(conn, None)
        self._forget_elsewhere(peer_id)
        self.logger.info("%r is now held by node %s; closing its connection here", peer_id, owner)
        return [(conn, close or TAKEN_ELSEWHERE)]

    def registry_snapshot(self, owners: dict[str, str]) -> Outgoing[ConnT]:
        """Every ID in the registry -> its node, read after (re)subscribing: news of what changed unseen."""
        old = self._remote
        new = {peer: node for peer, node in owners.items() if node != self.node and peer not in self._conn_of}
        self._remote = new
        out: Outgoing[ConnT] = []
        for peer_id in sorted(old.keys() - new.keys()):
            out.extend(self._news("left", peer_id))
            out.extend(self._gone_elsewhere(peer_id))
        for peer_id in sorted(new.keys() - old.keys()):
            out.extend(self._news("joined", peer_id))
        return out

    def held(self) -> list[tuple[str, bytes | None]]:
        """The IDs this node holds (its phones', and room members' within their grace), with their secrets."""
        held = [(peer_id, self._secret_of.get(peer_id)) for peer_id in self._conn_of]
        if self.rooms.active:
            held.extend(
                (peer_id, self._secret_of.get(peer_id))
                for peer_id in self._secret_of
                if peer_id not in self._conn_of and self.rooms.is_away(peer_id)
            )
        return held

    def _news(self, what: str, peer_id: str) -> Outgoing[ConnT]:
        text = encode_message(what, id=peer_id)
        return [(watcher, text) for watcher in self._watchers]

    def _check_room_relay(self, sender: str, to: str, room: object, msg_type: str) -> None:
        if room is None:
            return  # like an absent field
        if not isinstance(room, str):
            raise BadMessage(
                f"field 'room' must be a string (the room's ID), got {_json_type(room)} {_shorten(room)}",
                in_reply_to=msg_type,
            )
        self.rooms.check_relay(sender, to, room, msg_type)

    # -- rooms --------------------------------------------------------------

    def _room_message(self, conn: ConnT, msg: dict[str, Any], msg_type: str) -> Outgoing[ConnT]:
        sender = self._id_of[conn]
        if sender is None:
            raise NotRegistered(f"this connection has no ID yet; {_REGISTER_HINT}", in_reply_to=msg_type)
        raw_from = msg.get("from", sender)
        if raw_from != sender:
            _check_from(raw_from, sender, msg_type)
        if conn not in self._room_clients:
            raise NoRooms(
                f'this connection ({sender!r}) did not register with "rooms": true; register again '
                f'with {{"type":"register","from":{json.dumps(sender)},"rooms":true}} to use rooms',
                in_reply_to=msg_type,
            )
        if self.node is not None and (node := self._room_message_node(sender, msg, msg_type)) is not None:
            # A room held by another node: it applies the rules, and its notices come back through this one.
            msg["from"] = sender
            if msg_type == "room-leave":  # the leaver hears nothing back: it is out once it said so
                self._member_elsewhere.pop(sender, None)
            return [(conn, Forward(node, "", sender, json.dumps(msg, separators=(",", ":"))))]
        return self._deliver(self._room_rules(sender, msg, msg_type))

    def _room_message_node(self, sender: str, msg: dict[str, Any], msg_type: str) -> str | None:
        """Cluster: the other node holding the room ``msg`` is about, or ``None`` (this node decides)."""
        member = self._member_elsewhere.get(sender) if self._member_elsewhere else None
        if msg_type == "room-invite":
            room = _room_field(msg, msg_type, required=False)
            if member is None:
                return None
            if room is not None and room != member[0]:
                raise _not_a_member(room, member[0], msg_type)
            msg["room"] = member[0]  # into its room, as on one node
            return member[1]
        room = _room_field(msg, msg_type)
        if member is not None and member[0] == room:
            return member[1]
        node = self._invited_elsewhere.get(sender, {}).get(room) if self._invited_elsewhere else None
        if node is not None and msg_type in ("room-accept", "room-decline"):
            if msg_type == "room-accept" and (member is not None or self.rooms.room_of(sender) is not None):
                raise InAnotherRoom(
                    f"you are a member of room {member[0] if member else self.rooms.room_of(sender)!r}; send "
                    f"room-leave for it before accepting room {room!r}",
                    in_reply_to=msg_type,
                )
            return node
        return None

    def _room_rules(self, sender: str, msg: dict[str, Any], msg_type: str) -> Notices:
        """Apply the rules of rooms to ``sender``'s message (a phone here or, for a room held here, elsewhere)."""
        rooms = self.rooms
        if msg_type == "room-invite":
            to = _peer_field(msg, "to", msg_type)
            room = _room_field(msg, msg_type, required=False)
            link = _flag(msg, "link", msg_type, "send true when you are already connected to 'to'")
            if to == sender:
                raise InviteSelf(
                    f"'to' is your own ID {sender!r}; invite another phone into your room",
                    in_reply_to=msg_type,
                )
            mine = rooms.room_of(sender)
            if room is not None and room != mine:
                raise _not_a_member(room, mine, msg_type)
            target = self._conn_of.get(to)
            if target is None and to not in self._remote:
                raise Unavailable(
                    f"{to!r} is not online on this server; invite a phone that is", in_reply_to=msg_type
                )
            # A phone on another node: its node checks that it understands rooms and is in no other room,
            # and declines for it if not (docs/rooms.md, "Across the nodes").
            if target is not None and target not in self._room_clients:
                raise NoRooms(
                    f'{to!r} did not register with "rooms": true (a phone that does not understand rooms, '
                    "such as a seed page); call it 1:1 instead",
                    in_reply_to=msg_type,
                )
            if target is not None and to in self._member_elsewhere:
                raise InAnotherRoom(
                    f"{to!r} is a member of another room; it must leave that room before it can be invited",
                    in_reply_to=msg_type,
                )
            notices = rooms.invite(sender, to, link=link)
            self.logger.info("%r invited %r into room %r", sender, to, rooms.room_of(sender))
        elif msg_type == "room-accept":
            room = _room_field(msg, msg_type)
            if sender in self._member_elsewhere:
                raise InAnotherRoom(
                    f"you are a member of room {self._member_elsewhere[sender][0]!r}; send room-leave for it "
                    f"before accepting room {room!r}",
                    in_reply_to=msg_type,
                )
            notices = rooms.accept(sender, room)
            self.logger.info("%r joined room %r (%d members)", sender, room, len(rooms.members(room)))
        elif msg_type == "room-decline":
            room = _room_field(msg, msg_type)
            notices = rooms.decline(sender, room, _reason(msg, msg_type))
        elif msg_type == "room-leave":
            room = _room_field(msg, msg_type)
            notices = rooms.leave(sender, room, _reason(msg, msg_type))
            self.logger.info("%r left room %r", sender, room)
        else:  # room-link
            room = _room_field(msg, msg_type)
            peer = _peer_field(msg, "peer", msg_type)
            state = msg.get("state")
            if state not in ("failed", "closed"):
                raise BadMessage(
                    f"field 'state' of a 'room-link' message must be \"failed\" or \"closed\" (the "
                    f"connectionState of your link to 'peer'), got {_json_type(state)} {_shorten(state)}",
                    in_reply_to=msg_type,
                )
            if peer == sender:
                raise BadMessage(
                    f"'peer' is your own ID {sender!r}; report your link to another member",
                    in_reply_to=msg_type,
                )
            notices = rooms.report_link(sender, room, peer)
        return notices

    def _deliver(self, notices: Notices) -> Outgoing[ConnT]:
        """Address room notices: to online phones here that registered with rooms, and (cluster) to other nodes.

        A phone on another node gets its notice through its node, which checks that it registered with
        rooms. The rooms made and ended here go to the registry (:class:`RoomNode`).
        """
        out: Outgoing[ConnT] = []
        remote = self._remote
        for peer_id, text in notices:
            conn = self._conn_of.get(peer_id)
            if conn is not None:
                if conn in self._room_clients:
                    out.append((conn, text))
            elif remote and (node := remote.get(peer_id)) is not None:
                out.append((cast(ConnT, None), Forward(node, peer_id, "", text)))
        changes = self.rooms.changes
        if changes:
            out.extend((cast(ConnT, None), RoomNode(room, made)) for room, made in changes)
            changes.clear()
        return out

    def _unavailable(self, sender: str, to: str, msg_type: str) -> str:
        online = sorted(peer for peer in self._conn_of if peer != sender)
        if not online:
            listing = "no other peer is online"
        else:
            listing = "online: " + ", ".join(online[:_MAX_LISTED_PEERS])
            if len(online) > _MAX_LISTED_PEERS:
                listing += f" and {len(online) - _MAX_LISTED_PEERS} more"
        return encode_message(
            "unavailable",
            peer=to,
            in_reply_to=msg_type,
            message=f"{to!r} is not online on this server; {listing}",
        )


def _forwarded(frame: str, msg: dict[str, Any], msg_type: str, sender: str, to: str) -> str:
    """The text the recipient sees: the frame itself when ``from`` and ``to`` are already right."""
    if msg.get("from") == sender and msg.get("to") == to:
        return frame
    msg["from"] = sender
    msg["to"] = to
    try:
        return json.dumps(msg, separators=(",", ":"), allow_nan=False)
    except RecursionError:
        raise BadMessage("message is nested too deeply to forward", in_reply_to=msg_type) from None


def _type_of(text: str) -> str | None:
    """The ``type`` of a message the server already validated (rare paths: undelivered messages)."""
    try:
        value = orjson.loads(text).get("type")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _secret(msg: dict[str, Any]) -> bytes | None:
    """The register message's optional ``secret`` as bytes; its value never appears in errors."""
    value = msg.get("secret")
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_SECRET_LENGTH:
        what = f"a string of {len(value)} characters" if isinstance(value, str) else _json_type(value)
        raise BadMessage(
            f"field 'secret' must be a string of 1 to {MAX_SECRET_LENGTH} characters, got {what}; "
            "omit it or send the same random string each time this phone registers",
            in_reply_to="register",
        )
    return value.encode("utf-8", "surrogatepass")


def _presence(msg: dict[str, Any]) -> bool:
    """The register message's optional ``presence`` flag (absent or null: no presence news)."""
    value = msg.get("presence")
    if value is None or isinstance(value, bool):
        return bool(value)
    raise BadMessage(
        f"field 'presence' must be true or false, got {_json_type(value)} {_shorten(value)}; "
        "send true to get the peers online and joined/left news",
        in_reply_to="register",
    )


def _check_from(raw_from: object, sender: str, msg_type: str) -> None:
    """Raise unless ``raw_from`` (a message's ``from``, not ``sender`` itself) names ``sender``."""
    if not isinstance(raw_from, str):
        raise BadMessage(
            f"field 'from' must be a string (your peer ID), got {_json_type(raw_from)} {_shorten(raw_from)}",
            in_reply_to=msg_type,
        )
    if unicodedata.normalize("NFC", raw_from) != sender:
        raise WrongFrom(
            f"'from' is {_shorten(raw_from)} but this connection is registered as {sender!r}; "
            "omit 'from' or set it to your ID",
            in_reply_to=msg_type,
        )


def _flag(msg: dict[str, Any], name: str, msg_type: str, hint: str) -> bool:
    """An optional boolean field (absent or null: false)."""
    value = msg.get(name)
    if value is None or isinstance(value, bool):
        return bool(value)
    raise BadMessage(
        f"field {name!r} must be true or false, got {_json_type(value)} {_shorten(value)}; {hint}",
        in_reply_to=msg_type,
    )


def _peer_field(msg: dict[str, Any], name: str, msg_type: str) -> str:
    if name not in msg:
        raise BadMessage(
            f"missing field {name!r} (a peer ID) in a {msg_type!r} message", in_reply_to=msg_type
        )
    try:
        return validate_id(msg[name], field=name)
    except SignalingError as exc:
        exc.in_reply_to = msg_type
        raise


def _room_field(msg: dict[str, Any], msg_type: str, *, required: bool = True) -> Any:
    """The message's ``room``: a room ID as the server made it (a string of 1 to 64 characters)."""
    value = msg.get("room")
    if value is None and not required:
        return None
    if isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH:
        return value
    if "room" not in msg:
        raise BadMessage(
            f"missing field 'room' in a {msg_type!r} message (the room's ID, from room-state or room-invitation)",
            in_reply_to=msg_type,
        )
    raise BadMessage(
        f"field 'room' must be a room ID (a string of 1 to {MAX_ID_LENGTH} characters, as the server made it), "
        f"got {_json_type(value)} {_shorten(value)}",
        in_reply_to=msg_type,
    )


def _reason(msg: dict[str, Any], msg_type: str) -> str | None:
    value = msg.get("reason")
    if value is None or isinstance(value, str):
        return value
    raise BadMessage(
        f"field 'reason' of a {msg_type!r} message must be a string (why), got {_json_type(value)} {_shorten(value)}",
        in_reply_to=msg_type,
    )


def _room_claim(msg: dict[str, Any]) -> tuple[str | None, list[str]]:
    """A register message's ``room`` and ``members``: the room a reconnecting member reports."""
    if msg.get("room") is None:
        return None, []
    room = _room_field(msg, "register")
    members = msg.get("members")
    if not isinstance(members, list) or len(members) > MAX_REPORTED_MEMBERS:
        what = (
            f"an array of {len(members)} IDs"
            if isinstance(members, list)
            else f"{_json_type(members)} {_shorten(members)}"
        )
        raise BadMessage(
            f"field 'members' of a 'register' with 'room' must be an array of at most {MAX_REPORTED_MEMBERS} peer "
            f"IDs (the members of the room as this phone knows them), got {what}",
            in_reply_to="register",
        )
    try:
        return room, [validate_id(member, field="members") for member in members]
    except SignalingError as exc:
        exc.in_reply_to = "register"
        raise


def _not_a_member(room: str, mine: str | None, msg_type: str) -> NotAMember:
    return NotAMember(
        f"you are not a member of room {room!r}"
        + (f"; your room is {mine!r}" if mine is not None else "; omit 'room' to make a new room"),
        in_reply_to=msg_type,
    )


def _parse(frame: str) -> dict[str, Any]:
    # orjson: strict RFC 8259 (no NaN/Infinity, no lone surrogates, depth limit), ~9x json.loads here.
    try:
        msg = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise BadJSON(
            f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}; "
            "send one JSON object per text frame"
        ) from None
    if not isinstance(msg, dict):
        raise BadMessage(
            f'expected a JSON object like {{"type":"register","from":"A"}}, got {_json_type(msg)} {_shorten(msg)}'
        )
    return msg


def _json_type(value: object) -> str:
    """Name ``value``'s type the way JSON does, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _shorten(value: object) -> str:
    """A short ``repr`` of ``value`` for error messages, safe on huge or deeply nested JSON."""
    return _repr.repr(value)


_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 40
_repr.maxlevel = 2

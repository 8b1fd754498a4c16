"""Sans-I/O signaling: the registry of peers and the routing of their messages.

Feed frames in with :meth:`SignalingProtocol.receive`; it returns the
``(connection, text)`` pairs to send, in order. No sockets, no asyncio: the
server (``nbcall.server``) only pumps frames through it, and tests need no
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
receive the ``room-*`` messages, whose rules live in :mod:`nbcall.rooms`; nothing about rooms
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
from typing import Any, Generic, TypeVar

import orjson

from .exceptions import (
    AlreadyRegistered,
    BadID,
    BadJSON,
    BadMessage,
    BinaryFrame,
    DuplicateID,
    InviteSelf,
    MessageTooBig,
    NoRooms,
    NotAMember,
    NotRegistered,
    RateLimited,
    SignalingError,
    Unavailable,
    UnknownType,
    WrongFrom,
)
from .limits import DEFAULT_LIMITS, RATE_ABUSE_WINDOW, TokenBucket
from .rooms import Notices, RoomRegistry

__all__ = [
    "KNOWN_TYPES",
    "MAX_ID_LENGTH",
    "MAX_REPORTED_MEMBERS",
    "MAX_SECRET_LENGTH",
    "RELAYED_TYPES",
    "REPLACED",
    "ROOM_TYPES",
    "TOO_SLOW",
    "Close",
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


#: What :meth:`SignalingProtocol.receive` returns: text frames to send, and rarely a :class:`Close`.
Outgoing = list[tuple[ConnT, str | Close]]

REPLACED = Close(1008, "replaced by a newer connection of the same phone")
TOO_SLOW = Close(1008, "too slow: stopped reading its messages")


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
      rooms' limits (see :class:`nbcall.rooms.RoomRegistry`).

    Defaults are :data:`nbcall.limits.DEFAULT_LIMITS`'s.

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
        self.logger = logger if logger is not None else logging.getLogger("nbcall.protocol")
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

    # -- registry -----------------------------------------------------------

    @property
    def peers(self) -> list[str]:
        """Registered IDs, sorted."""
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
        for peer_id in removed:
            if peer_id not in self._conn_of:
                self._secret_of.pop(peer_id, None)
        return self._deliver(notices)

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

    def _register(self, conn: ConnT, msg: dict[str, Any]) -> Outgoing[ConnT]:
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
            others = sorted(other for other in self._conn_of if other != peer_id)
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
            joined = encode_message("joined", id=peer_id)
            out.extend((other, joined) for other in self._watchers if other != conn)
        if wants_rooms:
            self._room_clients[conn] = None
        elif self._room_clients:
            self._room_clients.pop(conn, None)
        if room_notices:
            out.extend(self._deliver(room_notices))
        if room is not None:
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
            self._check_room_relay(sender, to, msg["room"], msg_type)
        if target is None:
            return [(conn, self._unavailable(sender, to, msg_type))]

        if msg_type != "ice":
            self.logger.info("%r -> %r: %s", sender, to, msg_type)
        if "from" in msg and raw_from == sender and raw_to == to:
            return [(target, frame)]  # already what the peer must see: forward the original text
        msg["from"] = sender
        msg["to"] = to
        try:
            text = json.dumps(msg, separators=(",", ":"), allow_nan=False)
        except RecursionError:
            raise BadMessage("message is nested too deeply to forward", in_reply_to=msg_type) from None
        return [(target, text)]

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
            if target is None:
                raise Unavailable(
                    f"{to!r} is not online on this server; invite a phone that is", in_reply_to=msg_type
                )
            if target not in self._room_clients:
                raise NoRooms(
                    f'{to!r} did not register with "rooms": true (a phone that does not understand rooms, '
                    "such as a seed page); call it 1:1 instead",
                    in_reply_to=msg_type,
                )
            notices = rooms.invite(sender, to, link=link)
            self.logger.info("%r invited %r into room %r", sender, to, rooms.room_of(sender))
        elif msg_type == "room-accept":
            room = _room_field(msg, msg_type)
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
        return self._deliver(notices)

    def _deliver(self, notices: Notices) -> Outgoing[ConnT]:
        """Address room notices to connections: only online phones that registered with rooms."""
        out: Outgoing[ConnT] = []
        for peer_id, text in notices:
            conn = self._conn_of.get(peer_id)
            if conn is not None and conn in self._room_clients:
                out.append((conn, text))
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

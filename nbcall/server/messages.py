"""The server's message vocabulary: the types clients send, the instructions the protocol returns, the field checks.

Everything here is pure: :class:`~nbcall.server.protocol.SignalingProtocol` and its parts (rooms,
routing across nodes, the rate policy) share these definitions, and the I/O layer reads the
instructions (:class:`Close`, and in cluster mode :class:`Forward`, :class:`Claim`,
:class:`Release`, :class:`RoomNode`). Each check raises a :class:`~nbcall.exceptions.SignalingError`
that names the bad value and the remedy; it becomes an ``error`` reply (:func:`error_reply`).
"""

from __future__ import annotations

import json
import reprlib
import unicodedata
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from ..exceptions import BadID, BadJSON, BadMessage, NotAMember, SignalingError, WrongFrom

__all__ = [
    "CLAIM_OUTCOMES",
    "KNOWN_LIST",
    "KNOWN_TYPES",
    "MAX_ID_LENGTH",
    "MAX_REPORTED_MEMBERS",
    "MAX_SECRET_LENGTH",
    "REGISTER_HINT",
    "RELAYED_TYPES",
    "REPLACED",
    "REPLACED_ELSEWHERE",
    "ROOM_TYPES",
    "SFU_SIGNALS",
    "SFU_SYNC",
    "TAKEN_ELSEWHERE",
    "TOO_SLOW",
    "Claim",
    "Close",
    "ConnT",
    "Forward",
    "Outgoing",
    "Release",
    "RoomNode",
    "SfuSignal",
    "SfuSync",
    "check_from",
    "encode_message",
    "error_reply",
    "flag_field",
    "forwarded_text",
    "json_type",
    "not_a_member",
    "parse_frame",
    "peer_field",
    "presence_field",
    "reason_field",
    "room_claim",
    "room_field",
    "secret_field",
    "shorten",
    "type_of",
    "validate_id",
]

MAX_ID_LENGTH = 64
MAX_SECRET_LENGTH = 256
#: Most IDs a ``register`` with ``room`` may name in ``members``.
MAX_REPORTED_MEMBERS = 64
#: Longest room credential a register may carry (the server's are 33 characters).
MAX_CREDENTIAL_LENGTH = 100

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

#: A member's signaling with the SFU of its room (docs/rooms.md, "Rooms on an SFU").
SFU_SIGNALS: tuple[str, ...] = ("sfu-offer", "sfu-answer", "sfu-ice", "sfu-view")

#: Room messages a client may send (docs/rooms.md), for phones that registered with ``"rooms": true``.
ROOM_TYPES: tuple[str, ...] = (
    "room-invite", "room-accept", "room-decline", "room-leave", "room-link", "room-message", *SFU_SIGNALS
)  # fmt: skip

#: Every type a client may send.
KNOWN_TYPES: tuple[str, ...] = ("register", *RELAYED_TYPES, *ROOM_TYPES)

#: The known types, for error messages.
KNOWN_LIST = ", ".join(sorted(KNOWN_TYPES))
#: What an unregistered connection must do first, for error messages.
REGISTER_HINT = 'send {"type":"register","from":YOUR_ID} first'

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
    to :meth:`~nbcall.server.routing.ClusterRouting.undeliverable`.
    """

    node: str
    to: str
    sender: str
    text: str


@dataclass(frozen=True)
class Claim:
    """An instruction in the output (cluster mode): claim ``peer_id`` in the shared registry for this connection.

    The server answers with :meth:`~nbcall.server.protocol.SignalingProtocol.claimed`; meanwhile it holds the connection's
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
class SfuSignal:
    """An instruction in the output: ``member`` of SFU room ``room`` sent ``kind`` (one of :data:`SFU_SIGNALS`)
    for its ``role`` link to the SFU; ``value`` is the parsed JSEP description or ICE candidate (``None``: end of
    candidates). The server's :class:`~nbcall.server.sfu.SfuBridge` carries it out."""

    room: str
    member: str
    kind: str
    role: str
    value: dict[str, Any] | None


@dataclass(frozen=True)
class SfuSync:
    """An instruction in the output: rooms changed; the SFU bridge brings Janus in line with the SFU rooms."""


SFU_SYNC = SfuSync()


@dataclass(frozen=True)
class Release:
    """An instruction in the output (cluster mode): ``peer_id`` is no longer held here; free it in the registry."""

    peer_id: str


#: What :meth:`~nbcall.server.protocol.SignalingProtocol.receive` returns: text frames to send, and rarely a :class:`Close`
#: (or, in cluster mode, a :class:`Forward`, :class:`Claim`, :class:`Release` or :class:`RoomNode`; with an SFU,
#: a :class:`SfuSignal` or :class:`SfuSync`).
Outgoing = list[tuple[ConnT, str | Close | Forward | Claim | Release | RoomNode | SfuSignal | SfuSync]]

#: How a claim in the shared registry ended (see :meth:`~nbcall.server.protocol.SignalingProtocol.claimed`).
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
            f"field {field!r} must be a string (a peer ID), got {json_type(value)} {shorten(value)}"
        )
    peer_id = unicodedata.normalize("NFC", value)
    if not peer_id:
        raise BadID(f"{field!r} is empty; a peer ID needs 1 to {MAX_ID_LENGTH} characters")
    if len(peer_id) > MAX_ID_LENGTH:
        raise BadID(
            f"{field!r} is {len(peer_id)} characters long, the limit is {MAX_ID_LENGTH}: {shorten(peer_id)}"
        )
    if not peer_id.isprintable():
        bad = next(c for c in peer_id if not c.isprintable())
        raise BadID(
            f"{field!r} contains the non-printable character U+{ord(bad):04X}: {shorten(peer_id)}; "
            "use letters, digits, punctuation or inner spaces"
        )
    if peer_id != peer_id.strip():
        raise BadID(f"{field!r} starts or ends with whitespace: {shorten(peer_id)}; strip it")
    return peer_id


def error_reply(exc: SignalingError, in_reply_to: str | None = None) -> str:
    """The ``error`` message for ``exc`` (``in_reply_to``: the type it answers, default ``exc``'s own), with the
    room it is about when ``exc`` names one."""
    about = {"room": exc.room} if exc.room else {}
    return encode_message(
        "error", code=exc.code, message=exc.message, in_reply_to=in_reply_to or exc.in_reply_to, **about
    )


def forwarded_text(frame: str, msg: dict[str, Any], msg_type: str, sender: str, to: str) -> str:
    """The text the recipient sees: the frame itself when ``from`` and ``to`` are already right."""
    if msg.get("from") == sender and msg.get("to") == to:
        return frame
    msg["from"] = sender
    msg["to"] = to
    try:
        return json.dumps(msg, separators=(",", ":"), allow_nan=False)
    except RecursionError:
        raise BadMessage("message is nested too deeply to forward", in_reply_to=msg_type) from None


def type_of(text: str) -> str | None:
    """The ``type`` of a message the server already validated (rare paths: undelivered messages)."""
    try:
        value = orjson.loads(text).get("type")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def secret_field(msg: dict[str, Any]) -> bytes | None:
    """The register message's optional ``secret`` as bytes; its value never appears in errors."""
    value = msg.get("secret")
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_SECRET_LENGTH:
        what = f"a string of {len(value)} characters" if isinstance(value, str) else json_type(value)
        raise BadMessage(
            f"field 'secret' must be a string of 1 to {MAX_SECRET_LENGTH} characters, got {what}; "
            "omit it or send the same random string each time this phone registers",
            in_reply_to="register",
        )
    return value.encode("utf-8", "surrogatepass")


def presence_field(msg: dict[str, Any]) -> bool:
    """The register message's optional ``presence`` flag (absent or null: no presence news)."""
    value = msg.get("presence")
    if value is None or isinstance(value, bool):
        return bool(value)
    raise BadMessage(
        f"field 'presence' must be true or false, got {json_type(value)} {shorten(value)}; "
        "send true to get the peers online and joined/left news",
        in_reply_to="register",
    )


def check_from(raw_from: object, sender: str, msg_type: str) -> None:
    """Raise unless ``raw_from`` (a message's ``from``, not ``sender`` itself) names ``sender``."""
    if not isinstance(raw_from, str):
        raise BadMessage(
            f"field 'from' must be a string (your peer ID), got {json_type(raw_from)} {shorten(raw_from)}",
            in_reply_to=msg_type,
        )
    if unicodedata.normalize("NFC", raw_from) != sender:
        raise WrongFrom(
            f"'from' is {shorten(raw_from)} but this connection is registered as {sender!r}; "
            "omit 'from' or set it to your ID",
            in_reply_to=msg_type,
        )


def flag_field(msg: dict[str, Any], name: str, msg_type: str, hint: str) -> bool:
    """An optional boolean field (absent or null: false)."""
    value = msg.get(name)
    if value is None or isinstance(value, bool):
        return bool(value)
    raise BadMessage(
        f"field {name!r} must be true or false, got {json_type(value)} {shorten(value)}; {hint}",
        in_reply_to=msg_type,
    )


def peer_field(msg: dict[str, Any], name: str, msg_type: str) -> str:
    if name not in msg:
        raise BadMessage(
            f"missing field {name!r} (a peer ID) in a {msg_type!r} message", in_reply_to=msg_type
        )
    try:
        return validate_id(msg[name], field=name)
    except SignalingError as exc:
        exc.in_reply_to = msg_type
        raise


def room_field(msg: dict[str, Any], msg_type: str, *, required: bool = True) -> Any:
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
        f"got {json_type(value)} {shorten(value)}",
        in_reply_to=msg_type,
    )


def reason_field(msg: dict[str, Any], msg_type: str) -> str | None:
    value = msg.get("reason")
    if value is None or isinstance(value, str):
        return value
    raise BadMessage(
        f"field 'reason' of a {msg_type!r} message must be a string (why), got {json_type(value)} {shorten(value)}",
        in_reply_to=msg_type,
    )


def room_claim(msg: dict[str, Any]) -> tuple[str | None, str | None]:
    """A register message's ``room`` and ``credential``: the room a reconnecting member reports, and its proof.

    ``members`` (the members as the phone knows them) may come too; it is checked, and proves nothing.
    """
    if msg.get("room") is None:
        return None, None
    room = room_field(msg, "register")
    members = msg.get("members", [])
    if not isinstance(members, list) or len(members) > MAX_REPORTED_MEMBERS:
        what = (
            f"an array of {len(members)} IDs"
            if isinstance(members, list)
            else f"{json_type(members)} {shorten(members)}"
        )
        raise BadMessage(
            f"field 'members' of a 'register' with 'room' must be an array of at most {MAX_REPORTED_MEMBERS} peer "
            f"IDs (the members of the room as this phone knows them), got {what}",
            in_reply_to="register",
        )
    credential = msg.get("credential")
    if credential is not None and not (
        isinstance(credential, str) and len(credential) <= MAX_CREDENTIAL_LENGTH
    ):
        raise BadMessage(
            "field 'credential' of a 'register' with 'room' must be the string the server gave this phone in its "
            f"room-state (at most {MAX_CREDENTIAL_LENGTH} characters), got {json_type(credential)} {shorten(credential)}",
            in_reply_to="register",
        )
    try:
        for member in members:
            validate_id(member, field="members")
    except SignalingError as exc:
        exc.in_reply_to = "register"
        raise
    return room, credential


def not_a_member(room: str, mine: str | None, msg_type: str) -> NotAMember:
    return NotAMember(
        f"you are not a member of room {room!r}"
        + (f"; your room is {mine!r}" if mine is not None else "; omit 'room' to make a new room"),
        in_reply_to=msg_type,
    )


def parse_frame(frame: str) -> dict[str, Any]:
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
            f'expected a JSON object like {{"type":"register","from":"A"}}, got {json_type(msg)} {shorten(msg)}'
        )
    return msg


def json_type(value: object) -> str:
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


def shorten(value: object) -> str:
    """A short ``repr`` of ``value`` for error messages, safe on huge or deeply nested JSON."""
    return _repr.repr(value)


_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 40
_repr.maxlevel = 2

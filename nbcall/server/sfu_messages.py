"""The fields of a member's SFU messages and directed room messages (docs/rooms.md, "Rooms on an SFU").

Pure checks, as in :mod:`nbcall.server.messages`: each returns the parsed value or raises
:class:`~nbcall.exceptions.BadMessage` naming the bad value and the remedy.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..exceptions import BadMessage, SignalingError
from .messages import SfuSignal, json_type, shorten, validate_id
from .sfu_record import MAX_RECORD

__all__ = ["ROLES", "directed_text", "sfu_record_field", "sfu_signal"]

#: Most members an ``sfu-view`` may name.
MAX_VIEW = 64

#: A member's two links to the SFU: the one it sends on, the one it receives the others' feeds on.
ROLES = ("publisher", "subscriber")

#: What each signal's ``role`` may be: a member offers only to publish, and answers only as a subscriber.
_ALLOWED_ROLES = {"sfu-offer": ("publisher",), "sfu-answer": ("subscriber",), "sfu-ice": ROLES}


def sfu_signal(sender: str, room: str, msg: dict[str, Any], msg_type: str) -> SfuSignal:
    """``sender``'s ``sfu-offer``, ``sfu-answer``, ``sfu-ice`` or ``sfu-view`` for ``room``, checked, as an
    instruction."""
    if msg_type == "sfu-view":
        return SfuSignal(room, sender, msg_type, "subscriber", _view(msg))
    role = msg.get("role")
    allowed = _ALLOWED_ROLES[msg_type]
    if role not in allowed:
        hint = (
            "a member offers only on its publisher link (the SFU offers the subscriber link)"
            if msg_type == "sfu-offer"
            else "a member answers only the SFU's subscriber offers"
            if msg_type == "sfu-answer"
            else "the link the candidate belongs to"
        )
        raise BadMessage(
            f"field 'role' of a {msg_type!r} message must be {' or '.join(map(repr, allowed))} ({hint}), "
            f"got {json_type(role)} {shorten(role)}",
            in_reply_to=msg_type,
        )
    if msg_type == "sfu-ice":
        return SfuSignal(room, sender, msg_type, role, _candidate(msg))
    expected = "offer" if msg_type == "sfu-offer" else "answer"
    return SfuSignal(room, sender, msg_type, role, _description(msg, msg_type, expected))


def _view(msg: dict[str, Any]) -> dict[str, Any]:
    """The ``video`` field of ``sfu-view``: the members whose video to receive, or null for every member's."""
    video = msg.get("video")
    if video is None:
        return {"video": None}
    if isinstance(video, list) and len(video) <= MAX_VIEW:
        try:
            return {"video": [validate_id(member, field="video") for member in video]}
        except SignalingError:
            pass
    raise BadMessage(
        f"field 'video' of a 'sfu-view' message must be an array of at most {MAX_VIEW} member IDs (the members "
        f"whose video to receive), or null for every member's, got {json_type(video)} {shorten(video)}",
        in_reply_to="sfu-view",
    )


def _description(msg: dict[str, Any], msg_type: str, expected: str) -> dict[str, Any]:
    """The ``sdp`` field: a JSON-encoded session description of type ``expected``, as in ``call``."""
    raw = msg.get("sdp")
    example = f'JSON.stringify({{"type":"{expected}","sdp":"v=0..."}}) (the local description)'
    if not isinstance(raw, str):
        raise BadMessage(
            f"field 'sdp' of a {msg_type!r} message must be a string, {example}, got {json_type(raw)} "
            f"{shorten(raw)}",
            in_reply_to=msg_type,
        )
    try:
        description = orjson.loads(raw)
    except orjson.JSONDecodeError:
        description = None
    if (
        not isinstance(description, dict)
        or description.get("type") != expected
        or not isinstance(description.get("sdp"), str)
    ):
        raise BadMessage(
            f"field 'sdp' of a {msg_type!r} message must be {example}, got {shorten(raw)}",
            in_reply_to=msg_type,
        )
    return {"type": expected, "sdp": description["sdp"]}


def _candidate(msg: dict[str, Any]) -> dict[str, Any] | None:
    """The ``candidate`` field: a JSON-encoded ICE candidate as in ``ice``; null or "" for the end of them."""
    raw = msg.get("candidate")
    if raw is None or raw == "":
        return None
    candidate = None
    if isinstance(raw, str):
        try:
            candidate = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    if candidate is None:
        return None  # JSON.stringify(null): the end of candidates
    if not isinstance(candidate, dict) or not isinstance(candidate.get("candidate"), str):
        raise BadMessage(
            "field 'candidate' of a 'sfu-ice' message must be a JSON-encoded ICE candidate "
            '(JSON.stringify({"candidate":"candidate:...","sdpMid":"0","sdpMLineIndex":0})), or null after the '
            f"last one, got {shorten(raw)}",
            in_reply_to="sfu-ice",
        )
    if candidate["candidate"] == "":
        return None  # the browser's end-of-candidates candidate
    fields = {key: candidate[key] for key in ("candidate", "sdpMid", "sdpMLineIndex") if key in candidate}
    return fields


def directed_text(sender: str, room: str, to: str, msg: dict[str, Any]) -> str:
    """The ``room-message`` ``to`` receives: ``sender``'s ``data``, and nobody else's eyes on it."""
    if "data" not in msg:
        raise BadMessage(
            "missing field 'data' in a 'room-message' (the JSON value or string to send to 'to')",
            in_reply_to="room-message",
        )
    # orjson re-encodes whatever it parsed (any depth it accepted); "from" is the sender, never the client's.
    return orjson.dumps(
        {"type": "room-message", "room": room, "from": sender, "to": to, "data": msg["data"]}
    ).decode()


def sfu_record_field(msg: dict[str, Any]) -> str | None:
    """A ``register`` with ``room``'s ``sfu``: the record of the member's links to the SFU its last ``sfu-record``
    gave it (checked against the room key by the SFU bridge), or ``None``."""
    record = msg.get("sfu")
    if record is None or (isinstance(record, str) and len(record) <= MAX_RECORD):
        return record
    raise BadMessage(
        f"field 'sfu' of a 'register' with 'room' must be the string of at most {MAX_RECORD} characters the "
        f"server's last 'sfu-record' gave this phone, got {json_type(record)} {shorten(record)}",
        in_reply_to="register",
    )

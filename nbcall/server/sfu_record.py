"""What a member reports after a server restart so that its SFU room carries on in Janus (docs/rooms.md).

An SFU room lives in Janus as long as the Janus session that made it: a restarted server (or the node that
takes a room over) claims that session and takes up the members' handles where they were. What it needs comes
from the members: each holds a **record** of its part (the room's Janus session, VideoRoom and control handle;
its feed, its two handles, its publisher's streams and its subscription), which the server sends it
(``sfu-record``) whenever that part changes and which it gives back in ``register``. A record is signed with the
room key, so a member can neither forge one nor take another's handles. It holds no secret: the VideoRoom's pin
and secret and the members' tokens are derived from the room key (:func:`derive`), and none of Janus's numbers
opens anything without Janus's API secret, which only the server holds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import orjson

__all__ = ["MAX_RECORD", "derive", "seal", "unseal"]

#: Longest ``sfu`` field of a ``register`` (a record of a member subscribed to 24 feeds of 3 streams each
#: takes about 3,000 characters).
MAX_RECORD = 8192


def derive(key: bytes, what: str, *parts: object) -> str:
    """A lock of a VideoRoom (``pin``, ``secret``, a member's ``token``) made from the room key: a restarted
    server with the same key makes the same, and nobody without the key can."""
    text = "\x1f".join([what, *map(str, parts)]).encode()
    return base64.urlsafe_b64encode(hmac.digest(key, b"nbcall-sfu-lock\x1f" + text, hashlib.sha256)).decode()[
        :32
    ]


def seal(key: bytes, record: dict[str, Any]) -> str:
    """``record`` as a member carries it: its JSON, base64url, and a signature under ``key``."""
    body = base64.urlsafe_b64encode(orjson.dumps(record)).rstrip(b"=")
    return f"{body.decode()}.{_signature(key, body)}"


def unseal(key: bytes, text: object, room: str, member: str) -> dict[str, Any] | None:
    """The record ``text`` holds when it was signed under ``key`` for ``member`` of ``room``, else ``None``."""
    if not isinstance(text, str) or len(text) > MAX_RECORD or text.count(".") != 1:
        return None
    body, signature = text.split(".")
    if not hmac.compare_digest(signature, _signature(key, body.encode())):
        return None
    try:
        record = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(record, dict) or record.get("room") != room or record.get("member") != member:
        return None
    return record


def _signature(key: bytes, body: bytes) -> str:
    digest = hmac.digest(key, b"nbcall-sfu-record\x1f" + body, hashlib.sha256)
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

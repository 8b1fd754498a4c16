"""What ``Phone.send`` accepts, and how it travels: a kind ("str", "bytes" or "json") and the bytes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["MAX_RECEIVE_SIZE", "Kind", "Message", "decode", "encode", "oversize"]

Kind = Literal["str", "bytes", "json"]

#: The largest message a phone keeps in memory unless told otherwise (its ``max_receive_size``). Files written
#: to a ``receive_dir`` are not bounded by it.
MAX_RECEIVE_SIZE = 512 * 2**20


def oversize(size: int, limit: int, what: str = "a message") -> str | None:
    """Why ``what`` of ``size`` bytes is refused when a phone keeps at most ``limit`` bytes of it in memory, or
    None when it fits: every receiver (frame decoder, streamed parts, files kept in memory) says it this way."""
    if size <= limit:
        return None
    return (
        f"dropped {what}: {size} bytes is more than max_receive_size ({limit}); raise max_receive_size "
        "on the receiver, or send it as a file to a receiver with a receive_dir"
    )


@dataclass(frozen=True)
class Message:
    """A message received on the data channel: ``data`` has the type the sender sent.

    Attributes
    ----------
    data
        What was sent: str, bytes, or the decoded JSON value.
    sender
        The ID of the phone or peer that sent it.
    kind
        ``"str"``, ``"bytes"`` or ``"json"``.
    size
        Its size on the wire, in bytes.
    received_at
        When it arrived, in seconds since the epoch (:func:`time.time`).
    """

    data: Any
    sender: str
    kind: Kind
    size: int
    received_at: float = field(repr=False)


def encode(data: Any) -> tuple[Kind, bytes]:
    """str travels as UTF-8, bytes-like as it is, anything else as JSON; the kind restores the type."""
    if isinstance(data, str):
        return "str", data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return "bytes", bytes(data)
    try:
        text = json.dumps(data, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"cannot send {type(data).__name__!s}: send str, bytes, or a JSON-serializable value ({exc})"
        ) from None
    return "json", text.encode("utf-8")


def decode(kind: str, payload: bytes | memoryview) -> Any:
    """The inverse of :func:`encode`; bytes come back as given (a view stays a view)."""
    if kind == "bytes":
        return payload
    text = str(payload, "utf-8")
    return json.loads(text) if kind == "json" else text

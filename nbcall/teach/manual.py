"""Manual signaling: an offer or answer, with its ICE candidates, as text short enough to paste.

Two phones made with ``server=False`` connect without a signaling server: one's ``create_offer()`` gives text
that the other's ``accept_offer(text)`` takes, and its answer text goes back to ``accept_answer(text)``. The
text is the signaling messages as JSON, compressed (zlib) and URL-safe base64, after a ``nbcall1:`` tag.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from typing import Any

__all__ = ["pack", "unpack"]

TAG = "nbcall1:"


def pack(messages: list[dict[str, Any]]) -> str:
    """The signaling ``messages`` (an offer or answer, then its candidates) as one line of text."""
    data = json.dumps(messages, separators=(",", ":")).encode("utf-8")
    return TAG + base64.urlsafe_b64encode(zlib.compress(data, 9)).decode("ascii")


def unpack(text: object, expected: str) -> list[dict[str, Any]]:
    """The messages in ``text``, whose first must be of type ``expected`` ("call" or "answer")."""
    what = {"call": "an offer from create_offer()", "answer": "an answer from accept_offer()"}[expected]
    if not isinstance(text, str) or not text.strip().startswith(TAG):
        raise ValueError(f"this is not {what}: paste the whole text, starting with {TAG!r}")
    try:
        raw = zlib.decompress(base64.urlsafe_b64decode(text.strip()[len(TAG) :].encode("ascii")))
        messages = json.loads(raw)
    except (binascii.Error, zlib.error, ValueError, UnicodeError) as exc:
        raise ValueError(f"this text is damaged ({exc}): copy {what} again, all of it") from None
    if not (isinstance(messages, list) and messages and all(isinstance(m, dict) for m in messages)):
        raise ValueError(f"this text holds no signaling messages: paste {what}")
    if messages[0].get("type") != expected:
        raise ValueError(f"this is a {messages[0].get('type')!r}, not {what}")
    return messages

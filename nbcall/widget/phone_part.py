"""What the parts of :class:`~nbcall.widget.phone.Phone` share: the attributes each part expects of the phone.

``Phone`` is one class made of parts by job: the teaching tools (:mod:`.teaching`), the camera, microphone and
diagnosis (:mod:`.devices`), the messages from its browser half (:mod:`.from_browser`) and the rest
(:mod:`.phone`). Each part is a mixin of :class:`PhonePart`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ..call.adapter import CallAdapter
from ..call.client import SignalingClient
from ..teach.sdp import Descriptions
from ..wire.payload import Message
from .backlog import Backlog
from .outgoing import Outgoing

__all__ = ["PhonePart", "settle"]


class PhonePart(CallAdapter):
    """The attributes and methods of a ``Phone`` that its parts use (``Phone.__init__`` sets them)."""

    _client: SignalingClient | None
    _frontend: bool
    _engine: str | None
    _pages: list[str]
    _outbox: Callable[[dict[str, Any]], None]
    _manual_out: list[dict[str, Any]]
    _gathered: dict[str, asyncio.Future[None]]
    _descriptions: Descriptions
    _diagnoses: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]]
    _stats_waiters: list[Callable[[dict[str, Any]], Any]]
    _callbacks: list[Callable[[Message], Any]]
    _parts: dict[str, list[bytes | memoryview]]
    _refusing: set[str]
    max_receive_size: int
    _to_browser: Backlog
    _outgoing: Outgoing
    _log: list[dict[str, Any]]
    max_log: int
    max_messages: int
    stats: dict[str, Any]
    rtc: dict[str, str]
    peer: str
    media_error: str
    stepping: bool
    held: list[dict[str, Any]]
    messages: list[Message]

    def _apply(self, fields: dict[str, Any]) -> None:
        raise NotImplementedError

    def _browser(self, content: dict[str, Any], buffers: list[bytes | memoryview] | None = None) -> None:
        raise NotImplementedError

    def _send_custom(self, content: dict[str, Any], buffers: list[bytes | memoryview] | None = None) -> None:
        raise NotImplementedError

    def _pump(self) -> None:
        raise NotImplementedError

    def _file_part(self, sender: str, kind: Any, data: Any, size: int) -> Message | None:
        raise NotImplementedError

    def _log_entry(self, direction: str, kind: str, detail: Any, size: int = 0, *, echo: bool = True) -> None:
        raise NotImplementedError


def settle(future: asyncio.Future[Any], result: Any = None) -> None:
    """Resolve ``future`` unless it is already done (a timeout, say): run on its loop."""
    if not future.done():
        future.set_result(result)

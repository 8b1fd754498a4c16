"""What a Phone sends on its data channel, on its way to the browser half: in parts, paced by the browser.

A payload goes to the browser as a ``send`` message (its first part, and the whole ``size``) followed by
``send_part`` messages, so the browser starts sending on the data channel while the rest is still on its way.
The browser answers ``sent`` (``id``, ``done``) as its data channels take the parts, and at most :data:`WINDOW`
bytes are handed to the browser ahead of those answers: a large send fills neither the page nor the kernel's
outgoing comm queue. :class:`Outgoing` is sans-I/O: it says what to send; the phone sends it.

The browser's answers are comm messages, which the kernel handles only while it is idle or the running cell
awaits. A cell that blocks (a loop of computation, ``time.sleep``) stops the transfer after the window until it
ends or awaits; nothing is lost.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PART", "WINDOW", "Outgoing"]

#: Bytes per comm message of a send: a comm message is a kernel round and a copy on the way to the page.
PART = 1024 * 1024
#: Bytes handed to the browser that its data channels have not taken yet: enough to keep the channel busy
#: while the browser's answers make their way back (two messages of 4 MiB at most in flight in the page).
WINDOW = 8 * 1024 * 1024


@dataclass
class _Send:
    header: dict[str, Any]
    payload: memoryview
    handed: int = 0  # bytes handed to the browser
    taken: int = 0  # bytes the browser said its channels took
    started: bool = False


@dataclass
class Outgoing:
    """The sends on their way to the browser, oldest first, released part by part within the window."""

    part: int = PART
    window: int = WINDOW
    _sends: dict[int, _Send] = field(default_factory=dict)
    _queue: deque[int] = field(default_factory=deque)

    def add(self, header: dict[str, Any], payload: bytes | memoryview) -> None:
        """Queue a send (``header`` is the ``send`` message, with its ``id``)."""
        view = memoryview(payload).cast("B")
        send = _Send({**header, "size": len(view)}, view)
        self._sends[header["id"]] = send
        self._queue.append(header["id"])

    @property
    def in_flight(self) -> int:
        """Bytes handed to the browser that it has not yet said its channels took."""
        return sum(s.handed - s.taken for s in self._sends.values())

    @property
    def queued(self) -> int:
        """Bytes not yet handed to the browser."""
        return sum(len(s.payload) - s.handed for s in self._sends.values())

    @property
    def has_room(self) -> bool:
        """Whether a new send would start at once (so a file's next part may be read now)."""
        return self.queued == 0 and self.in_flight < self.window

    def ready(self) -> list[tuple[dict[str, Any], memoryview]]:
        """The messages to send the browser now, each with its one buffer (views of the payload, no copy)."""
        out: list[tuple[dict[str, Any], memoryview]] = []
        room = self.window - self.in_flight
        while self._queue and room > 0:
            send = self._sends[self._queue[0]]
            piece = send.payload[send.handed : send.handed + self.part]
            if send.started:
                out.append(({"type": "send_part", "id": send.header["id"]}, piece))
            else:
                send.started = True
                out.append((send.header, piece))
            send.handed += len(piece)
            room -= max(len(piece), 1)
            if send.handed >= len(send.payload):
                self._queue.popleft()
                self._forget_if_done(send)
        return out

    def taken(self, ident: Any, done: Any) -> None:
        """The browser's channels took the first ``done`` bytes of send ``ident`` (its ``sent`` message)."""
        send = self._sends.get(ident)
        if send is None or isinstance(done, bool) or not isinstance(done, int):
            return
        send.taken = max(send.taken, min(done, send.handed))
        self._forget_if_done(send)

    def failed(self, ident: Any) -> None:
        """Send ``ident`` failed in the browser: the rest of it is not sent."""
        send = self._sends.pop(ident, None)
        if send is not None and ident in self._queue:
            self._queue.remove(ident)

    def clear(self) -> int:
        """Drop every send (the call ended, the page was reloaded); returns how many were unfinished."""
        count = len(self._sends)
        self._sends.clear()
        self._queue.clear()
        return count

    def _forget_if_done(self, send: _Send) -> None:
        if send.handed >= len(send.payload) and send.taken >= send.handed:
            self._sends.pop(send.header["id"], None)
